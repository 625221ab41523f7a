"""Intake (数据汇聚): take an agency's file into the lake, whole rows or not at all.

For one file: identify the source, read it, validate every field, pseudonymise identifiers,
recognise duplicates (the same row already in this file or in the lake), write canonical
records to the lake, the identifiers to the encrypted linkage store and bad rows to the
encrypted quarantine, then record the file in the ledger with an audit row and an outbox event
in one transaction. ``received = accepted + quarantined + duplicate`` for every file, exactly.

The same bytes are the same file: taking a file in again changes nothing. Parts are named by
the file's id and published before the ledger row commits; a crash in between leaves orphans
that the next run deletes before it starts, so a re-run loses and doubles nothing.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from citybrain.core.audit.service import SYSTEM, Actor, Event, record_many
from citybrain.core.events.service import publish
from citybrain.datahub import lake, stage
from citybrain.datahub.catalog import Source, get_source, identify
from citybrain.datahub.models import CHANNEL_DROP, STATUS_INGESTED, STATUS_REJECTED, IntakeFile
from citybrain.datahub.stage import Staged, Stager, StageTask
from citybrain.kit import clock
from citybrain.kit.db import Database
from citybrain.kit.errors import Conflict
from citybrain.kit.keys import get_keyring
from citybrain.kit.settings import get_settings

TOPIC_FILE_INGESTED = "datahub.file_ingested"
Progress = Callable[[str, int, int], None]
# Worker processes pay off from about this much input (starting one takes about a second).
POOL_MIN_BYTES = 32 << 20
LOOK_AHEAD = 16  # staged files waiting for their commit, per worker
LEDGER_BATCH = 200  # ledger rows per transaction at most...
LEDGER_SECONDS = 2.0  # ...and at least one transaction this often
SEEN_LIMIT = 64_000_000  # row hashes kept in memory for duplicate checks (8 bytes each)
MAX_CHUNKS = 8  # per category and day; more are merged


@dataclass
class FileResult:
    """What became of one file."""

    name: str
    category: str
    file_id: str
    status: str  # ingested | rejected | already_ingested
    received: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicate: int = 0
    late: int = 0
    error: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def reconciles(self) -> bool:
        """received = accepted + quarantined + duplicate."""
        return self.received == self.accepted + self.quarantined + self.duplicate

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class IngestSummary:
    """A whole run over a folder."""

    files: int = 0
    new_files: int = 0
    already_ingested: int = 0
    rejected: int = 0
    received: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicate: int = 0
    late: int = 0
    orphans_removed: int = 0
    unrecognised: list[str] = field(default_factory=list)
    seconds: float = 0.0
    per_file: list[FileResult] = field(default_factory=list)

    def add(self, result: FileResult) -> None:
        """Count one file's result in."""
        self.files += 1
        if result.status == "already_ingested":
            self.already_ingested += 1
            return
        self.new_files += 1
        if result.status == STATUS_REJECTED:
            self.rejected += 1
        self.received += result.received
        self.accepted += result.accepted
        self.quarantined += result.quarantined
        self.duplicate += result.duplicate
        self.late += result.late

    @property
    def reconciles(self) -> bool:
        """The run's and every file's counts add up."""
        whole = self.received == self.accepted + self.quarantined + self.duplicate
        return whole and all(r.reconciles for r in self.per_file)

    @property
    def records_per_second(self) -> float:
        """Received rows per second of wall time."""
        return self.received / self.seconds if self.seconds else 0.0

    def as_dict(self, *, per_file: bool = False) -> dict[str, Any]:
        """JSON-ready form (the per-file list only when asked: it can be long)."""
        out: dict[str, Any] = {
            "files": self.files,
            "new_files": self.new_files,
            "already_ingested": self.already_ingested,
            "rejected": self.rejected,
            "received": self.received,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "duplicate": self.duplicate,
            "late": self.late,
            "reconciled": self.reconciles,
            "orphans_removed": self.orphans_removed,
            "unrecognised": self.unrecognised,
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.records_per_second),
        }
        if per_file:
            out["per_file"] = [r.as_dict() for r in self.per_file]
        return out


