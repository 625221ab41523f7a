"""The group-commit writer against a real database (scans committed for real, many per
transaction, one event per batch, back-pressure past capacity, a bad scan failing alone),
and the export of committed scans to the lake through the data centre's intake."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import func, select

from citybrain.core.authz.service import issue_token
from citybrain.core.events.models import OutboxEvent
from citybrain.core.geo.models import PLACE_COMPOUND_GATE, PLACE_VENUE, Place
from citybrain.core.geo.service import load_hierarchy
from citybrain.datahub.lake import LakePaths
from citybrain.datahub.models import IntakeFile
from citybrain.datahub.reconcile import reconcile
from citybrain.healthcode import writer as writer_module
from citybrain.healthcode.export import export_scans
from citybrain.healthcode.models import Scan, ScanBatch
from citybrain.healthcode.service import ScanOutcome, ScanRequest, place_scan_request
from citybrain.healthcode.settings import get_healthcode_settings
from citybrain.healthcode.writer import Overloaded, ScanWriter
from citybrain.kit import clock
from citybrain.kit.db import Database
from citybrain.kit.errors import InvalidInput
from tests.conftest import BACKEND, DatabaseFactory
from tests.factories import STREET_A, TEST_ACTOR, make_person, make_user
from tests.healthcode.conftest import make_red, person_row


@dataclass
class City:
    database: Database
    gate: str
    venue: str
    token_id: int
    refs: list[str]
    subjects: list[str]


@pytest.fixture(scope="module")
def city(database_factory: DatabaseFactory) -> Iterator[City]:
    database = database_factory.new_database()
    with database.unit_of_work() as session:
        load_hierarchy(session)
    with database.unit_of_work() as session:
        officer = make_user(session, "street_officer", STREET_A)
        people = [person_row(session, make_person(session, officer)[0].ref) for _ in range(6)]
        compound = people[0].area_code
        gate = session.scalar(
            select(Place).where(Place.compound_code == compound, Place.kind == PLACE_COMPOUND_GATE)
        )
        venue = session.scalar(
            select(Place).where(Place.kind == PLACE_VENUE, Place.area_code.startswith(STREET_A))
        )
        assert gate is not None and venue is not None
        token, _ = issue_token(session, TEST_ACTOR, name="gate", device_place_code=gate.code)
        make_red(session, people[5])
        built = City(
            database,
            gate.code,
            venue.code,
            token.id,
            [p.ref for p in people],
            [p.id_number_bidx[:32] for p in people],
        )
    yield built
    database.dispose()


def _request(city: City, n: int, place: str | None = None) -> ScanRequest:
    return ScanRequest(
        method="gate",
        place_code=place or (city.gate if n % 2 else city.venue),
        person_ref=city.refs[n % len(city.refs)],
        code_colour="green",
        direction="entry" if n % 3 else "exit",
        device_token_id=city.token_id,
        scanned_at=clock.now(),
    )


def _counts(database: Database) -> tuple[int, int, int]:
    with database.unit_of_work() as session:
        return (
            int(session.scalar(select(func.count()).select_from(Scan)) or 0),
            int(session.scalar(select(func.count()).select_from(ScanBatch)) or 0),
            int(
                session.scalar(
                    select(func.count()).where(OutboxEvent.topic == "healthcode.scans_recorded")
                )
                or 0
            ),
        )


def test_the_writer_commits_many_scans_per_transaction_with_one_event_each(city: City) -> None:
    scans_before, batches_before, events_before = _counts(city.database)
    total = 400

    async def run() -> list[ScanOutcome]:
        writer = ScanWriter(city.database)
        try:
            return await asyncio.gather(*(writer.record(_request(city, n)) for n in range(total)))
        finally:
            await writer.aclose()

    outcomes = asyncio.run(run())
    assert len({o.scan_id for o in outcomes}) == total
    # The red person (index 5) is turned back at the venue; the others pass there. Their
    # compound is closed (a case lives there): residents come in, nobody goes out.
    for n, outcome in enumerate(outcomes):
        red = n % len(city.refs) == 5
        assert outcome.colour == ("red" if red else "green")
        if outcome.place_code == city.venue:
            assert outcome.decision == ("deny" if red else "pass")
        else:
            expected = "deny" if outcome.direction == "exit" else "pass"
            assert (outcome.decision, outcome.reason_code) == (
                expected,
                "compound_closed_exit" if expected == "deny" else "resident_home",
            )
    scans, batches, events = _counts(city.database)
    assert scans - scans_before == total
    made = batches - batches_before
    assert 1 <= made < total  # grouped
    assert events - events_before == made  # one event per batch
    with city.database.unit_of_work() as session:
        ids = {o.scan_id for o in outcomes}
        rows = session.scalars(select(ScanBatch).order_by(ScanBatch.recorded_at)).all()
        covered = set()
        for batch in rows[-made:]:
            members = set(session.scalars(select(Scan.id).where(Scan.batch == batch.batch)).all())
            assert len(members) == batch.count
            assert min(members) == batch.first_id and max(members) == batch.last_id
            covered |= members
        assert ids <= covered


def _stall_until_released(
    writer: ScanWriter, monkeypatch: pytest.MonkeyPatch, stalled: Callable[[], bool]
) -> None:
    """Make the writer's batches wait while ``stalled()`` without holding the event loop,
    as when SQLite's write lock is taken by another process (the batch is tried again a
    moment later)."""
    original = writer._commit

    def busy(requests: Sequence[ScanRequest], *, cached: bool = True) -> list[ScanOutcome]:
        if stalled():
            raise writer_module._LockBusy
        return original(requests, cached=cached)

    monkeypatch.setattr(writer, "_commit", busy)


def test_past_capacity_scans_are_refused_at_once_and_none_is_lost(
    city: City, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_healthcode_settings(), "queue_capacity", 5)
    writer = ScanWriter(city.database)
    blocked = True
    _stall_until_released(writer, monkeypatch, lambda: blocked)
    scans_before, _, _ = _counts(city.database)

    async def run() -> tuple[list[ScanOutcome], list[Overloaded], bool]:
        nonlocal blocked
        waiting = [writer.submit(_request(city, n)) for n in range(5)]
        await asyncio.sleep(0.1)  # the writer tried, found the lock taken, keeps trying
        refused: list[Overloaded] = []
        for n in range(10):
            try:
                waiting.append(writer.submit(_request(city, 100 + n)))
            except Overloaded as error:
                refused.append(error)
        served = True  # the loop was never held: this line ran while the batch waited
        blocked = False
        return list(await asyncio.gather(*waiting)), refused, served

    accepted, refused, served = asyncio.run(run())
    writer.close()
    assert served
    # 5 waiting: the other 10 are refused at once, with Retry-After.
    assert len(accepted) == 5 and len(refused) == 10
    assert all(e.status_code == 429 and e.retry_after >= 1 for e in refused)
    scans_after, _, _ = _counts(city.database)
    assert scans_after - scans_before == len(accepted)  # every answered scan is recorded


def test_the_writer_waits_for_a_held_lock_without_holding_the_loop(city: City) -> None:
    """Another connection holds what a batch must take — SQLite's one write lock (another
    server process, a job), or on PostgreSQL the audit chain's head (a staff request of the
    same process, which cannot commit until the loop hands its work on): the writer does not
    hold the loop waiting for it, tries again while the loop serves, and commits once it is
    free, rather than refusing the scan with 429."""
    other = Database(city.database.url)
    holder = other.engine.raw_connection()
    cursor = holder.cursor()
    if BACKEND == "sqlite":
        cursor.execute("BEGIN IMMEDIATE")
    else:
        cursor.execute("UPDATE audit_head SET seq = seq WHERE id = 1")  # in a transaction
    ticks = 0

    async def run() -> ScanOutcome:
        nonlocal ticks
        writer = ScanWriter(city.database)
        try:
            pending = asyncio.ensure_future(writer.record(_request(city, 1)))
            for _ in range(10):
                await asyncio.sleep(0.03)
                ticks += 1
            assert not pending.done() and writer.lock_busy > 0
            holder.commit()
            return await pending
        finally:
            await writer.aclose()

    try:
        outcome = asyncio.run(run())
    finally:
        holder.close()
        other.dispose()
    assert ticks == 10 and outcome.scan_id > 0


def test_one_bad_scan_fails_alone(city: City) -> None:
    async def run() -> list[ScanOutcome | BaseException]:
        writer = ScanWriter(city.database)
        try:
            requests = [_request(city, n) for n in range(6)]
            requests[3] = _request(city, 3, place="X_NO_SUCH_PLACE")
            return await asyncio.gather(
                *(writer.record(r) for r in requests), return_exceptions=True
            )
        finally:
            await writer.aclose()

    results = asyncio.run(run())
    assert isinstance(results[3], InvalidInput)
    assert all(isinstance(r, ScanOutcome) for i, r in enumerate(results) if i != 3)


def test_export_takes_committed_scans_to_the_lake_pseudonymised_and_reconciled(
    city: City, tmp_path: Path
) -> None:
    paths = LakePaths(tmp_path / "data")

    async def run() -> list[ScanOutcome]:
        writer = ScanWriter(city.database)
        try:
            gate_scans = [writer.record(_request(city, n)) for n in range(30)]
            visits = [
                writer.record(place_scan_request(city.venue, city.refs[0], "green"))
                for _ in range(2)
            ]
            return await asyncio.gather(*gate_scans, *visits)
        finally:
            await writer.aclose()

    asyncio.run(run())
    with city.database.unit_of_work() as session:
        pending = int(
            session.scalar(
                select(func.coalesce(func.sum(ScanBatch.count), 0)).where(
                    ScanBatch.exported_at.is_(None)
                )
            )
            or 0
        )
    result = export_scans(city.database, paths)
    assert result.scans == pending and result.reconciles, result.as_dict()
    assert result.as_dict()["quarantined"] == 0, [(f.reasons, f.error) for f in result.files]
    assert result.received == pending
    categories = {f.category for f in result.files}
    assert categories == {"gate_scan", "venue_scan"}
    # The data centre's ledger has the files, and its reconciliation agrees with the lake.
    with city.database.unit_of_work() as session:
        ledger = session.scalars(
            select(IntakeFile).where(IntakeFile.file_id.in_([f.file_id for f in result.files]))
        ).all()
        assert {row.channel for row in ledger} == {"outbox"}
        assert sum(row.received for row in ledger) == pending
        assert session.scalar(select(func.count()).where(ScanBatch.exported_at.is_(None))) == 0
        report = reconcile(session, paths)
    assert report.ok, report
    # The lake holds keyed hashes, never the ID numbers; the hash is the person's subject.
    glob = str(paths.lake / "presence" / "**" / "*.parquet")
    rows = (
        duckdb.connect()
        .sql(
            f"SELECT category, hex(id_hmac) AS h, place, direction, start_time "
            f"FROM read_parquet('{glob}', hive_partitioning = true)"
        )
        .fetchall()
    )
    accepted = sum(f.accepted for f in result.files)
    assert len(rows) == accepted > 0
    assert {r[1].lower() for r in rows} <= set(city.subjects)
    assert {r[2] for r in rows} <= {city.gate, city.venue}
    assert {r[3] for r in rows} <= {"in", "out"}
    raw = b"".join(p.read_bytes() for p in (paths.lake).rglob("*.parquet"))
    with city.database.unit_of_work() as session:
        from citybrain.core.people.models import Person
        from citybrain.core.people.service import ID_FIELD
        from citybrain.kit.crypto import field_cipher

        person = session.scalar(select(Person).where(Person.ref == city.refs[0]))
        assert person is not None
        number = field_cipher().decrypt(person.id_number_enc, ID_FIELD)
    assert number.encode() not in raw
    # A second export finds nothing new.
    again = export_scans(city.database, paths)
    assert again.scans == 0 and again.files == []
    # Scans on a later day land in that day's partition.
    assert all(isinstance(r[4], dt.datetime) for r in rows)


def test_scans_past_retention_are_purged_only_once_in_the_lake(city: City, tmp_path: Path) -> None:
    from citybrain.core.audit.models import AuditEntry
    from citybrain.healthcode.service import purge_expired_scans

    async def scan(count: int) -> list[ScanOutcome]:
        writer = ScanWriter(city.database)
        try:
            return await asyncio.gather(*(writer.record(_request(city, n)) for n in range(count)))
        finally:
            await writer.aclose()

    asyncio.run(scan(5))
    export_scans(city.database, LakePaths(tmp_path / "data"))
    waiting = asyncio.run(scan(2))  # recorded, not yet in the lake
    with city.database.unit_of_work() as session:
        total = int(session.scalar(select(func.count()).select_from(Scan)) or 0)
        # Nothing is old yet.
        assert purge_expired_scans(session) == 0
        later = clock.now() + dt.timedelta(days=31)
        gone = purge_expired_scans(session, now=later)
        assert gone == total - 2
        left = set(session.scalars(select(Scan.id)))
        assert left == {o.scan_id for o in waiting}
        assert session.scalar(
            select(AuditEntry).where(AuditEntry.action == "healthcode.scans_purge")
        )


def test_scans_queued_within_the_batch_window_share_one_commit(
    city: City, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_healthcode_settings(), "batch_wait_ms", 300.0)
    _, batches_before, _ = _counts(city.database)

    async def run() -> list[ScanOutcome]:
        writer = ScanWriter(city.database)
        try:
            waiting = []
            for n in range(5):  # five scans 20 ms apart: all inside the first one's window
                waiting.append(asyncio.ensure_future(writer.record(_request(city, n))))
                await asyncio.sleep(0.02)
            return list(await asyncio.gather(*waiting))
        finally:
            await writer.aclose()

    outcomes = asyncio.run(run())
    _, batches, _ = _counts(city.database)
    assert batches - batches_before == 1
    with city.database.unit_of_work() as session:
        rows = session.scalars(select(Scan).where(Scan.id.in_([o.scan_id for o in outcomes])))
        assert len({row.batch for row in rows}) == 1


def test_a_scan_not_committed_in_time_is_answered_429_not_left_waiting(
    city: City, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = ScanWriter(city.database)
    _stall_until_released(writer, monkeypatch, lambda: True)

    async def run() -> Overloaded:
        with pytest.raises(Overloaded) as caught:
            await writer.record(_request(city, 1), timeout=0.2)
        return caught.value

    error = asyncio.run(run())
    assert error.status_code == 429 and error.retry_after >= 1
    writer.close(timeout=0.1)  # the scan was never committed: nothing to wait for


def test_two_writers_on_one_database_both_commit_everything(city: City) -> None:
    # Two server processes each have their own writer: on SQLite they take turns at the one
    # write lock (BEGIN IMMEDIATE waits for it), on PostgreSQL they write side by side. Here
    # two writers on two engines (separate connections, as two processes have) race.
    other = Database(city.database.url)
    scans_before, _, _ = _counts(city.database)
    per_writer = 150

    def hammer(database: Database, offset: int, out: list[object]) -> None:
        async def run() -> list[ScanOutcome | BaseException]:
            writer = ScanWriter(database)
            try:
                return list(
                    await asyncio.gather(
                        *(writer.record(_request(city, offset + n)) for n in range(per_writer)),
                        return_exceptions=True,
                    )
                )
            finally:
                await writer.aclose()

        out.extend(asyncio.run(run()))

    results: list[object] = []
    threads = [
        threading.Thread(target=hammer, args=(database, offset, results))
        for database, offset in ((city.database, 0), (other, 1000))
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        other.dispose()
    failures = [r for r in results if not isinstance(r, ScanOutcome)]
    assert failures == []
    ids = [r.scan_id for r in results if isinstance(r, ScanOutcome)]
    assert len(ids) == len(set(ids)) == 2 * per_writer
    scans_after, _, _ = _counts(city.database)
    assert scans_after - scans_before == 2 * per_writer


def test_a_busy_gates_token_is_checked_again_in_the_background(
    city: City, monkeypatch: pytest.MonkeyPatch
) -> None:
    from citybrain.core.authz.service import revoke_token
    from citybrain.healthcode.deps import DeviceTokenCache
    from citybrain.kit.errors import NotAuthenticated

    monkeypatch.setattr(get_healthcode_settings(), "device_token_cache_seconds", 40)
    with city.database.unit_of_work() as session:
        stored, token = issue_token(session, TEST_ACTOR, name="gate-2", device_place_code=city.gate)
    now = [1000.0]
    cache = DeviceTokenCache(clock=lambda: now[0])
    principal = cache.check(city.database, token)
    assert principal.kind == "device" and principal.name == city.gate
    assert cache.lookup(city.database, token) == (principal, False)  # fresh
    now[0] += 31  # past three quarters of its 40 s: one caller is asked to refresh
    assert cache.lookup(city.database, token) == (principal, True)
    assert cache.lookup(city.database, token) == (principal, False)  # the others are not
    cache.refresh(city.database, token)  # renewed: fresh again, past the old expiry
    now[0] += 20
    assert cache.lookup(city.database, token) == (principal, False)
    # Revoked: the next background check drops it, and the token is refused from then on.
    with city.database.unit_of_work() as session:
        revoke_token(session, TEST_ACTOR, stored.id)
    now[0] += 11
    assert cache.lookup(city.database, token) == (principal, True)
    cache.refresh(city.database, token)
    assert cache.lookup(city.database, token) == (None, False)
    with pytest.raises(NotAuthenticated):
        cache.check(city.database, token)
    # Without traffic, an entry simply expires and the next scan checks it again.
    other = DeviceTokenCache(clock=lambda: now[0])
    with city.database.unit_of_work() as session:
        _, second = issue_token(session, TEST_ACTOR, name="gate-3", device_place_code=city.gate)
    other.check(city.database, second)
    now[0] += 41
    assert other.lookup(city.database, second) == (None, False)


def test_a_revoked_gate_is_refused_at_its_next_batch_and_the_others_are_recorded(
    city: City, monkeypatch: pytest.MonkeyPatch
) -> None:
    from citybrain.core.authz.service import revoke_token
    from citybrain.healthcode.deps import device_tokens
    from citybrain.kit.errors import NotAuthenticated

    # The gate's principal stays in memory for an hour: revocation must not wait for it.
    monkeypatch.setattr(get_healthcode_settings(), "device_token_cache_seconds", 3600)
    with city.database.unit_of_work() as session:
        stored, token = issue_token(session, TEST_ACTOR, name="gate-r", device_place_code=city.gate)
    assert device_tokens.check(city.database, token).id == stored.id
    scans_before, batches_before, _ = _counts(city.database)
    revoked = [dataclasses.replace(_request(city, n), device_token_id=stored.id) for n in range(6)]
    others = [_request(city, n) for n in range(6, 10)]
    with city.database.unit_of_work() as session:
        revoke_token(session, TEST_ACTOR, stored.id)
    assert device_tokens.cached(city.database, token) is not None  # still remembered

    async def run() -> list[ScanOutcome | BaseException]:
        writer = ScanWriter(city.database)
        try:
            # Interleaved, so the revoked gate's scans share batches with the others.
            mixed = [x for pair in zip(revoked, others + others[:2], strict=True) for x in pair]
            return await asyncio.gather(*(writer.record(r) for r in mixed), return_exceptions=True)
        finally:
            await writer.aclose()

    results = asyncio.run(run())
    refused = results[0::2]
    recorded = results[1::2]
    assert all(isinstance(r, NotAuthenticated) and r.code == "bad_token" for r in refused)
    assert all(isinstance(r, ScanOutcome) for r in recorded)
    scans, batches, _ = _counts(city.database)
    assert scans - scans_before == len(recorded)  # none of the revoked gate's
    assert batches > batches_before
    with city.database.unit_of_work() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(Scan).where(Scan.device_token_id == stored.id)
            )
            == 0
        )
    # Dropped from memory: its next scan is checked in the database, and refused there.
    assert device_tokens.cached(city.database, token) is None
    with pytest.raises(NotAuthenticated):
        device_tokens.check(city.database, token)


def test_an_export_whose_commit_fails_leaves_nothing_and_the_next_takes_every_scan(
    city: City, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from citybrain.healthcode import repository

    paths = LakePaths(tmp_path / "data")
    export_scans(city.database, LakePaths(tmp_path / "earlier"))  # the module's earlier scans

    async def run() -> list[ScanOutcome]:
        writer = ScanWriter(city.database)
        try:
            # Seven minutes back: no other test's scans share these rows' second, so the
            # files' bytes are this test's own (the same bytes are the same file).
            at = clock.now() - dt.timedelta(minutes=7)
            requests = [dataclasses.replace(_request(city, n), scanned_at=at) for n in range(6)]
            return await asyncio.gather(*(writer.record(r) for r in requests))
        finally:
            await writer.aclose()

    assert len(asyncio.run(run())) == 6  # six people: no row repeats another
    with city.database.unit_of_work() as session:
        ledger_before = session.scalar(select(func.count()).select_from(IntakeFile))
    real_mark = repository.mark_exported

    def failing_mark(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the disk is full")

    # The files are staged and published before the ledger's transaction; it fails.
    monkeypatch.setattr(repository, "mark_exported", failing_mark)
    with pytest.raises(RuntimeError, match="disk is full"):
        export_scans(city.database, paths)
    assert list(paths.all_parts()) == []
    with city.database.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(IntakeFile)) == ledger_before
        assert session.scalar(select(func.count()).where(ScanBatch.exported_at.is_(None))) > 0
    # The next export takes every scan in: none is mistaken for a duplicate of the first's.
    monkeypatch.setattr(repository, "mark_exported", real_mark)
    result = export_scans(city.database, paths)
    assert result.scans == 6 and result.reconciles, result.as_dict()
    assert sum(f.accepted for f in result.files) == result.scans
    assert sum(f.duplicate for f in result.files) == 0
    with city.database.unit_of_work() as session:
        assert session.scalar(select(func.count()).where(ScanBatch.exported_at.is_(None))) == 0


def test_two_exports_of_the_same_rows_both_reconcile(city: City, tmp_path: Path) -> None:
    paths = LakePaths(tmp_path / "data")
    export_scans(city.database, LakePaths(tmp_path / "earlier"))  # the module's earlier scans
    at = clock.now() - dt.timedelta(minutes=11)  # a second no other test's scans share

    async def run() -> list[ScanOutcome]:
        writer = ScanWriter(city.database)
        try:
            requests = [dataclasses.replace(_request(city, n), scanned_at=at) for n in (1, 3)]
            return await asyncio.gather(*(writer.record(r) for r in requests))
        finally:
            await writer.aclose()

    asyncio.run(run())
    first = export_scans(city.database, paths)
    assert first.reconciles and sum(f.accepted for f in first.files) == 2
    # The same people through the same gate in the same second again (a gate that sent its
    # scans twice): a file of its own, whose rows are the lake's duplicates, all accounted for.
    asyncio.run(run())
    second = export_scans(city.database, paths)
    assert second.scans == 2 and second.reconciles, second.as_dict()
    assert [f.status for f in second.files] == ["ingested"]
    assert sum(f.duplicate for f in second.files) == 2
