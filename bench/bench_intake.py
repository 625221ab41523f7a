"""Intake benchmark: simulate mixed feeds of at least --records records (default 10 million),
then take them into a fresh lake and time it. Prints one JSON line of figures.

    .venv/bin/python bench/bench_intake.py [--records 10000000] [--feeds DIR] [--workers N]

With --feeds it reuses a folder of feeds made earlier (by this script or `citybrain simulate`).
The simulated people needed for the record count are estimated from a small pilot run.
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


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }


def simulate(out: Path, people: int, days: int, seed: int) -> dict[str, object]:
    """Write feeds for ``people`` × ``days``; return the simulator's summary."""
    from citybrain.cli import geo_input
    from citybrain.simulate.config import SimulationConfig
    from citybrain.simulate.run import run_simulation

    config = SimulationConfig(people=people, days=days, seed=seed)
    summary = run_simulation(config, geo_input(), out, out.parent / "truth", overwrite=True)
    return summary.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--feeds", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--keep", action="store_true", help="keep the feeds and the lake")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="citybrain-bench-intake-"))
    os.environ["CITYBRAIN_DATA_DIR"] = str(work / "var")
    os.environ.setdefault("CITYBRAIN_ENV", "dev")
    figures: dict[str, object] = {"benchmark": "intake", **machine()}
    feeds = args.feeds
    if feeds is None:
        pilot = simulate(work / "pilot" / "feeds", 20_000, args.days, args.seed)
        per_person = int(pilot["records"]) / 20_000  # type: ignore[call-overload]
        people = int(args.records / per_person * 1.02) + 1
        feeds = work / "feeds"
        sim = simulate(feeds, people, args.days, args.seed)
        figures.update(
            simulated_people=people,
            simulated_records=sim["records"],
            simulation_seconds=sim["seconds"],
        )
        shutil.rmtree(work / "pilot", ignore_errors=True)

    from citybrain import schema
    from citybrain.datahub.service import Intake
    from citybrain.kit.db import Database

    database = Database(f"sqlite:///{work / 'var' / 'citybrain.db'}")
    schema.metadata.create_all(database.engine)
    intake = Intake()
    started = time.perf_counter()
    summary = intake.ingest_folder(database, feeds, workers=args.workers)
    seconds = time.perf_counter() - started
    lake_bytes = sum(p.stat().st_size for p in (work / "var" / "lake").rglob("*.parquet"))
    feed_bytes = sum(p.stat().st_size for p in feeds.rglob("*") if p.is_file())
    figures.update(
        files=summary.files,
        received=summary.received,
        accepted=summary.accepted,
        quarantined=summary.quarantined,
        duplicate=summary.duplicate,
        reconciled=summary.reconciles,
        seconds=round(seconds, 2),
        records_per_second=round(summary.received / seconds),
        feed_megabytes=round(feed_bytes / 1e6),
        lake_megabytes=round(lake_bytes / 1e6),
        workers=args.workers if args.workers is not None else os.cpu_count(),
    )
    print(json.dumps(figures, ensure_ascii=False))
    database.dispose()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
