"""Contact-query benchmark: the presence index beside the naive baseline, on a presence lake of
--records records (default 60 million) with a realistic skew of place popularity.

    .venv/bin/python bench/bench_contacts.py [--records 60000000] [--repeats 3] [--lake DIR]
        [--index DIR]
    .venv/bin/python bench/bench_contacts.py --extrapolate 60M.json 200M.json [--to 600000000]

The generator writes Parquet parts partitioned by day, rows in arrival order (as intake leaves
them): person keys, a place drawn from a Zipf-like popularity (a few stations, malls and cell
towers see most visits), start and end times. People and places grow with the records (30 stays
a person and 120 a place over 30 days, as 60 million stays of 2 million people at 500,000
places), so a bigger lake is a bigger city, not a denser one.

The baseline is the query the issue names: a bucketed equality join of DuckDB over the unsorted
Parquet (the cases' own stays, expanded to the neighbouring hour buckets, joined on (place,
bucket), then the exact overlap filter) for 100 and 1,000 cases and two hops from 10 cases. The
index answers the same queries uncapped (checked equal to the baseline in the run) and with a
crowd cap. The build, each baseline run and each index run are separate processes, so every peak
resident memory is that work's own (``ru_maxrss`` of the process, and per query the kernel's
high-water mark reset before it); baseline and index runs alternate, back to back, --repeats
times, and the medians are reported. Prints one JSON line of figures.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from citybrain.analysis.presence_index import PresenceIndex, build_index

T = TypeVar("T")

DAY_SECONDS = 86_400
START = np.datetime64("2020-01-10T00:00:00", "s")
QUERIES = ("first_hop_100_cases", "first_hop_1000_cases", "two_hops_10_cases")


def generate(lake: Path, records: int, people: int, places: int, days: int, seed: int) -> None:
    """Write ``records`` presences over ``days`` days, one part per day."""
    rng = np.random.default_rng(seed)
    # Place popularity: Zipf-like weights (exponent 0.8), so at 500,000 places the busiest sees
    # about 1.4% of all visits and the top thousand about a third, as stations, malls and cell
    # towers do.
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


# The cases' visits expanded to the neighbouring hour buckets, and every visit's bucket. epoch()
# is a DOUBLE, on which // divides without flooring and the cast then rounds: the buckets are
# taken as integers so that an hour bucket is the hour, as the index has it.
SEED_AND_VISIT_BUCKETS = """
WITH seeds AS (
    SELECT DISTINCT place, start_time, end_time FROM presence WHERE person IN (SELECT * FROM cases)
), seed_buckets AS (
    SELECT place, start_time, end_time, b AS bucket FROM seeds,
        range(CAST(epoch(start_time) AS BIGINT) // 3600 - 1,
              CAST(epoch(end_time) AS BIGINT) // 3600 + 1) t(b)
), visits AS (
    SELECT person, place, start_time, end_time,
           CAST(epoch(start_time) AS BIGINT) // 3600 AS bucket FROM presence
)"""
OVERLAPPING = """
WHERE v.start_time < s.end_time AND s.start_time < v.end_time
  AND v.person NOT IN (SELECT * FROM cases)
"""
BASELINE = f"""{SEED_AND_VISIT_BUCKETS}
SELECT DISTINCT v.person FROM visits v JOIN seed_buckets s USING (place, bucket){OVERLAPPING}"""

# The same query with the crowd cap the contact rules apply: place-buckets with more than
# CAP stays starting in them are left out, as the index leaves them out. A naive engine must
# still scan every visit to count the crowds, so this is the baseline of the guarded query.
BASELINE_CAPPED = f"""{SEED_AND_VISIT_BUCKETS}, probed AS (
    SELECT v.* FROM visits v SEMI JOIN (SELECT DISTINCT place, bucket FROM seed_buckets) p
        USING (place, bucket)
), calm AS (
    SELECT place, bucket FROM probed GROUP BY place, bucket HAVING count(*) <= CAP
)
SELECT DISTINCT v.person FROM probed v JOIN calm USING (place, bucket)
JOIN seed_buckets s USING (place, bucket){OVERLAPPING}"""

CPU: dict[str, float] = {}
PEAK: dict[str, int] = {"max": 0}


def high_water() -> int:
    """The kernel's high-water mark of this process's resident memory (MB) since its reset."""
    status = Path("/proc/self/status").read_text()
    return round(int(status.split("VmHWM:")[1].split()[0]) / 1024)


def measured(function: Callable[[], T]) -> tuple[float, T, int]:
    """Seconds, result and peak resident memory (MB) of ``function``: the kernel's high-water
    mark is reset first (writing 5 to clear_refs), so it is this call's peak. The process's CPU
    seconds go to ``CPU["last"]``: on a machine shared with other work they vary less."""
    PEAK["max"] = max(PEAK["max"], high_water())  # what came before, which the reset forgets
    Path("/proc/self/clear_refs").write_text("5")
    started, cpu = time.perf_counter(), time.process_time()
    result = function()
    seconds = time.perf_counter() - started
    CPU["last"] = time.process_time() - cpu
    peak = high_water()
    PEAK["max"] = max(PEAK["max"], peak)
    return seconds, result, peak


def process_peak() -> int:
    """Peak resident memory (MB) of this process over its life (the reset also resets
    ``getrusage``'s maximum, so the high-water marks are kept here)."""
    return max(PEAK["max"], high_water())


def in_child(function: Callable[..., T], *args: object) -> T:
    """Run ``function(*args)`` in a fresh process, so its memory is measured alone."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def run_build(lake: Path, out: Path, memory_limit: str) -> dict[str, Any]:
    """Build the index (in a child): seconds, metadata and the process's peak memory."""
    seconds, meta, _ = measured(lambda: build_index(lake, out, memory_limit=memory_limit))
    return {"seconds": seconds, "meta": meta, "peak": process_peak()}


def run_baseline(
    lake: Path,
    cases: dict[str, list[int]],
    answers: Path,
    memory_limit: str,
    cap: int | None = None,
) -> dict[str, Any]:
    """The three baseline queries (in a child), uncapped or with the crowd ``cap``: seconds and
    peaks; contacts saved in ``answers`` for the index run to compare with."""
    sql = BASELINE if cap is None else BASELINE_CAPPED.replace("CAP", str(int(cap)))
    suffix = "" if cap is None else "_capped"
    con = duckdb.connect()
    # DuckDB takes 80% of the machine by default; the limit keeps it to the goal's budget
    # (it spills what does not fit).
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET enable_progress_bar = false")
    con.execute(f"CREATE VIEW presence AS SELECT * FROM read_parquet('{lake}/**/*.parquet')")

    def hop(persons: np.ndarray) -> np.ndarray:
        con.register("cases", pa.table({"person": pa.array(np.asarray(persons, np.int64))}))
        found = np.asarray(con.execute(sql).fetchnumpy()["person"], np.int64)
        con.unregister("cases")
        # DISTINCT already: sorted only (np.unique of this numpy hashes, far slower).
        return np.sort(found)

    def two(persons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # The baseline's second hop excludes only its own cases (the first hop), so the original
        # cases are taken out of it, as the index does.
        first = hop(persons)
        second = hop(first)
        return first, second[~np.isin(second, persons)]

    figures: dict[str, Any] = {}
    for name in QUERIES:
        persons = np.asarray(cases[name], np.int64)
        if name.startswith("two_hops"):
            seconds, (first, found), peak = measured(partial(two, persons))
            np.save(answers / f"{name}{suffix}_first.npy", first)
        else:
            seconds, found, peak = measured(partial(hop, persons))
        np.save(answers / f"{name}{suffix}.npy", found)
        figures[f"{name}{suffix}"] = {
            "seconds": seconds,
            "cpu_seconds": CPU["last"],
            "peak": peak,
            "contacts": len(found),
        }
    con.close()
    figures["process_peak"] = process_peak()
    return figures


def run_index(
    index_dir: Path, cases: dict[str, list[int]], answers: Path, cap: int
) -> dict[str, Any]:
    """The three queries on the index (in a child), uncapped (compared with the baseline's
    contacts) and capped: seconds, peaks, contacts, rows read. Each query runs twice: the
    figure is the first run, in a process that has not read those parts of the index yet; the
    second (``warm_seconds``) is what a service that keeps the index open sees."""
    seconds, index, _ = measured(lambda: PresenceIndex(index_dir))
    figures: dict[str, Any] = {"open_seconds": seconds}
    for name in QUERIES:
        persons = np.asarray(cases[name], np.int64)
        for capped in (False, True):
            limit = cap if capped else None
            if name.startswith("two_hops"):
                query: Callable[[], Any] = partial(index.two_hops, persons, crowd_cap=limit)
                seconds, (first, second), peak = measured(query)
                rows_read = first.rows_read + second.rows_read
                found, busy = second.contacts, first.busy_place_hours + second.busy_place_hours
                first_contacts: int | None = len(first.contacts)
                first_answer = answers / f"{name}{'_capped' if capped else ''}_first.npy"
                same = not first_answer.exists() or np.array_equal(
                    first.contacts, np.load(first_answer)
                )
            else:
                query = partial(index.first_hop, persons, crowd_cap=limit)
                seconds, result, peak = measured(query)
                found, rows_read, busy = result.contacts, result.rows_read, result.busy_place_hours
                first_contacts, same = None, True
            cpu = CPU["last"]
            warm, _, _ = measured(query)
            entry: dict[str, Any] = {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "warm_seconds": warm,
                "peak": peak,
                "contacts": len(found),
                "rows_read": rows_read,
                "busy_place_hours": busy,
            }
            if first_contacts is not None:
                entry["first_hop_contacts"] = first_contacts
            answer = answers / f"{name}{'_capped' if capped else ''}.npy"
            if answer.exists():
                entry["matches_baseline"] = bool(same and np.array_equal(found, np.load(answer)))
            figures[f"{name}{'_capped' if capped else ''}"] = entry
    figures["process_peak"] = process_peak()
    return figures


def summarise(runs: list[dict[str, Any]], key: str, prefix: str, figures: dict[str, Any]) -> None:
    """Medians of the times over the runs (and every run's seconds), the largest peak, and the
    rest as the first run had it (the same in every run)."""
    entries = [run[key] for run in runs]
    figures[f"{prefix}_seconds_runs"] = [round(e["seconds"], 3) for e in entries]
    for field, value in entries[0].items():
        if field.endswith("seconds"):
            figures[f"{prefix}_{field}"] = round(statistics.median(e[field] for e in entries), 3)
        elif field == "peak":
            figures[f"{prefix}_peak_rss_mb"] = max(e["peak"] for e in entries)
        else:
            figures[f"{prefix}_{field}"] = value


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """One scale: generate (or reuse) the lake, build, then alternate baseline and index."""
    records = args.records
    people = args.people or records // 30
    places = args.places or records // 120
    work = Path(tempfile.mkdtemp(prefix="citybrain-bench-contacts-", dir=args.work))
    lake = args.lake or work / "presence"
    figures: dict[str, Any] = {
        "benchmark": "contacts",
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "records": records,
        "people": people,
        "places": places,
        "crowd_cap": args.crowd_cap,
        "repeats": args.repeats,
        "baseline_duckdb_memory_limit": args.duckdb_memory,
    }
    try:
        if args.lake is None:
            started = time.perf_counter()
            generate(lake, records, people, places, args.days, args.seed)
            figures["generate_seconds"] = round(time.perf_counter() - started, 1)
        lake_bytes = sum(p.stat().st_size for p in lake.rglob("*.parquet"))
        index_dir = args.index or work / "index"
        if args.index is None:
            built = in_child(run_build, lake, index_dir, args.duckdb_memory)
            figures["index_build_seconds"] = round(built["seconds"], 1)
            figures["index_build_peak_rss_mb"] = built["peak"]
            meta = built["meta"]
        else:  # an index built earlier from this lake: its build was measured then
            meta = json.loads((index_dir / "meta.json").read_text())
        figures["lake_bytes"] = lake_bytes
        figures["index_bytes"] = meta["bytes"]
        figures["index_to_lake"] = round(meta["bytes"] / lake_bytes, 2)
        figures["index_rows"] = meta["rows"]
        rng = np.random.default_rng(args.seed + 1)
        cases = {
            name: sorted(rng.choice(people, count, replace=False).tolist())
            for name, count in zip(QUERIES, (100, 1000, 10), strict=True)
        }
        answers = work / "answers"
        answers.mkdir()
        caps = {"uncapped": [None], "capped": [args.crowd_cap], "both": [None, args.crowd_cap]}
        baseline_caps = caps[args.baseline]
        baseline_runs, index_runs = [], []
        for _ in range(args.repeats):
            run: dict[str, Any] = {"process_peak": 0}
            for cap in baseline_caps:  # each in its own process
                one = in_child(run_baseline, lake, cases, answers, args.duckdb_memory, cap)
                run["process_peak"] = max(run["process_peak"], one.pop("process_peak"))
                run.update(one)
            baseline_runs.append(run)
            index_runs.append(in_child(run_index, index_dir, cases, answers, args.crowd_cap))
        figures["index_open_seconds"] = round(
            statistics.median(r["open_seconds"] for r in index_runs), 3
        )
        for name in QUERIES:
            summarise(index_runs, name, f"index_{name}", figures)
            summarise(index_runs, f"{name}_capped", f"index_{name}_capped", figures)
            for suffix in ("", "_capped"):
                key = f"{name}{suffix}"
                if key not in baseline_runs[0]:
                    continue
                summarise(baseline_runs, key, f"baseline_{key}", figures)
                figures[f"index_{key}_matches_baseline"] = all(
                    r[key]["matches_baseline"] for r in index_runs
                )
                base = figures[f"baseline_{key}_seconds"]
                figures[f"speedup_{key}"] = round(
                    base / max(figures[f"index_{key}_seconds"], 1e-3), 1
                )
        figures["baseline_process_peak_rss_mb"] = max(r["process_peak"] for r in baseline_runs)
        figures["index_process_peak_rss_mb"] = max(r["process_peak"] for r in index_runs)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return figures


def extrapolate(small: dict[str, Any], large: dict[str, Any], records: int) -> dict[str, Any]:
    """Figures at ``records`` from two measured scales: bytes and build time on the line through
    the two points (linear in records); query times and peaks grown as measured between them
    (t = t_large * (records / large) ** a, a = log(t_large / t_small) / log(large / small))."""
    n0, n1 = small["records"], large["records"]
    out: dict[str, Any] = {"benchmark": "contacts", "extrapolated_to": records, "from": [n0, n1]}
    for key in ("lake_bytes", "index_bytes", "index_build_seconds", "generate_seconds"):
        if key in small and key in large:
            slope = (large[key] - small[key]) / (n1 - n0)
            out[key] = round(large[key] + slope * (records - n1), 1)
    for key, value in large.items():
        measured_value = small.get(key)
        if not (key.endswith("_seconds") or key.endswith("_peak_rss_mb")) or key in out:
            continue
        if not isinstance(value, int | float) or not isinstance(measured_value, int | float):
            continue
        if value <= 0 or measured_value <= 0:
            continue
        exponent = math.log(value / measured_value) / math.log(n1 / n0)
        out[key] = round(value * (records / n1) ** exponent, 3)
        out[f"{key}_growth_exponent"] = round(exponent, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=60_000_000)
    parser.add_argument("--people", type=int, default=None, help="default: records / 30")
    parser.add_argument("--places", type=int, default=None, help="default: records / 120")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    parser.add_argument("--lake", type=Path, default=None, help="reuse a lake made earlier")
    parser.add_argument(
        "--index", type=Path, default=None, help="reuse an index built earlier from --lake"
    )
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--crowd-cap", type=int, default=200, help="stays per place-hour")
    parser.add_argument(
        "--baseline",
        choices=("uncapped", "capped", "both"),
        default="both",
        help="which baseline queries to run: without the crowd cap, with it, or both",
    )
    parser.add_argument("--duckdb-memory", default="2GB", help="DuckDB memory_limit")
    parser.add_argument("--extrapolate", type=Path, nargs=2, default=None, metavar="JSON")
    parser.add_argument("--to", type=int, default=600_000_000, help="records to extrapolate to")
    args = parser.parse_args()
    if args.extrapolate:
        small, large = (
            json.loads(p.read_text().strip().splitlines()[-1]) for p in args.extrapolate
        )
        print(json.dumps(extrapolate(small, large, args.to)))
        return
    print(json.dumps(bench(args)))


if __name__ == "__main__":
    main()
