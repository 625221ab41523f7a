"""Staging one file (入湖暂存): everything about a file that needs no other file.

Read it, validate every field, pseudonymise identifiers, hash each row's content, drop rows
repeated within the file, and write the file's parts — canonical records per kind and day, the
encrypted linkage store, the encrypted quarantine — into the staging folder. What needs the
files before it (duplicates of rows already in the lake, the ledger) is the committer's work
(:mod:`citybrain.datahub.service`), so files are staged side by side in worker processes while
one committer takes them in delivery order.

A :class:`Stager` holds a process's machinery (pseudonymiser with its cache of recent values,
vault, DuckDB); :func:`stage_in_worker` is the entry point of a worker process.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from citybrain.datahub import lake
from citybrain.datahub.catalog import Source, get_source
from citybrain.datahub.pseudonym import IDENTIFIER_FIELDS, LAKE_HASH, Pseudonymiser
from citybrain.datahub.readers import RawBatch, UnreadableFile, read_bytes
from citybrain.datahub.validate import REASON_CODES, Validated, validate
from citybrain.datahub.vault import Vault
from citybrain.kit import clock

# A record id is the ledger id of its file in the high bits and its line in the low 32.
RECORD_BITS = 32
EPOCH = dt.date(1970, 1, 1)
STAGED = "staged"
REJECTED = "rejected"
ALREADY = "already_ingested"


@dataclass
class Staged:
    """A file read, checked and written to staging, waiting for its commit.

    ``lines``, ``day_number`` and ``row_hash`` describe the rows in the staged parts (the file's
    good rows less those repeated within it), in the order they were written."""

    name: str
    category: str
    file_id: str
    sha: str
    size: int
    delivered: dt.date | None
    serial: int
    status: str = STAGED  # staged | rejected | already_ingested
    error: str | None = None
    received: int = 0
    quarantined: int = 0
    duplicate: int = 0  # rows repeated within the file
    reasons: dict[str, int] = field(default_factory=dict)
    lines: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    day_number: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    row_hash: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # (staged file, final place relative to the data directory), as lake.Staging keeps them.
    parts: list[tuple[Path, Path]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def record_ids(self) -> np.ndarray:
        """The record id of every staged row."""
        ids: np.ndarray = (np.int64(self.serial) << RECORD_BITS) | self.lines.astype(np.int64)
        return ids


@dataclass(frozen=True)
class StageTask:
    """One dropped file for a worker: where it is and the serial its records are numbered by."""

    path: Path
    name: str
    category: str
    delivered: dt.date | None
    serial: int


class Stager:
    """A process's machinery for staging files into one data directory."""

    def __init__(self, paths: lake.LakePaths, known: frozenset[str] = frozenset()) -> None:
        self.paths = paths
        self.known = known  # file ids the ledger held when the run began
        self.vault = Vault()
        self.pseudonymiser = Pseudonymiser()
        # One thread: the workers are processes, one per core.
        self.duck = duckdb.connect(config={"threads": 1})

    def close(self) -> None:
        """Close DuckDB."""
        self.duck.close()

    def stage_path(self, task: StageTask) -> Staged:
        """Stage a dropped file (skipped when the ledger already has its bytes)."""
        data = task.path.read_bytes()
        return self.stage(
            data, task.name, get_source(task.category), task.delivered, task.serial, known=True
        )

    def stage(
        self,
        data: bytes,
        name: str,
        source: Source,
        delivered: dt.date | None,
        serial: int,
        *,
        known: bool = False,
    ) -> Staged:
        """Read, validate, pseudonymise and hash ``data``, and write its parts to staging."""
        started = time.perf_counter()
        sha = hashlib.sha256(data).hexdigest()
        staged = Staged(name, source.code, sha[:20], sha, len(data), delivered, serial)
        if known and staged.file_id in self.known:
            staged.status = ALREADY
            return staged
        try:
            batch = read_bytes(data, source)
        except UnreadableFile as exc:
            staged.status = REJECTED
            staged.error = exc.detail
            staged.reasons = {exc.reason: 1}
            return staged
        rows = batch.parsed
        checked = validate(batch.columns, rows, source)
        good = np.flatnonzero(~checked.bad)
        values = take(checked.values, good, rows)
        hmacs = {
            column: self.pseudonymiser.column(values[f], domain)
            for f, (column, domain) in IDENTIFIER_FIELDS.items()
            if f in values
        }
        day_of = record_days(source, values, len(good), delivered)
        # Days as integers (days since 1970): cheap to compare, group and split on.
        day_number = np.asarray(
            pc.cast(pc.cast(day_of, pa.date32()), pa.int32()).to_numpy(zero_copy_only=False)
        )
        row_hash = self.row_hashes(values, hmacs, day_of)
        # A row repeated within the file is a duplicate of its first occurrence; a row already
        # in the lake is a duplicate of an earlier file's. The lake holds the files committed
        # so far (all earlier in delivery order); the committer checks the files in between.
        keep = np.zeros(0, dtype=np.int64)
        if len(good):
            keep = first_occurrences(row_hash)
            keep = keep[~self._in_lake(source, day_number[keep], row_hash[keep])]
        staged.received = batch.received
        staged.duplicate = len(good) - len(keep)
        staged.lines = batch.lines[good][keep]
        staged.day_number = day_number[keep]
        staged.row_hash = row_hash[keep]
        quarantine, staged.reasons = quarantine_table(batch, checked, source, staged.file_id, name)
        staged.quarantined = quarantine.num_rows
        staging = lake.Staging(self.paths, f"{staged.file_id}.{serial}")
        try:
            kept = take(values, keep, len(good))
            self._write(staged, source, kept, take(hmacs, keep, len(good)), staging)
            if quarantine.num_rows:
                target = staging.path_for(self.paths.quarantine_part(source.code, staged.file_id))
                self.vault.write(quarantine, target, lake.QUARANTINE_ENCRYPTED)
        except BaseException:
            staging.discard()
            raise
        staged.parts = list(staging.parts)
        staged.seconds = time.perf_counter() - started
        return staged

    def _write(
        self,
        staged: Staged,
        source: Source,
        values: dict[str, pa.Array],
        hmacs: dict[str, pa.Array],
        staging: lake.Staging,
    ) -> None:
        """Write the staged rows' lake parts (per kind and day) and linkage parts (per day)."""
        count = len(staged.lines)
        if not count:
            return
        file_id = staged.file_id
        common = {
            "record_id": pa.array(staged.record_ids),
            "file_id": pa.repeat(pa.scalar(file_id), count),
            "line": pa.array(staged.lines.astype(np.int32), pa.int32()),
            "row_hash": pa.array(staged.row_hash, pa.int64()),
            **hmacs,
        }
        by_day = day_masks(staged.day_number)
        for kind in source.kinds:
            table = kind_table(kind, source, values, common, count)
            for day, mask in by_day:
                target = staging.path_for(self.paths.lake_part(kind, source.code, day, file_id))
                write_part(table if mask is None else table.filter(mask), target)
        linkage = linkage_table(values, common, count)
        for day, mask in by_day:
            target = staging.path_for(self.paths.linkage_part(source.code, day, file_id))
            part = linkage if mask is None else linkage.filter(mask)
            self.vault.write(part, target, lake.LINKAGE_ENCRYPTED)

    def _in_lake(self, source: Source, days: np.ndarray, hashes: np.ndarray) -> np.ndarray:
        """Which rows are already in the lake (equal hashes are the same day's)."""
        found = np.zeros(len(hashes), dtype=bool)
        for day in np.unique(days).tolist():
            lake_hashes = lake.existing_hashes(
                self.paths, source.kinds[0], source.code, [iso_day(day)]
            )
            if len(lake_hashes):
                of_day = np.flatnonzero(days == day)
                found[of_day] = contained(hashes[of_day], np.sort(lake_hashes))
        return found

    def drop_rows(self, staged: Staged, rows: np.ndarray) -> None:
        """Take the given rows (positions in ``staged``) out of its staged parts: they turned
        out to be duplicates of rows already in the lake. Only the parts of the days those
        rows fall on are rewritten (usually a small part: a day sent again); parts left empty
        are removed."""
        if not len(rows):
            return
        gone = pa.array(staged.record_ids[rows])
        dropped_days, dropped = np.unique(staged.day_number[rows], return_counts=True)
        all_days, rows_of_day = np.unique(staged.day_number, return_counts=True)
        whole = dict(zip(all_days.tolist(), rows_of_day.tolist(), strict=True))
        # Per folder name of an affected day: is every row of that day going?
        days = {
            f"day={iso_day(day)}": count == whole[day]
            for day, count in zip(dropped_days.tolist(), dropped.tolist(), strict=True)
        }
        kept_parts = []
        for target, relative in staged.parts:
            day_folder = relative.parent.name
            if relative.parts[0] == "quarantine" or day_folder not in days:
                kept_parts.append((target, relative))
                continue
            if days[day_folder]:  # nothing of the day is left: no need to read it
                target.unlink()
                continue
            encrypted = relative.parts[0] == "linkage"
            table = self.vault.read(target) if encrypted else pq.read_table(target)
            table = table.filter(pc.invert(pc.is_in(table.column("record_id"), value_set=gone)))
            target.unlink()
            if table.num_rows == 0:
                continue
            if encrypted:
                self.vault.write(table, target, lake.LINKAGE_ENCRYPTED)
            else:
                write_part(table, target)
            kept_parts.append((target, relative))
        keep = np.ones(len(staged.lines), dtype=bool)
        keep[rows] = False
        staged.parts = kept_parts
        staged.lines = staged.lines[keep]
        staged.day_number = staged.day_number[keep]
        staged.row_hash = staged.row_hash[keep]

    def row_hashes(
        self,
        values: dict[str, pa.Array],
        hmacs: dict[str, pa.Array],
        days: pa.Array,
    ) -> np.ndarray:
        """A 63-bit hash of each row's content, computed over pseudonymised values only
        (DuckDB's hash, vectorised and the same in every run). Names and addresses are left
        out: a row that differs from another only in how the name is spelt is the same
        event of the same identifier, sent twice. The day is part of it, so equal hashes
        mean the same day."""
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
        self.duck.register("hash_input", table)
        try:
            hashed = self.duck.execute(
                f"SELECT CAST(hash({arguments}) & 9223372036854775807 AS BIGINT) AS h "  # noqa: S608 - our column names
                "FROM hash_input"
            ).fetchnumpy()["h"]
        finally:
            self.duck.unregister("hash_input")
        return np.asarray(hashed, dtype=np.int64)


