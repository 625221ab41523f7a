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
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import SimpleQueue
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from citybrain.core.audit.service import SYSTEM, Actor, record
from citybrain.core.events.service import publish
from citybrain.datahub import lake
from citybrain.datahub.catalog import Source, identify
from citybrain.datahub.models import (
    CHANNEL_DROP,
    STATUS_INGESTED,
    STATUS_REJECTED,
    STATUS_RESERVED,
    IntakeFile,
)
from citybrain.datahub.pseudonym import IDENTIFIER_FIELDS, Pseudonymiser
from citybrain.datahub.readers import RawBatch, UnreadableFile, read_bytes
from citybrain.datahub.validate import REASON_CODES, Validated, validate
from citybrain.datahub.vault import Vault
from citybrain.kit import clock
from citybrain.kit.db import Database
from citybrain.kit.errors import Conflict
from citybrain.kit.settings import get_settings

TOPIC_FILE_INGESTED = "datahub.file_ingested"
# A record id is the ledger id of its file in the high bits and its line in the low 32.
RECORD_BITS = 32
Progress = Callable[[str, int, int], None]


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


@dataclass
class Prepared:
    """A file read, validated, pseudonymised and hashed, waiting to be committed."""

    name: str
    source: Source
    sha: str
    size: int
    delivered: dt.date | None
    started: float
    rejected: FileResult | None = None
    received: int = 0
    values: dict[str, pa.Array] = field(default_factory=dict)
    hmacs: dict[str, pa.Array] = field(default_factory=dict)
    lines: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    day_number: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    row_hash: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    first: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    quarantine: pa.Table = field(default_factory=lambda: pa.table({}))
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def file_id(self) -> str:
        """The first 20 hex digits of the content's SHA-256."""
        return self.sha[:20]


