"""Gate-scan benchmark: scans per second and p50/p99 latency of ``POST /api/v1/scans`` under
load, beside the trivial ``/healthz`` of the same server measured in the same run, on SQLite
and PostgreSQL; then an overload phase that must answer 429 with Retry-After (never 5xx) and
lose no recorded scan (database rows >= 200 answers). Prints one JSON line.

    .venv/bin/python bench/bench_scans.py [--backend sqlite|postgresql|both] [--seconds 10]
        [--connections 32] [--overload-connections 1000] [--workers 2] [--persons 1000]
        [--repeats 1]

The server is the real one, as ``citybrain serve --workers N`` runs it: uvicorn (uvloop,
httptools) in N processes on one port, jobs and event delivery inside one of them, the whole
middleware stack in front of both endpoints. The load generator is ``wrk`` (C, one thread,
keep-alive connections; Debian package ``wrk``, see scripts/system-deps.sh) with a Lua script
that sends the prepared scans round-robin and counts the answers by status: each connection
sends a request, waits for the answer and sends the next (closed loop), so the latency is the
server's whole answer time, queueing included. A load generator written in Python would cost
as much CPU per request as the server on this two-core machine; ``wrk``'s own CPU time is
measured and reported, as are the server's, PostgreSQL's and the whole machine's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PG_ADMIN_URL = os.environ.get(
    "CITYBRAIN_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
GOAL_RPS = 2000
GOAL_P99_MS = 50.0
GOAL_RATIO = 0.5
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- CPU accounting (from /proc) --------------------------------------------------------------


def _stat_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return out


def _tree(pid: int) -> list[int]:
    """A process and its descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(_children(current))
    return found


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


@dataclass
class CpuSnapshot:
    server: dict[int, float]
    postgres: dict[int, float]
    machine: tuple[float, float]

    @classmethod
    def take(cls, server_pids: list[int]) -> CpuSnapshot:
        return cls(
            {pid: _stat_cpu(pid) for root in server_pids for pid in _tree(root)},
            {pid: _stat_cpu(pid) for pid in _postgres_pids()},
            _machine_cpu(),
        )

    def since(self, before: CpuSnapshot) -> dict[str, float]:
        def delta(now: dict[int, float], then: dict[int, float]) -> float:
            return sum(v - then.get(pid, 0.0) for pid, v in now.items())

        return {
            "server": delta(self.server, before.server),
            "postgres": delta(self.postgres, before.postgres),
            "machine_busy": self.machine[0] - before.machine[0],
            "machine_total": self.machine[1] - before.machine[1],
        }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the city: persons, codes, gates, device tokens -----------------------------------------


@dataclass
class Setup:
    requests: list[tuple[str, str]]  # (device token, JSON body)
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
    # The setup's own events (registrations, facts) are delivered now, as a running city's
    # would have been long ago, so the measurement is the scans' work alone.
    from citybrain.core.events.dispatcher import deliver_pending
    from citybrain.core.jobs.worker import import_task_modules

    import_task_modules()
    while deliver_pending(database, limit=500).events:
        pass
    database.dispose()
    # Each person's code at three gates or venues; a quarter of the scans are exits.
    requests = []
    for i, code in enumerate(codes * 3):
        body = json.dumps({"code": code, "direction": "exit" if i % 4 == 0 else "entry"})
        requests.append((tokens[i % len(tokens)], body))
    return Setup(requests, persons, red, len(places))


# -- the load generator: wrk and its script ------------------------------------------------

WRK_SCRIPT = r"""
-- citybrain bench_scans: round-robin requests, answers counted by status.
local reqs = {}
local idx = 0
-- Globals: the main thread reads them from each thread's own Lua state in done().
counts = {}
retry_missing = 0
threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  if args[2] == "healthz" then
    reqs[1] = wrk.format("GET", "/healthz")
  else
    for line in io.lines(args[1]) do
      local token, body = line:match("^([^\t]+)\t(.*)$")
      reqs[#reqs + 1] = wrk.format("POST", "/api/v1/scans", {
        ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer " .. token,
      }, body)
    end
  end
  idx = math.random(#reqs)
end

function request()
  idx = idx % #reqs + 1
  return reqs[idx]
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  if status == 429 and headers["retry-after"] == nil and headers["Retry-After"] == nil then
    retry_missing = retry_missing + 1
  end
end

function done(summary, latency, requests)
  local statuses, missing = {}, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do
      statuses[status] = (statuses[status] or 0) + n
    end
    missing = missing + thread:get("retry_missing")
  end
  local parts = {}
  for status, n in pairs(statuses) do
    parts[#parts + 1] = string.format('"%d": %d', status, n)
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "statuses": {%s}, "retry_after_missing": %d, "socket_errors": ' ..
    '{"connect": %d, "read": %d, "write": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, table.concat(parts, ", "), missing,
    e.connect, e.read, e.write, e.timeout))
end
"""