def discard(staged: Staged) -> None:
    """Delete a staged file's parts (it failed, or it was already taken in)."""
    for target, _ in staged.parts:
        target.unlink(missing_ok=True)
    staged.parts = []


def publish(paths: lake.LakePaths, staged: Staged, made: set[Path] | None = None) -> None:
    """Move a staged file's parts into place, each with an atomic rename (``made``: folders
    known to exist)."""
    staging = lake.Staging(paths, staged.file_id)
    staging.parts = list(staged.parts)
    staging.publish(made)
    staged.parts = []


# -- the worker process ----------------------------------------------------------------------

_worker: Stager | None = None


def start_worker(root: str, known: frozenset[str]) -> None:
    """Initialise a worker process: its own stager on the data directory ``root``."""
    global _worker
    pa.set_cpu_count(1)  # one process per core already
    _worker = Stager(lake.LakePaths(Path(root)), known)


def stage_in_worker(task: StageTask) -> Staged:
    """Stage one dropped file in a worker process."""
    assert _worker is not None, "start_worker runs first"
    return _worker.stage_path(task)


# -- building the parts -------------------------------------------------------------------


def write_part(table: pa.Table, path: Path) -> None:
    """Write one lake part. Rows stay in arrival order: sorting for the analysis' access paths
    is the compaction job's work, not the door's (it would halve intake throughput)."""
    codec = lake.part_compression(table.num_rows)
    pq.write_table(
        table,
        path,
        # Keyed hashes are random bytes, and a column of nulls is all but empty: compressing
        # them costs time (a codec context per column) and saves nothing.
        compression={
            c: "none"
            if c in lake.IDENTIFIERS or table.column(c).null_count == table.num_rows
            else codec
            for c in table.column_names
        },
        row_group_size=lake.ROW_GROUP_ROWS,
        # Dictionary pages pay for columns that repeat (kinds, places, events); for keyed
        # hashes and ids they cost time and are thrown away.
        use_dictionary=[c for c in table.column_names if c not in lake.UNIQUE_COLUMNS],
    )