class Intake:
    """The per-process machinery of intake: lake paths, vault, pseudonymiser, DuckDB."""

    def __init__(self, paths: lake.LakePaths | None = None) -> None:
        self.paths = paths or lake.LakePaths.default()
        self.vault = Vault()
        self.pseudonymiser = Pseudonymiser()
        self.duck = duckdb.connect()
        self._local = threading.local()
        self._writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lake-writer")

    def close(self) -> None:
        """Let the part writers finish and stop them; close DuckDB."""
        self._writer.shutdown(wait=True)
        self.duck.close()

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
        """Take one file's bytes in within the caller's transaction (never commits)."""
        started = time.perf_counter()
        sha = hashlib.sha256(data).hexdigest()
        file_id = sha[:20]
        known = session.scalar(select(IntakeFile).where(IntakeFile.file_id == file_id))
        if known is not None:
            return _already(name, known), known
        # The ledger row comes first: its id numbers the file's records (record_id = id << 32 |
        # line). If anything fails the transaction rolls back and the row never existed.
        row = _new_row(file_id, sha, source, name, channel, len(data), delivered)
        session.add(row)
        session.flush()
        result, days = self._process(self._prepare(data, name, source, delivered), row.id)
        result.seconds = time.perf_counter() - started
        self._close_ledger(session, row, result, days, actor)
        return result, row

    def _process(
        self, prepared: Prepared, serial: int
    ) -> tuple[FileResult, tuple[dt.date, dt.date] | None]:
        """Commit a prepared file: write its parts and publish them (no database work)."""
        if prepared.rejected is not None:
            return prepared.rejected, None
        staging = lake.Staging(self.paths, prepared.file_id)
        try:
            result, days = self._commit(prepared, serial, staging)
            staging.publish()
        except BaseException:
            staging.discard()
            raise
        _stall_for_crash_test()
        return result, days

    def _commit_dropped(self, database: Database, prepared: Prepared, actor: Actor) -> FileResult:
        """A prepared dropped file in two short transactions: reserve its ledger row (the
        record-id serial), then, after the parts are published, fill it in with the audit row
        and event. Long work holds no database lock."""
        name, source, file_id = prepared.name, prepared.source, prepared.file_id
        try:
            with database.unit_of_work(immediate=True) as session:
                row = _new_row(
                    file_id,
                    prepared.sha,
                    source,
                    name,
                    CHANNEL_DROP,
                    prepared.size,
                    prepared.delivered,
                )
                row.status = STATUS_RESERVED
                session.add(row)
                session.flush()
                serial = row.id
        except IntegrityError:  # the same bytes came in meanwhile (a push): nothing to do
            with database.unit_of_work() as session:
                known = session.scalar(select(IntakeFile).where(IntakeFile.file_id == file_id))
                assert known is not None
                return _already(name, known)
        try:
            result, days = self._process(prepared, serial)
        except BaseException:
            with database.unit_of_work(immediate=True) as session:
                session.execute(delete(IntakeFile).where(IntakeFile.id == serial))
            raise
        result.seconds = time.perf_counter() - prepared.started
        with database.unit_of_work(immediate=True) as session:
            reserved = session.get(IntakeFile, serial)
            assert reserved is not None
            self._close_ledger(session, reserved, result, days, actor)
        return result

    def _prepare(
        self, data: bytes, name: str, source: Source, delivered: dt.date | None
    ) -> Prepared:
        """Everything about a file that does not depend on other files: read, validate,
        pseudonymise, hash. Files of one category can be prepared side by side."""
        sha = hashlib.sha256(data).hexdigest()
        prepared = Prepared(name, source, sha, len(data), delivered, time.perf_counter())
        try:
            batch = read_bytes(data, source)
        except UnreadableFile as exc:
            rejected = FileResult(name, source.code, sha[:20], STATUS_REJECTED, error=exc.detail)
            rejected.reasons = {exc.reason: 1}
            prepared.rejected = rejected
            return prepared
        rows = batch.parsed
        checked = validate(batch.columns, rows, source)
        good = np.flatnonzero(~checked.bad)
        values = _take(checked.values, good, rows)
        hmacs = {
            column: self.pseudonymiser.column(values[f], domain)
            for f, (column, domain) in IDENTIFIER_FIELDS.items()
            if f in values
        }
        day_of = _record_days(source, values, len(good), delivered)
        # Days as integers (days since 1970): cheap to compare, group and split on.
        day_number = np.asarray(
            pc.cast(pc.cast(day_of, pa.date32()), pa.int32()).to_numpy(zero_copy_only=False)
        )
        row_hash = self._row_hashes(values, hmacs, day_of)
        first = np.zeros(len(good), dtype=bool)
        if len(good):
            _, first_index = np.unique(row_hash, return_index=True)
            first[first_index] = True
        prepared.received = batch.received
        prepared.values = values
        prepared.hmacs = hmacs
        prepared.lines = batch.lines[good]
        prepared.day_number = day_number
        prepared.row_hash = row_hash
        prepared.first = first
        prepared.quarantine, prepared.reasons = _quarantine_table(
            batch, checked, source, prepared.file_id, name
        )
        return prepared

    def _commit(
        self, prepared: Prepared, serial: int, staging: lake.Staging
    ) -> tuple[FileResult, tuple[dt.date, dt.date] | None]:
        """Decide duplicates against the lake (earlier files of the category) and write the
        file's parts to staging. Files of one category are committed in delivery order."""
        source, file_id, name = prepared.source, prepared.file_id, prepared.name
        delivered = prepared.delivered
        values, hmacs, lines = prepared.values, prepared.hmacs, prepared.lines
        day_number, row_hash = prepared.day_number, prepared.row_hash
        good_count = len(row_hash)
        days_present = [_iso_day(int(d)) for d in np.unique(day_number)]
        seen = lake.existing_hashes(
            self.paths, source.kinds[0], source.code, days_present, exclude=file_id
        ).to_numpy()
        # A duplicate is a row whose content is already in this file (earlier line) or in the
        # lake (an earlier file) for the same category and day.
        duplicate = ~prepared.first
        if len(seen):
            duplicate |= _contained(row_hash, seen)
        keep = np.flatnonzero(~duplicate)
        kept = _take(values, keep, good_count)
        kept_hmacs = _take(hmacs, keep, good_count)
        kept_lines = lines[keep]
        kept_days = day_number[keep]
        count = len(keep)
        line_array = pa.array(kept_lines.astype(np.int32), pa.int32())
        common = {
            "record_id": pa.array((serial << RECORD_BITS) | kept_lines.astype(np.int64)),
            "file_id": pa.repeat(pa.scalar(file_id), count),
            "line": line_array,
            "row_hash": pa.array(row_hash[keep], pa.int64()),
            **kept_hmacs,
        }
        by_day = _day_masks(kept_days)
        # Parquet encoding and compression release the GIL: the lake parts and the encrypted
        # linkage parts are written side by side.
        writes = []
        for kind in source.kinds:
            table = _kind_table(kind, source, kept, common, count)
            for day, mask in by_day:
                part = table if mask is None else table.filter(mask)
                target = staging.path_for(self.paths.lake_part(kind, source.code, day, file_id))
                writes.append(self._writer.submit(_write_part, part, target))
        linkage = _linkage_table(kept, common, count)
        for day, mask in by_day:
            target = staging.path_for(self.paths.linkage_part(source.code, day, file_id))
            part = linkage if mask is None else linkage.filter(mask)
            writes.append(
                self._writer.submit(self.vault.write, part, target, lake.LINKAGE_ENCRYPTED)
            )
        quarantine, reasons = prepared.quarantine, prepared.reasons
        if quarantine.num_rows:
            self.vault.write(
                quarantine,
                staging.path_for(self.paths.quarantine_part(source.code, file_id)),
                lake.QUARANTINE_ENCRYPTED,
            )
        for write in writes:
            write.result()
        late = 0
        span = None
        if count:
            if delivered is not None:
                cutoff = (delivered - dt.timedelta(days=1) - EPOCH).days
                late = int((kept_days < cutoff).sum())
            span = (_day(int(kept_days.min())), _day(int(kept_days.max())))
        result = FileResult(
            name=name,
            category=source.code,
            file_id=file_id,
            status=STATUS_INGESTED,
            received=prepared.received,
            accepted=count,
            quarantined=quarantine.num_rows,
            duplicate=int(duplicate.sum()),
            late=late,
            reasons=reasons,
        )
        if not result.reconciles:  # a bug, never bad input: refuse to record a wrong ledger
            raise RuntimeError(f"intake of {name} does not reconcile: {result.as_dict()}")
        return result, span

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self.duck.cursor()
        return cursor

    def _row_hashes(
        self,
        values: dict[str, pa.Array],
        hmacs: dict[str, pa.Array],
        days: pa.Array,
    ) -> np.ndarray:
        """A 63-bit hash of each row's content, computed over pseudonymised values only
        (DuckDB's hash, vectorised and the same in every run). Names and addresses are left
        out: a row that differs from another only in how the name is spelt is the same
        event of the same identifier, sent twice."""
        columns: dict[str, pa.Array] = {"__day": days}
        identifier_fields = {"name", "address", *IDENTIFIER_FIELDS}
        for key, array in values.items():
            if key not in identifier_fields:
                columns[key] = array
        columns.update(hmacs)
        table = pa.table(columns)
        if table.num_rows == 0:
            return np.zeros(0, dtype=np.int64)
        arguments = ", ".join(f'"{c}"' for c in table.column_names)
        cursor = self._cursor()  # one per thread: categories are taken in side by side
        cursor.register("hash_input", table)
        try:
            hashed = cursor.execute(
                f"SELECT CAST(hash({arguments}) & 9223372036854775807 AS BIGINT) AS h "  # noqa: S608 - our column names
                "FROM hash_input"
            ).fetchnumpy()["h"]
        finally:
            cursor.unregister("hash_input")
        return np.asarray(hashed, dtype=np.int64)

    def _close_ledger(
        self,
        session: Session,
        row: IntakeFile,
        result: FileResult,
        days: tuple[dt.date, dt.date] | None,
        actor: Actor,
    ) -> None:
        """Fill in the file's counts, with its audit row and outbox event."""
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
        record(
            session,
            actor,
            "datahub.ingest",
            object_type="intake_file",
            object_id=result.file_id,
            outcome="ok" if result.status == STATUS_INGESTED else "failed",
            detail={**counts, "status": result.status},
        )
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
        session.flush()

    # -- a folder ----------------------------------------------------------------------------

    def ingest_folder(
        self,
        database: Database,
        root: Path,
        *,
        progress: Progress | None = None,
        actor: Actor = SYSTEM,
        workers: int = 2,
    ) -> IngestSummary:
        """Take in every feed file under ``root`` (the drop folders).

        A pipeline: files are *prepared* (read, validated, pseudonymised, hashed) on
        ``workers`` threads in delivery order across all categories, and each category's
        files are *committed* (duplicates against earlier files decided, parts written, ledger
        row closed) in delivery order by that category's own committer, so the result is the
        same on every run. Arrow and Parquet work outside Python's lock; a bounded number of
        prepared files waits in memory."""
        started = time.perf_counter()
        summary = IngestSummary()
        with intake_lock(self.paths):
            summary.orphans_removed = self._recover(database)
            with database.unit_of_work() as session:
                known = set(session.scalars(select(IntakeFile.file_id)))
            queue: list[tuple[str, str, Path, Source]] = []
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                found = identify(path)
                if found is None:
                    summary.unrecognised.append(str(path.relative_to(root)))
                    continue
                source, day = found
                queue.append((day or "", str(path.relative_to(root)), path, source))
            queue.sort(key=lambda f: (f[0], f[1]))
            total = sum(f[2].stat().st_size for f in queue) or 1
            done = [0]
            guard = threading.Lock()
            ahead = threading.BoundedSemaphore(max(2, workers) * 3)
            # Per category, its files in delivery order as they are submitted; None ends it.
            chains: dict[str, SimpleQueue[tuple[str, int, Future[Prepared | FileResult]] | None]]
            chains = {source.code: SimpleQueue() for _, _, _, source in queue}

            def prepare(path: Path, name: str, source: Source, day: str) -> Prepared | FileResult:
                data = path.read_bytes()
                file_id = hashlib.sha256(data).hexdigest()[:20]
                if file_id in known:
                    return FileResult(name, source.code, file_id, "already_ingested")
                delivered = dt.datetime.strptime(day, "%Y%m%d").date() if day else None
                return self._prepare(data, name, source, delivered)

            def commit_chain(code: str) -> list[FileResult]:
                results = []
                while (entry := chains[code].get()) is not None:
                    name, size, future = entry
                    try:
                        item = future.result()
                        if isinstance(item, FileResult):
                            results.append(item)
                        else:
                            results.append(self._commit_dropped(database, item, actor))
                    finally:
                        ahead.release()
                    with guard:
                        done[0] += size
                        if progress is not None:
                            progress(name, done[0], total)
                return results

            with (
                ThreadPoolExecutor(max_workers=max(1, workers)) as preparers,
                ThreadPoolExecutor(
                    max_workers=max(1, len({f[3].code for f in queue}))
                ) as committers,
            ):
                outcomes = [committers.submit(commit_chain, code) for code in chains]
                try:
                    for day, name, path, source in queue:
                        ahead.acquire()
                        future = preparers.submit(prepare, path, name, source, day)
                        chains[source.code].put((name, path.stat().st_size, future))
                finally:
                    for chain in chains.values():
                        chain.put(None)
                results = [r for outcome in outcomes for r in outcome.result()]
            results.sort(key=lambda r: r.name)
            for result in results:
                summary.add(result)
                summary.per_file.append(result)
        summary.seconds = time.perf_counter() - started
        return summary

    def _recover(self, database: Database) -> int:
        """After a crash: forget reservations of files that never finished and delete the
        parts no finished file owns. Returns how many parts were removed."""
        with database.unit_of_work() as session:
            stale = set(
                session.scalars(
                    select(IntakeFile.file_id).where(IntakeFile.status == STATUS_RESERVED)
                )
            )
            session.execute(delete(IntakeFile).where(IntakeFile.status == STATUS_RESERVED))
            committed = set(session.scalars(select(IntakeFile.file_id)))
        return lake.remove_orphans(self.paths, committed, stale)


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


