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
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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


BASELINE = """
WITH seeds AS (
    SELECT DISTINCT place, start_time, end_time FROM presence WHERE person IN (SELECT * FROM cases)
), seed_buckets AS (
    SELECT place, start_time, end_time, b AS bucket FROM seeds,
        range(CAST(epoch(start_time) // 3600 AS BIGINT) - 1,
              CAST(epoch(end_time) // 3600 AS BIGINT) + 1) t(b)
), visits AS (
    SELECT person, place, start_time, end_time,
           CAST(epoch(start_time) // 3600 AS BIGINT) AS bucket FROM presence
)
SELECT DISTINCT v.person FROM visits v JOIN seed_buckets s USING (place, bucket)
WHERE v.start_time < s.end_time AND s.start_time < v.end_time
  AND v.person NOT IN (SELECT * FROM cases)
"""


def baseline(con: duckdb.DuckDBPyConnection, cases: np.ndarray) -> tuple[float, int]:
    """Seconds and contacts of the naive first hop for ``cases``."""
    con.register("cases", pa.table({"person": pa.array(cases)}))
    started = time.perf_counter()
    found = con.execute(BASELINE).fetchnumpy()["person"]
    seconds = time.perf_counter() - started
    con.unregister("cases")
    return seconds, len(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=60_000_000)
    parser.add_argument("--people", type=int, default=2_000_000)
    parser.add_argument("--places", type=int, default=500_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--lake", type=Path, default=None, help="reuse a lake made earlier")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="citybrain-bench-contacts-"))
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
    con = duckdb.connect()
    con.execute(f"CREATE VIEW presence AS SELECT * FROM read_parquet('{lake}/**/*.parquet')")
    rng = np.random.default_rng(args.seed + 1)
    for count in (100, 1000):
        seconds, contacts = baseline(con, rng.choice(args.people, count, replace=False))
        figures[f"baseline_first_hop_{count}_cases_seconds"] = round(seconds, 2)
        figures[f"baseline_first_hop_{count}_cases_contacts"] = contacts
    # Two hops from 10 cases: the first hop's contacts are the second hop's cases.
    cases = rng.choice(args.people, 10, replace=False)
    first_seconds, _ = baseline(con, cases)
    con.register("cases", pa.table({"person": pa.array(cases)}))
    hop = con.execute(BASELINE).fetchnumpy()["person"]
    con.unregister("cases")
    second_seconds, second = baseline(con, np.asarray(hop))
    figures["baseline_two_hops_10_cases_seconds"] = round(first_seconds + second_seconds, 2)
    figures["baseline_two_hops_10_cases_contacts"] = second
    figures["peak_memory_megabytes"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    print(json.dumps(figures))
    con.close()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
