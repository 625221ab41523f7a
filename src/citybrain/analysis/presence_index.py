"""A contact index: a compact, sorted copy of presence that answers co-presence queries by
reading only the stays they need instead of scanning the lake.

The lake keeps presence in arrival order, partitioned by day, which suits intake and audits but
makes every contact query a full scan: the naive bucketed join of DuckDB reads all 60 million
stays to find the few hundred thousand that share a place-hour with 100 cases. The index is a
derived cache of the lake (which stays the source of truth and the portable form that DuckDB and
Spark read), rebuilt or extended from it.

Layout. One copy of the stays, sorted by (place, start), one uncompressed column per ``.npy``
file, memory-mapped at query time; places and persons are dense integer ids::

    <out>/meta.json                      segments, dictionary, lake parts indexed, key file seen
    <out>/dict-N/places.parquet          place id -> place value, place kind
    <out>/dict-N/person_key.npy          person id -> person key (int64)
    <out>/dict-N/person_sorted_{key,id}.npy   person keys sorted, with their ids: key -> id
    <out>/seg-N-M/person.npy             int32 person id             \
    <out>/seg-N-M/start.npy              uint32 s since 2000-01-01    |  per stay, sorted by
    <out>/seg-N-M/dur.npy                uint16 or uint32 seconds     |  (place, start)
    <out>/seg-N-M/{record_id,carriage,row}.npy   when built with them /
    <out>/seg-N-M/place_{ids,offsets,span}.npy   per place: its rows [offset, next) and its
                                                 longest stay
    <out>/seg-N-M/people_{ids,offsets}.npy, people_rows.npy
                                                 per person: positions of their stays (uint32)
    <out>/seg-N-M/sample.npy             every 64th row's place << 32 | start: searches start here

That is 14 bytes a stay for the bare four columns (person, place, start, end), against 64 for
the two int64 layouts this replaced; the place is not stored per stay at all (its rows are a
range), and the by-person copy is a permutation, not a second copy of the columns. Stays that
last no time (end not after start) are left out: they share no time with anyone.

Lookups. The stays of a place that start in [t0, t1) are a range found by two binary searches
on ``start`` inside the place's rows, narrowed first by the in-memory sample to 64 rows
(vectorised over every probe at once, so a search touches a page or two); the stays of a
person are a slice of ``people_rows``; the place of a row is a binary search on the offsets.
Why not Parquet with small row groups: the probed place-hours are scattered over the whole key
range (3,000 seed visits of 100 cases land in nearly every row group of any practical size), so
row-group pruning reads most of the file; an exact range per key is what makes the read
proportional to the answer. The layout does not depend on the bucket length, which is a query
parameter.

Co-presence (``first_hop``) is the design note's rule: the cases' stays, deduplicated, are
expanded to the buckets from one before their start to the one holding their end; each
(place, bucket) is looked up among stays *starting* in that bucket; then the exact overlap
filter (more than nothing and at least ``min_overlap_seconds``). This is the naive baseline's
join, so without a crowd cap the index finds exactly the baseline's contacts. Without a minimum
overlap a candidate is tested once against all the seeds of its place-bucket (does it overlap
their union: sort the seeds by start, keep a running maximum of their ends), so the work grows
with the stays read, not with seeds times stays. The crowd of a place-bucket is the number of
stays starting in it, known from the ranges before anything is read; with ``crowd_cap`` the
busier ones are left out: a station at rush hour is a guard to report, not a flood of contacts.

Incremental. An index is a main segment and delta segments. ``add_delta`` sorts only the new
stays into a new segment (new places and persons get the next ids) and every query reads all
segments; when deltas hold more than a quarter of the main segment's rows, or there are more
than eight, they are merged (``compact``) from the segments themselves, without reading the lake.
Every change writes new folders and then replaces ``meta.json`` atomically, so an open index
keeps reading the generation it opened (reopen to see changes); one writer at a time (a lock
file beside the index).

Driven from the lake: ``sync_lake_index(paths)`` indexes the presence parts under
``lake/presence`` joined on ``record_id`` with the linkage's ``analysis/person_keys.parquet``
(the person key, record id, place, place kind, start, end, carriage and row of each stay) into
``analysis/presence_index``. Run it after linkage: the first run builds; later runs add the new
parts as a delta (a part whose records linkage has not keyed yet waits for the next run), and a
changed key file relabels the stays whose person key changed (one join of the indexed record ids
with the key file, then a compaction). A part that changed or disappeared (a file re-ingested)
rebuilds the index from the lake. ``build_index`` is the same for any table of stays.

For the contact rules, ``stays_of(person_keys, start_s, end_s)`` and ``at_places(places,
start_s, end_s)`` return the stays overlapping each window as the rows of the ``pres`` table
the contact analysis builds (``record_id``, ``person_key``, ``place``, ``place_kind``, ``s``,
``e`` in epoch seconds, ``carriage``, ``row``), reading only those people's and places' ranges.

Memory. Queries read through memory maps, whose resident pages count in the process's RSS
though they are the page cache's and the kernel may drop them at will; past ``resident_bytes``
of mapped file pages the index hands them back (``madvise(MADV_DONTNEED)``: the page cache keeps
them warm), so a query that reads most of the index does not hold all of it. Its speed does
rely on the page cache holding the index (about its size on disk). The search structures (the
place and people directories and the sample, about 5% of the index) are mapped populated when
the index opens and are never handed back: every query's binary searches run through them, and
faulting them in page by page was most of a fresh process's first query. ``open_index`` keeps
one open index per folder in the process while its state is unchanged, so a long-lived worker
answers each new case through maps already in place.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import shutil
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from citybrain.analysis.linkage import OUTPUT as KEYS_OUTPUT
from citybrain.datahub.lake import LakePaths

FORMAT = 2
# Times are stored as unsigned 32-bit seconds from here (2000-01-01 UTC), which reaches 2136:
# the base is fixed, so a late part from an earlier day never moves it.
BASE_EPOCH = 946_684_800
TIME_LIMIT = 2**32
BUCKET_SECONDS = 3600
INDEX_DIR = Path("analysis", "presence_index")
# Rows sorted in memory at once while a segment is written: about 40 bytes each, so the build
# stays within a few hundred megabytes whatever the size of the lake.
PARTITION_ROWS = 8_000_000
SCAN_BATCH = 1_000_000
# Every this many rows, the (place, start) key of the row is kept in memory-sized ``sample``:
# a search starts there and ends in a window of this many rows, a few pages of the maps.
SAMPLE_ROWS = 64
# Candidate stays read per step of a query: bounds its working arrays to some 200 MB.
CANDIDATE_CHUNK = 4_000_000
TAKE_ROWS = 1_000_000  # rows gathered from a mapped column between budget checks
RESIDENT_BYTES = 1 << 30
# Deltas are merged when they hold this share of the main segment's rows, or are this many.
DELTA_SHARE = 0.25
DELTA_SEGMENTS = 8
# Seed starts and ends sit below 2**33 (start < 2**32, a stay < 2**32): a key index times this
# keeps (key, time) ordered in one int64.
KEY_SHIFT = 2**34
UNBOUNDED = 2**62
EXTRAS = ("record_id", "carriage", "row")
INTEGER_TYPES = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
}
PRES_SCHEMA = pa.schema(
    [
        ("record_id", pa.int64()),
        ("person_key", pa.int64()),
        ("place", pa.string()),
        ("place_kind", pa.string()),
        ("s", pa.int64()),
        ("e", pa.int64()),
        ("carriage", pa.int32()),
        ("row", pa.int32()),
    ]
)

Array = npt.NDArray[Any]
Int64Array = npt.NDArray[np.int64]
Window = int | Sequence[int] | Int64Array | None


@dataclass(frozen=True)
class HopResult:
    """Contacts of one hop and what it took to find them."""

    contacts: Int64Array  # person keys, sorted
    seeds: int  # distinct (place, start, end) stays of the cases
    probes: int  # distinct (place, bucket) keys looked up
    rows_read: int  # stays read: the cases' own plus those starting in the probed buckets
    busy_place_hours: int  # probed place-buckets left out by the crowd cap
    busy_visits: int  # stays in those place-buckets, never read


@dataclass(frozen=True)
class Columns:
    """Column names of a source of stays; the optional ones are carried when given."""

    person: str = "person"
    place: str = "place"
    start: str = "start_time"
    end: str = "end_time"
    place_kind: str | None = None
    record_id: str | None = None
    carriage: str | None = None
    row: str | None = None


LAKE_COLUMNS = Columns(
    person="person_key",
    place="place",
    start="start_time",
    end="end_time",
    place_kind="place_kind",
    record_id="record_id",
    carriage="carriage",
    row="row",
)


# --------------------------------------------------------------------------------- files


class _NpyWriter:
    """A ``.npy`` file written front to back: the header for its final length, then the rows,
    through ordinary writes (the page cache holds them, not this process)."""

    def __init__(self, path: Path, dtype: np.dtype[Any], rows: int) -> None:
        self.path, self.dtype, self.rows, self.written = path, dtype, rows, 0
        self.file: BinaryIO = path.open("wb")
        header = {
            "descr": np.lib.format.dtype_to_descr(dtype),
            "fortran_order": False,
            "shape": (rows,),
        }
        np.lib.format.write_array_header_1_0(self.file, header)

    def write(self, values: Array) -> None:
        data = np.ascontiguousarray(values, dtype=self.dtype)
        self.file.write(data.data)
        self.written += len(data)

    def close(self) -> None:
        self.file.close()
        if self.written != self.rows:  # the source changed while the index was built
            raise RuntimeError(f"{self.path.name}: expected {self.rows} rows, wrote {self.written}")


def _map(path: Path, *, populate: bool = False) -> tuple[Array, mmap.mmap | None]:
    """A read-only memory map of a ``.npy`` file and the map itself (to hand pages back);
    ``populate`` maps every page at once (one read-ahead instead of a fault per page)."""
    with path.open("rb") as file:
        version = np.lib.format.read_magic(file)
        if version != (1, 0):
            raise ValueError(f"{path}: unexpected .npy version {version}")
        shape, _, dtype = np.lib.format.read_array_header_1_0(file)
        offset = file.tell()
        if shape[0] == 0:
            return np.empty(0, dtype), None
        flags = mmap.MAP_SHARED | (mmap.MAP_POPULATE if populate else 0)
        mapped = mmap.mmap(file.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
    return np.frombuffer(mapped, dtype=dtype, count=shape[0], offset=offset), mapped


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _read_meta(out: Path) -> dict[str, Any] | None:
    path = out / "meta.json"
    if not path.exists():
        return None
    meta: dict[str, Any] = json.loads(path.read_text())
    return meta if meta.get("format") == FORMAT else None


def _commit(out: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Make ``meta`` the index's state (one atomic rename) and remove what it no longer names."""
    keep = {meta["dictionary"], *(s["name"] for s in meta["segments"])} - {None}
    meta["bytes"] = sum(_folder_bytes(out / name) for name in keep)
    aside = out / "meta.json.part"
    aside.write_text(json.dumps(meta, indent=1))
    aside.replace(out / "meta.json")
    for path in out.iterdir():
        if path.is_dir() and path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
    return meta


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """One writer at a time: an exclusive lock on a file beside the index."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.with_name(out.name + ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _empty_meta(generation: int = 0) -> dict[str, Any]:
    # The generation keeps counting across rebuilds: new folders never reuse a name that the
    # committed state (and an open index) still reads.
    return {
        "format": FORMAT,
        "base_epoch": BASE_EPOCH,
        "generation": generation,
        "dictionary": None,
        "place_type": None,
        "segments": [],
        "rows": 0,
        "persons": 0,
        "places": 0,
    }


# ------------------------------------------------------------------------ writing segments


def _narrowest(low: int | None, high: int | None) -> np.dtype[Any]:
    """The smallest signed integer type holding [low, high] above its minimum (the null mark)."""
    for dtype in (np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dtype)
        if low is None or high is None or (info.min < low and high <= info.max):
            return np.dtype(dtype)
    raise ValueError(f"values {low}..{high} do not fit in 64 bits")


@dataclass
class _Plan:
    """What a segment will hold, known before its rows are read, so that it can be written in
    partitions of bounded size: rows and longest stay per place id, rows per person id."""

    place_count: Int64Array
    place_span: Int64Array
    person_count: Int64Array
    dtypes: dict[str, np.dtype[Any]] = field(default_factory=dict)
    ranges: dict[str, tuple[int, int] | None] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.place_count.sum())


def _partition_of(counts: Int64Array) -> npt.NDArray[np.int32]:
    """Partition number of each id: ids in order, about PARTITION_ROWS rows a partition."""
    before = np.cumsum(counts) - counts
    _, dense = np.unique(before // PARTITION_ROWS, return_inverse=True)
    return np.asarray(dense, np.int32).reshape(-1)


class _Scratch:
    """Raw column files per partition, appended to batch by batch."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = folder, name
        self.files: dict[tuple[int, str], BinaryIO] = {}

    def append(self, part: int, columns: dict[str, Array]) -> None:
        for column, values in columns.items():
            key = (part, column)
            if key not in self.files:
                self.files[key] = (self.folder / f"{self.name}{part}.{column}").open("wb")
            self.files[key].write(np.ascontiguousarray(values).data)

    def read(self, part: int, dtypes: dict[str, np.dtype[Any]]) -> dict[str, Array]:
        for handle in self.files.values():
            if not handle.closed:
                handle.flush()
        out = {}
        for column, dtype in dtypes.items():
            path = self.folder / f"{self.name}{part}.{column}"
            out[column] = np.fromfile(path, dtype) if path.exists() else np.empty(0, dtype)
            path.unlink(missing_ok=True)
        return out

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()


