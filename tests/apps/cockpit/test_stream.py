"""The live stream (/api/v1/cockpit/stream) against real servers: a case asserted through the
API reaches a connected stream within 5 seconds, only within the viewer's jurisdiction; on
PostgreSQL it reaches a stream connected to another server process (LISTEN/NOTIFY)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from citybrain.apps.cockpit import live
from citybrain.core.authz import repository as authz_repository
from citybrain.core.authz.service import issue_token
from citybrain.core.geo.service import load_hierarchy
from citybrain.kit.db import Database, use_database
from citybrain.web.app import create_app
from tests.conftest import BACKEND
from tests.factories import (
    OTHER_DISTRICT_STREET,
    STREET_A,
    TEST_ACTOR,
    first_compound,
    make_user,
)
from tests.risk.conftest import resident
from tests.web.test_browser import serving

LIMIT_SECONDS = 5.0


class Stream:
    """A stream connection read on a thread: the events received, with when."""

    def __init__(self, base: str, token: str) -> None:
        self.events: list[tuple[float, str, Any]] = []
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(base, token), daemon=True)
        self._thread.start()
        assert self.connected.wait(20), "the stream did not connect"

    def _run(self, base: str, token: str) -> None:
        headers = {"authorization": f"Bearer {token}"}
        url = f"{base}/api/v1/cockpit/stream"
        with (
            httpx.Client(timeout=httpx.Timeout(5, read=60)) as client,
            client.stream("GET", url, headers=headers) as r,
        ):
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            kind = ""
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    self.connected.set()
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    self.events.append((time.monotonic(), kind, json.loads(line[6:])))
                if self._stop.is_set():
                    return

    def first(self, kind: str, since: float, timeout: float) -> tuple[float, Any] | None:
        """The first event of ``kind`` after ``since``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, found, data in list(self.events):
                if found == kind and at >= since:
                    return at, data
            time.sleep(0.05)
        return None

    def close(self) -> None:
        self._stop.set()


def _seed(database: Database) -> dict[str, str]:
    with database.unit_of_work() as session:
        load_hierarchy(session)
    with database.unit_of_work() as session:
        commander = make_user(session, "city_commander", "4101")
        mine = make_user(session, "district_officer", STREET_A[:6])
        other = make_user(session, "district_officer", OTHER_DISTRICT_STREET[:6])
        case = resident(session, commander, compound=first_compound(session, STREET_A))
        tokens = {}
        for name, who in (("commander", commander), ("mine", mine), ("other", other)):
            user = authz_repository.user_by_id(session, who.id)
            tokens[name] = issue_token(session, TEST_ACTOR, name=name, user=user)[1]
        tokens["case_ref"] = case.ref
        tokens["case_area"] = case.area_code
    return tokens


def _assert_case(base: str, token: str, ref: str) -> float:
    started = time.monotonic()
    response = httpx.post(
        f"{base}/api/v1/risk/facts",
        headers={"authorization": f"Bearer {token}"},
        json={"person_ref": ref, "kind": "confirmed_case", "note": "核酸报告 A-17"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return started


def test_a_case_asserted_through_the_api_reaches_the_stream_within_5_seconds(
    fresh_database: Database,
) -> None:
    seeded = _seed(fresh_database)
    assert seeded["case_area"].startswith(STREET_A)
    with use_database(fresh_database), serving(create_app(fresh_database, background=True)) as base:
        city, mine, other = (Stream(base, seeded[k]) for k in ("commander", "mine", "other"))
        try:
            started = _assert_case(base, seeded["commander"], seeded["case_ref"])
            for stream in (city, mine):
                alert = stream.first("alert", started, LIMIT_SECONDS)
                assert alert is not None, "no alert within 5 s"
                assert alert[0] - started < LIMIT_SECONDS
                print(f"alert {alert[0] - started:.2f} s after the API call")
                assert alert[1]["kind"] in {"new_case", "compound_red"}
                assert seeded["case_ref"] not in json.dumps(alert[1])
                figures = stream.first("figures", started, LIMIT_SECONDS)
                assert figures is not None
                assert all(a.startswith(STREET_A[:6]) or a == "4101" for a in figures[1]["areas"])
                assert "confirmed_total" in figures[1]["keys"]
            mine_areas = {a for _, k, d in mine.events if k == "figures" for a in d["areas"]}
            assert "4101" not in mine_areas  # the city's figures are not the officer's
            # The other district's officer hears nothing of it.
            time.sleep(1.0)
            assert not [e for e in other.events if e[0] >= started]
        finally:
            for stream in (city, mine, other):
                stream.close()
            # On PostgreSQL this process listens now; stop before the database is dropped.
            live.stop_listening()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(database: Database, data_dir: Path, *, background: bool) -> Iterator[str]:
    port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "CITYBRAIN_DATABASE_URL": database.url,
            "CITYBRAIN_DATA_DIR": str(data_dir),
            "CITYBRAIN_LOG_LEVEL": "WARNING",
        }
    )
    command = [str(Path(sys.executable).parent / "citybrain"), "serve", "--port", str(port)]
    if not background:
        command.append("--no-background")
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.skipif(BACKEND != "postgresql", reason="LISTEN/NOTIFY needs PostgreSQL")
def test_the_event_reaches_a_stream_on_another_server_process(
    fresh_database: Database, tmp_path: Path
) -> None:
    seeded = _seed(fresh_database)
    # Process A delivers events (its dispatcher runs the handlers); process B only serves.
    with (
        _server(fresh_database, tmp_path / "a", background=True) as a,
        _server(fresh_database, tmp_path / "b", background=False) as b,
    ):
        stream = Stream(b, seeded["commander"])
        try:
            started = _assert_case(a, seeded["commander"], seeded["case_ref"])
            alert = stream.first("alert", started, LIMIT_SECONDS)
            assert alert is not None, "no alert on the other process within 5 s"
            assert alert[0] - started < LIMIT_SECONDS
            print(f"alert on the other process {alert[0] - started:.2f} s after the API call")
        finally:
            stream.close()