def day_of(number: int) -> dt.date:
    """The date of a day number (days since 1970-01-01)."""
    return EPOCH + dt.timedelta(days=number)


def iso_day(number: int) -> str:
    """The ISO date of a day number."""
    return day_of(number).isoformat()


def take(columns: dict[str, pa.Array], rows: np.ndarray, total: int) -> dict[str, pa.Array]:
    """The given rows of every column; nothing copied when all rows are kept in order."""
    if len(rows) == total:
        return columns
    picked = pa.array(rows)
    return {name: array.take(picked) for name, array in columns.items()}


def first_occurrences(values: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each distinct value, in order (a hash table in
    one pass, rather than a sort)."""
    if not len(values):
        return np.zeros(0, dtype=np.int64)
    codes = np.asarray(pc.dictionary_encode(pa.array(values)).indices.to_numpy())
    # Codes number the values in order of first appearance: a row is a first occurrence
    # exactly when its code is above every code before it.
    new = np.empty(len(codes), dtype=bool)
    new[0] = True
    new[1:] = codes[1:] > np.maximum.accumulate(codes)[:-1]
    return np.flatnonzero(new)


def contained(values: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Which ``values`` occur in the sorted array ``pool`` (a sorted search; faster than
    np.isin's hashing on the lake's 64-bit row hashes)."""
    at = np.searchsorted(pool, values)
    inside = at < len(pool)
    found = np.zeros(len(values), dtype=bool)
    found[inside] = pool[at[inside]] == values[inside]
    return found


def day_masks(days: np.ndarray) -> list[tuple[str, pa.Array | None]]:
    """Per distinct day, the mask of its rows (None when there is just the one day)."""
    distinct = np.unique(days)
    if len(distinct) == 1:
        return [(iso_day(int(distinct[0])), None)]
    return [(iso_day(int(d)), pa.array(days == d)) for d in distinct]


def _as_timestamp(array: pa.Array) -> pa.Array:
    if pa.types.is_date(array.type):
        return pc.cast(array, pa.timestamp("s"))
    return array


def record_days(
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


def kind_table(
    kind: str, source: Source, values: dict[str, pa.Array], common: dict[str, pa.Array], rows: int
) -> pa.Table:
    """The canonical records of one kind from a source's checked columns."""
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
    columns = dict(common)
    for name, type_ in lake.KIND_COLUMNS[kind]:
        columns[name] = _column(name, type_, derived, source, rows)
    for name in lake.IDENTIFIERS:
        if name not in columns:
            columns[name] = pa.nulls(rows, LAKE_HASH)
    return pa.table(
        {f.name: columns[f.name] for f in lake.SCHEMAS[kind]}, schema=lake.SCHEMAS[kind]
    )


def linkage_table(values: dict[str, pa.Array], common: dict[str, pa.Array], rows: int) -> pa.Table:
    """The identifiers of each record for the linkage store (encrypted when written)."""
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


def quarantine_table(
    batch: RawBatch, checked: Validated, source: Source, file_id: str, name: str
) -> tuple[pa.Table, dict[str, int]]:
    """Bad rows with line, field, reason and the raw row (which the vault encrypts), built
    column by column: a feed can have many thousands of bad rows."""
    reasons: Counter[str] = Counter()
    bad_rows = np.flatnonzero(checked.bad)
    parts = []
    if len(bad_rows):
        first_field = checked.error_field[bad_rows].astype(np.int64)
        reason_numbers = checked.error_reason[bad_rows].astype(np.int64)
        names, counts = np.unique(reason_numbers, return_counts=True)
        reasons.update({REASON_CODES[n]: int(c) for n, c in zip(names, counts, strict=True)})
        field_names = np.array([f.name for f in source.fields], dtype=object)
        field_columns = np.array([f.column for f in source.fields], dtype=object)
        count = len(bad_rows)
        parts.append(
            pa.table(
                {
                    "file_id": pa.repeat(pa.scalar(file_id), count),
                    "file_name": pa.repeat(pa.scalar(name), count),
                    "line": pa.array(batch.lines[bad_rows].astype(np.int32)),
                    "field": pa.array(field_names[first_field], pa.string()),
                    "column": pa.array(field_columns[first_field], pa.string()),
                    "reason": pa.array(np.array(REASON_CODES, dtype=object)[reason_numbers]),
                    "errors": _failed_columns(checked, source, bad_rows),
                    "raw": _raw_json(batch, bad_rows),
                },
                schema=lake.QUARANTINE_SCHEMA,
            )
        )
    if batch.unparsed:
        reasons.update(bad.reason for bad in batch.unparsed)
        count = len(batch.unparsed)
        parts.append(
            pa.table(
                {
                    "file_id": pa.repeat(pa.scalar(file_id), count),
                    "file_name": pa.repeat(pa.scalar(name), count),
                    "line": pa.array([bad.line for bad in batch.unparsed], pa.int32()),
                    "field": pa.nulls(count, pa.string()),
                    "column": pa.nulls(count, pa.string()),
                    "reason": pa.array([bad.reason for bad in batch.unparsed], pa.string()),
                    "errors": pa.nulls(count, pa.string()),
                    "raw": pa.array([bad.text for bad in batch.unparsed], pa.string()),
                },
                schema=lake.QUARANTINE_SCHEMA,
            )
        )
    if not parts:
        return lake.QUARANTINE_SCHEMA.empty_table(), {}
    table = pa.concat_tables(parts).sort_by("line")
    return table, dict(sorted(reasons.items()))


def _failed_columns(checked: Validated, source: Source, rows: np.ndarray) -> pa.Array:
    """Per bad row, every agency column that failed, in contract order (、-separated)."""
    codes = np.zeros(len(rows), dtype=np.int64)
    for bit, (_, failed) in enumerate(checked.failed_fields):
        codes |= failed[rows].astype(np.int64) << bit
    distinct, inverse = np.unique(codes, return_inverse=True)
    texts = []
    for code in distinct.tolist():
        columns = [
            source.fields[index].column
            for bit, (index, _) in enumerate(checked.failed_fields)
            if code >> bit & 1
        ]
        texts.append("、".join(dict.fromkeys(columns)))
    return pa.array(np.array(texts, dtype=object)[inverse], pa.string())


_CONTROL = r"[\x00-\x1f]"


def _raw_json(batch: RawBatch, rows: np.ndarray) -> pa.Array:
    """Each row as a JSON object of its cells, the same text ``json.dumps(...,
    ensure_ascii=False)`` gives, built with string kernels; the rare row with a control
    character is left to ``json.dumps``."""
    picked = pa.array(rows)
    columns = {c: batch.columns[c].take(picked) for c in batch.header if c in batch.columns}
    if not columns:
        return pa.array(["{}"] * len(rows), pa.string())
    pieces: list[pa.Array | str] = []
    awkward = np.zeros(len(rows), dtype=bool)
    for number, (column, values) in enumerate(columns.items()):
        text = pc.cast(values, pa.string())
        awkward |= np.asarray(
            pc.fill_null(pc.match_substring_regex(text, _CONTROL), False), dtype=bool
        )
        escaped = pc.replace_substring(pc.replace_substring(text, "\\", "\\\\"), '"', '\\"')
        quoted = pc.binary_join_element_wise('"', escaped, '"', "")
        pieces.append(
            ("{" if number == 0 else ", ") + json.dumps(column, ensure_ascii=False) + ": "
        )
        pieces.append(pc.fill_null(quoted, "null"))
    pieces.append("}")
    raw = pc.binary_join_element_wise(*pieces, "")
    if awkward.any():
        slow = np.flatnonzero(awkward)
        lists = {c: v.take(pa.array(slow)).to_pylist() for c, v in columns.items()}
        texts = [
            json.dumps({c: lists[c][i] for c in lists}, ensure_ascii=False)
            for i in range(len(slow))
        ]
        raw = pc.replace_with_mask(raw, pa.array(awkward), pa.array(texts, pa.string()))
    return raw
