"""Staff logins while gates scan: does a write that waits between its reads and its writes
(Argon2, tens of milliseconds) still land when the scan batches commit every few
milliseconds?

    .venv/bin/python bench/bench_logins_under_scans.py [--backend sqlite|postgresql|both]
        [--seconds 30] [--connections 16] [--logins-per-second 2] [--workers 2]

The server, the city and the scans are ``bench_scans``'s: ``citybrain serve --workers N`` with
a ``citybrain worker`` beside it, ``wrk`` posting prepared scans with ``--connections``
keep-alive connections (below capacity: the gates' everyday load, not overload). Meanwhile
this process logs in as the benchmark's district officer (``POST /api/v1/auth/token``, the
password hashed with the production Argon2 profile) at ``--logins-per-second``, one at a time,
and counts the answers by status (``connection_error`` when the server dropped the connection)
with their latencies. Prints one JSON line last: per backend the scans' summary and the
logins' ``count``, ``statuses``, ``server_errors``, ``p50_ms``, ``p99_ms``, ``max_ms``; the
goal is every login answered 200.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scans import Phase, bench_work, served_city

USERNAME, PASSWORD = "bench", "bench-password-1"  # as bench_scans.prepare creates them


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def log_in_meanwhile(port: int, rate: float, running: threading.Event) -> dict[str, Any]:
    """Log in at ``rate`` a second while ``running`` is set; the answers by status and their
    latencies."""
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        while running.is_set():
            began = time.perf_counter()
            try:
                answer = client.post(
                    "/api/v1/auth/token", json={"username": USERNAME, "password": PASSWORD}
                )
                status = str(answer.status_code)
            except httpx.TransportError:
                status = "connection_error"  # the server dropped the connection: no answer
            took = time.perf_counter() - began
            latencies.append(took * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            time.sleep(max(0.0, 1 / rate - took))
    return {
        "count": len(latencies),
        "statuses": dict(sorted(statuses.items())),
        "server_errors": sum(n for s, n in statuses.items() if not s.isdigit() or int(s) >= 500),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else 0.0,
        "p99_ms": round(_percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies, default=0.0), 1),
    }


def run_backend(backend: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Prepare, serve, then scans and logins together."""
    with served_city(backend, args, work, "logins") as city:
        city.wrk("warm", args.connections, 3)
        scans: list[Phase] = []
        running = threading.Event()
        running.set()

        def scan() -> None:
            try:
                scans.append(city.wrk("scans", args.connections, args.seconds))
            finally:
                running.clear()

        gates = threading.Thread(target=scan)
        gates.start()
        time.sleep(1)  # the scans under way first
        logins = log_in_meanwhile(city.port, args.logins_per_second, running)
        gates.join()
    return {"scans": scans[0].summary(), "logins": logins}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--logins-per-second", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--persons", type=int, default=500)
    parser.add_argument("--queue-capacity", type=int, default=256)
    parser.add_argument("--server-log", default=None, help="append the server's output here")
    args = parser.parse_args()
    # As bench_scans runs the server: background work in a worker process beside it.
    args.background, args.worker_process = True, True
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    with bench_work("citybrain-bench-logins-") as work:
        results = {backend: run_backend(backend, args, work) for backend in backends}
    machine = f"{platform.machine()} {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    print(
        json.dumps(
            {
                "bench": "logins_under_scans",
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": machine,
                "seconds": args.seconds,
                "connections": args.connections,
                "logins_per_second": args.logins_per_second,
                "workers": args.workers,
                **results,
            }
        )
    )


if __name__ == "__main__":
    main()