def _split(parts: Array, columns: dict[str, Array]) -> Iterator[tuple[int, dict[str, Array]]]:
    """Rows grouped by partition number, each group in its original order."""
    # Few partitions: as 8- or 16-bit numbers, numpy's stable sort is a radix sort.
    narrow = parts.astype(np.uint8 if parts.max(initial=0) < 2**8 else np.uint16)
    order = np.argsort(narrow, kind="stable")
    sorted_parts = parts[order]
    edges = np.flatnonzero(np.diff(sorted_parts)) + 1
    for chunk in np.split(order, edges):
        if len(chunk):
            yield int(parts[chunk[0]]), {k: v[chunk] for k, v in columns.items()}


def _write_segment(
    folder: Path, plan: _Plan, batches: Iterable[dict[str, Array]], scratch: Path
) -> dict[str, Any]:
    """Sort the coded stays of ``batches`` by (place, start) into ``folder``.

    Batches hold ``place`` and ``person`` ids, ``start`` (seconds from the base), ``dur`` and the
    extras of ``plan.dtypes``, in any order. An external sort in two passes: rows go to scratch
    partitions by place id range, then each partition is sorted in memory and appended; the
    person permutation is made the same way by person id range.
    """
    folder.mkdir(parents=True)
    scratch.mkdir(parents=True, exist_ok=True)
    rows = plan.rows
    pos_dtype = np.dtype(np.uint32 if rows < 2**32 else np.int64)
    dtypes = {
        "place": np.dtype(np.int32),
        "person": np.dtype(np.int32),
        "start": np.dtype(np.uint32),
        **plan.dtypes,
    }
    place_part = _partition_of(plan.place_count)
    person_part = _partition_of(plan.person_count)
    by_place = _Scratch(scratch, "place")
    try:
        for batch in batches:
            coded = {name: np.asarray(batch[name]).astype(dtypes[name]) for name in dtypes}
            for part, columns in _split(place_part[coded["place"]], coded):
                by_place.append(part, columns)
    finally:
        by_place.close()
    stored = {name: dtype for name, dtype in dtypes.items() if name != "place"}
    writers = {name: _NpyWriter(folder / f"{name}.npy", d, rows) for name, d in stored.items()}
    sample = _NpyWriter(folder / "sample.npy", np.dtype(np.int64), -(-rows // SAMPLE_ROWS))
    by_person = _Scratch(scratch, "person")
    person_dtypes = {"person": dtypes["person"], "start": dtypes["start"], "pos": pos_dtype}
    at = 0
    try:
        for part in range(int(place_part.max()) + 1 if len(place_part) else 0):
            columns = by_place.read(part, dtypes)
            key = (columns["place"].astype(np.uint64) << np.uint64(32)) | columns["start"]
            # Quicksort (vectorised here) is several times faster than a stable sort; the
            # order of stays with the same place and start is of no consequence.
            order = np.argsort(key)
            del key
            for name, writer in writers.items():
                writer.write(columns[name][order])
            picked = order[np.arange(-at % SAMPLE_ROWS, len(order), SAMPLE_ROWS)]
            sample.write(
                (columns["place"][picked].astype(np.int64) << 32) | columns["start"][picked]
            )
            sorted_rows = {
                "person": columns["person"][order],
                "start": columns["start"][order],
                "pos": np.arange(at, at + len(order), dtype=pos_dtype),
            }
            at += len(order)
            del columns, order
            for ppart, pcolumns in _split(person_part[sorted_rows["person"]], sorted_rows):
                by_person.append(ppart, pcolumns)
        for writer in writers.values():
            writer.close()
        sample.close()
        people_rows = _NpyWriter(folder / "people_rows.npy", pos_dtype, rows)
        for part in range(int(person_part.max()) + 1 if len(person_part) else 0):
            columns = by_person.read(part, person_dtypes)
            key = (columns["person"].astype(np.uint64) << np.uint64(32)) | columns["start"]
            people_rows.write(columns["pos"][np.argsort(key)])
        people_rows.close()
    finally:
        by_person.close()
        for writer in writers.values():
            writer.file.close()
        sample.file.close()
    place_ids = np.flatnonzero(plan.place_count)
    np.save(folder / "place_ids.npy", place_ids.astype(np.int32))
    np.save(folder / "place_offsets.npy", _offsets(plan.place_count[place_ids]))
    np.save(folder / "place_span.npy", plan.place_span[place_ids].astype(np.uint32))
    person_ids = np.flatnonzero(plan.person_count)
    np.save(folder / "people_ids.npy", person_ids.astype(np.int32))
    np.save(folder / "people_offsets.npy", _offsets(plan.person_count[person_ids]))
    info = {
        "rows": rows,
        "dtypes": {name: str(d) for name, d in stored.items()},
        "extras": [name for name in EXTRAS if name in plan.dtypes],
        "ranges": {name: plan.ranges.get(name) for name in ("carriage", "row")},
    }
    (folder / "segment.json").write_text(json.dumps(info))
    return info


def _offsets(counts: Array) -> Int64Array:
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)


def _extras_dtypes(plan: _Plan, ranges: dict[str, tuple[int, int] | None], record_id: bool) -> None:
    """Fill the stored types: the stay length and the extras, each as narrow as its values."""
    longest = int(plan.place_span.max()) if len(plan.place_span) else 0
    plan.dtypes["dur"] = np.dtype(np.uint16 if longest < 2**16 else np.uint32)
    if record_id:
        plan.dtypes["record_id"] = np.dtype(np.int64)
    for name in ("carriage", "row"):
        span = ranges.get(name)
        if span is not None:  # a column given but always empty is not stored: all nulls
            plan.dtypes[name] = _narrowest(*span)
            plan.ranges[name] = span


# ------------------------------------------------------------------- coding a source of stays


def _source_sql(source: str | Path | pa.Table, con: duckdb.DuckDBPyConnection) -> str:
    """A FROM clause for ``source``: an Arrow table, a SELECT, or Parquet files.

    A folder is listed once here, so every pass of a build reads the same parts even if new
    ones arrive meanwhile.
    """
    if isinstance(source, pa.Table):
        con.register("presence_source", source)
        return "presence_source"
    text = str(source)
    if text.lstrip().upper().startswith(("SELECT", "WITH", "(")):
        return f"({text})"
    path = Path(text)
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if path.is_dir() and not files:
        raise FileNotFoundError(f"no Parquet files under {path}")
    listed = ", ".join(_literal(str(f)) for f in files)
    return f"read_parquet([{listed}], union_by_name = true, hive_partitioning = false)"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    """``name`` quoted as a SQL identifier, so a column name cannot be an expression."""
    return '"' + name.replace('"', '""') + '"'


def _seconds(column: str, sql_type: str) -> str:
    # Lake timestamps are whole seconds; epoch() is a DOUBLE, cast as contacts.py casts it.
    if sql_type in INTEGER_TYPES:
        return f"CAST({column} AS BIGINT)"
    return f"CAST(epoch({column}) AS BIGINT)"


def _configure(con: duckdb.DuckDBPyConnection, scratch: Path, memory_limit: str | None) -> None:
    # Insertion order is not needed (rows are sorted here) and keeping it buffers results.
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET temp_directory = {_literal(str(scratch / 'duckdb'))}")
    if memory_limit:
        con.execute(f"SET memory_limit = {_literal(memory_limit)}")


def _old_dictionaries(out: Path, meta: dict[str, Any]) -> tuple[pa.Table, Int64Array]:
    """The places table (id, place, place_kind) and person keys by id of ``meta``."""
    if meta["dictionary"] is None:
        place_type = pa.string() if meta["place_type"] in (None, "VARCHAR") else pa.int64()
        places = pa.table(
            {
                "id": pa.array([], pa.int32()),
                "place": pa.array([], place_type),
                "place_kind": pa.array([], pa.string()),
            }
        )
        return places, np.empty(0, np.int64)
    folder = out / meta["dictionary"]
    return pq.read_table(folder / "places.parquet"), np.load(folder / "person_key.npy")


def _write_dictionary(folder: Path, places: pa.Table, person_keys: Int64Array) -> None:
    folder.mkdir(parents=True)
    pq.write_table(places, folder / "places.parquet")
    np.save(folder / "person_key.npy", person_keys.astype(np.int64))
    order = np.argsort(person_keys, kind="stable")
    np.save(folder / "person_sorted_key.npy", person_keys[order].astype(np.int64))
    np.save(folder / "person_sorted_id.npy", order.astype(np.int32))


def _ingest(
    out: Path,
    meta: dict[str, Any],
    source: str | Path | pa.Table,
    names: Columns,
    con: duckdb.DuckDBPyConnection,
) -> tuple[dict[str, Any], int]:
    """Add the stays of ``source`` to the index ``meta`` describes as one new segment (and a
    new dictionary if new places or persons came): the new state, not yet committed, and the
    rows added."""
    src = _source_sql(source, con)
    person, place, start, end = (
        _identifier(c) for c in (names.person, names.place, names.start, names.end)
    )
    types = {
        str(row[0]): str(row[1])
        for row in con.execute(f"DESCRIBE SELECT {place}, {start}, {end} FROM {src}").fetchall()  # noqa: S608 - quoted names
    }
    place_type = meta["place_type"] or (
        "BIGINT" if types[names.place] in INTEGER_TYPES else "VARCHAR"
    )
    optional = {
        "kv": f"coalesce(CAST({_identifier(names.place_kind)} AS VARCHAR), '')"
        if names.place_kind
        else "''",
        "rid": f"CAST({_identifier(names.record_id)} AS BIGINT)" if names.record_id else "NULL",
        "car": f"CAST({_identifier(names.carriage)} AS BIGINT)" if names.carriage else "NULL",
        "seat": f"CAST({_identifier(names.row)} AS BIGINT)" if names.row else "NULL",
    }
    s_sql, e_sql = _seconds(start, types[names.start]), _seconds(end, types[names.end])
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW src_rows AS SELECT
            CAST({person} AS BIGINT) AS pk, CAST({place} AS {place_type}) AS pv,
            {optional["kv"]} AS kv, {s_sql} AS s, {e_sql} AS e,
            {optional["rid"]} AS rid, {optional["car"]} AS car, {optional["seat"]} AS seat
        FROM {src}
        WHERE {person} IS NOT NULL AND {place} IS NOT NULL AND {start} IS NOT NULL
          AND {end} IS NOT NULL AND {e_sql} > {s_sql}"""  # noqa: S608 - quoted names, our source clause
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE place_stats AS
        SELECT pv, kv, count(*) AS n, max(e - s) AS span, min(s) AS s0, max(e) AS e1,
               min(car) AS car0, max(car) AS car1, min(seat) AS seat0, max(seat) AS seat1
        FROM src_rows GROUP BY pv, kv"""
    )
    ((rows, s0, e1, car0, car1, seat0, seat1),) = con.execute(
        """SELECT coalesce(sum(n), 0), min(s0), max(e1), min(car0), max(car1), min(seat0),
                  max(seat1) FROM place_stats"""
    ).fetchall()
    rows = int(rows)
    if rows == 0:
        return meta, 0
    if s0 < BASE_EPOCH or e1 - BASE_EPOCH >= TIME_LIMIT:
        raise ValueError("stays must lie between 2000-01-01 and 2136 (the index's time range)")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE person_stats AS SELECT pk, count(*) AS n"
        " FROM src_rows GROUP BY pk"
    )
    old_places, old_keys = _old_dictionaries(out, {**meta, "place_type": place_type})
    con.register("old_places", old_places)
    con.register(
        "old_persons", pa.table({"id": np.arange(len(old_keys), dtype=np.int32), "pk": old_keys})
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE place_dict AS
        SELECT id, CAST(place AS {place_type}) AS pv, coalesce(place_kind, '') AS kv
        FROM old_places
        UNION ALL
        SELECT CAST({old_places.num_rows} + row_number() OVER (ORDER BY s.pv, s.kv) - 1 AS INTEGER),
               s.pv, s.kv
        FROM place_stats s ANTI JOIN old_places o
             ON CAST(o.place AS {place_type}) = s.pv AND coalesce(o.place_kind, '') = s.kv"""  # noqa: S608 - an integer and a type name
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE person_dict AS
        SELECT id, pk FROM old_persons
        UNION ALL
        SELECT CAST({len(old_keys)} + row_number() OVER (ORDER BY s.pk) - 1 AS INTEGER), s.pk
        FROM person_stats s ANTI JOIN old_persons o USING (pk)"""  # noqa: S608 - an integer
    )
    n_places = int(con.execute("SELECT count(*) FROM place_dict").fetchall()[0][0])
    n_persons = int(con.execute("SELECT count(*) FROM person_dict").fetchall()[0][0])
    stats = con.execute(
        "SELECT d.id, s.n, s.span FROM place_stats s JOIN place_dict d USING (pv, kv)"
    ).fetchnumpy()
    plan = _Plan(
        place_count=np.zeros(n_places, np.int64),
        place_span=np.zeros(n_places, np.int64),
        person_count=np.zeros(n_persons, np.int64),
    )
    plan.place_count[stats["id"]] = stats["n"]
    plan.place_span[stats["id"]] = stats["span"]
    people = con.execute(
        "SELECT d.id, s.n FROM person_stats s JOIN person_dict d USING (pk)"
    ).fetchnumpy()
    plan.person_count[people["id"]] = people["n"]
    ranges = {
        "carriage": None if car0 is None else (int(car0), int(car1)),
        "row": None if seat0 is None else (int(seat0), int(seat1)),
    }
    _extras_dtypes(plan, ranges, names.record_id is not None)
    nulls = {
        name: int(np.iinfo(plan.dtypes[name]).min)
        for name in ("carriage", "row")
        if name in plan.dtypes
    }
    select = [
        "d.id AS place",
        "q.id AS person",
        f"r.s - {BASE_EPOCH} AS start",
        "r.e - r.s AS dur",
    ]
    if "record_id" in plan.dtypes:
        select.append("r.rid AS record_id")
    if "carriage" in nulls:
        select.append(f"coalesce(r.car, {nulls['carriage']}) AS carriage")
    if "row" in nulls:
        select.append(f'coalesce(r.seat, {nulls["row"]}) AS "row"')
    reader = con.sql(
        f"""SELECT {", ".join(select)} FROM src_rows r
        JOIN place_dict d ON d.pv = r.pv AND d.kv = r.kv
        JOIN person_dict q ON q.pk = r.pk"""  # noqa: S608 - our column list
    ).to_arrow_reader(SCAN_BATCH)

    def batches() -> Iterator[dict[str, Array]]:
        for batch in reader:
            yield {name: batch.column(name).to_numpy() for name in batch.schema.names}

    generation = int(meta["generation"]) + 1
    name = f"seg-{generation:06d}-{len(meta['segments'])}"
    shutil.rmtree(out / name, ignore_errors=True)  # left by a run that crashed
    _write_segment(out / name, plan, batches(), out / "scratch")
    new = dict(meta)
    new["generation"] = generation
    new["place_type"] = place_type
    if n_places > old_places.num_rows or n_persons > len(old_keys):
        dictionary = f"dict-{generation:06d}"
        shutil.rmtree(out / dictionary, ignore_errors=True)
        places = con.sql(
            """SELECT id, pv AS place, nullif(kv, '') AS place_kind
            FROM place_dict ORDER BY id"""
        ).to_arrow_table()
        keys = con.sql("SELECT pk FROM person_dict ORDER BY id").fetchnumpy()["pk"]
        _write_dictionary(out / dictionary, places, np.asarray(keys, np.int64))
        new["dictionary"] = dictionary
    new["segments"] = [*meta["segments"], {"name": name, "rows": rows}]
    new["rows"] = int(meta["rows"]) + rows
    new["places"], new["persons"] = n_places, n_persons
    new["columns"] = {
        "record_id": names.record_id is not None or bool(meta.get("columns", {}).get("record_id")),
    }
    return new, rows


