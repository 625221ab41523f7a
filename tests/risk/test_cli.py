"""``citybrain risk replay --json`` against a real, migrated database, as a real process."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import text
from tests.cli.test_cli import cli_env, run  # noqa: F401 - fixture

from citybrain.core.audit.service import Actor
from citybrain.kit import clock
from citybrain.kit.db import Database
from citybrain.risk import service

pytestmark = pytest.mark.slow
STAFF = Actor("user:77", "street_officer", None)


def last_json(result: Any) -> dict[str, Any]:
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_replay_reproduces_every_colour_and_reports_a_tampered_one(
    cli_env: dict[str, str],  # noqa: F811 - fixture
) -> None:
    database = Database(cli_env["CITYBRAIN_DATABASE_URL"])
    now = clock.now()
    kinds = [
        "confirmed_case",
        "close_contact",
        "secondary_contact",
        "risk_area_travel",
        "negative_test",
    ]
    try:
        with database.unit_of_work() as session:
            for n, kind in enumerate(kinds):
                service.assert_fact(
                    session,
                    STAFF,
                    subject=f"{n:x}" * 32,
                    kind=kind,
                    source="staff",
                    evidence={"record_ids": [n]},
                    valid_from=now - dt.timedelta(hours=n + 1),
                    compound_code="410105001001001" if n == 0 else None,
                )
        clean = run(cli_env, "risk", "replay", "--json")
        report = last_json(clean)
        assert report["persons"] == len(kinds)
        assert report["differences"] == 0 and report["compound_differences"] == 0
        assert report["compounds"] == 1
        with database.engine.begin() as conn:
            conn.execute(
                text("UPDATE person_colours SET colour = 'green' WHERE subject = :s"),
                {"s": "1" * 32},
            )
        tampered = run(cli_env, "risk", "replay", "--json", check=False)
        assert tampered.returncode == 1
        assert last_json(tampered)["differences"] == 1
        assert last_json(tampered)["examples"] == ["1" * 32]
        repaired = run(cli_env, "risk", "replay", "--repair", "--json")
        assert last_json(repaired)["repaired"] == 1
        assert last_json(run(cli_env, "risk", "replay", "--json"))["differences"] == 0
        colour = json.loads(run(cli_env, "risk", "colour", "1" * 32, "--json").stdout)
        assert colour["colour"] == "red"
    finally:
        database.dispose()
