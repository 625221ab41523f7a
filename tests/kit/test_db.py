"""The database layer: a failed statement, as it reaches the logs, names its SQL but never the
values it carried or the row the database refused (they may be a person's)."""

from __future__ import annotations

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from citybrain.core.authz.models import LoginFailure
from citybrain.kit import clock
from citybrain.kit.db import Database
from citybrain.kit.logging import configure_logging, get_logger


def test_a_failed_statement_is_logged_without_its_values(
    fresh_database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", json_lines=True)
    marker = "张三丰-unlogged"
    with pytest.raises(IntegrityError) as failed, fresh_database.unit_of_work() as session:
        # No client address: NOT NULL refuses the row, on either backend.
        session.execute(
            insert(LoginFailure).values(username=marker, client_ip=None, at=clock.now())
        )
    get_logger("test").error("statement.failed", exc_info=failed.value)
    logged = capsys.readouterr().err
    assert "INSERT INTO login_failures" in logged
    assert marker not in logged