@dataclass
class Phase:
    """One wrk run against the server, with the CPU everyone used meanwhile."""

    name: str
    connections: int
    wrk: dict[str, Any]
    cpu: dict[str, float]
    wrk_cpu: float

    @property
    def ok(self) -> int:
        return int(self.wrk["statuses"].get("200", 0))

    def summary(self) -> dict[str, Any]:
        seconds = self.wrk["duration_us"] / 1e6
        done = self.wrk["requests"]
        statuses = {k: v for k, v in sorted(self.wrk["statuses"].items())}
        busy, total = self.cpu["machine_busy"], self.cpu["machine_total"]
        return {
            "connections": self.connections,
            "requests": done,
            "per_second": round(done / seconds) if seconds else 0,
            "ok_per_second": round(self.ok / seconds) if seconds else 0,
            "p50_ms": round(self.wrk["p50_us"] / 1000, 2),
            "p90_ms": round(self.wrk["p90_us"] / 1000, 2),
            "p99_ms": round(self.wrk["p99_us"] / 1000, 2),
            "max_ms": round(self.wrk["max_us"] / 1000, 1),
            "statuses": statuses,
            "server_errors": sum(v for k, v in statuses.items() if int(k) >= 500),
            "retry_after_missing": self.wrk["retry_after_missing"],
            "socket_errors": self.wrk["socket_errors"],
            # CPU seconds per second of the phase (2.0 = both cores), and per request: the
            # server's processes, PostgreSQL's, the load generator's, and the machine's.
            "cpu_cores": {
                "server": round(self.cpu["server"] / seconds, 2),
                "postgres": round(self.cpu["postgres"] / seconds, 2),
                "wrk": round(self.wrk_cpu / seconds, 2),
                "machine": round(busy / seconds, 2),
                "machine_busy_share": round(busy / total, 3) if total else 0.0,
            },
            "server_cpu_ms_per_request": round(self.cpu["server"] * 1000 / done, 3) if done else 0,
            "wrk_cpu_ms_per_request": round(self.wrk_cpu * 1000 / done, 3) if done else 0,
        }