def _write_part(table: pa.Table, path: Path) -> None:
    """Write one lake part. Rows stay in arrival order: sorting for the analysis' access paths
    is the compaction job's work, not the door's (it would halve intake throughput)."""
    pq.write_table(
        table,
        path,
        compression=get_settings().lake_compression,
        row_group_size=lake.ROW_GROUP_ROWS,
        # Dictionary pages pay for columns that repeat (kinds, places, events); for keyed
        # hashes and ids they cost time and are thrown away.
        use_dictionary=[c for c in table.column_names if c not in lake.UNIQUE_COLUMNS],
    )


def _stall_for_crash_test() -> None:
    settings = get_settings()
    if settings.env == "test" and settings.intake_stall_seconds > 0:
        time.sleep(settings.intake_stall_seconds)


# -- building the parts -------------------------------------------------------------------


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


EPOCH = dt.date(1970, 1, 1)


def _day(number: int) -> dt.date:
    return EPOCH + dt.timedelta(days=number)


def _iso_day(number: int) -> str:
    return _day(number).isoformat()


def _take(columns: dict[str, pa.Array], rows: np.ndarray, total: int) -> dict[str, pa.Array]:
    """The given rows of every column; nothing copied when all rows are kept."""
    if len(rows) == total:
        return columns
    picked = pa.array(rows)
    return {name: array.take(picked) for name, array in columns.items()}


