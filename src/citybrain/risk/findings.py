"""Facts from the analysis (分析结果转事实): a traced case's close and secondary contacts, the
case itself, and risk-area travellers from a screening run.

The analysis works on person keys (``analysis/person_keys.parquet``); facts are keyed by risk
subject, the lake's ``id_hmac`` as hex. Linkage records, for every record it placed by a
resident ID, that ID's keyed hash (``rule = 'id'``, ``via_hash``): so a person key's subjects
are read from the person keys alone, without scanning the lake. Persons the analysis knows
only by phone, card or plate have no subject: they are counted, not asserted (screening and
the outbound calls reach them).

Only strong contacts become facts: a weak lead (a shared cell) is something to check, not a
reason to turn a code red. Every assertion carries a dedupe key, so reading the same trace or
screening again asserts nothing twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from citybrain.analysis.contacts import CASE_CATEGORIES
from citybrain.analysis.linkage import OUTPUT
from citybrain.analysis.screening import homes_of_keys
from citybrain.core.audit.service import Actor, record
from citybrain.datahub.lake import LakePaths
from citybrain.kit import clock
from citybrain.kit.errors import InvalidInput
from citybrain.risk import repository
from citybrain.risk.kinds import FactKind
from citybrain.risk.service import assert_fact, recompute_compounds
from citybrain.risk.subjects import subject_of_lake_hash

# Screening rules whose hits are travel from a risk area (the ticket, or the phone roaming
# there); presumed car occupants and hotline tips are leads for a call, not facts.
TRAVEL_RULES = ("risk_area_travel", "risk_area_roaming")
RECORDS_KEPT = 20  # record ids kept as a fact's evidence


@dataclass
class FindingsSummary:
    """What one batch of analysis results turned into (counts only)."""

    asserted: dict[str, int] = field(default_factory=dict)
    already_known: int = 0
    without_identity: int = 0
    weak_leads: int = 0
    persons: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain figures for the audit log and the CLI."""
        return {
            "asserted": dict(self.asserted),
            "already_known": self.already_known,
            "without_identity": self.without_identity,
            "weak_leads": self.weak_leads,
            "persons": self.persons,
        }


def subjects_of_keys(keys: Path, person_keys: Iterable[int]) -> dict[int, list[str]]:
    """Per person key, the risk subjects of the resident IDs linkage placed its records by."""
    wanted = sorted(set(person_keys))
    if not wanted or not keys.exists():
        return {}
    con = duckdb.connect()
    try:
        con.register("wanted", pa.table({"person_key": pa.array(wanted, pa.int64())}))
        rows = con.execute(
            """
            SELECT DISTINCT k.person_key, k.via_hash
            FROM read_parquet(?) k SEMI JOIN wanted USING (person_key)
            WHERE k.rule = 'id' AND k.via = 'id' AND k.via_hash IS NOT NULL
            ORDER BY 1, 2
            """,
            [str(keys)],
        ).fetchall()
    finally:
        con.close()
    found: dict[int, list[str]] = {}
    for key, digest in rows:
        found.setdefault(int(key), []).append(subject_of_lake_hash(bytes(digest)))
    return found


def _aware(moment: dt.datetime) -> dt.datetime:
    # Lake times are the agencies' wall-clock times in China.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=clock.CHINA_TZ)
    return moment.astimezone(dt.UTC)


def _case_reports(paths: LakePaths, keys: Path, case_key: int) -> tuple[str, dt.datetime] | None:
    """The kind of a case (confirmed unless only asymptomatic reports exist) and its first
    report time, from the lake's case reports."""
    folder = paths.kind_dir("health")
    globs = [
        str(folder / f"category={c}" / "*" / "*.parquet")
        for c in CASE_CATEGORIES
        if any((folder / f"category={c}").rglob("*.parquet"))
    ]
    if not globs:
        return None
    con = duckdb.connect()
    try:
        row = con.execute(
            f"""
            SELECT bool_or(h.category = 'case_confirmed'), min(h.event_time)
            FROM read_parquet([{", ".join("?" for _ in globs)}], hive_partitioning = true) h
            JOIN read_parquet(?) k USING (record_id)
            WHERE k.person_key = ?
            """,  # noqa: S608 - placeholders only
            [*globs, str(keys), case_key],
        ).fetchone()
    finally:
        con.close()
    if row is None or row[1] is None:
        return None
    kind = FactKind.CONFIRMED_CASE if row[0] else FactKind.ASYMPTOMATIC
    return kind, _aware(row[1])