class Intake:
    """The per-process machinery of intake: lake paths and a stager (vault, pseudonymiser,
    DuckDB) for the files taken in here rather than in worker processes."""

    def __init__(self, paths: lake.LakePaths | None = None) -> None:
        self.paths = paths or lake.LakePaths.default()
        self._stager: Stager | None = None

    @property
    def stager(self) -> Stager:
        """This process's stager, made on first use."""
        if self._stager is None:
            self._stager = Stager(self.paths)
        return self._stager

    def close(self) -> None:
        """Release this process's stager."""
        if self._stager is not None:
            self._stager.close()
            self._stager = None

    # -- one file ----------------------------------------------------------------------------

    def ingest_bytes(
        self,
        session: Session,
        data: bytes,
        name: str,
        source: Source,
        *,
        delivered: dt.date | None = None,
        channel: str = CHANNEL_DROP,
        actor: Actor = SYSTEM,
    ) -> tuple[FileResult, IntakeFile | None]:
        """Take one file's bytes in within the caller's transaction (never commits). The
        caller holds the intake lock until it has committed."""
        sha = hashlib.sha256(data).hexdigest()
        known = session.scalar(select(IntakeFile).where(IntakeFile.file_id == sha[:20]))
        if known is not None:
            return _already(name, known), known
        # The ledger row comes first: its id numbers the file's records (record_id = id << 32 |
        # line). If anything fails the transaction rolls back and the row never existed.
        row = _new_row(sha[:20], sha, source, name, channel, len(data), delivered)
        session.add(row)
        session.flush()
        staged = self.stager.stage(data, name, source, delivered, row.id)
        try:
            result, days = self._finish(staged, _SeenRows(self.paths))
        except BaseException:
            stage.discard(staged)
            raise
        self._close_ledger(session, row, result, days, actor)
        return result, row

    def _finish(
        self, staged: Staged, seen: _SeenRows, folders: set[Path] | None = None
    ) -> tuple[FileResult, tuple[dt.date, dt.date] | None]:
        """Commit a staged file's rows: take out those already in the lake (earlier files of
        its category), then publish its parts (``folders``: lake folders known to exist). No
        database work."""
        result = FileResult(
            name=staged.name,
            category=staged.category,
            file_id=staged.file_id,
            status=STATUS_REJECTED if staged.status == stage.REJECTED else STATUS_INGESTED,
            received=staged.received,
            quarantined=staged.quarantined,
            error=staged.error,
            reasons=staged.reasons,
            seconds=staged.seconds,
        )
        if staged.status == stage.REJECTED:
            return result, None
        earlier = seen.duplicates(staged.category, staged.day_number, staged.row_hash)
        if earlier.any():
            self.stager.drop_rows(staged, np.flatnonzero(earlier))
        days = staged.day_number
        result.accepted = len(days)
        result.duplicate = staged.duplicate + int(earlier.sum())
        span = None
        if len(days):
            if staged.delivered is not None:
                cutoff = (staged.delivered - dt.timedelta(days=1) - stage.EPOCH).days
                result.late = int((days < cutoff).sum())
            span = (stage.day_of(int(days.min())), stage.day_of(int(days.max())))
        if not result.reconciles:  # a bug, never bad input: refuse to record a wrong ledger
            raise RuntimeError(f"intake of {staged.name} does not reconcile: {result.as_dict()}")
        stage.publish(self.paths, staged, folders)
        seen.add(staged.category, days, staged.row_hash)
        _stall_for_crash_test()
        return result, span

    def _close_ledger(
        self,
        session: Session,
        row: IntakeFile,
        result: FileResult,
        days: tuple[dt.date, dt.date] | None,
        actor: Actor,
    ) -> None:
        """Fill in the file's counts, with its audit row and outbox event."""
        record_many(session, [_fill_ledger(session, row, result, days, actor)])

    def ingest_files_briefly(
        self,
        database: Database,
        files: list[tuple[bytes, str, Source]],
        *,
        delivered: dt.date | None,
        channel: str,
        actor: Actor = SYSTEM,
        also: Callable[[Session, list[FileResult]], None] | None = None,
    ) -> list[FileResult]:
        """Take in several files' bytes holding the database's write lock only for their
        ledger: ids reserved first, the files staged and published with no transaction open,
        then the ledger rows with their audit rows and events — and ``also``'s writes, in the
        same transaction — committed at once. For a writer that shares the database with a
        busy path (the gate scans' export): on SQLite the lock is held for milliseconds, not
        for the staging. The caller holds the intake lock (``intake_turn``) until this
        returns. If the commit fails, the files' published parts are removed."""
        digests = [hashlib.sha256(data).hexdigest()[:20] for data, _, _ in files]
        with database.unit_of_work() as session:
            known = {
                row.file_id: row.category
                for row in session.scalars(
                    select(IntakeFile).where(IntakeFile.file_id.in_(digests))
                )
            }
        results: list[FileResult] = []
        fresh = [f for f, digest in zip(files, digests, strict=True) if digest not in known]
        for (_, name, _), digest in zip(files, digests, strict=True):
            if digest in known:
                results.append(FileResult(name, known[digest], digest, "already_ingested"))
        if not fresh:
            return results
        first = _reserve_serials(database, len(fresh))
        seen = _SeenRows(self.paths)
        published: list[tuple[Staged, FileResult, tuple[dt.date, dt.date] | None]] = []
        try:
            for number, (data, name, source) in enumerate(fresh):
                staged = self.stager.stage(data, name, source, delivered, first + number)
                try:
                    result, span = self._finish(staged, seen)
                except BaseException:
                    stage.discard(staged)
                    raise
                published.append((staged, result, span))
                results.append(result)
            with database.unit_of_work(immediate=True) as session:
                _write_ledger(session, published, channel, actor)
                if also is not None:
                    also(session, results)
        except BaseException:
            # Nothing of these files is in the ledger: their parts must not stay in the lake,
            # where the next run would count their rows as duplicates of themselves.
            lake.remove_parts_of(self.paths, {staged.file_id for staged, _, _ in published})
            raise
        return results

    # -- a folder ----------------------------------------------------------------------------

    def ingest_folder(
        self,
        database: Database,
        root: Path,
        *,
        progress: Progress | None = None,
        actor: Actor = SYSTEM,
        workers: int | None = None,
    ) -> IngestSummary:
        """Take in every feed file under ``root`` (the drop folders).

        Files are *staged* (read, validated, pseudonymised, hashed, written to staging) by
        ``workers`` processes — by default one per core when the folder is big enough to pay
        for starting them, none (staged here) when it is not — and *committed* here, one by
        one in delivery order: duplicates of earlier files taken out, parts published, and
        the ledger rows with their audit rows and events written a batch at a time. The same
        folder gives the same lake and ledger on every run and with any number of workers."""
        started = time.perf_counter()
        summary = IngestSummary()
        with intake_lock(self.paths):
            summary.orphans_removed = self._recover(database)
            with database.unit_of_work() as session:
                known = frozenset(session.scalars(select(IntakeFile.file_id)))
            found: list[tuple[str, str, Path, Source]] = []
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                identified = identify(path)
                if identified is None:
                    summary.unrecognised.append(str(path.relative_to(root)))
                    continue
                source, day = identified
                found.append((day or "", str(path.relative_to(root)), path, source))
            found.sort(key=lambda f: (f[0], f[1]))
            sizes = [f[2].stat().st_size for f in found]
            total = sum(sizes) or 1
            first_serial = _reserve_serials(database, len(found))
            tasks = [
                StageTask(
                    path=path,
                    name=name,
                    category=source.code,
                    delivered=dt.datetime.strptime(day, "%Y%m%d").date() if day else None,
                    serial=first_serial + number,
                )
                for number, (day, name, path, source) in enumerate(found)
            ]
            if workers is None:
                workers = (os.cpu_count() or 1) if total >= POOL_MIN_BYTES else 0
            committer = _Committer(self, database, actor, known)
            pending: deque[tuple[int, Future[Staged]]] = deque()
            done = [0]

            def commit_oldest() -> None:
                number, future = pending.popleft()
                committer.take(future.result())
                done[0] += sizes[number]
                if progress is not None:
                    progress(tasks[number].name, done[0], total)

            with self._stagers(workers, known) as submit:
                try:
                    for number, task in enumerate(tasks):
                        pending.append((number, submit(task)))
                        while len(pending) > max(1, workers) * LOOK_AHEAD:
                            commit_oldest()
                    while pending:
                        commit_oldest()
                finally:
                    # What is published is recorded, even when a later file fails.
                    committer.flush()
            for result in sorted(committer.results, key=lambda r: r.name):
                summary.add(result)
                summary.per_file.append(result)
        summary.seconds = time.perf_counter() - started
        return summary

    @contextmanager
    def _stagers(
        self, workers: int, known: frozenset[str]
    ) -> Iterator[Callable[[StageTask], Future[Staged]]]:
        """A way to stage files: in ``workers`` processes, or here when there are none."""
        if workers <= 0:
            stager = Stager(self.paths, known)

            def here(task: StageTask) -> Future[Staged]:
                future: Future[Staged] = Future()
                future.set_result(stager.stage_path(task))
                return future

            try:
                yield here
            finally:
                stager.close()
            return
        get_keyring()  # dev keys are made here, once, before the workers read them
        # Arrow's allocator (mimalloc) hands freed pages back to the system after 10 ms and
        # faults them in again for the next file: a worker, which lives for one run, keeps them.
        os.environ.setdefault("MIMALLOC_PURGE_DELAY", "-1")
        # Spawned, not forked: the parent holds threads (DuckDB, the database pool).
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=stage.start_worker,
            initargs=(str(self.paths.root), known),
        )
        try:
            yield lambda task: pool.submit(stage.stage_in_worker, task)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _recover(self, database: Database) -> int:
        """After a crash: delete the parts no finished file owns and whatever staging holds
        (every writer holds the intake lock, so nothing there is in use). Returns how many
        lake, linkage and quarantine parts were removed."""
        with database.unit_of_work() as session:
            committed = set(session.scalars(select(IntakeFile.file_id)))
        return lake.remove_orphans(self.paths, committed)


