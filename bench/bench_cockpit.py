"""Cockpit benchmark: time to first complete render and bytes transferred for the leadership
cockpit (``/cockpit``) with the full-scale city (15 county-level units, 208 streets, 3,306
communities, 10,806 compounds) in headless Chromium, and the delay from a new confirmed case
(asserted through the API) to the screen (the alert on the page). Prints one JSON line.

    .venv/bin/python bench/bench_cockpit.py [--persons 6000] [--cases 120] [--runs 5]

The server is the real one (``citybrain serve``: one process, jobs and event delivery inside,
the embedded default) on a fresh SQLite database in a temporary folder. Each render run opens
a new browser context (empty cache, a new login, not timed), then times ``page.goto`` to the
moment the page says its first complete render is done (``document.body.dataset.ready``: the
map, every figure, the alerts and the freshness panel drawn) and sums the bytes Chromium
received for that navigation (``Network.loadingFinished``'s encoded lengths: compressed sizes
on the wire, headers included; the live stream's open connection is not counted).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PASSWORD = "bench-password-1"
GOAL_RENDER_S = 1.0
GOAL_BYTES = 2 * 1024 * 1024
GOAL_DELAY_S = 5.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare(url: str, persons: int, cases: int) -> dict[str, int]:
    """Schema, the whole hierarchy, two users, ``persons`` registered residents spread over
    the city's compounds, ``cases`` confirmed cases among them (their households become close
    contacts, their compounds turn red) and as many close contacts besides; every event
    delivered, as in a city that has been running."""
    from sqlalchemy import func, select

    from citybrain import schema
    from citybrain.core.audit.service import SYSTEM
    from citybrain.core.authz.service import create_user, principal_for
    from citybrain.core.events.dispatcher import deliver_pending
    from citybrain.core.geo.models import Compound
    from citybrain.core.geo.service import load_hierarchy
    from citybrain.core.people.models import Person
    from citybrain.core.people.schemas import PersonIn
    from citybrain.core.people.service import register_person
    from citybrain.kit.db import Database
    from citybrain.risk.service import assert_fact
    from citybrain.simulate.persons import generate_persons

    database = Database(url)
    schema.metadata.create_all(database.engine)
    with database.unit_of_work() as session:
        load_hierarchy(session)
    with database.unit_of_work() as session:
        commander = create_user(
            session,
            SYSTEM,
            username="commander",
            password=PASSWORD,
            role="city_commander",
            area_code="4101",
        )
        create_user(
            session,
            SYSTEM,
            username="jinshui",
            password=PASSWORD,
            role="district_officer",
            area_code="410105",
        )
        registrar = principal_for(commander)
        compounds = list(session.scalars(select(Compound.code).order_by(Compound.code)))
    step = max(1, len(compounds) // persons)
    refs: list[str] = []
    with database.unit_of_work() as session:
        for i, person in enumerate(generate_persons(persons, seed=11)):
            masked, _ = register_person(
                session,
                registrar,
                PersonIn(
                    name=person.name,
                    id_number=person.id_number,
                    phone=person.phone,
                    compound_code=compounds[(i * step) % len(compounds)],
                ),
            )
            refs.append(masked.ref)
    now = dt.datetime.now(dt.UTC)
    with database.unit_of_work() as session:
        subjects = dict(
            session.execute(
                select(Person.ref, func.substr(Person.id_number_bidx, 1, 32)).where(
                    Person.ref.in_(refs[: 2 * cases])
                )
            ).all()
        )
        for n, ref in enumerate(refs[: 2 * cases]):
            assert_fact(
                session,
                SYSTEM,
                subject=subjects[ref],
                kind="confirmed_case" if n % 2 == 0 else "close_contact",
                source="bench",
                evidence={"bench": 1},
                # Spread over the last 30 days, so the trends have a shape.
                valid_from=now - dt.timedelta(days=(n * 7) % 30, hours=1),
            )
    from citybrain.core.jobs.worker import import_task_modules

    import_task_modules()  # every package's handlers, the cockpit's among them
    while deliver_pending(database, limit=500).events:
        pass
    database.dispose()
    return {"compounds": len(compounds), "persons": persons, "cases": cases}


def _start_server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    citybrain = str(Path(sys.executable).parent / "citybrain")
    server = subprocess.Popen(
        [citybrain, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return server
        except OSError:
            pass
        if server.poll() is not None:
            break
        time.sleep(0.3)
    server.kill()
    raise RuntimeError("the server did not start")


def _log_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda u: "/login" not in u)


def measure_render(browser: Any, base: str, viewport: dict[str, int]) -> dict[str, Any]:
    """One cold render of the cockpit in a new context: seconds and bytes."""
    context = browser.new_context(viewport=viewport, locale="zh-CN")
    page = context.new_page()
    _log_in(page, base, "commander")
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    received: dict[str, float] = {}
    urls: dict[str, str] = {}
    cdp.on(
        "Network.requestWillBeSent",
        lambda e: urls.__setitem__(e["requestId"], e["request"]["url"]),
    )
    cdp.on(
        "Network.loadingFinished",
        lambda e: received.__setitem__(e["requestId"], e["encodedDataLength"]),
    )
    started = time.perf_counter()
    page.goto(f"{base}/cockpit", wait_until="commit")
    page.wait_for_function("() => document.body.dataset.ready === '1'", timeout=30_000, polling=10)
    seconds = time.perf_counter() - started
    in_page = page.evaluate(
        "() => performance.now() - performance.getEntriesByType('navigation')[0].startTime"
    )
    regions = page.evaluate(
        "() => { const o = window.cockpit.chart.getOption();"
        " return (o.series && o.series[0] && o.series[0].data || []).length; }"
    )
    page.wait_for_timeout(300)  # late finishes of what the render fetched
    total = int(sum(received.values()))
    biggest = sorted(
        ((int(v), urls.get(k, "?").split("?")[0].rsplit("/", 1)[-1]) for k, v in received.items()),
        reverse=True,
    )[:5]
    context.close()
    return {
        "seconds": round(seconds, 3),
        "seconds_in_page": round(in_page / 1000, 3),
        "bytes": total,
        "requests": len(received),
        "largest": [{"name": name, "bytes": size} for size, name in biggest],
        "map_regions": regions,
    }


def measure_case_delay(browser: Any, base: str, runs: int) -> list[float]:
    """Seconds from the API call asserting a new confirmed case to its alert on the screen."""
    import httpx

    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
    page = context.new_page()
    _log_in(page, base, "commander")
    page.goto(f"{base}/cockpit")
    page.wait_for_function("() => document.body.dataset.ready === '1'", timeout=30_000)
    token = httpx.post(
        f"{base}/api/v1/auth/token", json={"username": "commander", "password": PASSWORD}
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    delays = []
    for n in range(runs):
        seen = page.evaluate(
            "() => [...document.querySelectorAll('[data-testid=alert-item]')]"
            ".map(e => e.dataset.id)"
        )
        subject = f"{0xBE0C0000 + n:032x}"
        started = time.perf_counter()
        answer = httpx.post(
            f"{base}/api/v1/risk/facts",
            json={"subject": subject, "kind": "confirmed_case", "note": "bench report"},
            headers=headers,
        )
        answer.raise_for_status()
        # A new alert id at the top of the feed (it holds the newest 50).
        page.wait_for_function(
            "seen => [...document.querySelectorAll('[data-testid=alert-item]')]"
            ".some(e => !seen.includes(e.dataset.id))",
            arg=seen,
            timeout=30_000,
            polling=20,
        )
        delays.append(round(time.perf_counter() - started, 3))
        time.sleep(1)
    context.close()
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=6000)
    parser.add_argument("--cases", type=int, default=120)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--delay-runs", type=int, default=5)
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit("Chromium is needed: bash scripts/system-deps.sh (as root)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-cockpit-") as tmp:
        work = Path(tmp)
        url = f"sqlite:///{work}/citybrain.db"
        env = dict(os.environ)
        env.update(
            {
                "CITYBRAIN_DATABASE_URL": url,
                "CITYBRAIN_DATA_DIR": str(work / "data"),
                "CITYBRAIN_LOG_LEVEL": "WARNING",
            }
        )
        os.environ.update(env)
        started = time.perf_counter()
        city = prepare(url, args.persons, args.cases)
        rebuild = subprocess.run(
            [str(Path(sys.executable).parent / "citybrain"), "cockpit", "rebuild"],
            env=env,
            capture_output=True,
            check=True,
        )
        setup_seconds = time.perf_counter() - started
        port = _free_port()
        server = _start_server(env, port)
        base = f"http://127.0.0.1:{port}"
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                wall = [
                    measure_render(browser, base, {"width": 1920, "height": 1080})
                    for _ in range(args.runs)
                ]
                phone = [
                    measure_render(browser, base, {"width": 390, "height": 844})
                    for _ in range(max(1, args.runs // 2))
                ]
                delays = measure_case_delay(browser, base, args.delay_runs)
                browser.close()
        finally:
            server.terminate()
            server.wait(30)
    render = statistics.median(r["seconds"] for r in wall)
    size = statistics.median(r["bytes"] for r in wall)
    print(
        json.dumps(
            {
                "bench": "cockpit",
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": f"{platform.machine()} {os.cpu_count()} cores, "
                f"Python {platform.python_version()}",
                "city": city,
                "rebuild": rebuild.stdout.decode().strip().splitlines()[-1:],
                "setup_seconds": round(setup_seconds, 1),
                "wall_screen": wall,
                "phone": phone,
                "render_seconds_median": render,
                "bytes_median": size,
                "case_to_screen_seconds": delays,
                "case_to_screen_max": max(delays),
                "goals": {
                    "render_under_1s": render < GOAL_RENDER_S,
                    "bytes_under_2MB": size < GOAL_BYTES,
                    "case_under_5s": max(delays) < GOAL_DELAY_S,
                },
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