@dataclass(frozen=True)
class Finding:
    """One fact to assert about the subjects of one person key (a case, or a contact)."""

    subjects: tuple[str, ...]
    kind: str
    source: str
    evidence: dict[str, Any]
    valid_from: dt.datetime
    dedupe_key: str
    compound_code: str | None = None


def _assert_for(
    session: Session,
    actor: Actor,
    summary: FindingsSummary,
    finding: Finding,
    compounds: set[str],
) -> None:
    for subject in finding.subjects:
        if repository.duplicate_fact(session, subject, finding.kind, finding.dedupe_key):
            summary.already_known += 1
            continue
        assert_fact(
            session,
            actor,
            subject=subject,
            kind=finding.kind,
            source=finding.source,
            evidence=finding.evidence,
            valid_from=finding.valid_from,
            compound_code=finding.compound_code,
            dedupe_key=finding.dedupe_key,
            compounds_later=compounds,
        )
        summary.asserted[finding.kind] = summary.asserted.get(finding.kind, 0) + 1


def assert_findings(
    session: Session, actor: Actor, summary: FindingsSummary, findings: Sequence[Finding]
) -> None:
    """Assert ``findings`` in the caller's transaction (each fact once: one already asserted
    under its dedupe key is counted as known), the compounds they touch recomputed once at the
    end; ``summary`` counts them."""
    compounds: set[str] = set()
    for finding in findings:
        _assert_for(session, actor, summary, finding, compounds)
    recompute_compounds(session, compounds)


def trace_findings(
    session: Session,
    paths: LakePaths,
    *,
    case_key: int,
    result_path: str,
    keys: Path | None = None,
) -> tuple[list[Finding], FindingsSummary]:
    """The facts a traced case gives (``analysis.contacts_listed``), not yet asserted: the
    case's own confirmed or asymptomatic fact from its reports, close contacts (hop 1) and
    secondary contacts (hop 2) with strong evidence, each from their last exposure; for every
    person key whose resident ID is known. Reads only; the summary counts the persons, the
    weak leads and those without a known identity."""
    keys = keys or paths.root / OUTPUT
    target = (paths.root / result_path).resolve()
    if paths.root.resolve() not in target.parents or target.suffix != ".parquet":
        raise InvalidInput("结果文件路径无效", "invalid result path", field="result_path")
    summary = FindingsSummary()
    findings: list[Finding] = []
    table = pq.read_table(target)
    strong = table.filter(pc.equal(table.column("strength"), "strong"))
    contacts = set(table.column("contact").to_pylist())
    strong_contacts = set(strong.column("contact").to_pylist())
    summary.weak_leads = len(contacts - strong_contacts)
    subjects = subjects_of_keys(keys, [case_key, *strong_contacts])
    # Where they live, as the household registry says: a case's home compound turns red,
    # and the cockpit places every fact on the map.
    homes = homes_of_keys(paths, session, keys, [case_key, *strong_contacts])
    case = _case_reports(paths, keys, case_key)
    if case is not None and subjects.get(case_key):
        kind, found_at = case
        findings.append(
            Finding(
                tuple(subjects[case_key]),
                kind,
                source="analysis.case_report",
                evidence={"case_key": case_key, "analysis_run": result_path},
                valid_from=found_at,
                dedupe_key=f"lake_case:{case_key}",
                compound_code=homes.get(case_key),
            )
        )
    exposures: dict[tuple[int, int], tuple[dt.datetime, list[int], set[str]]] = {}
    for row in strong.to_pylist():
        key = (int(row["contact"]), int(row["hop"]))
        last, records, rules = exposures.get(key, (row["end"], [], set()))
        last = max(last, row["end"])
        records += [int(r) for r in row["evidence"] or [] if len(records) < RECORDS_KEPT]
        rules.add(str(row["rule"]))
        exposures[key] = (last, records[:RECORDS_KEPT], rules)
    for (contact, hop), (last, records, rules) in sorted(exposures.items()):
        summary.persons += 1
        found = subjects.get(contact)
        if not found:
            summary.without_identity += 1
            continue
        findings.append(
            Finding(
                tuple(found),
                FactKind.CLOSE_CONTACT if hop == 1 else FactKind.SECONDARY_CONTACT,
                source="analysis.contacts",
                evidence={
                    "case_key": case_key,
                    "contact_key": contact,
                    "record_ids": records,
                    "rules": sorted(rules),
                    "analysis_run": result_path,
                },
                valid_from=_aware(last),
                dedupe_key=f"trace:{case_key}",
                compound_code=homes.get(contact),
            )
        )
    return findings, summary


