"""Analysis results become facts: a traced case's contacts (through the handler of
``analysis.contacts_listed`` and its job) and a screening run's risk-area travellers, on the
small synthetic city the analysis tests use."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select
from tests.analysis.test_contacts import build_city
from tests.conftest import DatabaseFactory
from tests.risk.conftest import a_gate_writing

from citybrain.analysis.linkage import OUTPUT
from citybrain.analysis.screening import screen
from citybrain.analysis.tracing import TOPIC_CONTACTS_LISTED, TraceResult, trace_new_cases
from citybrain.core.audit.models import AuditEntry
from citybrain.core.audit.service import SYSTEM
from citybrain.core.events.models import OutboxEvent
from citybrain.core.jobs import get_queue, reset_queue
from citybrain.datahub import lake
from citybrain.kit import clock
from citybrain.kit.db import Database, let_writers_in, use_database
from citybrain.kit.settings import reset_settings
from citybrain.risk import service
from citybrain.risk import tasks as risk_tasks
from citybrain.risk.findings import TRAVEL_RULES, facts_from_screening, facts_from_trace
from citybrain.risk.models import Fact
from citybrain.risk.tasks import contact_facts, on_contacts_listed

pytestmark = pytest.mark.slow


@dataclass
class Traced:
    paths: lake.LakePaths
    database: Database
    traces: list[TraceResult]
    truth: Path


@pytest.fixture(scope="module")
def traced(
    database_factory: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Traced]:
    city = build_city(database_factory, tmp_path_factory)
    traces = trace_new_cases(city.paths, city.database, SYSTEM)
    yield Traced(city.paths, city.database, traces, city.truth)
    city.database.dispose()


def _truth_homes(truth: Path) -> dict[str, str]:
    """Subject -> home compound of every simulated person (the truth, hashed here as the
    intake hashes ID numbers)."""
    from citybrain.datahub.pseudonym import Pseudonymiser

    people = pq.read_table(truth / "persons.parquet", columns=["id_number", "compound_code"])
    digests = Pseudonymiser().column(people.column("id_number").combine_chunks(), "id_number")
    return {
        bytes(d).hex(): c
        for d, c in zip(
            digests.to_pylist(), people.column("compound_code").to_pylist(), strict=True
        )
        if d is not None and c is not None
    }


def id_subjects(paths: lake.LakePaths) -> dict[int, set[str]]:
    """Person key -> subjects, read independently of the code under test."""
    keys = pq.read_table(paths.root / OUTPUT).filter(
        pc.equal(pq.read_table(paths.root / OUTPUT).column("rule"), "id")
    )
    found: dict[int, set[str]] = {}
    for key, digest in zip(
        keys.column("person_key").to_pylist(), keys.column("via_hash").to_pylist(), strict=True
    ):
        if digest is not None:
            found.setdefault(int(key), set()).add(bytes(digest).hex())
    return found


def test_a_traced_case_turns_into_facts_once(traced: Traced, at: Any) -> None:
    trace = max(traced.traces, key=lambda t: t.close_contacts)
    assert trace.close_contacts > 0
    rows = pq.read_table(traced.paths.root / trace.result_path)
    strong = rows.filter(pc.equal(rows.column("strength"), "strong"))
    # The city lives in 2020: read its colours the day after the last exposure.
    last = max(strong.column("end").to_pylist()).replace(tzinfo=clock.CHINA_TZ)
    at(last + dt.timedelta(days=1))
    subjects = id_subjects(traced.paths)
    expected: dict[str, set[str]] = {"close_contact": set(), "secondary_contact": set()}
    unknown = set()
    for contact, hop in zip(
        strong.column("contact").to_pylist(), strong.column("hop").to_pylist(), strict=True
    ):
        kind = "close_contact" if hop == 1 else "secondary_contact"
        if contact in subjects:
            expected[kind] |= subjects[contact]
        else:
            unknown.add((contact, hop))
    assert expected["close_contact"]

    with traced.database.unit_of_work() as session:
        summary = facts_from_trace(
            session, SYSTEM, traced.paths, case_key=trace.case_key, result_path=trace.result_path
        )
    assert summary.without_identity == len(unknown)
    assert summary.asserted.get("close_contact", 0) == len(expected["close_contact"])
    assert summary.asserted.get("secondary_contact", 0) == len(expected["secondary_contact"])
    with traced.database.unit_of_work() as session:
        stored = session.scalars(
            select(Fact).where(
                Fact.source == "analysis.contacts", Fact.dedupe_key == f"trace:{trace.case_key}"
            )
        ).all()
        by_kind = {k: {f.subject for f in stored if f.kind == k} for k in expected}
        assert by_kind == expected
        contact = sorted(expected["close_contact"])[0]
        view = service.colour_of(session, contact)
        assert view.colour == "red" and view.reasons[0].rule_id == "close_contact"
        assert any(e.startswith("record:") for e in view.reasons[0].evidence)
        assert f"case:{trace.case_key}" in view.reasons[0].evidence
        case_facts = session.scalars(
            select(Fact).where(Fact.dedupe_key == f"lake_case:{trace.case_key}")
        ).all()
        assert {f.kind for f in case_facts} <= {"confirmed_case", "asymptomatic"}
        assert {f.subject for f in case_facts} == subjects.get(trace.case_key, set())
        # Each fact is placed at its person's home compound, as the simulator's truth has it
        # (the household registry's address resolved to the compound).
        homes = _truth_homes(traced.truth)
        placed = [f for f in [*stored, *case_facts] if f.compound_code is not None]
        assert len(placed) >= 0.8 * len([*stored, *case_facts]) > 0
        assert all(f.compound_code == homes[f.subject] for f in placed)

    # The same trace read again (a retried job) asserts nothing new.
    with traced.database.unit_of_work() as session:
        count = session.scalar(select(func.count()).select_from(Fact))
        again = facts_from_trace(
            session, SYSTEM, traced.paths, case_key=trace.case_key, result_path=trace.result_path
        )
        assert again.asserted == {}
        assert again.already_known == sum(summary.asserted.values())
        assert session.scalar(select(func.count()).select_from(Fact)) == count


def test_the_contacts_listed_event_starts_the_job(
    traced: Traced, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset_queue(f"sqlite:///{tmp_path / 'jobs.db'}")
    monkeypatch.setenv("CITYBRAIN_DATA_DIR", str(traced.paths.root))
    reset_settings()
    try:
        with traced.database.unit_of_work() as session:
            event = session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.topic == TOPIC_CONTACTS_LISTED)
                .order_by(OutboxEvent.id)
            ).first()
            assert event is not None
            on_contacts_listed(session, event)
        assert get_queue().pending_count() == 1
        with use_database(traced.database):
            counts = contact_facts.call_local(
                int(event.payload["case_key"]), str(event.payload["result_path"])
            )
        assert (
            counts["persons"]
            == int(event.payload["close_contacts"])
            + int(event.payload["secondary_contacts"])
            - counts["weak_leads"]
        )
    finally:
        reset_queue()
        monkeypatch.undo()
        reset_settings()


def test_screening_travellers_become_risk_area_travel_facts(traced: Traced, at: Any) -> None:
    days = sorted(p.name.removeprefix("day=") for p in traced.paths.lake.glob("*/*/day=*"))
    at(dt.datetime.fromisoformat(days[-1]).replace(hour=23, tzinfo=clock.CHINA_TZ))
    table = screen(traced.paths, traced.database, as_of=dt.date.fromisoformat(days[-1]))
    rows = table.to_pylist()
    travel = [r for r in rows if r["rule"] in TRAVEL_RULES]
    assert travel
    subjects = id_subjects(traced.paths)
    expected = {s for r in travel for s in subjects.get(r["person_key"], set())}
    with traced.database.unit_of_work() as session:
        summary = facts_from_screening(session, SYSTEM, rows, traced.paths.root / OUTPUT)
        assert summary.persons == len(travel)
        assert summary.without_identity == sum(1 for r in travel if r["person_key"] not in subjects)
        stored = session.scalars(select(Fact).where(Fact.source == "screening")).all()
        assert {f.subject for f in stored} == expected
        assert {f.kind for f in stored} == {"risk_area_travel"}
        placed = [f for f in stored if f.compound_code]
        if placed:
            assert service.tier_of(session, placed[0].compound_code or "").rule_set_version == 1
        assert {service.colour_of(session, s).colour for s in expected} <= {"yellow", "red"}
    with traced.database.unit_of_work() as session:
        again = facts_from_screening(session, SYSTEM, rows, traced.paths.root / OUTPUT)
        assert again.asserted == {} and again.already_known == sum(summary.asserted.values())


def test_a_traced_cases_job_lets_gates_in_between_its_chunks(
    traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A case with hundreds of contacts is asserted a chunk a transaction: gates' scan writers
    # (every 2 ms, never waiting) find SQLite's write lock free between the chunks.
    if traced.database.dialect != "sqlite":
        pytest.skip("SQLite's one write lock")
    monkeypatch.setattr(risk_tasks, "FINDINGS_CHUNK", 1)
    pauses: list[int] = []

    def pausing(database: Database) -> None:
        pauses.append(1)
        let_writers_in(database)

    monkeypatch.setattr(risk_tasks, "let_writers_in", pausing)
    monkeypatch.setenv("CITYBRAIN_DATA_DIR", str(traced.paths.root))
    reset_settings()
    busiest = max(traced.traces, key=lambda t: t.close_contacts)
    trace = max(
        (t for t in traced.traces if t is not busiest),
        key=lambda t: t.close_contacts + t.secondary_contacts,
    )
    try:
        with use_database(traced.database), a_gate_writing(traced.database) as gate:
            counts = risk_tasks.contact_facts.call_local(trace.case_key, trace.result_path)
    finally:
        monkeypatch.undo()
        reset_settings()
    asserted = sum(int(n) for n in dict(counts["asserted"]).values()) + int(counts["already_known"])
    assert asserted >= 4, counts
    # One transaction a finding here (a person may have several subjects), each followed by
    # a pause in which the gate got in.
    assert 3 <= len(pauses) <= asserted
    assert gate.taken >= 3
    with traced.database.unit_of_work() as session:
        audited = session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "risk.facts.from_trace",
                AuditEntry.object_id == str(trace.case_key),
            )
        ).all()
        assert audited and audited[-1].detail["persons"] == counts["persons"]
