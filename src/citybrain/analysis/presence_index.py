"""A contact index: a compacted, sorted copy of presence that answers co-presence queries by
reading only the visits they need instead of scanning the lake.

The lake keeps presence in arrival order, partitioned by day, which suits intake and audits but
makes every contact query a full scan: the naive bucketed join of DuckDB reads all 60 million
visits to find the few hundred thousand that share a place-hour with 100 cases. The index holds
two sorted layouts of the same visits, one column per ``.npy`` file, memory-mapped at query
time::

    <out>/by_person/{person,place,start,end}.npy   sorted by person: a case's own visits
    <out>/by_place/{key,person,start,end}.npy      sorted by key = place code << 32 | start hour
    <out>/places.parquet                           place code -> place value (string places)
    <out>/meta.json                                columns, rows, bucket length, place coding

A lookup is a binary search on the sorted column (``numpy.searchsorted`` touches a few pages of
the map) and a slice of the rows between the bounds, so a query reads the cases' visits and the
visits of the place-hours they probe, nothing else. Why not Parquet with small row groups: the
probed place-hours are scattered over the whole key range (3,000 seed visits of 100 cases land
in nearly every row group of any practical size), so row-group pruning reads most of the file;
an exact range per key is what makes the read proportional to the answer. The lake stays the
source of truth and the portable form (DuckDB and Spark read it); the index is a derived cache,
rebuilt from it.

Co-presence is the design note's rule: the cases' visits, deduplicated, are expanded to the hour
buckets from one before their start to the one holding their end; each (place, bucket) is looked
up among visits *starting* in that bucket; then the exact overlap filter (the intervals overlap
by more than nothing and by at least ``min_overlap_seconds``). This is the same join as the
naive baseline, so without a crowd cap the index finds exactly the baseline's contacts.

The crowd of a place-hour is the number of visits starting there, read from the index for free
(the length of the key's range). With ``crowd_cap`` the place-hours above it are left out before
anything is read: a station at rush hour is a guard to report, not a flood of contacts, and
without it two hops from a few cases reach most of the city.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

BUCKET_SECONDS = 3600
# Probes of one chunk expand to at most this many (probe, candidate) pairs, so the second hop
# of a large first hop stays within a few hundred megabytes instead of materialising every pair.
PAIR_CHUNK = 4_000_000
# Rows fetched from DuckDB per batch while the sorted layouts are written to the maps.
BUILD_BATCH = 2_000_000

Int64Array = npt.NDArray[np.int64]
INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}


@dataclass(frozen=True)
class HopResult:
    """Contacts of one hop and what it took to find them."""

    contacts: Int64Array  # person values (codes are the values: persons are int64 keys)
    seeds: int  # distinct (place, start, end) visits of the cases
    probes: int  # distinct (place, hour) keys looked up
    rows_read: int  # visits read from the index: the cases' own plus the probed place-hours
    busy_place_hours: int  # probed place-hours left out by the crowd cap
    busy_visits: int  # visits in those place-hours, never read


def _source_sql(source: str | Path | pa.Table, con: duckdb.DuckDBPyConnection) -> str:
    """A FROM clause for ``source``: an Arrow table, a SELECT, or a Parquet path or glob."""
    if isinstance(source, pa.Table):
        con.register("presence_source", source)
        return "presence_source"
    text = str(source)
    if text.lstrip().upper().startswith(("SELECT", "WITH", "(")):
        return f"({text})"
    path = Path(text)
    if path.is_dir():
        text = str(path / "**" / "*.parquet")
    return "read_parquet('" + text.replace("'", "''") + "', hive_partitioning = false)"


def _identifier(name: str) -> str:
    """``name`` quoted as a SQL identifier, so a column name cannot be an expression."""
    return '"' + name.replace('"', '""') + '"'


def _write_layout(
    con: duckdb.DuckDBPyConnection, sql: str, folder: Path, dtypes: dict[str, str], rows: int
) -> None:
    """Stream the rows of ``sql`` (already sorted) into one ``.npy`` map per column."""
    folder.mkdir(parents=True)
    maps = {
        name: np.lib.format.open_memmap(folder / f"{name}.npy", "w+", np.dtype(dtype), (rows,))
        for name, dtype in dtypes.items()
    }
    at = 0
    reader = con.sql(sql).to_arrow_reader(BUILD_BATCH)
    for batch in reader:
        n = batch.num_rows
        for name, target in maps.items():
            target[at : at + n] = batch.column(name).to_numpy(zero_copy_only=False)
        at += n
    if at != rows:  # the source changed while the index was built
        raise RuntimeError(f"expected {rows} rows, wrote {at}")
    for target in maps.values():
        target.flush()


def build_index(
    source: str | Path | pa.Table,
    out: Path,
    *,
    person: str = "person",
    place: str = "place",
    start: str = "start_time",
    end: str = "end_time",
    bucket_seconds: int = BUCKET_SECONDS,
    con: duckdb.DuckDBPyConnection | None = None,
) -> dict[str, object]:
    """Build the contact index of ``source`` in ``out`` (replaced if present).

    ``source`` is a Parquet file, folder or glob, a SELECT, or an Arrow table, with an integer
    ``person`` column (person keys), a ``place`` column (integer codes or strings, which are
    coded here) and timestamp ``start``/``end`` columns. Rows missing any of them are skipped.
    Returns the index's metadata (rows, places, bytes).
    """
    own = con is None
    con = con or duckdb.connect()
    staging = out.with_name(out.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        src = _source_sql(source, con)
        person, place, start, end = (_identifier(c) for c in (person, place, start, end))
        con.execute(
            f"""CREATE OR REPLACE TEMP VIEW visits AS SELECT
                CAST({person} AS BIGINT) AS person, {place} AS place,
                CAST(epoch({start}) AS BIGINT) AS start, CAST(epoch({end}) AS BIGINT) AS "end"
            FROM {src}
            WHERE {person} IS NOT NULL AND {place} IS NOT NULL
              AND {start} IS NOT NULL AND {end} IS NOT NULL"""  # noqa: S608 - quoted names, our source clause
        )
        row = next(iter(con.execute("SELECT typeof(place) FROM visits LIMIT 1").fetchall()), None)
        coded = row is None or row[0] in INTEGER_TYPES
        if coded:
            code_sql = "CAST(place AS BIGINT)"
            coded_visits = "visits"
            places = None
        else:
            # Strings get dense codes in sorted order, kept beside the index to translate back.
            con.execute(
                """CREATE OR REPLACE TEMP TABLE place_codes AS
                SELECT place, CAST(row_number() OVER (ORDER BY place) - 1 AS BIGINT) AS code
                FROM (SELECT DISTINCT CAST(place AS VARCHAR) AS place FROM visits)"""
            )
            con.execute(f"COPY place_codes TO '{staging / 'places.parquet'}' (FORMAT parquet)")
            places = int(con.execute("SELECT count(*) FROM place_codes").fetchall()[0][0])
            con.execute(
                """CREATE OR REPLACE TEMP VIEW coded_visits AS
                SELECT v.person, c.code AS place, v.start, v."end"
                FROM visits v JOIN place_codes c ON CAST(v.place AS VARCHAR) = c.place"""
            )
            code_sql = "place"
            coded_visits = "coded_visits"
        # Materialise once: both layouts sort the same rows, and a lake glob read twice could
        # see a part arrive in between.
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE coded AS
            SELECT person, {code_sql} AS place, start, "end" FROM {coded_visits}"""  # noqa: S608 - our constants
        )
        rows = int(con.execute("SELECT count(*) FROM coded").fetchall()[0][0])
        low, high = con.execute("SELECT min(place), max(place) FROM coded").fetchall()[0]
        if rows and (low < 0 or high >= 2**31):
            raise ValueError("place codes must lie in [0, 2**31) to share a key with the hour")
        _write_layout(
            con,
            'SELECT person, place, start, "end" FROM coded ORDER BY person, start',
            staging / "by_person",
            {"person": "int64", "place": "int64", "start": "int64", "end": "int64"},
            rows,
        )
        _write_layout(
            con,
            f"""SELECT (place << 32) | (start // {bucket_seconds}) AS key, person, start, "end"
            FROM coded ORDER BY key, person""",  # noqa: S608 - an integer
            staging / "by_place",
            {"key": "int64", "person": "int64", "start": "int64", "end": "int64"},
            rows,
        )
        con.execute("DROP TABLE coded")
        meta: dict[str, object] = {
            "rows": rows,
            "bucket_seconds": bucket_seconds,
            "place_coded": not coded,
            "places": places,
            "columns": {"person": person, "place": place, "start": start, "end": end},
        }
        meta["bytes"] = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
        (staging / "meta.json").write_text(json.dumps(meta, indent=1))
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
        return meta
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if own:
            con.close()


