"""Behavioural evidence for identity linkage, read day by day and cached between runs.

The identifiers a record carries (see ``linkage``) say nothing about whose a family phone's line
is, which anonymous transit card a person taps, or who took a ride booked on a shared number.
The operators' cell stays do: two lines one person carries stay in the same cells at the same
seconds; a person's line leaves a cell a few minutes before their card taps in or their car
arrives. This module turns the lake's presence records into that evidence:

``stays`` / ``twins``
    per line the number of its stays (whole days in one cell left out: a family at home shares
    those), and per pair of lines the number of stays they share to the second;
``stop_cells``
    the cells that phone-bound cards' lines left within the walk before their tap-ins: which
    cells a stop is next to, learnt from the city's own data;
``traces``
    per tap-in of a card that carried no phone, the lines that left one of its stop's cells
    within the walk before it;
``rides``
    per ride booked on a phone (a presence record with a phone, no card, from a source that is
    not the operator's), whether the line left a cell just before the pickup, or sat in one
    cell through the minutes before it.

Every product is computed per day (a record sits in the partition of its own day) and kept in
the cache folder, so a re-run after new files recomputes only the days those files touched,
and the day after each (a tap or ride just after midnight looks at the previous day's stays).
Only one product depends on all days at once: the stop-cell association. Its cached traces
carry their (stop, cell) pair and are kept only while the pair is still associated; pairs that
appear are traced on the cached days too. The cache holds keyed hashes, place codes and record
ids, as the lake does; never a name or a number.

Afterwards the connection holds what ``linkage`` resolves with: ``line_twin(a, b, shared,
rec)``, ``card_trace(cd, record_id, ph, stay)`` and ``ride(record_id, ph, s, dep_stay,
spans_start, sat)``.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from citybrain.datahub.lake import LakePaths

# Sources whose phone is the line the operator serves, not a number someone quoted: all their
# records on one phone are that line's holder, even when a family gives the number as theirs.
LINE_SOURCES = frozenset({"telecom_cell", "telecom_itinerary", "telecom_roaming"})
# Bump when a product's definition changes: a cache of another version is recomputed.
VERSION = 1
PRODUCTS = ("stays", "twins", "stop_cells", "bound", "traces", "rides")

# Card traces: a tap-in comes this many minutes after its holder's phone left the last cell
# (the walk to the stop), read off the phone-bound cards' taps against their lines' stays.
TRACE_WALK = (3, 11)
# A car booked on a phone comes a few minutes after the booking: a ride whose pickup comes
# between this many minutes and the walk's longest after the line left a cell is the line's.
RIDE_WAIT = 2

_WHOLE_DAY = (
    "(start_time = date_trunc('day', start_time) AND coalesce(end_time, start_time)"
    " >= date_trunc('day', start_time) + INTERVAL 86399 SECOND)"
)


@dataclass
class EvidenceRun:
    """What one evidence pass computed and what it took from the cache."""

    computed_days: int
    cached_days: int
    seconds: float


def presence_days(paths: LakePaths) -> dict[str, set[dt.date]]:
    """Per presence category, the days it has parts for."""
    out: dict[str, set[dt.date]] = {}
    root = paths.kind_dir("presence")
    if not root.exists():
        return out
    for folder in root.glob("category=*/day=*"):
        if any(folder.glob("*.parquet")):
            category = folder.parent.name.removeprefix("category=")
            out.setdefault(category, set()).add(
                dt.date.fromisoformat(folder.name.removeprefix("day="))
            )
    return out


def _files(paths: LakePaths, categories: Iterable[str], days: Iterable[dt.date]) -> list[str]:
    """Globs of the presence parts of ``categories`` on ``days`` that exist."""
    root = paths.kind_dir("presence")
    out = []
    for category in sorted(categories):
        for day in sorted(set(days)):
            folder = root / f"category={category}" / f"day={day.isoformat()}"
            if folder.exists() and any(folder.glob("*.parquet")):
                out.append(f"'{folder}/*.parquet'")
    return out


def _read(files: Sequence[str], columns: str, where: str, empty: str) -> str:
    """A SELECT of ``columns`` over presence parts; with no part, ``empty`` (the same columns
    as typed nulls) and no row, for DuckDB fails on an empty list of files."""
    if not files:
        return f"SELECT {empty} WHERE false"
    listed = ", ".join(files)
    return (
        f"SELECT {columns} FROM read_parquet([{listed}], union_by_name = true,"  # noqa: S608
        f" hive_partitioning = true) WHERE {where}"
    )


def _load_stays(
    con: duckdb.DuckDBPyConnection,
    paths: LakePaths,
    days: Iterable[dt.date],
    name: str,
    only: str = "",
) -> None:
    """``name``: the distinct line stays of ``days`` (with ``whole``: a whole day in one cell)
    and the smallest record id that reported each; ``only``: a further condition."""
    files = _files(paths, LINE_SOURCES, days)
    select = _read(
        files,
        "day::DATE AS day, phone_hmac AS ph, place, start_time, end_time, record_id",
        f"phone_hmac IS NOT NULL AND place IS NOT NULL AND start_time IS NOT NULL {only}",
        "NULL::DATE AS day, NULL::BLOB AS ph, NULL::VARCHAR AS place,"
        " NULL::TIMESTAMP AS start_time, NULL::TIMESTAMP AS end_time, NULL::BIGINT AS record_id",
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {name} AS
        SELECT day, ph, place, start_time, end_time, min(record_id) AS record_id,
               {_WHOLE_DAY} AS whole, (epoch(end_time) // 60)::BIGINT AS minute
        FROM ({select}) GROUP BY day, ph, place, start_time, end_time
        """  # noqa: S608 - our paths and constants
    )