# --------------------------------------------------------------------------- reading segments


class _Resident:
    """The memory maps of an open index, handed back to the kernel past a budget.

    Mapped file pages count in the process's resident memory, and this kernel maps a whole
    large folio of the page cache on a fault (up to megabytes for one 4-byte read), so a query
    reading a few thousand scattered stays can map most of the index. After each gather the
    resident file pages (``/proc/self/statm``, shared) are compared with ``budget``; past it
    every map is advised ``MADV_DONTNEED``, which unmaps the pages and leaves them in the page
    cache, so the next read is a minor fault, not a disk read.
    """

    def __init__(self, budget: int | None) -> None:
        self.budget = budget
        self.maps: list[mmap.mmap] = []
        self.pinned = 0  # bytes of the populated directories, never handed back
        self.statm = Path("/proc/self/statm")
        self.page = mmap.PAGESIZE

    def settle(self) -> None:
        if self.budget is None or not self.statm.exists():
            return
        if int(self.statm.read_text().split()[2]) * self.page - self.pinned > self.budget:
            self.release()

    def release(self) -> None:
        for mapped in self.maps:
            mapped.madvise(mmap.MADV_DONTNEED)


class _Segment:
    """One sorted segment, memory-mapped."""

    def __init__(self, folder: Path, resident: _Resident | None = None) -> None:
        self.name = folder.name
        info = json.loads((folder / "segment.json").read_text())
        self.rows = int(info["rows"])
        self.ranges: dict[str, list[int] | None] = info["ranges"]
        self.resident = resident or _Resident(None)

        def load(name: str, *, directory: bool = False) -> Array:
            # Directories are searched by every query: populated, and kept out of the budget.
            array, mapped = _map(folder / f"{name}.npy", populate=directory)
            if mapped is not None:
                if directory:
                    self.resident.pinned += len(mapped)
                else:
                    self.resident.maps.append(mapped)
            return array

        self.person = load("person")
        self.start = load("start")
        self.dur = load("dur")
        self.extras = {name: load(name) for name in info["extras"]}
        self.place_ids = load("place_ids", directory=True)
        self.place_offsets = load("place_offsets", directory=True)
        self.place_span = load("place_span")
        self.people_ids = load("people_ids", directory=True)
        self.people_offsets = load("people_offsets", directory=True)
        self.people_rows = load("people_rows")
        self.sample = load("sample", directory=True)

    def take(self, column: Array, rows: Array) -> Array:
        """``column[rows]``, a slice of rows at a time with the resident pages checked against
        the budget after each: one gather of millions of rows across a column of gigabytes
        would otherwise map most of it before the first check."""
        if len(rows) <= TAKE_ROWS:
            values = column[rows]
            self.resident.settle()
            return values
        out = np.empty(len(rows), column.dtype)
        for at in range(0, len(rows), TAKE_ROWS):
            out[at : at + TAKE_ROWS] = column[rows[at : at + TAKE_ROWS]]
            self.resident.settle()
        return out

    def place_range(self, places: Array) -> tuple[Int64Array, Int64Array, Int64Array]:
        """Rows [lo, hi) of each place id and its index among this segment's places."""
        return _csr_range(self.place_ids, self.place_offsets, places)

    def person_rows(self, persons: Array) -> tuple[Int64Array, Int64Array]:
        """Rows of the persons' stays and, for each, the index of its person in ``persons``."""
        lo, hi, _ = _csr_range(self.people_ids, self.people_offsets, persons)
        at = _gather(lo, hi)
        which = np.repeat(np.arange(len(persons), dtype=np.int64), hi - lo)
        return self.take(self.people_rows, at).astype(np.int64), which

    def places_of(self, rows: Int64Array) -> Int64Array:
        """The place id of each row."""
        index = np.searchsorted(self.place_offsets, rows, side="right") - 1
        self.resident.settle()
        return self.take(self.place_ids, index).astype(np.int64)

    def times(self, rows: Int64Array) -> tuple[Int64Array, Int64Array]:
        """Start and end of rows in seconds from the base."""
        start = self.take(self.start, rows).astype(np.int64)
        return start, start + self.take(self.dur, rows)

    def lower_bound(
        self, places: Int64Array, lo: Int64Array, hi: Int64Array, target: Int64Array
    ) -> Int64Array:
        """First row of each place (rows [lo, hi), from ``place_range``) whose start is at
        least ``target``: the sample narrows each search to a window of SAMPLE_ROWS rows, then
        one binary search per window, all windows a step at a time."""
        present = hi > lo
        key = (places << 32) + np.clip(target, 0, TIME_LIMIT)
        after = np.searchsorted(self.sample, key)  # sample[after - 1] < key <= sample[after]
        window_lo = np.maximum((after - 1) * SAMPLE_ROWS + 1, 0)
        lo = np.where(present, np.maximum(lo, window_lo), 0)
        hi = np.where(present, np.minimum(hi, after * SAMPLE_ROWS), 0)
        active = np.flatnonzero(lo < hi)
        while active.size:
            low, high = lo[active], hi[active]
            mid = (low + high) >> 1
            right = self.take(self.start, mid) < target[active]
            lo[active] = np.where(right, mid + 1, low)
            hi[active] = np.where(right, high, mid)
            active = active[lo[active] < hi[active]]
        return lo