def _ranges(sorted_values: Int64Array, wanted: Int64Array) -> tuple[Int64Array, Int64Array]:
    """Row bounds [lo, hi) of each value of ``wanted`` in a sorted column."""
    lo = np.searchsorted(sorted_values, wanted, side="left").astype(np.int64)
    hi = np.searchsorted(sorted_values, wanted, side="right").astype(np.int64)
    return lo, hi


def _gather(lo: Int64Array, hi: Int64Array) -> Int64Array:
    """All row numbers in the ranges [lo, hi), concatenated."""
    counts = hi - lo
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, np.int64)
    # Row i of range j is lo[j] + (i - offset[j]): a running index shifted per range.
    offsets = np.repeat(lo - (np.cumsum(counts) - counts), counts)
    return offsets + np.arange(total, dtype=np.int64)


class PresenceIndex:
    """An open contact index: memory maps of both layouts, shared by every query."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self.bucket = int(self.meta["bucket_seconds"])

        def load(layout: str, name: str) -> Int64Array:
            return np.load(self.folder / layout / f"{name}.npy", mmap_mode="r")  # type: ignore[no-any-return]

        self.person_person = load("by_person", "person")
        self.person_place = load("by_person", "place")
        self.person_start = load("by_person", "start")
        self.person_end = load("by_person", "end")
        self.place_key = load("by_place", "key")
        self.place_person = load("by_place", "person")
        self.place_start = load("by_place", "start")
        self.place_end = load("by_place", "end")

    def visits(self, persons: Sequence[int] | Int64Array) -> tuple[Int64Array, ...]:
        """The visits of ``persons``: (person, place code, start, end) as epoch seconds."""
        wanted = np.unique(np.asarray(persons, dtype=np.int64))
        rows = _gather(*_ranges(self.person_person, wanted))
        return (
            self.person_person[rows],
            self.person_place[rows],
            self.person_start[rows],
            self.person_end[rows],
        )

    def first_hop(
        self,
        cases: Sequence[int] | Int64Array,
        *,
        min_overlap_seconds: int = 0,
        crowd_cap: int | None = None,
        exclude: Int64Array | None = None,
    ) -> HopResult:
        """People co-present with any of ``cases`` (not the cases themselves, nor ``exclude``).

        Co-present: a visit to the same place starting in an hour bucket from one before a
        case's visit starts to the one holding its end, overlapping it by more than nothing and
        by at least ``min_overlap_seconds``. Place-hours with more than ``crowd_cap`` visits
        starting in them are left out (counted in ``busy_place_hours``), never read.
        """
        cases_arr = np.unique(np.asarray(cases, dtype=np.int64))
        _, place, start, end = self.visits(cases_arr)
        own_rows = len(place)
        # Deduplicate the seed visits: household members and re-reported visits repeat them.
        if own_rows:
            seeds = np.unique(np.stack([place, start, end], axis=1), axis=0)
            place, start, end = seeds[:, 0], seeds[:, 1], seeds[:, 2]
        first = start // self.bucket - 1
        width = end // self.bucket - first + 1
        width = np.maximum(width, 1)  # an end before its start still probes its own hours
        seed_of_probe = np.repeat(np.arange(len(place), dtype=np.int64), width)
        bucket = _gather(first, first + width)
        key = (place[seed_of_probe] << 32) | bucket
        unique_keys, inverse = np.unique(key, return_inverse=True)
        lo, hi = _ranges(self.place_key, unique_keys)
        crowd = hi - lo
        busy = np.zeros(len(unique_keys), bool)
        if crowd_cap is not None:
            busy = crowd > crowd_cap
        busy_visits = int(crowd[busy].sum())
        kept = ~busy[inverse] & (crowd[inverse] > 0)
        probe_seed = seed_of_probe[kept]
        probe_lo, probe_hi = lo[inverse][kept], hi[inverse][kept]
        found: list[Int64Array] = []
        # Chunks of probes bounded by the pairs they expand to (cumulative pair count).
        pairs = np.cumsum(probe_hi - probe_lo)
        bounds = np.searchsorted(
            pairs, np.arange(PAIR_CHUNK, int(pairs[-1]) if len(pairs) else 0, PAIR_CHUNK)
        )
        edges = np.concatenate([[0], bounds, [len(probe_seed)]]).astype(np.int64)
        for a, b in itertools.pairwise(edges):
            if a == b:
                continue
            clo, chi = probe_lo[a:b], probe_hi[a:b]
            rows = _gather(clo, chi)
            seed = np.repeat(probe_seed[a:b], chi - clo)
            v_start, v_end = self.place_start[rows], self.place_end[rows]
            overlap = np.minimum(v_end, end[seed]) - np.maximum(v_start, start[seed])
            hit = (overlap > 0) & (overlap >= min_overlap_seconds)
            found.append(np.unique(self.place_person[rows[hit]]))
        contacts = np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)
        drop = cases_arr if exclude is None else np.union1d(cases_arr, exclude)
        contacts = contacts[~np.isin(contacts, drop)]
        read_keys = ~busy & (crowd > 0)
        return HopResult(
            contacts=contacts,
            seeds=len(place),
            probes=len(unique_keys),
            rows_read=own_rows + int(crowd[read_keys].sum()),
            busy_place_hours=int(busy.sum()),
            busy_visits=busy_visits,
        )

    def two_hops(
        self,
        cases: Sequence[int] | Int64Array,
        *,
        min_overlap_seconds: int = 0,
        crowd_cap: int | None = None,
    ) -> tuple[HopResult, HopResult]:
        """First and second hop from ``cases``; the second excludes the cases and the first."""
        cases_arr = np.unique(np.asarray(cases, dtype=np.int64))
        first = self.first_hop(
            cases_arr, min_overlap_seconds=min_overlap_seconds, crowd_cap=crowd_cap
        )
        second = self.first_hop(
            first.contacts,
            min_overlap_seconds=min_overlap_seconds,
            crowd_cap=crowd_cap,
            exclude=cases_arr,
        )
        return first, second

    def place_values(self, codes: Int64Array) -> pa.Array:
        """The place values of index codes (the codes themselves for integer places)."""
        if not self.meta["place_coded"]:
            return pa.array(codes)
        table = pq.read_table(self.folder / "places.parquet")
        values = table.column("place").take(
            pa.array(np.searchsorted(table.column("code").to_numpy(), codes))
        )
        return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def first_hop(
    index: Path | PresenceIndex,
    cases: Sequence[int] | Int64Array,
    *,
    min_overlap_seconds: int = 0,
    crowd_cap: int | None = None,
) -> HopResult:
    """First-hop contacts of ``cases`` from the index at ``index`` (a folder or an open one)."""
    opened = index if isinstance(index, PresenceIndex) else PresenceIndex(index)
    return opened.first_hop(cases, min_overlap_seconds=min_overlap_seconds, crowd_cap=crowd_cap)


def two_hops(
    index: Path | PresenceIndex,
    cases: Sequence[int] | Int64Array,
    *,
    min_overlap_seconds: int = 0,
    crowd_cap: int | None = None,
) -> tuple[HopResult, HopResult]:
    """First and second hop from ``cases``; the second excludes the cases and the first."""
    opened = index if isinstance(index, PresenceIndex) else PresenceIndex(index)
    return opened.two_hops(cases, min_overlap_seconds=min_overlap_seconds, crowd_cap=crowd_cap)
