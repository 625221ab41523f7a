"""The ``citybrain`` command, run as a real process against a real, migrated database."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text

from citybrain.kit.db import Database
from tests.conftest import DatabaseFactory
from tests.moved_clock import citybrain_command

pytestmark = pytest.mark.slow


def run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        citybrain_command(*args),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


@pytest.fixture
def cli_env(database_factory: DatabaseFactory, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CITYBRAIN_DATA_DIR=str(tmp_path / "var"),
        CITYBRAIN_DATABASE_URL=database_factory.new_url(),
        CITYBRAIN_ENV="test",
    )
    run(env, "db", "upgrade")
    return env


def test_geo_load_prints_the_counts_and_a_second_run_changes_nothing(
    cli_env: dict[str, str],
) -> None:
    first = run(cli_env, "geo", "load", "--json")
    counts = json.loads(first.stdout.strip().splitlines()[-1])
    assert {k: counts[k] for k in ("districts", "streets", "communities", "compounds")} == {
        "districts": 15,
        "streets": 208,
        "communities": 3306,
        "compounds": 10806,
    }
    second = run(cli_env, "geo", "load", "--json")
    assert second.stdout.strip().splitlines()[-1] == first.stdout.strip().splitlines()[-1]
    assert "inserted 0" in second.stderr and "updated 0" in second.stderr
    database = Database(cli_env["CITYBRAIN_DATABASE_URL"])
    with database.engine.connect() as conn:
        loads = conn.execute(
            text("SELECT count(*) FROM audit_log WHERE action = 'geo.load'")
        ).scalar_one()
    database.dispose()
    assert loads == 1


def test_users_create_and_audit_verify_detects_an_altered_row(cli_env: dict[str, str]) -> None:
    run(cli_env, "geo", "load", "--json")
    created = run(
        cli_env,
        "users",
        "create",
        "--username",
        "cliuser",
        "--role",
        "street_officer",
        "--area",
        "410105001",
        "--password",
        "cli-password-1",
    )
    assert "created user cliuser" in created.stdout
    refused = run(
        cli_env,
        "users",
        "create",
        "--username",
        "cliuser2",
        "--role",
        "street_officer",
        "--area",
        "410105001",
        "--password",
        "short",
        check=False,
    )
    assert refused.returncode == 1 and "password" in refused.stderr
    ok = run(cli_env, "audit", "verify", "--json")
    report = json.loads(ok.stdout.strip().splitlines()[-1])
    assert report["ok"] is True and report["rows"] >= 2

    database = Database(cli_env["CITYBRAIN_DATABASE_URL"])
    with database.engine.begin() as conn:
        if database.dialect == "sqlite":
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_change ON audit_log"))
        conn.execute(text("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2"))
    database.dispose()
    broken = run(cli_env, "audit", "verify", check=False)
    assert broken.returncode == 1
    assert "row 2" in broken.stderr


def test_demo_prepares_everything_without_serving(cli_env: dict[str, str]) -> None:
    city = ("--city-people", "2000", "--city-days", "5")
    result = run(cli_env, "demo", "--no-serve", "--persons", "20", *city)
    assert "commander" in result.stdout and "http://127.0.0.1:8000" in result.stdout
    passwords = json.loads((Path(cli_env["CITYBRAIN_DATA_DIR"]) / "demo-accounts.json").read_text())
    assert set(passwords) >= {"commander", "street", "grid", "auditor"}
    assert passwords["street"] in result.stdout
    assert "Another demo city" not in result.stderr
    # A city left by a run on an earlier day: the user is told the two mix, and how to start
    # clean (nothing is deleted for them).
    earlier = Path(cli_env["CITYBRAIN_DATA_DIR"]) / "demo-city" / "20200101-2000x5"
    (earlier / "feeds").mkdir(parents=True)
    # Idempotent: a second run keeps the same accounts and passwords.
    again = run(cli_env, "demo", "--no-serve", "--persons", "20", *city)
    assert passwords["street"] in again.stdout
    warning = " ".join(again.stderr.split())
    assert "Another demo city" in warning and "20200101-2000x5" in warning
    assert earlier.is_dir()
    # The small city's feeds went into the data centre once; the second run took in nothing.
    assert "data centre" in result.stdout and "0 new files" in again.stdout
    database = Database(cli_env["CITYBRAIN_DATABASE_URL"])
    with database.engine.connect() as conn:
        persons = conn.execute(text("SELECT count(*) FROM persons")).scalar_one()
        users = conn.execute(text("SELECT count(*) FROM users")).scalar_one()
        files = conn.execute(text("SELECT count(*) FROM intake_files")).scalar_one()
        accepted = conn.execute(text("SELECT sum(accepted) FROM intake_files")).scalar_one()
    database.dispose()
    assert persons == 20 and users == 9
    assert files > 30 and accepted > 1000


def test_device_tokens_are_issued_used_and_revoked(cli_env: dict[str, str]) -> None:
    run(cli_env, "geo", "load", "--json")
    database = Database(cli_env["CITYBRAIN_DATABASE_URL"])
    with database.engine.connect() as conn:
        place = conn.execute(
            text("SELECT code FROM places WHERE kind = 'checkpoint' ORDER BY code LIMIT 1")
        ).scalar_one()
    issued = run(cli_env, "tokens", "issue", "--name", "checkpoint-1", "--place", place)
    secret = issued.stdout.strip().splitlines()[-1]
    assert secret.startswith("cbt_")
    from citybrain.core.authz.service import authenticate_token

    with database.unit_of_work() as session:
        device = authenticate_token(session, secret)
        assert (device.kind, device.name) == ("device", place)
        token_id = device.id
    run(cli_env, "tokens", "revoke", str(token_id))
    from citybrain.kit.errors import NotAuthenticated

    with database.unit_of_work() as session, pytest.raises(NotAuthenticated):
        authenticate_token(session, secret)
    missing = run(cli_env, "tokens", "issue", "--name", "x", "--place", "NOPE", check=False)
    assert missing.returncode == 1 and "NOPE" in missing.stderr
    database.dispose()
