"""The demo's outbreak player: a simulated city's days reach the data centre one at a time, on
a clock the user can speed up or pause through the API."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.core.geo.service import load_hierarchy
from citybrain.datahub.catalog import identify
from citybrain.datahub.models import IntakeFile
from citybrain.kit.db import Database
from citybrain.simulate.config import SimulationConfig
from citybrain.simulate.run import run_simulation
from citybrain.web import demo
from citybrain.web.app import create_app
from tests.factories import PASSWORD, TEST_ACTOR, make_user


@pytest.fixture(scope="module")
def feeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from citybrain.cli import geo_input

    root = tmp_path_factory.mktemp("demo-city")
    run_simulation(
        SimulationConfig(people=1000, days=4, seed=3, start=dt.date(2026, 11, 1)),
        geo_input(),
        root / "feeds",
        root / "truth",
    )
    return root / "feeds"


def _ledger(database: Database) -> int:
    with database.unit_of_work() as session:
        return int(session.scalar(select(func.count()).select_from(IntakeFile)) or 0)


def test_days_are_taken_in_one_at_a_time_in_order(
    feeds: Path, fresh_database: Database, tmp_path: Path
) -> None:
    by_day = demo.files_by_day(feeds)
    assert list(by_day) == sorted(by_day) and len(by_day) >= 4
    assert sum(len(files) for files in by_day.values()) == len(
        [p for p in feeds.rglob("*") if p.is_file() and identify(p) is not None]
    )
    player = demo.DemoPlayer(
        fresh_database, feeds, tmp_path / "delivered", day_seconds=0.2, actor=TEST_ACTOR
    )
    player.release_until(2)
    first_two = len(by_day[player.order[0]]) + len(by_day[player.order[1]])
    assert _ledger(fresh_database) == first_two
    state = player.state()
    assert (state.released, state.day, state.finished) == (2, player.order[1].isoformat(), False)
    # Paused, nothing more arrives; resumed, the rest arrive and the clock says so.
    player.set(paused=True)
    player.start()
    time.sleep(1.0)
    assert player.state().released == 2
    player.set(paused=False, speed=4.0)
    deadline = time.monotonic() + 60
    while not player.state().finished and time.monotonic() < deadline:
        time.sleep(0.2)
    player.stop()
    assert player.state().finished and player.state().released == len(by_day)
    assert _ledger(fresh_database) == sum(len(files) for files in by_day.values())


@pytest.fixture
def api(database: Database, session: Session) -> Iterator[TestClient]:
    load_hierarchy(session, actor=TEST_ACTOR)
    make_user(session, "city_commander", "4101", username="demo-commander")
    make_user(session, "grid_worker", "410105001003", username="demo-grid")
    application: FastAPI = create_app(database)
    application.state.test_session = session
    with TestClient(application, base_url="http://testserver") as client:
        yield client
    demo.install(None)


def _bearer(client: TestClient, username: str) -> dict[str, str]:
    token = client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def test_the_clock_is_read_and_sped_up_through_the_api(
    api: TestClient, feeds: Path, database: Database, tmp_path: Path
) -> None:
    commander = _bearer(api, "demo-commander")
    missing = api.get("/api/v1/demo/clock", headers=commander)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "no_demo"
    player = demo.DemoPlayer(
        database, feeds, tmp_path / "delivered", day_seconds=20, actor=TEST_ACTOR
    )
    demo.install(player)
    clock = api.get("/api/v1/demo/clock", headers=commander).json()
    assert clock["released"] == 0 and clock["total"] == len(player.order)
    assert clock["next_day"] == player.order[0].isoformat() and clock["speed"] == 1.0
    assert clock["speeds"] == list(demo.SPEEDS)  # what the page offers
    faster = api.post("/api/v1/demo/clock", json={"speed": 8}, headers=commander)
    assert faster.status_code == 200 and faster.json()["speed"] == 8.0
    wrong = api.post("/api/v1/demo/clock", json={"speed": 3}, headers=commander)
    assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "speed"
    assert player.speed == 8.0
    # A grid worker has no cockpit, so no demo clock either.
    grid = _bearer(api, "demo-grid")
    assert api.get("/api/v1/demo/clock", headers=grid).status_code == 403