def _contained(values: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Which ``values`` occur in ``pool`` (a sorted search; faster than np.isin's hashing on
    the lake's 64-bit row hashes)."""
    ordered = np.sort(pool)
    at = np.searchsorted(ordered, values)
    inside = at < len(ordered)
    found = np.zeros(len(values), dtype=bool)
    found[inside] = ordered[at[inside]] == values[inside]
    return found


def _day_masks(days: np.ndarray) -> list[tuple[str, pa.Array | None]]:
    """Per distinct day, the mask of its rows (None when there is just the one day)."""
    distinct = np.unique(days)
    if len(distinct) == 1:
        return [(_iso_day(int(distinct[0])), None)]
    return [(_iso_day(int(d)), pa.array(days == d)) for d in distinct]


def _as_timestamp(array: pa.Array) -> pa.Array:
    if pa.types.is_date(array.type):
        return pc.cast(array, pa.timestamp("s"))
    return array


def _record_days(
    source: Source, values: dict[str, pa.Array], rows: int, delivered: dt.date | None
) -> pa.Array:
    """The day each record belongs to: when it happened, or the delivery day for lists."""
    kind = source.kinds[0]
    candidates = {
        "presence": ["start_time", "event_time", "depart", "arrive"],
        "travel": ["depart", "arrive"],
        "health": ["event_time"],
    }.get(kind, [])
    fallback_day = delivered or clock.today_local()
    fallback = pa.repeat(pa.scalar(dt.datetime.combine(fallback_day, dt.time()), lake.TS), rows)
    found = [_as_timestamp(values[c]) for c in candidates if c in values]
    if not found:
        return fallback
    return pc.coalesce(*found, fallback)


def _column(
    name: str,
    type_: pa.DataType,
    values: dict[str, pa.Array],
    source: Source,
    rows: int,
) -> pa.Array:
    if name in values:
        array = values[name]
        if array.type != type_:
            array = pc.cast(_as_timestamp(array) if type_ == lake.TS else array, type_)
        return array
    if name in source.constants:
        return pa.repeat(pa.scalar(source.constants[name], type_), rows)
    return pa.nulls(rows, type_)


def _kind_table(
    kind: str, source: Source, values: dict[str, pa.Array], common: dict[str, pa.Array], rows: int
) -> pa.Table:
    derived = dict(values)
    if kind == "presence":
        if source.vehicle_place and "vehicle" in values:
            depart = _as_timestamp(values["depart"])
            derived["place"] = pc.binary_join_element_wise(
                values["vehicle"], pc.strftime(depart, format="%Y-%m-%d"), "@"
            )
            derived["place_kind"] = pa.repeat(pa.scalar(source.vehicle_place), rows)
            derived["start_time"] = depart
            if "arrive" in values:
                derived["end_time"] = _as_timestamp(values["arrive"])
        elif source.place_from:
            derived["place"] = pc.binary_join_element_wise(
                *[values[f] for f in source.place_from], "-"
            )
        if "start_time" not in derived and "event_time" in values:
            derived["start_time"] = _as_timestamp(values["event_time"])
    if kind in ("setting", "identity") and source.setting_from:
        derived["setting"] = values[source.setting_from]
    columns = {name: array for name, array in common.items()}
    for name, type_ in lake.KIND_COLUMNS[kind]:
        columns[name] = _column(name, type_, derived, source, rows)
    for name in lake.IDENTIFIERS:
        if name not in columns:
            columns[name] = pa.nulls(rows, pa.string())
    return pa.table(
        {f.name: columns[f.name] for f in lake.SCHEMAS[kind]}, schema=lake.SCHEMAS[kind]
    )


def _linkage_table(values: dict[str, pa.Array], common: dict[str, pa.Array], rows: int) -> pa.Table:
    columns: dict[str, pa.Array] = {
        "record_id": common["record_id"],
        "file_id": common["file_id"],
        "line": common["line"],
    }
    for f in lake.LINKAGE_SCHEMA:
        if f.name in columns:
            continue
        array = values.get(f.name)
        columns[f.name] = pc.cast(array, f.type) if array is not None else pa.nulls(rows, f.type)
    return pa.table(columns, schema=lake.LINKAGE_SCHEMA)


def _quarantine_table(
    batch: RawBatch, checked: Validated, source: Source, file_id: str, name: str
) -> tuple[pa.Table, dict[str, int]]:
    """Bad rows with line, field, reason and the raw row (which the vault encrypts)."""
    reasons: Counter[str] = Counter()
    out: dict[str, list[Any]] = {f.name: [] for f in lake.QUARANTINE_SCHEMA}
    bad_rows = np.flatnonzero(checked.bad)
    if len(bad_rows):
        raw = {
            c: batch.columns[c].take(pa.array(bad_rows)).to_pylist()
            for c in batch.header
            if c in batch.columns
        }
        lines = batch.lines[bad_rows].tolist()
        for i, row in enumerate(bad_rows.tolist()):
            spec = source.fields[int(checked.error_field[row])]
            reason = REASON_CODES[int(checked.error_reason[row])]
            reasons[reason] += 1
            failed = [source.fields[j].column for j in checked.errors_of(row)]
            out["file_id"].append(file_id)
            out["file_name"].append(name)
            out["line"].append(lines[i])
            out["field"].append(spec.name)
            out["column"].append(spec.column)
            out["reason"].append(reason)
            out["errors"].append("、".join(dict.fromkeys(failed)))
            out["raw"].append(json.dumps({c: raw[c][i] for c in raw}, ensure_ascii=False))
    for bad in batch.unparsed:
        reasons[bad.reason] += 1
        out["file_id"].append(file_id)
        out["file_name"].append(name)
        out["line"].append(bad.line)
        out["field"].append(None)
        out["column"].append(None)
        out["reason"].append(bad.reason)
        out["errors"].append(None)
        out["raw"].append(bad.text)
    table = pa.table(out, schema=lake.QUARANTINE_SCHEMA).sort_by("line")
    return table, dict(sorted(reasons.items()))
