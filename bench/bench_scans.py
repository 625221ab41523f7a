"""Gate-scan benchmark: scans per second and p50/p99 latency of ``POST /api/v1/scans`` under
load, beside the trivial ``/healthz`` of the same server measured in the same run, on SQLite
and PostgreSQL; then an overload phase that must answer 429 with Retry-After (never 5xx) and
lose no recorded scan (database rows = 200 answers). Prints one JSON line.

    .venv/bin/python bench/bench_scans.py [--backend sqlite|postgresql|both] [--seconds 10]
        [--connections 32] [--overload-connections 400] [--persons 300]

The server is the real app (``citybrain serve``: uvicorn with uvloop and httptools, one
process, jobs and event delivery inside) in a subprocess. The load generator is a small
asyncio client on raw keep-alive HTTP/1.1 connections (uvloop), not locust: locust is not
installed here, and in Python its per-request cost (gevent, requests) is several times the
server's own, so on a 2-core machine it would measure the generator, not the server. Each
connection sends a request, waits for the answer and sends the next (closed loop), so the
latency is the server's whole answer time, queueing included. ``wrk`` would do the same in C;
this client needs nothing outside the project.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PG_ADMIN_URL = os.environ.get(
    "CITYBRAIN_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
GOAL_RPS = 2000
GOAL_P99_MS = 50.0


# -- the server (a subprocess) ----------------------------------------------------------------


def serve(url: str, port: int, background: bool = True) -> None:
    """Run the app on ``port`` (the subprocess's entry point)."""
    import uvicorn

    from citybrain.kit.db import Database, set_database
    from citybrain.web.app import create_app

    database = Database(url, pool_size=8, max_overflow=8) if "postgresql" in url else Database(url)
    set_database(database)
    uvicorn.run(
        create_app(database, background=background),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
    )


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the city: persons, codes, gates, device tokens -----------------------------------------


@dataclass
class Setup:
    requests: list[bytes]
    persons: int
    red: int
    gates: int


def prepare(url: str, persons: int) -> Setup:
    """Schema, hierarchy, persons (a tenth of them confirmed cases), long-lived codes, device
    tokens for gates and venues; the scan requests as ready bytes."""
    import datetime as dt

    from sqlalchemy import select

    from citybrain import schema
    from citybrain.core.audit.service import SYSTEM
    from citybrain.core.authz.service import create_user, issue_token, principal_for
    from citybrain.core.geo.models import PLACE_COMPOUND_GATE, PLACE_VENUE, Compound, Place
    from citybrain.core.geo.service import load_hierarchy
    from citybrain.core.people.models import Person
    from citybrain.core.people.schemas import PersonIn
    from citybrain.core.people.service import register_person
    from citybrain.healthcode.codes import issue_code
    from citybrain.kit.db import Database
    from citybrain.risk.service import assert_fact
    from citybrain.simulate.persons import generate_persons

    database = Database(url)
    schema.metadata.drop_all(database.engine)
    schema.metadata.create_all(database.engine)
    with database.unit_of_work() as session:
        load_hierarchy(session)
    with database.unit_of_work() as session:
        user = create_user(
            session,
            SYSTEM,
            username="bench",
            password="bench-password-1",
            role="district_officer",
            area_code="410105",
        )
        officer = principal_for(user)
        compounds = list(
            session.scalars(
                select(Compound.code)
                .where(Compound.code.startswith("410105"))
                .order_by(Compound.code)
            )
        )[:20]
    people = list(generate_persons(persons, seed=7))
    refs: list[str] = []
    with database.unit_of_work() as session:
        for i, person in enumerate(people):
            masked, _ = register_person(
                session,
                officer,
                PersonIn(
                    name=person.name,
                    id_number=person.id_number,
                    phone=person.phone,
                    compound_code=compounds[i % len(compounds)],
                ),
            )
            refs.append(masked.ref)
    red = 0
    with database.unit_of_work() as session:
        for ref in refs[::10]:
            person_row = session.scalar(select(Person).where(Person.ref == ref))
            assert person_row is not None
            assert_fact(
                session,
                SYSTEM,
                subject=person_row.id_number_bidx[:32],
                kind="confirmed_case",
                source="bench",
                evidence={"bench": 1},
                valid_from=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
            )
            red += 1
    with database.unit_of_work() as session:
        places = list(
            session.scalars(
                select(Place).where(
                    Place.compound_code.in_(compounds), Place.kind == PLACE_COMPOUND_GATE
                )
            )
        )
        places += list(
            session.scalars(
                select(Place)
                .where(Place.kind == PLACE_VENUE, Place.area_code.startswith("410105"))
                .limit(10)
            )
        )
        tokens = [
            issue_token(session, SYSTEM, name=f"bench-{p.code}", device_place_code=p.code)[1]
            for p in places
        ]
        codes = [
            issue_code(session, ref, "green", validity=dt.timedelta(hours=3)).text for ref in refs
        ]
    database.dispose()
    requests = []
    for i, code in enumerate(codes * 3):
        body = json.dumps({"code": code, "direction": "exit" if i % 4 == 0 else "entry"}).encode()
        token = tokens[i % len(tokens)]
        requests.append(
            b"POST /api/v1/scans HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
    return Setup(requests, persons, red, len(places))


# -- the load generator -----------------------------------------------------------------------


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    retry_after_missing: int = 0
    seconds: float = 0.0
    errors: int = 0
    server_cpu: float = 0.0  # CPU seconds the server process used during the phase

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        done = len(lat)

        def pct(q: float) -> float:
            return round(lat[min(done - 1, int(q * done))] * 1000, 2) if done else 0.0

        ok = self.statuses.get(200, 0)
        return {
            "requests": done,
            "per_second": round(done / self.seconds) if self.seconds else 0,
            "ok_per_second": round(ok / self.seconds) if self.seconds else 0,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "server_errors": sum(v for k, v in self.statuses.items() if k >= 500),
            "retry_after_missing": self.retry_after_missing,
            "connection_errors": self.errors,
            # Wall-clock rates depend on what else runs on the machine; the server's CPU time
            # per request does not (much): the fairer comparison on a shared machine.
            "server_cpu_ms_per_request": round(self.server_cpu * 1000 / done, 3) if done else 0,
        }


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    status_line = await reader.readline()
    status = int(status_line.split(b" ", 2)[1])
    length, retry_after = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value.strip())
        elif lowered == b"retry-after":
            retry_after = bool(value.strip())
    if length:
        await reader.readexactly(length)
    return status, retry_after


async def _connection(
    port: int, requests: list[bytes], start: int, deadline: float, phase: Phase
) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        phase.errors += 1
        return
    i = start
    try:
        while time.perf_counter() < deadline:
            request = requests[i % len(requests)]
            i += 7
            began = time.perf_counter()
            writer.write(request)
            status, retry_after = await _read_answer(reader)
            phase.latencies.append(time.perf_counter() - began)
            phase.statuses[status] += 1
            if status == 429 and not retry_after:
                phase.retry_after_missing += 1
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
        phase.errors += 1
    finally:
        writer.close()


async def _run_phase(port: int, requests: list[bytes], connections: int, seconds: float) -> Phase:
    phase = Phase()
    began = time.perf_counter()
    deadline = began + seconds
    await asyncio.gather(
        *(_connection(port, requests, n * 13, deadline, phase) for n in range(connections))
    )
    phase.seconds = time.perf_counter() - began
    return phase


def load(
    port: int, requests: list[bytes], connections: int, seconds: float, server_pid: int
) -> Phase:
    """Run ``connections`` closed-loop connections for ``seconds``."""
    cpu_before = _cpu_seconds(server_pid)
    try:
        import uvloop

        phase = uvloop.run(_run_phase(port, requests, connections, seconds))
    except ImportError:
        phase = asyncio.run(_run_phase(port, requests, connections, seconds))
    phase.server_cpu = _cpu_seconds(server_pid) - cpu_before
    return phase


# -- one backend ------------------------------------------------------------------------------


def _count_scans(url: str) -> int:
    from sqlalchemy import func, select

    from citybrain.healthcode.models import Scan
    from citybrain.kit.db import Database

    database = Database(url)
    try:
        with database.unit_of_work() as session:
            return int(session.scalar(select(func.count()).select_from(Scan)) or 0)
    finally:
        database.dispose()


def _new_pg_url() -> tuple[str, str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"cbbench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False), name


def _drop_pg(name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def run_backend(backend: str, args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    """Prepare, serve, load, overload, count."""
    pg_name = None
    if backend == "postgresql":
        url, pg_name = _new_pg_url()
    else:
        url = f"sqlite:///{data_dir}/bench-scans.db"
    try:
        started = time.perf_counter()
        setup = prepare(url, args.persons)
        setup_seconds = time.perf_counter() - started
        port = _free_port()
        env = dict(os.environ)
        env["CITYBRAIN_HEALTHCODE_QUEUE_CAPACITY"] = str(args.queue_capacity)
        log = open(args.server_log, "ab") if args.server_log else subprocess.DEVNULL  # noqa: SIM115
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", url, "--port", str(port)]
            + ([] if args.background else ["--no-background"]),
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("the server did not start") from None
                    time.sleep(0.2)
            healthz = [b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n"]
            pid = server.pid
            warm = load(port, setup.requests, 4, 1.0, pid)  # trust list, tokens, pools warm
            trivial = load(port, healthz, args.connections, args.seconds, pid)
            scans = load(port, setup.requests, args.connections, args.seconds, pid)
            overload = load(port, setup.requests, args.overload_connections, args.seconds, pid)
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        recorded = _count_scans(url)
    finally:
        if pg_name:
            _drop_pg(pg_name)
    answered = sum(p.statuses.get(200, 0) for p in (warm, scans, overload))
    out_scans, out_trivial = scans.summary(), trivial.summary()
    ratio = (
        out_scans["ok_per_second"] / out_trivial["per_second"] if out_trivial["per_second"] else 0
    )
    return {
        "setup_seconds": round(setup_seconds, 1),
        "healthz": out_trivial,
        "scans": out_scans,
        "overload": overload.summary(),
        "scans_vs_healthz": round(ratio, 3),
        "answered_200": answered,
        "recorded_rows": recorded,
        "lost": max(0, answered - recorded),
        "goal_met": bool(
            out_scans["ok_per_second"] >= GOAL_RPS
            and out_scans["p99_ms"] < GOAL_P99_MS
            and ratio >= 0.5
        ),
        "overload_ok": bool(
            overload.summary()["server_errors"] == 0
            and overload.retry_after_missing == 0
            and answered <= recorded
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--overload-connections", type=int, default=400)
    parser.add_argument("--queue-capacity", type=int, default=256)
    parser.add_argument("--persons", type=int, default=300)
    parser.add_argument("--server-log", default=None, help="append the server's output here")
    parser.add_argument(
        "--background",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="jobs and event delivery inside the server (the embedded default of citybrain "
        "serve); --no-background measures the server alone, as with a separate worker",
    )
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.background)
        return

    data_dir = Path(tempfile.mkdtemp(prefix="citybrain-bench-scans-"))
    os.environ["CITYBRAIN_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("CITYBRAIN_ENV", "dev")
    os.environ.setdefault("CITYBRAIN_LOG_LEVEL", "WARNING")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = {backend: run_backend(backend, args, data_dir) for backend in backends}
    machine = f"{platform.machine()} {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    print(
        json.dumps(
            {
                "bench": "scans",
                "machine": machine,
                "seconds": args.seconds,
                "connections": args.connections,
                "overload_connections": args.overload_connections,
                "queue_capacity": args.queue_capacity,
                "persons": args.persons,
                "background": args.background,
                **results,
            }
        )
    )


if __name__ == "__main__":
    main()