def _load_taps(
    con: duckdb.DuckDBPyConnection,
    paths: LakePaths,
    categories: Sequence[str],
    days: Iterable[dt.date],
    name: str,
    only: str = "",
) -> None:
    """``name``: the card tap-ins of ``days`` in ``categories`` (any presence source but the
    operators' may carry cards); ``only``: a further condition."""
    select = _read(
        _files(paths, categories, days),
        "day::DATE AS day, record_id, phone_hmac AS ph, card_hmac AS cd, place, start_time AS t",
        "card_hmac IS NOT NULL AND place IS NOT NULL AND start_time IS NOT NULL"
        f" AND direction = 'in' {only}",
        "NULL::DATE AS day, NULL::BIGINT AS record_id, NULL::BLOB AS ph, NULL::BLOB AS cd,"
        " NULL::VARCHAR AS place, NULL::TIMESTAMP AS t",
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {select}")


_LOW, _HIGH = TRACE_WALK


def _traces(con: duckdb.DuckDBPyConnection, taps: str, stays: str, pairs: str, out: str) -> None:
    """``out``: per tap-in in ``taps`` that carried no phone, the lines in ``stays`` that left a
    cell its stop is associated with (``pairs``: stop, cell) within the walk before it."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {out} AS
        SELECT t.day, t.cd, t.record_id, s.ph, t.stop, t.cell, min(s.record_id) AS stay
        FROM (
            -- Equality on (cell, minute) rather than a range: one probe per minute of the walk.
            SELECT tp.day, tp.cd, tp.record_id, tp.t, c.stop, c.cell,
                   (epoch(tp.t) // 60)::BIGINT - w AS minute
            FROM {taps} tp JOIN {pairs} c ON c.stop = tp.place,
                 range({_LOW}, {_HIGH} + 1) AS r(w)
            WHERE tp.ph IS NULL
        ) t
        JOIN {stays} s ON s.place = t.cell AND s.minute = t.minute AND NOT s.whole
        WHERE s.end_time BETWEEN t.t - INTERVAL {_HIGH} MINUTE AND t.t - INTERVAL {_LOW} MINUTE
        GROUP BY t.day, t.cd, t.record_id, s.ph, t.stop, t.cell
        """  # noqa: S608 - our table names and constants
    )


