"""Tracing on arrival (到案即追): when a confirmed case reaches the lake, list its close and
secondary contacts and announce them.

``trace_new_cases`` is the one service for it. It is run by the job the intake's
``datahub.file_ingested`` event starts for case and lab-test files (``analysis.tasks``), and by
``citybrain datahub ingest`` after a folder run, so a case is traced whether it came over the
API or in an agency's drop folder. For every case in the lake not traced yet it:

1. brings the person keys up to date (identity linkage) when files were taken in or purged
   since the last trace linked them (the ledger's counts, noted beside the keys);
2. brings the contact index up to date (``presence_index.sync_lake_index``: the new parts as a
   delta), lists the contacts of all new cases to two hops from it (``contacts.close_contacts``)
   and writes them to ``analysis/contacts/case_<key>.parquet``;
3. in one transaction: a ``ContactTrace`` row per case (when its first report arrived, when its
   contacts were listed, how many), an audit row per case, and an outbox event
   ``analysis.contacts_listed`` per case for what acts on contacts (risk facts, the screening
   and outbound-call apps).

``seconds`` on each row is the time from the ledger's commit of the file that brought the case
to the commit of its contacts: what ``citybrain evaluate`` reports as
``seconds_case_to_contacts``.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import func, select

from citybrain.analysis.contacts import CASE_CATEGORIES, cases_in_lake, close_contacts
from citybrain.analysis.linkage import OUTPUT, LinkageSummary, run_linkage
from citybrain.analysis.models import ContactTrace
from citybrain.analysis.presence_index import INDEX_DIR, current_lake_index, sync_lake_index
from citybrain.core.audit.service import Actor, Event, record_many, record_purge
from citybrain.core.events.service import publish
from citybrain.datahub.lake import LakePaths
from citybrain.datahub.models import IntakeFile
from citybrain.kit import clock
from citybrain.kit.db import Database
from citybrain.kit.settings import get_settings

TOPIC_CONTACTS_LISTED = "analysis.contacts_listed"
CONTACTS_DIR = Path("analysis", "contacts")
# Lake record ids carry the ledger id of the file that brought them in their high 32 bits.
RECORD_SERIAL_SHIFT = 32


@dataclass(frozen=True)
class TraceResult:
    """One case traced: counts and timings (no personal data)."""

    case_key: int
    close_contacts: int
    secondary_contacts: int
    seconds: float
    result_path: str


def _aware(moment: dt.datetime) -> dt.datetime:
    # Lake times are the agencies' wall-clock times in China.
    return moment.replace(tzinfo=clock.CHINA_TZ) if moment.tzinfo is None else moment


# What the ledger held when the person keys were last linked for tracing: files taken in and
# files purged, as counts (ledger rows are never deleted, so each only grows). Counts, not
# times: a file's mtime and the platform clock need not agree (a simulated or moved clock).
LEDGER_MARK = Path("analysis") / ".person_keys.ledger.json"


def _ledger_counts(database: Database) -> dict[str, int]:
    with database.unit_of_work() as session:
        files, purged, days = session.execute(
            select(
                func.count(IntakeFile.id),
                func.count(IntakeFile.purged_at),
                func.coalesce(func.sum(IntakeFile.purged_rows), 0),
            )
        ).one()
    # Days of files purged count too: the records of those days left the lake.
    return {"files": int(files or 0), "purged": int(purged or 0), "purged_rows": int(days or 0)}


def _stale(paths: LakePaths, database: Database, keys: Path) -> bool:
    """Whether files were taken in, or purged at the end of their retention, since the person
    keys were linked for tracing (or they never were)."""
    mark = paths.root / LEDGER_MARK
    if not keys.exists() or not mark.exists():
        return True
    try:
        seen = json.loads(mark.read_text())
    except ValueError:
        return True
    return bool(seen != _ledger_counts(database))


def link_for_tracing(paths: LakePaths, database: Database, actor: Actor) -> LinkageSummary:
    """Link the lake (``run_linkage``) and note what the ledger held, so that the next trace
    links again only when files were taken in or purged since."""
    counts = _ledger_counts(database)  # before: a file arriving during the run counts as new
    summary = run_linkage(paths, database, actor)
    mark = paths.root / LEDGER_MARK
    aside = mark.with_suffix(".part")
    aside.write_text(json.dumps(counts))
    aside.replace(mark)
    return summary


def _arrivals(paths: LakePaths, keys: Path, cases: list[int]) -> dict[int, int]:
    """Case person key -> ledger id of the file that brought its first case report."""
    folder = paths.kind_dir("health")
    globs = [
        str(folder / f"category={c}" / "*" / "*.parquet")
        for c in CASE_CATEGORIES
        if any((folder / f"category={c}").rglob("*.parquet"))
    ]
    if not globs or not cases:
        return {}
    con = duckdb.connect()
    try:
        con.register("wanted", pa.table({"person_key": pa.array(cases, pa.int64())}))
        listed = ", ".join(f"'{g}'" for g in globs)
        rows = con.execute(
            f"""
            SELECT k.person_key, min(h.record_id >> {RECORD_SERIAL_SHIFT})
            FROM read_parquet([{listed}]) h
            JOIN read_parquet('{keys}') k USING (record_id)
            SEMI JOIN wanted USING (person_key)
            GROUP BY k.person_key
            """  # noqa: S608 - our paths
        ).fetchall()
    finally:
        con.close()
    return {int(k): int(serial) for k, serial in rows}


@contextmanager
def _one_trace_at_a_time(paths: LakePaths) -> Iterator[None]:
    # Several case files make several jobs: the later ones wait, then find nothing new,
    # rather than link and query the same cases twice.
    paths.root.mkdir(parents=True, exist_ok=True)
    with open(paths.root / ".trace.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def trace_new_cases(
    paths: LakePaths, database: Database, actor: Actor, *, hops: int = 2
) -> list[TraceResult]:
    """List the contacts of every case in the lake that has not been traced yet, record each
    trace, audit it and announce it (``analysis.contacts_listed``). Returns what was traced,
    oldest case first; nothing when every case is traced already. One trace runs at a time
    per data directory; another waits for it."""
    with _one_trace_at_a_time(paths):
        return _trace(paths, database, actor, hops)


def forget_purged_records(
    paths: LakePaths, database: Database, actor: Actor
) -> LinkageSummary | None:
    """After a retention purge (``datahub.files_purged``): link again, so that the person keys
    and linkage's record cache hold only the records still in the lake, and bring the contact
    index up to date (rebuilt without them: a part it indexed is gone). Nothing when nothing
    was linked yet. Waits for a running trace, as a trace does."""
    with _one_trace_at_a_time(paths):
        keys = paths.root / OUTPUT
        if not keys.exists():
            return None
        summary = link_for_tracing(paths, database, actor)
        if (paths.root / INDEX_DIR).exists():
            sync_lake_index(paths, keys=keys)
        return summary


def _trace(paths: LakePaths, database: Database, actor: Actor, hops: int) -> list[TraceResult]:
    keys = paths.root / OUTPUT
    if _stale(paths, database, keys):
        link_for_tracing(paths, database, actor)
    found = cases_in_lake(paths, database, keys)
    with database.unit_of_work() as session:
        done = set(session.scalars(select(ContactTrace.case_key)))
    new = [(k, at) for k, at in found if k not in done]
    if not new:
        return []
    table = close_contacts(
        paths,
        database,
        [k for k, _ in new],
        hops=hops,
        keys=keys,
        index=current_lake_index(paths, keys=keys),
    )
    arrivals = _arrivals(paths, keys, [k for k, _ in new])
    with database.unit_of_work() as session:
        serials = sorted(set(arrivals.values()))
        arrived_at = {
            serial: at
            for serial, at in session.execute(
                select(IntakeFile.id, IntakeFile.ingested_at).where(IntakeFile.id.in_(serials))
            )
        }
    folder = paths.root / CONTACTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    cases = table.column("case")
    written: list[tuple[int, dt.datetime, dt.datetime, pa.Table, str]] = []
    for key, found_at in new:
        rows = table.filter(pc.equal(cases, key))
        relative = str(CONTACTS_DIR / f"case_{key}.parquet")
        aside = paths.root / f"{relative}.part"
        pq.write_table(rows, aside, compression="zstd")
        aside.replace(paths.root / relative)  # readers never see half a file
        serial = arrivals.get(key)
        # A case the ledger cannot date (its report predates the ledger) arrived when found.
        arrival = arrived_at.get(serial) if serial is not None else None
        written.append((key, found_at, arrival or clock.now(), rows, relative))
    results: list[TraceResult] = []
    with database.unit_of_work() as session:
        traced_at = clock.now()
        events: list[Event] = []
        for key, found_at, arrival, rows, relative in written:
            hop = rows.column("hop")
            close = len(pc.unique(rows.filter(pc.equal(hop, 1)).column("contact")))
            secondary = len(pc.unique(rows.filter(pc.equal(hop, 2)).column("contact")))
            seconds = max(0.0, (traced_at - arrival).total_seconds())
            session.add(
                ContactTrace(
                    case_key=key,
                    found_at=_aware(found_at),
                    arrived_at=arrival,
                    traced_at=traced_at,
                    seconds=seconds,
                    close_contacts=close,
                    secondary_contacts=secondary,
                    result_path=relative,
                )
            )
            counts = {
                "case_key": key,
                "close_contacts": close,
                "secondary_contacts": secondary,
                "seconds": round(seconds, 3),
                "result_path": relative,
            }
            events.append(
                Event(
                    actor,
                    "analysis.trace",
                    object_type="contact_trace",
                    object_id=str(key),
                    purpose="密接追踪 contact tracing",
                    detail=counts,
                )
            )
            publish(session, TOPIC_CONTACTS_LISTED, counts, key=str(key))
            results.append(TraceResult(key, close, secondary, seconds, relative))
        record_many(session, events)
    return results


def purge_contact_lists(paths: LakePaths, database: Database, actor: Actor) -> int:
    """Delete the contact lists of cases traced more than ``contact_list_retention_days`` ago
    (the records they were drawn from are gone from the lake by then); each trace's row and
    counts stay. Audited before the files go, so a run cut short is finished by the next.
    Returns how many files went."""
    days = get_settings().contact_list_retention_days
    before = clock.now() - dt.timedelta(days=days)
    with database.unit_of_work() as session:
        old = select(ContactTrace.result_path).where(ContactTrace.traced_at < before)
        files = [paths.root / path for path in session.scalars(old)]
        doomed = [path for path in files if path.exists()]
        record_purge(
            session,
            "analysis.contact_lists_purge",
            object_type="contact_trace",
            deleted=len(doomed),
            before=before,
            retention_days=days,
            actor=actor,
        )
    for path in doomed:
        path.unlink(missing_ok=True)
    return len(doomed)


def trace_seconds(database: Database) -> list[float]:
    """Seconds from each traced case's arrival in the lake to its contacts being listed."""
    with database.unit_of_work() as session:
        return [float(s) for s in session.scalars(select(ContactTrace.seconds))]
