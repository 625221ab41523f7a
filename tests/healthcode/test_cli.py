"""``citybrain healthcode``: key rotation, the trust list and verification, as an operator runs
them (a real process against a real, migrated database)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from citybrain.healthcode.codes import issue_code
from citybrain.kit.db import Database
from citybrain.kit.keys import dev_keys_path, get_keyring
from citybrain.kit.settings import get_settings
from tests.cli.test_cli import cli_env, run

pytestmark = pytest.mark.slow
__all__ = ["cli_env"]


def _last(output: str) -> dict[str, object]:
    parsed: dict[str, object] = json.loads(output.strip().splitlines()[-1])
    return parsed


def test_rotate_publish_and_verify_from_the_command_line(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    # The commands and this test sign and decrypt with the same keys.
    get_keyring()
    keys = Path(cli_env["CITYBRAIN_DATA_DIR"]) / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    shutil.copy(dev_keys_path(get_settings()), keys / "dev-keys.json")
    first = _last(run(cli_env, "healthcode", "keys", "rotate", "--json").stdout)
    assert first["retired_kid"] is None and isinstance(first["kid"], str)
    database = Database(cli_env["CITYBRAIN_DATABASE_URL"])
    try:
        with database.unit_of_work() as session:
            old_code = issue_code(session, "P1", "green").text
    finally:
        database.dispose()
    second = _last(run(cli_env, "healthcode", "keys", "rotate", "--json").stdout)
    assert second["retired_kid"] == first["kid"] and second["verify_until"]

    published = _last(run(cli_env, "healthcode", "trust-list", "--json").stdout)
    kids = {k["kid"]: k["status"] for k in published["keys"]}  # type: ignore[union-attr]
    assert kids == {first["kid"]: "retired", second["kid"]: "active"}

    # The old key's code still verifies, from the database and from a downloaded list.
    valid = _last(run(cli_env, "healthcode", "verify", old_code, "--json").stdout)
    assert valid["valid"] is True and valid["colour"] == "green" and valid["kid"] == first["kid"]
    trust_file = tmp_path / "trust.json"
    trust_file.write_text(json.dumps(published), encoding="utf-8")
    offline = run(cli_env, "healthcode", "verify", old_code, "--trust", str(trust_file), "--json")
    assert _last(offline.stdout)["valid"] is True

    # One changed byte: refused with the reason, exit 1.
    tampered = old_code[:-3] + ("A" if old_code[-3] != "A" else "B") + old_code[-2:]
    refused = run(cli_env, "healthcode", "verify", tampered, "--json", check=False)
    assert refused.returncode == 1
    verdict = _last(refused.stdout)
    assert verdict["valid"] is False
    assert verdict["reason"] in {"bad_signature", "bad_encoding", "malformed"}

    # A compromised rotation takes the active key out at once: its codes are refused, while
    # the earlier retired key's codes stay valid until their grace period ends.
    database = Database(cli_env["CITYBRAIN_DATABASE_URL"])
    try:
        with database.unit_of_work() as session:
            new_code = issue_code(session, "P2", "green").text
    finally:
        database.dispose()
    run(cli_env, "healthcode", "keys", "rotate", "--compromised", "--json")
    gone = run(cli_env, "healthcode", "verify", new_code, "--json", check=False)
    assert gone.returncode == 1 and _last(gone.stdout)["reason"] == "unknown_key"
    assert _last(run(cli_env, "healthcode", "verify", old_code, "--json").stdout)["valid"] is True
