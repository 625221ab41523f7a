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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import delete, select
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
        result, days = self._process(data, name, source, row.id, file_id, delivered)
        result.seconds = time.perf_counter() - started
        self._close_ledger(session, row, result, days, actor)
        return result, row

    def _process(
        self,
        data: bytes,
        name: str,
        source: Source,
        serial: int,
        file_id: str,
        delivered: dt.date | None,
    ) -> tuple[FileResult, tuple[dt.date, dt.date] | None]:
        """Read, check and write a file's parts and publish them (no database work)."""
        try:
            batch = read_bytes(data, source)
        except UnreadableFile as exc:
            result = FileResult(name, source.code, file_id, STATUS_REJECTED, error=exc.detail)
            result.reasons = {exc.reason: 1}
            return result, None
        staging = lake.Staging(self.paths, file_id)
        try:
            result, days = self._take_in(batch, name, source, serial, file_id, delivered, staging)
            staging.publish()
        except BaseException:
            staging.discard()
            raise
        _stall_for_crash_test()
        return result, days

    def _ingest_dropped(
        self,
        database: Database,
        path: Path,
        name: str,
        source: Source,
        delivered: dt.date | None,
        actor: Actor,
    ) -> FileResult:
        """One dropped file in two short transactions: reserve its ledger row (the record-id
        serial), then, after the parts are published, fill it in with the audit row and event.
        Long work holds no database lock, so categories can be taken in side by side."""
        started = time.perf_counter()
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        file_id = sha[:20]
        with database.unit_of_work(immediate=True) as session:
            known = session.scalar(select(IntakeFile).where(IntakeFile.file_id == file_id))
            if known is not None:
                return _already(name, known)
            row = _new_row(file_id, sha, source, name, CHANNEL_DROP, len(data), delivered)
            row.status = STATUS_RESERVED
            session.add(row)
            session.flush()
            serial = row.id
        try:
            result, days = self._process(data, name, source, serial, file_id, delivered)
        except BaseException:
            with database.unit_of_work(immediate=True) as session:
                session.execute(delete(IntakeFile).where(IntakeFile.id == serial))
            raise
        result.seconds = time.perf_counter() - started
        with database.unit_of_work(immediate=True) as session:
            reserved = session.get(IntakeFile, serial)
            assert reserved is not None
            self._close_ledger(session, reserved, result, days, actor)
        return result

    def _take_in(
        self,
        batch: RawBatch,
        name: str,
        source: Source,
        serial: int,
        file_id: str,
        delivered: dt.date | None,
        staging: lake.Staging,
    ) -> tuple[FileResult, tuple[dt.date, dt.date] | None]:
        rows = batch.parsed
        checked = validate(batch.columns, rows, source)
        good = np.flatnonzero(~checked.bad)
        values = _take(checked.values, good, rows)
        lines = batch.lines[good]
        hmacs = {
            column: self.pseudonymiser.column(values[f], domain)
            for f, (column, domain) in IDENTIFIER_FIELDS.items()
            if f in values
        }
        names = self.pseudonymiser.column(values["name"], "name") if "name" in values else None
        day_of = _record_days(source, values, len(good), delivered)
        # Days as integers (days since 1970): cheap to compare, group and split on.
        day_number = np.asarray(
            pc.cast(pc.cast(day_of, pa.date32()), pa.int32()).to_numpy(zero_copy_only=False)
        )
        row_hash = self._row_hashes(values, hmacs, names, day_of)
        # A duplicate is a row whose content is already in this file (earlier line) or in the
        # lake (an earlier file) for the same category and day.
        first = np.zeros(len(good), dtype=bool)
        if len(good):
            _, first_index = np.unique(row_hash, return_index=True)
            first[first_index] = True
        days_present = [_iso_day(int(d)) for d in np.unique(day_number)]
        seen = lake.existing_hashes(
            self.paths, source.kinds[0], source.code, days_present, exclude=file_id
        ).to_numpy()
        duplicate = ~first
        if len(seen):
            duplicate |= np.isin(row_hash, seen)
        keep = np.flatnonzero(~duplicate)
        kept = _take(values, keep, len(good))
        kept_hmacs = _take(hmacs, keep, len(good))
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
        quarantine, reasons = _quarantine_table(batch, checked, source, file_id, name)
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
            received=batch.received,
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
        names: pa.Array | None,
        days: pa.Array,
    ) -> np.ndarray:
        """A 63-bit hash of each row's content, computed over pseudonymised values only
        (DuckDB's hash, vectorised and the same in every run)."""
        columns: dict[str, pa.Array] = {"__day": days}
        identifier_fields = {"name", "address", *IDENTIFIER_FIELDS}
        for key, array in values.items():
            if key not in identifier_fields:
                columns[key] = array
        columns.update(hmacs)
        if names is not None:
            columns["__name"] = names
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

        Files of one category go in order of delivery (so the earlier copy of a row is the one
        kept and later copies count as duplicates); different categories go side by side on
        ``workers`` threads (Arrow and Parquet work outside Python's lock)."""
        started = time.perf_counter()
        summary = IngestSummary()
        with intake_lock(self.paths):
            summary.orphans_removed = self._recover(database)
            chains: dict[str, list[tuple[str, str, Path, Source]]] = {}
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                found = identify(path)
                if found is None:
                    summary.unrecognised.append(str(path.relative_to(root)))
                    continue
                source, day = found
                chain = chains.setdefault(source.code, [])
                chain.append((day or "", str(path.relative_to(root)), path, source))
            for chain in chains.values():
                chain.sort(key=lambda f: (f[0], f[1]))
            total = sum(f[2].stat().st_size for c in chains.values() for f in c) or 1
            done = [0]
            guard = threading.Lock()

            def run_chain(chain: list[tuple[str, str, Path, Source]]) -> list[FileResult]:
                results = []
                for day, name, path, source in chain:
                    delivered = dt.datetime.strptime(day, "%Y%m%d").date() if day else None
                    results.append(
                        self._ingest_dropped(database, path, name, source, delivered, actor)
                    )
                    with guard:
                        done[0] += path.stat().st_size
                        if progress is not None:
                            progress(name, done[0], total)
                return results

            # Biggest categories first, so the two threads finish close together.
            ordered = sorted(chains.values(), key=lambda c: -sum(f[2].stat().st_size for f in c))
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                outcomes = [pool.submit(run_chain, chain) for chain in ordered]
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
