"""Contact-query benchmark, part one: a presence lake of --records records (default 60 million)
with a realistic skew of place popularity, and the naive baseline the contact engine must beat.

    .venv/bin/python bench/bench_contacts.py [--records 60000000] [--lake DIR] [--keep]

The generator writes Parquet parts partitioned by day, rows in arrival order (as intake leaves
them): person keys, a place drawn from a Zipf-like popularity (a few stations, malls and cell
towers see most visits), start and end times. The baseline is the query the issue names: a
bucketed equality join of DuckDB over the unsorted Parquet — the cases' own visits, expanded to
the neighbouring hour buckets, joined on (place, bucket), then the exact overlap filter — for
100 and 1,000 cases and two hops from 10 cases. Prints one JSON line of figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from citybrain.analysis.presence_index import HopResult, PresenceIndex, build_index

T = TypeVar("T")

DAY_SECONDS = 86_400
START = np.datetime64("2020-01-10T00:00:00", "s")


def generate(lake: Path, records: int, people: int, places: int, days: int, seed: int) -> None:
    """Write ``records`` presences over ``days`` days, one part per day."""
    rng = np.random.default_rng(seed)
    # Place popularity: Zipf-like weights (exponent 0.8 over half a million places), so the
    # busiest place sees about 1.4% of all visits and the top thousand about a third, as
    # stations, malls and cell towers do.
    weights = 1.0 / np.arange(1, places + 1) ** 0.8
    cumulative = np.cumsum(weights / weights.sum())
    per_day = records // days
    for day in range(days):
        n = per_day if day < days - 1 else records - per_day * (days - 1)
        person = rng.integers(0, people, n, dtype=np.int64)
        place = np.minimum(np.searchsorted(cumulative, rng.random(n)), places - 1)
        start = day * DAY_SECONDS + rng.integers(6 * 3600, 22 * 3600, n)
        dwell = rng.exponential(1800, n).astype(np.int64) + 60
        table = pa.table(
            {
                "person": pa.array(person),
                "place": pa.array(place.astype(np.int32)),
                "start_time": pa.array(START + start.astype("timedelta64[s]")),
                "end_time": pa.array(START + (start + dwell).astype("timedelta64[s]")),
            }
        )
        folder = lake / f"day={day:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "part.parquet", compression="zstd")


# epoch() is a DOUBLE, on which // divides without flooring and the cast then rounds: the
# buckets are taken as integers so that an hour bucket is the hour, as the index has it.
BASELINE = """
WITH seeds AS (
    SELECT DISTINCT place, start_time, end_time FROM presence WHERE person IN (SELECT * FROM cases)
), seed_buckets AS (
    SELECT place, start_time, end_time, b AS bucket FROM seeds,
        range(CAST(epoch(start_time) AS BIGINT) // 3600 - 1,
              CAST(epoch(end_time) AS BIGINT) // 3600 + 1) t(b)
), visits AS (
    SELECT person, place, start_time, end_time,
           CAST(epoch(start_time) AS BIGINT) // 3600 AS bucket FROM presence
)
SELECT DISTINCT v.person FROM visits v JOIN seed_buckets s USING (place, bucket)
WHERE v.start_time < s.end_time AND s.start_time < v.end_time
  AND v.person NOT IN (SELECT * FROM cases)
"""


def baseline(con: duckdb.DuckDBPyConnection, cases: np.ndarray) -> tuple[float, np.ndarray]:
    """Seconds and contacts (person keys) of the naive first hop for ``cases``."""
    con.register("cases", pa.table({"person": pa.array(np.asarray(cases, np.int64))}))
    seconds, found = timed(
        lambda: np.asarray(con.execute(BASELINE).fetchnumpy()["person"], np.int64), "baseline"
    )
    con.unregister("cases")
    return seconds, np.unique(found)


PEAKS: dict[str, int] = {}


def timed(function: Callable[[], T], peak: str = "") -> tuple[float, T]:
    """Seconds taken by ``function`` and its result; its peak resident memory goes to
    ``PEAKS[peak]`` (the largest over calls), so the index and the baseline, run in one
    process, are measured apart: Linux resets the high-water mark on writing 5 to clear_refs."""
    Path("/proc/self/clear_refs").write_text("5")
    started = time.perf_counter()
    result = function()
    seconds = time.perf_counter() - started
    status = Path("/proc/self/status").read_text()
    kilobytes = int(status.split("VmHWM:")[1].split()[0])
    if peak:
        PEAKS[peak] = max(PEAKS.get(peak, 0), round(kilobytes / 1024))
    return seconds, result


def engine(
    index: PresenceIndex, figures: dict[str, object], name: str, cases: np.ndarray, cap: int
) -> HopResult:
    """Run the index's first hop uncapped and capped; record seconds, contacts, rows read."""
    seconds, hop = timed(lambda: index.first_hop(cases), "index")
    figures[f"index_{name}_seconds"] = round(seconds, 3)
    figures[f"index_{name}_contacts"] = len(hop.contacts)
    figures[f"index_{name}_rows_read"] = hop.rows_read
    seconds, capped = timed(lambda: index.first_hop(cases, crowd_cap=cap), "index")
    figures[f"index_{name}_capped_seconds"] = round(seconds, 3)
    figures[f"index_{name}_capped_contacts"] = len(capped.contacts)
    figures[f"index_{name}_capped_rows_read"] = capped.rows_read
    figures[f"index_{name}_capped_busy_place_hours"] = capped.busy_place_hours
    return hop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=60_000_000)
    parser.add_argument("--people", type=int, default=2_000_000)
    parser.add_argument("--places", type=int, default=500_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    parser.add_argument("--lake", type=Path, default=None, help="reuse a lake made earlier")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--crowd-cap", type=int, default=200, help="visits per place-hour")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="citybrain-bench-contacts-", dir=args.work))
    lake = args.lake or work / "presence"
    figures: dict[str, object] = {
        "benchmark": "contacts",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "records": args.records,
        "people": args.people,
        "places": args.places,
    }
    if args.lake is None:
        started = time.perf_counter()
        generate(lake, args.records, args.people, args.places, args.days, args.seed)
        figures["generate_seconds"] = round(time.perf_counter() - started, 1)
    figures["lake_megabytes"] = round(sum(p.stat().st_size for p in lake.rglob("*.parquet")) / 1e6)
    # The index: built once from the lake, timed and sized, opened once as a service would.
    # Built in a child process, so the peak memory below is the queries' (and the baseline's).
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        seconds, meta = timed(lambda: pool.apply(build_index, (lake, work / "index")))
    figures["index_build_peak_memory_megabytes"] = round(
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    )
    figures["index_build_seconds"] = round(seconds, 1)
    figures["index_megabytes"] = round(int(meta["bytes"]) / 1e6)  # type: ignore[call-overload]
    seconds, index = timed(lambda: PresenceIndex(work / "index"))
    figures["index_open_seconds"] = round(seconds, 3)
    figures["crowd_cap"] = args.crowd_cap
    con = duckdb.connect()
    con.execute(f"CREATE VIEW presence AS SELECT * FROM read_parquet('{lake}/**/*.parquet')")
    rng = np.random.default_rng(args.seed + 1)
    matches: dict[str, bool] = {}
    for count in (100, 1000):
        cases = rng.choice(args.people, count, replace=False)
        seconds, found = baseline(con, cases)
        figures[f"baseline_first_hop_{count}_cases_seconds"] = round(seconds, 2)
        figures[f"baseline_first_hop_{count}_cases_contacts"] = len(found)
        hop = engine(index, figures, f"first_hop_{count}_cases", cases, args.crowd_cap)
        matches[f"first_hop_{count}_cases"] = np.array_equal(hop.contacts, found)
    # Two hops from 10 cases: the first hop's contacts are the second hop's cases. The baseline's
    # second hop excludes only its own cases (the first hop), so the original cases are taken
    # out of it before comparing with the index, which excludes both.
    cases = rng.choice(args.people, 10, replace=False)
    first_seconds, hop1 = baseline(con, cases)
    second_seconds, hop2 = baseline(con, hop1)
    hop2 = np.setdiff1d(hop2, cases)
    figures["baseline_two_hops_10_cases_seconds"] = round(first_seconds + second_seconds, 2)
    figures["baseline_two_hops_10_cases_contacts"] = len(hop2)
    seconds, (first, second) = timed(lambda: index.two_hops(cases), "index")
    figures["index_two_hops_10_cases_seconds"] = round(seconds, 2)
    figures["index_two_hops_10_cases_first_hop_contacts"] = len(first.contacts)
    figures["index_two_hops_10_cases_contacts"] = len(second.contacts)
    figures["index_two_hops_10_cases_rows_read"] = first.rows_read + second.rows_read
    matches["two_hops_10_cases"] = np.array_equal(first.contacts, hop1) and np.array_equal(
        second.contacts, hop2
    )
    seconds, (first, second) = timed(
        lambda: index.two_hops(cases, crowd_cap=args.crowd_cap), "index"
    )
    figures["index_two_hops_10_cases_capped_seconds"] = round(seconds, 2)
    figures["index_two_hops_10_cases_capped_first_hop_contacts"] = len(first.contacts)
    figures["index_two_hops_10_cases_capped_contacts"] = len(second.contacts)
    figures["index_two_hops_10_cases_capped_rows_read"] = first.rows_read + second.rows_read
    figures["index_matches_baseline"] = matches
    for name in ("first_hop_100_cases", "first_hop_1000_cases", "two_hops_10_cases"):
        base = figures[f"baseline_{name}_seconds"]
        ours = figures[f"index_{name}_seconds"]
        figures[f"speedup_{name}"] = round(float(base) / max(float(ours), 1e-3), 1)  # type: ignore[arg-type]
    figures["index_query_peak_memory_megabytes"] = PEAKS.get("index")
    figures["baseline_peak_memory_megabytes"] = PEAKS.get("baseline")
    figures["peak_memory_megabytes"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    print(json.dumps(figures))
    con.close()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