def _compute(
    con: duckdb.DuckDBPyConnection,
    paths: LakePaths,
    categories: Sequence[str],
    days: set[dt.date],
    cached_pairs: str | None,
) -> None:
    """The per-day products of ``days`` as temp tables ``fresh_<product>`` (``categories``:
    the presence sources other than the operators'). The stop-cell association they trace with
    is this run's whole one: ``fresh_stop_cells`` plus, when given, ``cached_pairs`` (the other
    days' pairs)."""
    before = {d - dt.timedelta(days=1) for d in days}
    _load_stays(con, paths, days | before, "ev_stay")
    _load_taps(con, paths, categories, days, "ev_tap")
    listed = ", ".join(f"DATE '{d.isoformat()}'" for d in sorted(days)) or "NULL"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE fresh_stays AS
        SELECT day, ph, count(*) AS n FROM ev_stay
        WHERE day IN ({listed}) AND NOT whole GROUP BY day, ph;
        CREATE OR REPLACE TEMP TABLE fresh_twins AS
        SELECT s.day, s.ph AS a, t.ph AS b, count(*) AS shared, min(t.record_id) AS rec
        FROM ev_stay s JOIN ev_stay t USING (day, place, start_time, end_time)
        WHERE s.day IN ({listed}) AND NOT s.whole AND s.ph <> t.ph
        GROUP BY s.day, s.ph, t.ph;
        CREATE OR REPLACE TEMP TABLE fresh_stop_cells AS
        SELECT DISTINCT t.day, t.place AS stop, s.place AS cell
        FROM ev_tap t JOIN ev_stay s ON s.ph = t.ph AND NOT s.whole
         AND s.end_time BETWEEN t.t - INTERVAL {_HIGH} MINUTE AND t.t - INTERVAL {_LOW} MINUTE
        WHERE t.ph IS NOT NULL;
        CREATE OR REPLACE TEMP TABLE fresh_bound AS
        SELECT DISTINCT day, cd FROM ev_tap WHERE ph IS NOT NULL;
        CREATE OR REPLACE TEMP TABLE ev_pairs AS
        SELECT DISTINCT stop, cell FROM fresh_stop_cells
        {f"UNION SELECT stop, cell FROM {cached_pairs}" if cached_pairs else ""};
        """  # noqa: S608 - our constants and table names
    )
    _traces(con, "ev_tap", "ev_stay", "ev_pairs", "fresh_traces")
    # Rides: records with a phone but no card, ID or passport from sources that are not the
    # operators' (records with an ID are placed by it).
    select = _read(
        _files(paths, categories, days),
        "day::DATE AS day, record_id, phone_hmac AS ph, start_time AS s",
        "phone_hmac IS NOT NULL AND card_hmac IS NULL AND id_hmac IS NULL"
        " AND passport_hmac IS NULL AND start_time IS NOT NULL",
        "NULL::DATE AS day, NULL::BIGINT AS record_id, NULL::BLOB AS ph, NULL::TIMESTAMP AS s",
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ev_ride AS {select};
        CREATE OR REPLACE TEMP TABLE fresh_rides AS
        SELECT r.day, r.record_id, r.ph, r.s, d.stay AS dep_stay,
               coalesce(c.spans_start, false) AS spans_start, coalesce(c.sat, false) AS sat
        FROM ev_ride r
        LEFT JOIN (
            -- The line left a cell within the wait before the pickup.
            SELECT r.record_id, min(s.record_id) AS stay
            FROM ev_ride r JOIN ev_stay s ON s.ph = r.ph AND NOT s.whole
             AND s.end_time BETWEEN r.s - INTERVAL {_HIGH} MINUTE
                                AND r.s - INTERVAL {RIDE_WAIT} MINUTE
            GROUP BY r.record_id
        ) d USING (record_id)
        LEFT JOIN (
            -- A stay that runs through the pickup; one that runs through the whole wait.
            SELECT r.record_id,
                   bool_or(s.start_time < r.s AND s.end_time > r.s) AS spans_start,
                   bool_or(s.start_time <= r.s - INTERVAL {_HIGH} MINUTE) AS sat
            FROM ev_ride r JOIN ev_stay s ON s.ph = r.ph
             AND s.start_time <= r.s AND s.end_time >= r.s
            GROUP BY r.record_id
        ) c USING (record_id);
        """  # noqa: S608 - our paths and constants
    )