def run_wrk(
    name: str,
    port: int,
    script: Path,
    requests_file: Path,
    connections: int,
    seconds: float,
    server_pids: list[int],
) -> Phase:
    """Run wrk (one thread, ``connections`` keep-alive connections) for ``seconds``."""
    kind = "healthz" if name == "healthz" else "scans"
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}",
        "--",
        str(requests_file),
        kind,
    ]
    before = CpuSnapshot.take(server_pids)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    output = process.stdout.read().decode()
    errors = process.stderr.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    cpu = CpuSnapshot.take(server_pids).since(before)
    line = next((x for x in output.splitlines() if x.startswith("WRKJSON ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({process.returncode}): {errors.strip()} {output[-500:]}")
    return Phase(name, connections, json.loads(line[8:]), cpu, usage.ru_utime + usage.ru_stime)


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


def _start_server(
    url: str, port: int, args: argparse.Namespace, data_dir: Path, jobs_url: str
) -> list[subprocess.Popen[bytes]]:
    """``citybrain serve --workers N`` on ``port`` (and, with ``--worker-process``, a
    ``citybrain worker`` for jobs and event delivery); returns once /healthz answers. Each
    run has a job queue of its own: a lake export a previous run scheduled does not run in
    this one's measurement."""
    env = dict(os.environ)
    env.update(
        {
            "CITYBRAIN_DATABASE_URL": url,
            "CITYBRAIN_JOBS_URL": jobs_url,
            "CITYBRAIN_DATA_DIR": str(data_dir),
            "CITYBRAIN_HEALTHCODE_QUEUE_CAPACITY": str(args.queue_capacity),
        }
    )
    citybrain = str(Path(sys.executable).parent / "citybrain")
    embedded = args.background and not args.worker_process
    command = [citybrain, "serve", "--port", str(port), "--workers", str(args.workers)]
    command.append("--background" if embedded else "--no-background")
    log = open(args.server_log, "ab") if args.server_log else subprocess.DEVNULL  # noqa: SIM115
    processes = [subprocess.Popen(command, env=env, stdout=log, stderr=log)]
    if args.background and args.worker_process:
        processes.append(subprocess.Popen([citybrain, "worker"], env=env, stdout=log, stderr=log))
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return processes
        except OSError:
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            for process in processes:
                process.kill()
            raise RuntimeError("the server did not start")
        time.sleep(0.3)


def _stop_server(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class ServedCity:
    """A city prepared in a database of its own and served: what the load generator needs."""

    url: str
    port: int
    script: Path
    requests_file: Path
    setup: Setup
    setup_seconds: float
    processes: list[subprocess.Popen[bytes]]
    pids: list[int]

    def wrk(self, name: str, connections: int, seconds: float) -> Phase:
        """A phase of ``wrk`` against the server (see ``run_wrk``)."""
        return run_wrk(
            name, self.port, self.script, self.requests_file, connections, seconds, self.pids
        )

    def stop(self) -> None:
        """Stop the server (again: nothing)."""
        if self.processes:
            _stop_server(self.processes)
            self.processes = []


@contextlib.contextmanager
def served_city(
    backend: str, args: argparse.Namespace, work: Path, name: str
) -> Iterator[ServedCity]:
    """A fresh database of ``backend`` (on PostgreSQL one of its own, dropped at the end), the
    city prepared in it, the scans written for ``wrk``, and the server started on it; stopped
    at the end, or before by ``ServedCity.stop``. Each run has a job queue of its own."""
    # One data directory (keys, lake) for the whole benchmark: settings are read once.
    data_dir = Path(os.environ["CITYBRAIN_DATA_DIR"])
    run = uuid.uuid4().hex[:8]
    pg_name = None
    if backend == "postgresql":
        url, pg_name = _new_pg_url()
    else:
        url = f"sqlite:///{work}/bench-{name}-{run}.db"
    try:
        started = time.perf_counter()
        setup = prepare(url, args.persons)
        setup_seconds = time.perf_counter() - started
        requests_file = work / f"scans-{run}.txt"
        requests_file.write_text("".join(f"{t}\t{b}\n" for t, b in setup.requests))
        script = work / "scans.lua"
        script.write_text(WRK_SCRIPT)
        port = _free_port()
        server = _start_server(url, port, args, data_dir, f"sqlite:///{work}/jobs-{run}.db")
        city = ServedCity(
            url,
            port,
            script,
            requests_file,
            setup,
            setup_seconds,
            server,
            [process.pid for process in server],
        )
        try:
            yield city
        finally:
            city.stop()
    finally:
        if pg_name:
            _drop_pg(pg_name)


@contextlib.contextmanager
def bench_work(prefix: str) -> Iterator[Path]:
    """A work directory for a benchmark, removed at the end: the data directory (keys, lake)
    inside it set in the environment, a development process (``CITYBRAIN_ENV``), and only
    warnings logged, as JSON on stderr, so stdout holds the result. Exits when ``wrk`` is not
    installed."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk; see scripts/system-deps.sh)")
    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["CITYBRAIN_DATA_DIR"] = str(work / "data")
    os.environ.setdefault("CITYBRAIN_ENV", "dev")
    os.environ.setdefault("CITYBRAIN_LOG_LEVEL", "WARNING")
    from citybrain.kit.logging import configure_logging

    configure_logging(os.environ["CITYBRAIN_LOG_LEVEL"], json_lines=True)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_backend(backend: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Prepare, serve, warm up, measure the trivial endpoint, scans, overload; count rows."""
    with served_city(backend, args, work, "scans") as city:
        phases: dict[str, Phase] = {}

        def phase(name: str, connections: int, seconds: float) -> Phase:
            phases[name] = city.wrk(name, connections, seconds)
            return phases[name]

        # Caches (tokens, trust list, places) and pools warm in every server process.
        phase("warm", args.connections, 3)
        time.sleep(1)
        trivial = phase("healthz", args.connections, args.healthz_seconds)
        time.sleep(1)
        scans = phase("scans", args.connections, args.seconds)
        time.sleep(2)
        overload = phase("overload", args.overload_connections, args.overload_seconds)
        city.stop()
        recorded = _count_scans(city.url)
    setup, setup_seconds = city.setup, city.setup_seconds
    answered = sum(p.ok for n, p in phases.items() if n != "healthz")
    out_scans, out_trivial, out_over = scans.summary(), trivial.summary(), overload.summary()
    ratio = (
        out_scans["ok_per_second"] / out_trivial["per_second"] if out_trivial["per_second"] else 0
    )
    return {
        "setup_seconds": round(setup_seconds, 1),
        "distinct_codes": setup.persons,
        "healthz": out_trivial,
        "scans": out_scans,
        "overload": out_over,
        "scans_vs_healthz": round(ratio, 3),
        "answered_200": answered,
        "recorded_rows": recorded,
        "lost": max(0, answered - recorded),
        "goal_met": bool(
            out_scans["ok_per_second"] >= GOAL_RPS
            and out_scans["p99_ms"] < GOAL_P99_MS
            and ratio >= GOAL_RATIO
            and out_scans["server_errors"] == 0
        ),
        "overload_ok": bool(
            out_over["server_errors"] == 0
            and out_over["retry_after_missing"] == 0
            and out_over["statuses"].get("429", 0) > 0
            and answered <= recorded
        ),
    }


MEDIAN_FIGURES = (
    ("healthz", "per_second"),
    ("healthz", "p50_ms"),
    ("healthz", "p99_ms"),
    ("scans", "ok_per_second"),
    ("scans", "p50_ms"),
    ("scans", "p99_ms"),
    ("overload", "ok_per_second"),
    ("overload", "p99_ms"),
)


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each headline figure over the runs."""
    out: dict[str, Any] = {
        f"{phase}.{figure}": statistics.median(run[phase][figure] for run in runs)
        for phase, figure in MEDIAN_FIGURES
    }
    out["scans_vs_healthz"] = statistics.median(run["scans_vs_healthz"] for run in runs)
    out["lost"] = max(run["lost"] for run in runs)
    out["goal_met_runs"] = sum(run["goal_met"] for run in runs)
    out["overload_ok_runs"] = sum(run["overload_ok"] for run in runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--seconds",
        type=float,
        default=40.0,
        help="of the scans phase: long enough to hold one lake export (every 30 s under load)",
    )
    parser.add_argument("--healthz-seconds", type=float, default=10.0)
    parser.add_argument("--overload-seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--overload-connections", type=int, default=1000)
    parser.add_argument("--queue-capacity", type=int, default=256)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--persons", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1, help="runs per backend (medians)")
    parser.add_argument("--server-log", default=None, help="append the server's output here")
    parser.add_argument(
        "--background",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="jobs and event delivery (the lake export among them) running during the "
        "measurement; --no-background measures the server alone",
    )
    parser.add_argument(
        "--worker-process",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="background work in a `citybrain worker` process beside `serve --no-background` "
        "(its CPU counted with the server's); --no-worker-process: inside serve's worker 0",
    )
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results: dict[str, Any] = {}
    with bench_work("citybrain-bench-scans-") as work:
        for backend in backends:
            runs = [run_backend(backend, args, work) for _ in range(args.repeats)]
            results[backend] = {"runs": runs, "median": medians(runs)}
    machine = f"{platform.machine()} {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    print(
        json.dumps(
            {
                "bench": "scans",
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": machine,
                "seconds": args.seconds,
                "healthz_seconds": args.healthz_seconds,
                "overload_seconds": args.overload_seconds,
                "worker_process": args.worker_process,
                "connections": args.connections,
                "overload_connections": args.overload_connections,
                "queue_capacity": args.queue_capacity,
                "workers": args.workers,
                "persons": args.persons,
                "background": args.background,
                "log_level": os.environ["CITYBRAIN_LOG_LEVEL"],
                **results,
            }
        )
    )


if __name__ == "__main__":
    main()
