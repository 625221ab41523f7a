"""Simulation benchmark: generate a tenth of the city (1.26 million people, 30 days) with its
feeds and truth, and extrapolate the time for the full city (12.6 million people, 30 days).
Prints one JSON line of figures.

    .venv/bin/python bench/bench_simulate.py [--people 1260000] [--days 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

FULL_CITY = 12_600_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=FULL_CITY // 10)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    from citybrain.cli import geo_input
    from citybrain.simulate.config import SimulationConfig
    from citybrain.simulate.run import run_simulation

    work = Path(tempfile.mkdtemp(prefix="citybrain-bench-sim-"))
    geo = geo_input()
    started = time.perf_counter()
    summary = run_simulation(
        SimulationConfig(people=args.people, days=args.days, seed=args.seed),
        geo,
        work / "feeds",
        work / "truth",
    )
    seconds = time.perf_counter() - started
    feed_bytes = sum(p.stat().st_size for p in (work / "feeds").rglob("*") if p.is_file())
    scale = FULL_CITY / args.people
    figures = {
        "benchmark": "simulate",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "people": summary.people,
        "days": summary.days,
        "people_days": summary.people_days,
        "records": summary.records,
        "files": summary.files,
        "seconds": round(seconds, 1),
        "people_days_per_second": round(summary.people_days / seconds),
        "records_per_second": round(summary.records / seconds),
        "feed_gigabytes": round(feed_bytes / 1e9, 2),
        "full_city_records_estimate": round(summary.records * scale),
        "full_city_minutes_estimate": round(seconds * scale / 60, 1),
    }
    print(json.dumps(figures, ensure_ascii=False))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