def _csr_range(
    ids: Array, offsets: Array, wanted: Array
) -> tuple[Int64Array, Int64Array, Int64Array]:
    """Rows [lo, hi) of each wanted id in a sorted id list with row offsets (empty if absent)."""
    wanted = np.asarray(wanted, np.int64)
    if len(ids) == 0:
        zero = np.zeros(len(wanted), np.int64)
        return zero, zero, zero
    at = np.searchsorted(ids, wanted)
    safe = np.minimum(at, len(ids) - 1)
    present = (at < len(ids)) & (ids[safe] == wanted)
    lo = np.where(present, offsets[safe], 0).astype(np.int64)
    hi = np.where(present, offsets[safe + 1], 0).astype(np.int64)
    return lo, hi, safe.astype(np.int64)


def _unique(values: Array) -> Int64Array:
    """The distinct values, sorted. By sorting: ``np.unique`` of this numpy hashes, which is
    a hundred times slower on a few million integers."""
    ordered: Int64Array = np.sort(np.asarray(values, np.int64))
    first = np.ones(len(ordered), bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return ordered[first]


def _gather(lo: Int64Array, hi: Int64Array) -> Int64Array:
    """All row numbers in the ranges [lo, hi), concatenated."""
    counts = hi - lo
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, np.int64)
    # Row i of range j is lo[j] + (i - offset[j]): a running index shifted per range.
    offsets = np.repeat(lo - (np.cumsum(counts) - counts), counts)
    return offsets + np.arange(total, dtype=np.int64)