class _Committer:
    """Takes staged files in delivery order: duplicates of earlier files out, parts published,
    ledger rows (with audit rows and events) written a batch per transaction."""

    def __init__(
        self, intake: Intake, database: Database, actor: Actor, known: frozenset[str]
    ) -> None:
        self.intake = intake
        self.database = database
        self.actor = actor
        self.taken = set(known)  # file ids in the ledger or published in this run
        self.seen = _SeenRows(intake.paths, SEEN_LIMIT)
        self.folders: set[Path] = set()  # lake folders made in this run
        self.results: list[FileResult] = []
        self._ledger: list[tuple[Staged, FileResult, tuple[dt.date, dt.date] | None]] = []
        self._flushed = time.monotonic()

    def take(self, staged: Staged) -> None:
        """Commit one staged file (the next in delivery order)."""
        if staged.status == stage.ALREADY or staged.file_id in self.taken:
            # The same bytes under another name, earlier in this run or in the ledger.
            stage.discard(staged)
            self.results.append(
                FileResult(staged.name, staged.category, staged.file_id, "already_ingested")
            )
            return
        try:
            result, span = self.intake._finish(staged, self.seen, self.folders)
        except BaseException:
            stage.discard(staged)
            raise
        self.taken.add(staged.file_id)
        self.results.append(result)
        self._ledger.append((staged, result, span))
        if len(self._ledger) >= LEDGER_BATCH or time.monotonic() - self._flushed > LEDGER_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the ledger rows of the files published since the last flush."""
        if self._ledger:
            with self.database.unit_of_work(immediate=True) as session:
                _write_ledger(session, self._ledger, CHANNEL_DROP, self.actor)
            self._ledger.clear()
        self._flushed = time.monotonic()


class _SeenRows:
    """The row hashes of the files published in this run, per category and day (bounded in
    memory). What was in the lake before a file was staged, the stager has checked already;
    only after the memory was cleared are days read back from the lake."""

    def __init__(self, paths: lake.LakePaths, limit: int = SEEN_LIMIT) -> None:
        self.paths = paths
        self.limit = limit
        self._days: dict[tuple[str, int], list[np.ndarray]] = {}
        self._held = 0
        self._cleared = False

    def _chunks(self, category: str, day: int) -> list[np.ndarray]:
        key = (category, day)
        chunks = self._days.get(key)
        if chunks is None:
            found = np.zeros(0, dtype=np.int64)
            if self._cleared:  # this run's earlier files are in the lake, not in memory
                kind = get_source(category).kinds[0]
                found = lake.existing_hashes(self.paths, kind, category, [stage.iso_day(day)])
            chunks = self._days[key] = [np.sort(found)] if len(found) else []
            self._held += len(found)
        return chunks

    def duplicates(self, category: str, days: np.ndarray, hashes: np.ndarray) -> np.ndarray:
        """Which rows repeat a row published earlier in this run (a row hash covers the day,
        so equal hashes are the same day's)."""
        found = np.zeros(len(hashes), dtype=bool)
        for day in np.unique(days).tolist():
            chunks = self._chunks(category, day)
            if not chunks:
                continue
            of_day = np.flatnonzero(days == day)
            for chunk in chunks:
                found[of_day] |= stage.contained(hashes[of_day], chunk)
        return found

    def add(self, category: str, days: np.ndarray, hashes: np.ndarray) -> None:
        """Remember a published file's rows."""
        if self._held + len(hashes) > self.limit:
            self._days.clear()  # reloaded from the lake, day by day, when next needed
            self._held = 0
            self._cleared = True
        for day in np.unique(days).tolist():
            chunks = self._chunks(category, day)
            chunks.append(np.sort(hashes[days == day]))
            if len(chunks) > MAX_CHUNKS:
                chunks[:] = [np.sort(np.concatenate(chunks))]
        self._held += len(hashes)


def _reserve_serials(database: Database, count: int) -> int:
    """The first of ``count`` consecutive ledger ids for this run's files (record ids are
    numbered by them before the ledger rows are written). The caller holds the intake lock,
    the only way ledger rows are written."""
    with database.unit_of_work(immediate=True) as session:
        if database.engine.dialect.name == "postgresql":
            sequence = "pg_get_serial_sequence('intake_files', 'id')"
            first = int(session.execute(text(f"SELECT nextval({sequence})")).scalar_one())
            # Later ledger rows (a push) take ids after the block.
            session.execute(text(f"SELECT setval({sequence}, :last)"), {"last": first + count})
            return first
        return int(session.scalar(select(func.coalesce(func.max(IntakeFile.id), 0))) or 0) + 1


@contextmanager
def intake_lock(paths: lake.LakePaths) -> Iterator[None]:
    """One intake at a time per data directory (it cleans orphans before it starts)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with open(paths.root / ".intake.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise Conflict(
                "另一个数据汇聚任务正在运行", "another intake is running", code="intake_busy"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_ledger(
    session: Session,
    published: list[tuple[Staged, FileResult, tuple[dt.date, dt.date] | None]],
    channel: str,
    actor: Actor,
) -> None:
    """The ledger rows of staged and published files, numbered by their reserved serials,
    with their events, audited in one turn of the chain."""
    audits = []
    for staged, result, span in published:
        row = _new_row(
            staged.file_id,
            staged.sha,
            get_source(staged.category),
            staged.name,
            channel,
            staged.size,
            staged.delivered,
        )
        row.id = staged.serial
        session.add(row)
        audits.append(_fill_ledger(session, row, result, span, actor))
    record_many(session, audits)


def _fill_ledger(
    session: Session,
    row: IntakeFile,
    result: FileResult,
    days: tuple[dt.date, dt.date] | None,
    actor: Actor,
) -> Event:
    """Fill in a file's ledger row and queue its outbox event; return its audit event, for the
    caller to record (a batch of files audits in one turn of the chain)."""
    row.status = result.status
    row.error = result.error
    row.first_day = days[0] if days else None
    row.last_day = days[1] if days else None
    row.received = result.received
    row.accepted = result.accepted
    row.quarantined = result.quarantined
    row.duplicate = result.duplicate
    row.late = result.late
    row.reasons = result.reasons
    row.seconds = round(result.seconds, 4)
    counts = {
        "category": result.category,
        "received": result.received,
        "accepted": result.accepted,
        "quarantined": result.quarantined,
        "duplicate": result.duplicate,
    }
    publish(
        session,
        TOPIC_FILE_INGESTED,
        {
            **counts,
            "file_id": result.file_id,
            "status": result.status,
            "first_day": days[0].isoformat() if days else None,
            "last_day": days[1].isoformat() if days else None,
        },
        key=result.file_id,
    )
    return Event(
        actor,
        "datahub.ingest",
        object_type="intake_file",
        object_id=result.file_id,
        outcome="ok" if result.status == STATUS_INGESTED else "failed",
        detail={**counts, "status": result.status},
    )


def _stall_for_crash_test() -> None:
    settings = get_settings()
    if settings.env == "test" and settings.intake_stall_seconds > 0:
        time.sleep(settings.intake_stall_seconds)


def _already(name: str, known: IntakeFile) -> FileResult:
    return FileResult(
        name=name, category=known.category, file_id=known.file_id, status="already_ingested"
    )


def _new_row(
    file_id: str,
    sha: str,
    source: Source,
    name: str,
    channel: str,
    size: int,
    delivered: dt.date | None,
) -> IntakeFile:
    return IntakeFile(
        file_id=file_id,
        sha256=sha,
        category=source.code,
        name=name[-300:],
        channel=channel,
        size_bytes=size,
        delivered_day=delivered,
        status=STATUS_INGESTED,
        ingested_at=clock.now(),
    )