def build(
    con: duckdb.DuckDBPyConnection,
    paths: LakePaths,
    cache: Path | None,
    fresh: set[dt.date] | None,
) -> EvidenceRun:
    """Build the evidence tables in ``con``.

    ``cache``: the folder products are kept in between runs (None: keep nothing). ``fresh``:
    the days new lake parts fell on, whose products (and the next day's) are recomputed while
    the others come from the cache; None recomputes every day.
    """
    started = time.perf_counter()
    by_category = presence_days(paths)
    every: set[dt.date] = set().union(*by_category.values())
    categories = sorted(c for c in by_category if c not in LINE_SOURCES)
    usable = (
        fresh is not None
        and cache is not None
        and all((cache / f"{p}.parquet").exists() for p in PRODUCTS)
        and (cache / "pairs.parquet").exists()
    )
    if usable and fresh is not None and cache is not None:
        days = {d for d in fresh | {d + dt.timedelta(days=1) for d in fresh} if d in every}
        kept = sorted(every - days)
        listed = ", ".join(f"DATE '{d.isoformat()}'" for d in kept) or "NULL"
        for product in PRODUCTS:
            con.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE kept_{product} AS
                SELECT * FROM read_parquet('{cache / f"{product}.parquet"}')
                WHERE day IN ({listed})
                """  # noqa: S608 - our paths and dates
            )
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE kept_pairs AS SELECT DISTINCT stop, cell
            FROM kept_stop_cells;
            CREATE OR REPLACE TEMP TABLE traced_pairs AS
            SELECT * FROM read_parquet('{cache / "pairs.parquet"}')
            """  # noqa: S608 - our path
        )
        _compute(con, paths, categories, days, "kept_pairs")
        # Pairs the cached days' traces were not computed for: trace the cached days' taps at
        # those stops against their stays in those cells (a scan, not the whole join again).
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE new_pairs AS
            SELECT stop, cell FROM ev_pairs EXCEPT SELECT stop, cell FROM traced_pairs
            """
        )
        ((new_pairs,),) = con.execute("SELECT count(*) FROM new_pairs").fetchall()
        if new_pairs and kept:
            kept_days = set(kept)
            before = {d - dt.timedelta(days=1) for d in kept_days}
            _load_taps(
                con,
                paths,
                categories,
                kept_days,
                "old_tap",
                "AND place IN (SELECT stop FROM new_pairs)",
            )
            _load_stays(
                con,
                paths,
                kept_days | before,
                "old_stay",
                "AND place IN (SELECT cell FROM new_pairs)",
            )
            _traces(con, "old_tap", "old_stay", "new_pairs", "old_traces")
            con.execute("INSERT INTO kept_traces SELECT * FROM old_traces")
        # Traces through pairs no longer associated are dropped, not kept in the cache.
        con.execute(
            """
            DELETE FROM kept_traces t
            WHERE NOT EXISTS (SELECT 1 FROM ev_pairs p WHERE p.stop = t.stop AND p.cell = t.cell)
            """
        )
        for product in PRODUCTS:
            con.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE all_{product} AS
                SELECT * FROM kept_{product} UNION ALL SELECT * FROM fresh_{product}
                """  # noqa: S608 - our table names
            )
        computed, cached = len(days), len(kept)
    else:
        _compute(con, paths, categories, every, None)
        for product in PRODUCTS:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE all_{product} AS SELECT * FROM fresh_{product}"  # noqa: S608
            )
        computed, cached = len(every), 0
    if cache is not None:
        _save(con, cache)
    _combine(con)
    return EvidenceRun(computed, cached, time.perf_counter() - started)


def _save(con: duckdb.DuckDBPyConnection, cache: Path) -> None:
    """Write the products (and the pairs traced) to ``cache``, replacing it whole."""
    aside = cache.with_name(f"{cache.name}.part")
    if aside.exists():
        shutil.rmtree(aside)
    aside.mkdir(parents=True)
    for product in PRODUCTS:
        con.execute(
            f"COPY all_{product} TO '{aside / f'{product}.parquet'}' (FORMAT parquet,"
            " COMPRESSION zstd)"
        )
    con.execute(f"COPY ev_pairs TO '{aside / 'pairs.parquet'}' (FORMAT parquet)")
    if cache.exists():
        shutil.rmtree(cache)
    aside.rename(cache)


# Phones whose operator records (cell stays) coincide, to the second, in place, start and end, are
# two lines one person carries. The thresholds were read off the 20,000-person city, where two
# lines of one holder share 95-100% of their stays and different people rarely above 90%.
TWIN_MIN_STAYS = 5
TWIN_SHARE = 0.95


def _combine(con: duckdb.DuckDBPyConnection) -> None:
    """The whole-lake evidence from the per-day products."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE line_stays AS
        SELECT ph, sum(n) AS n FROM all_stays GROUP BY ph;
        CREATE OR REPLACE TEMP TABLE strong AS
        SELECT x.a, x.b, x.shared, x.rec FROM (
            SELECT a, b, sum(shared) AS shared, min(rec) AS rec FROM all_twins GROUP BY a, b
        ) x
        JOIN line_stays sa ON sa.ph = x.a JOIN line_stays sb ON sb.ph = x.b
        WHERE x.shared >= {TWIN_MIN_STAYS} AND x.shared >= {TWIN_SHARE} * least(sa.n, sb.n);
        -- Each line with exactly one twin: a line matching two others is ambiguous.
        CREATE OR REPLACE TEMP TABLE line_twin AS
        SELECT a, b, shared, rec FROM strong
        WHERE a IN (SELECT a FROM strong GROUP BY a HAVING count(*) = 1)
          AND b IN (SELECT a FROM strong GROUP BY a HAVING count(*) = 1);
        -- Traces of cards that never carried a phone, through pairs still associated.
        CREATE OR REPLACE TEMP TABLE card_trace AS
        SELECT DISTINCT t.cd, t.record_id, t.ph, t.stay
        FROM all_traces t SEMI JOIN ev_pairs p USING (stop, cell)
        WHERE t.cd NOT IN (SELECT cd FROM all_bound);
        CREATE OR REPLACE TEMP TABLE ride AS
        SELECT record_id, ph, s, dep_stay, spans_start, sat FROM all_rides;
        """  # noqa: S608 - our constants
    )