def record_trace(session: Session, actor: Actor, case_key: int, summary: FindingsSummary) -> None:
    """Audit a traced case's facts as one row with the counts."""
    record(
        session,
        actor,
        "risk.facts.from_trace",
        object_type="contact_trace",
        object_id=str(case_key),
        purpose="密接赋码 facts from contact tracing",
        detail=summary.as_dict(),
    )


def facts_from_trace(
    session: Session,
    actor: Actor,
    paths: LakePaths,
    *,
    case_key: int,
    result_path: str,
    keys: Path | None = None,
) -> FindingsSummary:
    """Assert the facts a traced case gives (:func:`trace_findings`) in the caller's
    transaction. Audited as one row with the counts. (The worker's job asserts them a chunk
    a transaction instead: ``risk.tasks.contact_facts``.)"""
    findings, summary = trace_findings(
        session, paths, case_key=case_key, result_path=result_path, keys=keys
    )
    assert_findings(session, actor, summary, findings)
    record_trace(session, actor, case_key, summary)
    return summary


def facts_from_screening(
    session: Session,
    actor: Actor,
    rows: Iterable[dict[str, Any]],
    keys: Path,
    *,
    rules: Sequence[str] = TRAVEL_RULES,
) -> FindingsSummary:
    """Assert ``risk_area_travel`` facts from a screening run's rows (``analysis.screening.
    screen`` as a table's rows, or the ``key_persons`` of ``citybrain analysis screen --json``)
    whose rule is a travel rule: from the latest journey, with the records and the home
    compound the screening found. Audited as one row with the counts."""
    summary = FindingsSummary()
    findings: list[Finding] = []
    hits = [r for r in rows if r.get("rule") in rules]
    subjects = subjects_of_keys(keys, [int(r["person_key"]) for r in hits])
    for hit in hits:
        summary.persons += 1
        key = int(hit["person_key"])
        found = subjects.get(key)
        if not found:
            summary.without_identity += 1
            continue
        last = hit.get("last_time")
        moment = dt.datetime.fromisoformat(last) if isinstance(last, str) else last
        if not isinstance(moment, dt.datetime):
            continue
        compound = hit.get("compound_code")
        findings.append(
            Finding(
                tuple(found),
                FactKind.RISK_AREA_TRAVEL,
                source="screening",
                evidence={
                    "person_key": key,
                    "rule": str(hit["rule"]),
                    "areas": list(hit.get("areas") or [])[:5],
                    "record_ids": [int(r) for r in (hit.get("record_ids") or [])[:RECORDS_KEPT]],
                },
                valid_from=_aware(moment),
                compound_code=(
                    compound if isinstance(compound, str) and len(compound) == 15 else None
                ),
                dedupe_key=f"screening:{key}:{hit['rule']}:{_aware(moment).isoformat()}",
            )
        )
    assert_findings(session, actor, summary, findings)
    record(
        session,
        actor,
        "risk.facts.from_screening",
        object_type="person_keys",
        purpose="行程赋码 facts from screening",
        detail={**summary.as_dict(), "rules": list(rules)},
    )
    return summary