def _chunks(counts: Int64Array, size: int) -> Iterator[tuple[int, int]]:
    """Consecutive [a, b) of ``counts`` adding up to about ``size`` each (at least one item)."""
    total = np.cumsum(counts)
    a = 0
    while a < len(counts):
        before = int(total[a - 1]) if a else 0
        b = max(int(np.searchsorted(total, before + size, side="right")), a + 1)
        yield a, b
        a = b


def _window(values: Window, n: int, default: int) -> Int64Array:
    """A window bound per item: one value for all, one per item, or unbounded."""
    if values is None:
        return np.full(n, default, np.int64)
    array = np.asarray(values, np.int64)
    return np.full(n, int(array), np.int64) if array.ndim == 0 else array


class PresenceIndex:
    """An open contact index: memory maps of its segments, shared by every query.

    A snapshot: changes made after it was opened are seen by opening it again.
    """

    def __init__(
        self,
        folder: Path,
        *,
        resident_bytes: int | None = RESIDENT_BYTES,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.folder = Path(folder)
        meta = meta or _read_meta(self.folder)
        if meta is None:
            raise FileNotFoundError(f"no contact index (format {FORMAT}) in {folder}")
        self.meta = meta
        self.resident = _Resident(resident_bytes)
        self.segments = [_Segment(self.folder / s["name"], self.resident) for s in meta["segments"]]
        self.places, self.person_keys = _old_dictionaries(self.folder, meta)
        self.persons = len(self.person_keys)
        self._sorted_keys: Array = np.empty(0, np.int64)
        self._sorted_ids: Array = np.empty(0, np.int32)
        if meta["dictionary"] is not None:
            folder_dict = self.folder / meta["dictionary"]
            self._sorted_keys = np.load(folder_dict / "person_sorted_key.npy", mmap_mode="r")
            self._sorted_ids = np.load(folder_dict / "person_sorted_id.npy", mmap_mode="r")

    @property
    def rows(self) -> int:
        """Stays in the index."""
        return int(self.meta["rows"])

    def release(self) -> None:
        """Hand the mapped pages back to the kernel (it keeps them in the page cache)."""
        self.resident.release()

    def _ids(self, keys: Int64Array) -> tuple[Int64Array, npt.NDArray[np.bool_]]:
        """Person id of each key (-1 where the index has no stay of that person)."""
        keys = np.asarray(keys, np.int64)
        if len(self._sorted_keys) == 0:
            return np.full(len(keys), -1, np.int64), np.zeros(len(keys), bool)
        at = np.searchsorted(self._sorted_keys, keys)
        safe = np.minimum(at, len(self._sorted_keys) - 1)
        found = (at < len(self._sorted_keys)) & (self._sorted_keys[safe] == keys)
        return np.where(found, self._sorted_ids[safe], -1).astype(np.int64), found

    def _kind_allowed(self, kinds: Iterable[str] | None) -> npt.NDArray[np.bool_] | None:
        if kinds is None:
            return None
        kind = self.places.column("place_kind")
        allowed = pc.fill_null(pc.is_in(kind, value_set=pa.array(list(kinds), pa.string())), False)
        result: npt.NDArray[np.bool_] = np.asarray(
            allowed.to_numpy(zero_copy_only=False), dtype=np.bool_
        )
        return result

    # ----------------------------------------------------------------- rows for the rules

    def stays_of(
        self,
        person_keys: Sequence[int] | Int64Array,
        start_s: Window = None,
        end_s: Window = None,
        *,
        kinds: Iterable[str] | None = None,
    ) -> pa.Table:
        """The stays of ``person_keys`` overlapping their windows, as the contact analysis's
        ``pres`` rows (``PRES_SCHEMA``: ``s``/``e`` in epoch seconds).

        ``start_s``/``end_s`` are epoch seconds, one for all or one per key (None: unbounded);
        a stay overlaps a window when they share more than nothing. A key given twice gets the
        stays overlapping either window, each once. ``kinds`` keeps only those place kinds.
        """
        keys = np.asarray(person_keys, np.int64).reshape(-1)
        since = _window(start_s, len(keys), -UNBOUNDED) - BASE_EPOCH
        until = _window(end_s, len(keys), UNBOUNDED) - BASE_EPOCH
        ids, found = self._ids(keys)
        ids, since, until = ids[found], since[found], until[found]
        allowed = self._kind_allowed(kinds)
        tables = []
        for segment in self.segments:
            rows, which = segment.person_rows(ids)
            start, end = segment.times(rows)
            keep = (start < until[which]) & (end > since[which])
            rows = _unique(rows[keep])
            if allowed is not None:
                rows = rows[allowed[segment.places_of(rows)]]
            tables.append(self._pres(segment, rows))
        return self._concat(tables)

    def at_places(
        self,
        places: Sequence[Any] | pa.Array,
        start_s: Window = None,
        end_s: Window = None,
        *,
        kinds: Iterable[str] | None = None,
    ) -> pa.Table:
        """The stays at ``places`` (place values) overlapping their windows, as ``pres`` rows.

        Windows as in ``stays_of``. Only the place's stays that could reach the window are read:
        those starting before its end and after its start minus the place's longest stay.
        """
        values = pa.array(places)
        n = len(values)
        since = _window(start_s, n, -UNBOUNDED) - BASE_EPOCH
        until = _window(end_s, n, UNBOUNDED) - BASE_EPOCH
        if n == 0 or self.places.num_rows == 0:
            return self._concat([])
        values = values.cast(self.places.schema.field("place").type)
        asked = pa.table({"place": values, "item": pa.array(np.arange(n, dtype=np.int64))})
        matched = asked.join(self.places, keys="place", join_type="inner")
        item = matched.column("item").to_numpy()
        place_ids = matched.column("id").to_numpy().astype(np.int64)
        allowed = self._kind_allowed(kinds)
        if allowed is not None:
            item, place_ids = item[allowed[place_ids]], place_ids[allowed[place_ids]]
        tables = []
        for segment in self.segments:
            lo, hi, at = segment.place_range(place_ids)
            span = segment.place_span[at].astype(np.int64) if len(segment.place_span) else lo
            first = segment.lower_bound(place_ids, lo, hi, since[item] - span)
            last = segment.lower_bound(place_ids, lo, hi, until[item])
            rows = _gather(first, last)
            which = np.repeat(item, last - first)
            start, end = segment.times(rows)
            keep = (end > since[which]) & (start < until[which])
            tables.append(self._pres(segment, _unique(rows[keep])))
        return self._concat(tables)

    def _pres(self, segment: _Segment, rows: Int64Array) -> pa.Table:
        start, end = segment.times(rows)
        place_ids = pa.array(segment.places_of(rows))
        columns: dict[str, Any] = {
            "record_id": pa.array(segment.take(segment.extras["record_id"], rows), pa.int64())
            if "record_id" in segment.extras
            else pa.nulls(len(rows), pa.int64()),
            "person_key": pa.array(
                self.person_keys[segment.take(segment.person, rows)], pa.int64()
            ),
            "place": self.places.column("place").take(place_ids),
            "place_kind": self.places.column("place_kind").take(place_ids),
            "s": pa.array(start + BASE_EPOCH, pa.int64()),
            "e": pa.array(end + BASE_EPOCH, pa.int64()),
        }
        for name in ("carriage", "row"):
            if name in segment.extras:
                values = segment.take(segment.extras[name], rows)
                null = values == np.iinfo(values.dtype).min
                columns[name] = pa.array(values.astype(np.int32), pa.int32(), mask=null)
            else:
                columns[name] = pa.nulls(len(rows), pa.int32())
        return pa.table(columns)

    def _concat(self, tables: list[pa.Table]) -> pa.Table:
        place_type = self.places.schema.field("place").type
        schema = PRES_SCHEMA.set(2, pa.field("place", place_type))
        if not tables:
            return schema.empty_table()
        return pa.concat_tables([t.cast(schema) for t in tables])

    # ------------------------------------------------------------------------ contacts

    def _seeds(self, ids: Int64Array) -> tuple[Int64Array, Int64Array, Int64Array, int]:
        """The distinct (place, start, end) stays of person ids, from the base, and their count
        before deduplication."""
        places, starts, ends = [], [], []
        for segment in self.segments:
            rows, _ = segment.person_rows(ids)
            rows.sort()  # in row order, the maps are read front to back
            start, end = segment.times(rows)
            places.append(segment.places_of(rows))
            starts.append(start)
            ends.append(end)
        if not places:
            empty = np.empty(0, np.int64)
            return empty, empty, empty, 0
        place, start, end = np.concatenate(places), np.concatenate(starts), np.concatenate(ends)
        own = len(place)
        # Household members and re-reported stays repeat the same visit: probe it once.
        order = np.lexsort((end, start, place))
        place, start, end = place[order], start[order], end[order]
        new = np.ones(len(place), bool)
        new[1:] = (np.diff(place) != 0) | (np.diff(start) != 0) | (np.diff(end) != 0)
        return place[new], start[new], end[new], own

    def first_hop(
        self,
        cases: Sequence[int] | Int64Array,
        *,
        min_overlap_seconds: int = 0,
        crowd_cap: int | None = None,
        exclude: Int64Array | None = None,
        bucket_seconds: int = BUCKET_SECONDS,
    ) -> HopResult:
        """People co-present with any of ``cases`` (person keys), not the cases themselves nor
        ``exclude``.

        Co-present: a stay at the same place starting in a bucket from one before a case's stay
        starts to the one holding its end, overlapping it by more than nothing and by at least
        ``min_overlap_seconds``. Place-buckets with more than ``crowd_cap`` stays starting in
        them are left out (counted in ``busy_place_hours``), never read.
        """
        case_keys = _unique(np.asarray(cases, dtype=np.int64))
        ids, found = self._ids(case_keys)
        place, start, end, own = self._seeds(ids[found])
        absolute_start, absolute_end = start + BASE_EPOCH, end + BASE_EPOCH
        first = absolute_start // bucket_seconds - 1
        width = absolute_end // bucket_seconds - first + 1
        seed_of_probe = np.repeat(np.arange(len(place), dtype=np.int64), width)
        bucket = _gather(first, first + width)
        key = (place[seed_of_probe] << 32) | bucket
        unique_keys, inverse = np.unique(key, return_inverse=True)
        inverse = inverse.reshape(-1)
        # A bucket's rows end where the next bucket's begin: one search per distinct edge.
        edges = _unique(np.concatenate([unique_keys, unique_keys + 1]))
        at_lo, at_hi = np.searchsorted(edges, unique_keys), np.searchsorted(edges, unique_keys + 1)
        since = (edges & 0xFFFFFFFF) * bucket_seconds - BASE_EPOCH
        bounds = []
        for segment in self.segments:
            lo, hi, _ = segment.place_range(edges >> 32)
            edge_rows = segment.lower_bound(edges >> 32, lo, hi, since)
            bounds.append((edge_rows[at_lo], edge_rows[at_hi]))
        crowd = np.zeros(len(unique_keys), np.int64)
        for lo, hi in bounds:
            crowd += hi - lo
        busy = crowd > crowd_cap if crowd_cap is not None else np.zeros(len(crowd), bool)
        kept = ~busy & (crowd > 0)
        probe = kept[inverse]
        probe_key = inverse[probe]
        probe_start, probe_end = start[seed_of_probe[probe]], end[seed_of_probe[probe]]
        seen = np.zeros(self.persons, bool)
        for segment, (lo, hi) in zip(self.segments, bounds, strict=True):
            if min_overlap_seconds <= 0:
                self._union_hits(segment, lo, hi, kept, probe_key, probe_start, probe_end, seen)
            else:
                self._pair_hits(
                    segment, lo, hi, probe_key, probe_start, probe_end, min_overlap_seconds, seen
                )
        contacts = np.sort(self.person_keys[np.flatnonzero(seen)])
        drop = case_keys if exclude is None else np.concatenate([case_keys, exclude])
        contacts = contacts[~np.isin(contacts, drop)]
        return HopResult(
            contacts=contacts,
            seeds=len(place),
            probes=len(unique_keys),
            rows_read=own + int(crowd[kept].sum()),
            busy_place_hours=int(busy.sum()),
            busy_visits=int(crowd[busy].sum()),
        )

    def _union_hits(
        self,
        segment: _Segment,
        lo: Int64Array,
        hi: Int64Array,
        kept: npt.NDArray[np.bool_],
        probe_key: Int64Array,
        probe_start: Int64Array,
        probe_end: Int64Array,
        seen: npt.NDArray[np.bool_],
    ) -> None:
        """Mark the people of the stays in the kept place-buckets that overlap any seed probing
        their bucket by more than nothing.

        Overlapping some seed by more than nothing is overlapping their union, so each key's
        seeds (sorted by start, a running maximum of their ends, the key times KEY_SHIFT keeping
        keys apart) are merged into disjoint intervals first. A key with one interval, the
        common case, tests its stays against it directly; in a key with several only the last
        interval starting before a stay's end can overlap it, found by a binary search.
        """
        order = np.lexsort((probe_start, probe_key))
        key, start, end = probe_key[order], probe_start[order], probe_end[order]
        base = key * KEY_SHIFT
        latest = np.maximum.accumulate(base + end)
        head = np.ones(len(key), bool)
        head[1:] = base[1:] + start[1:] > latest[:-1]  # starts after all before it ended
        heads = np.flatnonzero(head)
        union_key, union_start = key[heads], start[heads]
        union_end = latest[np.append(heads[1:], len(key)) - 1] - union_key * KEY_SHIFT
        union_sorted = union_key * KEY_SHIFT + union_start
        # One interval past the end that nothing overlaps, for stays before a key's first one.
        union_start = np.append(union_start, UNBOUNDED)
        union_end = np.append(union_end, -UNBOUNDED)
        read = np.flatnonzero(kept & (hi > lo))
        counts = hi[read] - lo[read]
        first = np.searchsorted(union_key, read)
        several = np.searchsorted(union_key, read, side="right") - first > 1
        for a, b in _chunks(counts, CANDIDATE_CHUNK):
            rows = _gather(lo[read[a:b]], hi[read[a:b]])
            interval = np.repeat(first[a:b], counts[a:b])
            stay_start, stay_end = segment.times(rows)
            multiple = np.repeat(several[a:b], counts[a:b])
            if multiple.any():
                key_base = np.repeat(read[a:b] * KEY_SHIFT, counts[a:b])[multiple]
                last = np.searchsorted(union_sorted, key_base + stay_end[multiple]) - 1
                # Before the key's first interval: no interval starts before the stay ends.
                reached = last >= interval[multiple]
                interval[multiple] = np.where(reached, last, len(union_start) - 1)
            hit = (union_start[interval] < stay_end) & (union_end[interval] > stay_start)
            seen[segment.take(segment.person, rows[hit])] = True

    def _pair_hits(
        self,
        segment: _Segment,
        lo: Int64Array,
        hi: Int64Array,
        probe_key: Int64Array,
        probe_start: Int64Array,
        probe_end: Int64Array,
        min_overlap: int,
        seen: npt.NDArray[np.bool_],
    ) -> None:
        """Mark the people of stays overlapping a seed probing their bucket by ``min_overlap``:
        every (seed, stay) pair of a place-bucket compared, a chunk of pairs at a time."""
        probe_lo, probe_hi = lo[probe_key], hi[probe_key]
        counts = probe_hi - probe_lo
        for a, b in _chunks(counts, CANDIDATE_CHUNK):
            rows = _gather(probe_lo[a:b], probe_hi[a:b])
            seed = np.repeat(np.arange(a, b), counts[a:b])
            start, end = segment.times(rows)
            overlap = np.minimum(end, probe_end[seed]) - np.maximum(start, probe_start[seed])
            hit = (overlap > 0) & (overlap >= min_overlap)
            seen[segment.take(segment.person, rows[hit])] = True

    def two_hops(
        self,
        cases: Sequence[int] | Int64Array,
        *,
        min_overlap_seconds: int = 0,
        crowd_cap: int | None = None,
        bucket_seconds: int = BUCKET_SECONDS,
    ) -> tuple[HopResult, HopResult]:
        """First and second hop from ``cases``; the second excludes the cases and the first."""
        cases_arr = _unique(np.asarray(cases, dtype=np.int64))
        first = self.first_hop(
            cases_arr,
            min_overlap_seconds=min_overlap_seconds,
            crowd_cap=crowd_cap,
            bucket_seconds=bucket_seconds,
        )
        second = self.first_hop(
            first.contacts,
            min_overlap_seconds=min_overlap_seconds,
            crowd_cap=crowd_cap,
            exclude=cases_arr,
            bucket_seconds=bucket_seconds,
        )
        return first, second


# ------------------------------------------------------------------ merging and relabelling

Remap = dict[str, tuple[Int64Array, Int64Array]]  # segment -> (rows sorted, new person ids)


def _merge_plan(segments: list[_Segment], places: int, persons: int, remap: Remap) -> _Plan:
    """The plan of one segment holding all of ``segments``, persons relabelled by ``remap``."""
    plan = _Plan(
        place_count=np.zeros(places, np.int64),
        place_span=np.zeros(places, np.int64),
        person_count=np.zeros(persons, np.int64),
    )
    ranges: dict[str, tuple[int, int] | None] = {"carriage": None, "row": None}
    for segment in segments:
        ids = np.asarray(segment.place_ids, np.int64)
        plan.place_count[ids] += np.diff(segment.place_offsets)
        plan.place_span[ids] = np.maximum(plan.place_span[ids], segment.place_span)
        people = np.asarray(segment.people_ids, np.int64)
        plan.person_count[people] += np.diff(segment.people_offsets)
        rows, to = remap.get(segment.name, (np.empty(0, np.int64), np.empty(0, np.int64)))
        if len(rows):
            plan.person_count -= np.bincount(segment.person[rows], minlength=persons)
            plan.person_count += np.bincount(to, minlength=persons)
        for name, span in segment.ranges.items():
            if span is not None:
                old = ranges.get(name)
                ranges[name] = (
                    (min(old[0], span[0]), max(old[1], span[1])) if old else (span[0], span[1])
                )
    record_id = all("record_id" in s.extras for s in segments)
    _extras_dtypes(plan, ranges, record_id)
    return plan


def _segment_batches(
    segments: list[_Segment], plan: _Plan, remap: Remap
) -> Iterator[dict[str, Array]]:
    """The coded rows of ``segments`` in batches, persons relabelled by ``remap``."""
    for segment in segments:
        rows, to = remap.get(segment.name, (np.empty(0, np.int64), np.empty(0, np.int64)))
        for a in range(0, segment.rows, SCAN_BATCH):
            segment.resident.settle()  # the batch before is consumed: its pages may go
            b = min(a + SCAN_BATCH, segment.rows)
            index = np.searchsorted(segment.place_offsets, np.arange(a, b), side="right") - 1
            person = np.array(segment.person[a:b], np.int32)
            x, y = np.searchsorted(rows, [a, b])
            person[rows[x:y] - a] = to[x:y]
            batch: dict[str, Array] = {
                "place": segment.place_ids[index],
                "person": person,
                "start": segment.start[a:b],
                "dur": segment.dur[a:b],
            }
            if "record_id" in plan.dtypes:
                batch["record_id"] = segment.extras["record_id"][a:b]
            for name in ("carriage", "row"):
                if name not in plan.dtypes:
                    continue
                null = np.iinfo(plan.dtypes[name]).min
                if name in segment.extras:
                    values = segment.extras[name][a:b].astype(np.int64)
                    values[values == np.iinfo(segment.extras[name].dtype).min] = null
                else:
                    values = np.full(b - a, null, np.int64)
                batch[name] = values
            yield batch


def _merge(
    out: Path,
    meta: dict[str, Any],
    names: list[str],
    remap: Remap | None = None,
    person_keys: Int64Array | None = None,
) -> dict[str, Any]:
    """Replace the segments ``names`` by one (at the place of the first), persons relabelled by
    ``remap`` into ``person_keys`` (a new dictionary) when given. Returns the new state."""
    remap = remap or {}
    index = PresenceIndex(out, meta=meta)
    generation = int(meta["generation"]) + 1
    new = dict(meta)
    new["generation"] = generation
    persons = index.persons
    if person_keys is not None:
        dictionary = f"dict-{generation:06d}"
        shutil.rmtree(out / dictionary, ignore_errors=True)
        _write_dictionary(out / dictionary, index.places, person_keys)
        new["dictionary"], new["persons"] = dictionary, len(person_keys)
        persons = len(person_keys)
    merging = [s for s in index.segments if s.name in names]
    plan = _merge_plan(merging, index.places.num_rows, persons, remap)
    name = f"seg-{generation:06d}-0"
    shutil.rmtree(out / name, ignore_errors=True)
    _write_segment(out / name, plan, _segment_batches(merging, plan, remap), out / "scratch")
    segments = []
    for entry in meta["segments"]:
        if entry["name"] == names[0]:
            segments.append({"name": name, "rows": plan.rows})
        elif entry["name"] not in names:
            segments.append(entry)
    new["segments"] = segments
    return new


def _auto_compact(out: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Merge the deltas when they grow: all segments when the deltas hold a quarter of the main
    segment's rows (the main segment is rewritten rarely), the deltas alone when there are many
    small ones."""
    segments = meta["segments"]
    if len(segments) < 2:
        return meta
    main, deltas = segments[0], segments[1:]
    if sum(d["rows"] for d in deltas) > DELTA_SHARE * main["rows"]:
        return _merge(out, meta, [s["name"] for s in segments])
    if len(deltas) > DELTA_SEGMENTS:
        return _merge(out, meta, [d["name"] for d in deltas])
    return meta


def _relabel(
    out: Path, meta: dict[str, Any], keys: str | Path | pa.Table, con: duckdb.DuckDBPyConnection
) -> tuple[dict[str, Any], int]:
    """Give every indexed stay the person key ``keys`` (record_id, person_key) gives its record
    now. Returns the new state and the stays relabelled."""
    index = PresenceIndex(out, meta=meta)
    if index.rows and not meta.get("columns", {}).get("record_id"):
        raise ValueError("relabelling needs an index built with record ids")
    src = _source_sql(keys, con)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW new_keys AS SELECT record_id, person_key FROM {src}"  # noqa: S608 - our source clause
    )
    changed: dict[str, tuple[Int64Array, Int64Array]] = {}
    for segment in index.segments:
        record_ids = segment.extras["record_id"]

        def batches(seg: _Segment = segment, rid: Array = record_ids) -> Iterator[pa.RecordBatch]:
            for a in range(0, seg.rows, SCAN_BATCH):
                seg.resident.settle()
                b = min(a + SCAN_BATCH, seg.rows)
                yield pa.record_batch(
                    {
                        "pos": pa.array(np.arange(a, b, dtype=np.int64)),
                        "record_id": pa.array(np.asarray(rid[a:b])),
                        "old_key": pa.array(index.person_keys[seg.person[a:b]]),
                    }
                )

        schema = pa.schema(
            [("pos", pa.int64()), ("record_id", pa.int64()), ("old_key", pa.int64())]
        )
        con.register("indexed", pa.RecordBatchReader.from_batches(schema, batches()))
        found = con.execute(
            """SELECT i.pos, k.person_key FROM indexed i LEFT JOIN new_keys k USING (record_id)
            WHERE k.person_key IS DISTINCT FROM i.old_key ORDER BY i.pos"""
        ).fetchnumpy()
        con.unregister("indexed")
        if len(found["pos"]):
            new_key = found["person_key"]
            if np.ma.isMaskedArray(new_key) and np.ma.getmaskarray(new_key).any():
                raise LookupError("indexed records have no person key any more: rebuild")
            changed[segment.name] = (
                np.asarray(found["pos"], np.int64),
                np.asarray(new_key, np.int64),
            )
    if not changed:
        return meta, 0
    keys_by_id = index.person_keys
    new_keys = _unique(np.concatenate([k for _, k in changed.values()]))
    added = new_keys[~np.isin(new_keys, keys_by_id)]
    keys_by_id = np.concatenate([keys_by_id, added])
    order = np.argsort(keys_by_id, kind="stable")
    remap = {
        name: (rows, order[np.searchsorted(keys_by_id, new, sorter=order)].astype(np.int64))
        for name, (rows, new) in changed.items()
    }
    moved = sum(len(rows) for rows, _ in remap.values())
    new = _merge(out, meta, [s["name"] for s in meta["segments"]], remap, keys_by_id)
    return new, moved


# ------------------------------------------------------------------------- public builders


@contextmanager
def _connection(
    out: Path, con: duckdb.DuckDBPyConnection | None, memory_limit: str | None
) -> Iterator[duckdb.DuckDBPyConnection]:
    scratch = out / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    own = con is None
    connection = con or duckdb.connect()
    try:
        _configure(connection, scratch, memory_limit)
        yield connection
    finally:
        if own:
            connection.close()
        shutil.rmtree(scratch, ignore_errors=True)


def build_index(
    source: str | Path | pa.Table,
    out: Path,
    columns: Columns = Columns(),
    *,
    con: duckdb.DuckDBPyConnection | None = None,
    memory_limit: str | None = "2GB",
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the contact index of ``source`` in ``out``, replacing what it held.

    ``source`` is a Parquet file or folder, a SELECT, or an Arrow table; ``columns`` names its
    person key (integer), place (integer or string), start and end (timestamps or epoch
    seconds) and the optional place kind, record id, carriage and row. Rows missing any of the
    four, or with an end not after the start, are skipped. DuckDB (``con``, whose memory limit
    and temporary folder are set here, or a connection of its own) reads and codes the source
    within ``memory_limit``, spilling beyond it; the sort runs in bounded partitions. Returns
    the index's metadata (rows, persons, places, bytes, segments).
    """
    out = Path(out)
    with _locked(out):
        if out.exists() and _read_meta(out) is None:
            shutil.rmtree(out)  # an index of an older format, or a broken one
        out.mkdir(parents=True, exist_ok=True)
        old = _read_meta(out)
        with _connection(out, con, memory_limit) as connection:
            meta, _ = _ingest(
                out, _empty_meta(int(old["generation"]) if old else 0), source, columns, connection
            )
        meta.update(extra_meta or {})
        return _commit(out, meta)


def add_delta(
    out: Path,
    source: str | Path | pa.Table,
    columns: Columns = Columns(),
    *,
    con: duckdb.DuckDBPyConnection | None = None,
    memory_limit: str | None = "2GB",
    compact: bool = True,
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Add the stays of ``source`` (as in ``build_index``) to the index in ``out`` as a delta
    segment, sorting only them; merge the deltas when they have grown (unless ``compact`` is
    false). Builds the index if there is none. Returns the new metadata."""
    out = Path(out)
    with _locked(out):
        meta = _read_meta(out) or _empty_meta()
        out.mkdir(parents=True, exist_ok=True)
        with _connection(out, con, memory_limit) as connection:
            meta, _ = _ingest(out, meta, source, columns, connection)
            if compact:
                meta = _auto_compact(out, meta)
        meta.update(extra_meta or {})
        return _commit(out, meta)


def compact(out: Path) -> dict[str, Any]:
    """Merge every segment of the index in ``out`` into one. Returns the new metadata."""
    out = Path(out)
    with _locked(out):
        meta = _read_meta(out)
        if meta is None:
            raise FileNotFoundError(f"no contact index in {out}")
        if len(meta["segments"]) > 1:
            try:
                meta = _merge(out, meta, [s["name"] for s in meta["segments"]])
            finally:
                shutil.rmtree(out / "scratch", ignore_errors=True)
        return _commit(out, meta)


def relabel(
    out: Path,
    keys: str | Path | pa.Table,
    *,
    memory_limit: str | None = "2GB",
) -> int:
    """Give the stays of the index in ``out`` the person keys of ``keys`` (a table or Parquet
    file of ``record_id``, ``person_key``: linkage's output after a new run). Stays whose key
    changed move to their new person (the index is compacted); returns how many moved."""
    out = Path(out)
    with _locked(out):
        meta = _read_meta(out)
        if meta is None:
            raise FileNotFoundError(f"no contact index in {out}")
        with _connection(out, None, memory_limit) as connection:
            meta, moved = _relabel(out, meta, keys, connection)
        _commit(out, meta)
        return moved


# --------------------------------------------------------------------------- from the lake


def _lake_parts(paths: LakePaths) -> dict[str, list[int]]:
    """The presence parts of the lake: relative path -> [size, modification time in ns]."""
    folder = paths.kind_dir("presence")
    if not folder.exists():
        return {}
    parts = {}
    for path in sorted(folder.rglob("*.parquet")):
        stat = path.stat()
        parts[str(path.relative_to(paths.root))] = [stat.st_size, stat.st_mtime_ns]
    return parts


def _fingerprint(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def lake_source(paths: LakePaths, keys: Path, parts: Sequence[str]) -> str:
    """The SELECT of the stays of lake ``parts`` (relative paths) with their person keys from
    ``keys`` (linkage's ``record_id`` -> ``person_key``), in ``LAKE_COLUMNS``."""
    listed = ", ".join(_literal(str(paths.root / part)) for part in parts)
    return f"""SELECT p.record_id, k.person_key, p.place, p.place_kind, p.start_time,
               p.end_time, p.carriage, p."row"
        FROM read_parquet([{listed}], union_by_name = true, hive_partitioning = false) p
        JOIN read_parquet({_literal(str(keys))}) k USING (record_id)"""  # noqa: S608 - our paths


def _keyed_parts(
    con: duckdb.DuckDBPyConnection, paths: LakePaths, keys: Path, parts: list[str]
) -> tuple[list[str], list[str]]:
    """``parts`` split into those whose every record has a person key and those waiting for
    linkage: a stay indexed without its person would never be found."""
    if not parts:
        return [], []
    listed = ", ".join(_literal(str(paths.root / part)) for part in parts)
    missing = con.execute(
        f"""SELECT p.filename FROM read_parquet([{listed}], union_by_name = true,
                hive_partitioning = false, filename = true) p
        ANTI JOIN read_parquet({_literal(str(keys))}) k USING (record_id)
        GROUP BY p.filename"""  # noqa: S608 - our paths
    ).fetchall()
    waiting = {str(Path(row[0]).relative_to(paths.root)) for row in missing}
    return [p for p in parts if p not in waiting], sorted(waiting)


def sync_lake_index(
    paths: LakePaths,
    *,
    keys: Path | None = None,
    out: Path | None = None,
    memory_limit: str | None = "2GB",
) -> dict[str, Any]:
    """Bring the contact index of the lake's presence up to date; run it after linkage.

    ``keys`` is linkage's output (default ``analysis/person_keys.parquet``), ``out`` the index
    (default ``analysis/presence_index`` under the data directory). Builds the index if there
    is none, or if a part it indexed changed or disappeared; otherwise relabels the stays whose
    person key changed (when the key file did) and adds the new parts as a delta. Parts whose
    records linkage has not keyed yet wait for a later run. Returns what was done.
    """
    keys = Path(keys or paths.root / KEYS_OUTPUT)
    out = Path(out or paths.root / INDEX_DIR)
    if not keys.exists():
        raise FileNotFoundError(f"{keys}: run linkage first (citybrain analysis link)")
    current = _lake_parts(paths)
    fingerprint = _fingerprint(keys)
    with _locked(out):
        meta = _read_meta(out)
        lake = (meta or {}).get("lake")
        indexed: dict[str, list[int]] = dict(lake["parts"]) if lake else {}
        rebuild = (
            meta is None or lake is None or any(current.get(p) != f for p, f in indexed.items())
        )
        moved = added = 0
        out.mkdir(parents=True, exist_ok=True)
        with _connection(out, None, memory_limit) as con:
            if rebuild:
                meta = _empty_meta(int(meta["generation"]) if meta else 0)
                indexed = {}
            elif lake is not None and lake["keys"] != fingerprint:
                assert meta is not None
                meta, moved = _relabel(out, meta, keys, con)
            assert meta is not None
            ready, waiting = _keyed_parts(con, paths, keys, sorted(set(current) - set(indexed)))
            if ready:
                meta, added = _ingest(out, meta, lake_source(paths, keys, ready), LAKE_COLUMNS, con)
                if not rebuild:
                    meta = _auto_compact(out, meta)
        meta["lake"] = {"parts": {**indexed, **{p: current[p] for p in ready}}, "keys": fingerprint}
        meta = _commit(out, meta)
    return {
        "action": "built" if rebuild else ("updated" if added or moved else "unchanged"),
        "parts_added": len(ready),
        "parts_waiting": waiting,
        "rows_added": added,
        "relabelled": moved,
        "rows": meta["rows"],
        "segments": len(meta["segments"]),
        "bytes": meta["bytes"],
    }


_OPEN: dict[Path, tuple[tuple[int, int, int], PresenceIndex]] = {}
_OPEN_LOCK = threading.Lock()


def open_index(folder: Path) -> PresenceIndex:
    """The index in ``folder``, opened once per process and reused while its committed state
    (``meta.json``, replaced atomically on every change) is the same: a worker tracing case
    after case keeps its maps faulted in. A changed state is opened afresh; the old snapshot
    stays valid for queries already holding it (its files stay mapped until released)."""
    folder = Path(folder).resolve()
    stat = (folder / "meta.json").stat()
    state = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    with _OPEN_LOCK:
        held = _OPEN.get(folder)
        if held is not None and held[0] == state:
            return held[1]
        index = PresenceIndex(folder)
        _OPEN[folder] = (state, index)
        return index


def current_lake_index(paths: LakePaths, *, keys: Path | None = None) -> PresenceIndex:
    """The lake's contact index brought up to date with the lake and the person keys (see
    ``sync_lake_index``), opened for queries (``open_index``: reused while unchanged)."""
    sync_lake_index(paths, keys=keys)
    return open_index(paths.root / INDEX_DIR)
