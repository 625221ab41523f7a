"""Fixtures and helpers for the data centre's API and pages: the real app on the test's
transaction with a lake of its own in a temporary folder, agency tokens, small feeds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.audit.models import AuditEntry
from citybrain.core.authz import repository
from citybrain.core.authz.service import issue_token
from citybrain.datahub import lake, push, routes
from citybrain.datahub.catalog import get_source
from citybrain.datahub.service import FileResult, Intake
from citybrain.kit.db import Database
from citybrain.web.app import create_app
from tests.datahub.feeds import RAIL_HEADER, rail_rows, travellers
from tests.factories import TEST_ACTOR

DAY = dt.date(2020, 1, 21)
CSV = "text/csv"


# Fixtures are registered under their short names; tests import the *_fixture functions.
@pytest.fixture(name="paths")
def paths_fixture(tmp_path: Path) -> lake.LakePaths:
    """A lake of the test's own: rows of another test never count as duplicates here."""
    return lake.LakePaths(tmp_path / "data")


@pytest.fixture(name="app")
def app_fixture(database: Database, session: Session, paths: lake.LakePaths) -> FastAPI:
    application = create_app(database)
    application.state.test_session = session
    application.dependency_overrides[routes.lake_paths] = lambda: paths
    return application


@pytest.fixture(name="client")
def client_fixture(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


def agency_headers(
    session: Session, agency: str = "铁路", categories: list[str] | None = None
) -> dict[str, str]:
    """Bearer header of a new push token for ``agency``."""
    _token, secret = push.issue_agency_token(
        session, TEST_ACTOR, agency=agency, categories=categories
    )
    return {"authorization": f"Bearer {secret}"}


def user_headers(session: Session, user_id: int) -> dict[str, str]:
    """Bearer header of a new token for a user."""
    user = repository.user_by_id(session, user_id)
    assert user is not None
    _token, secret = issue_token(session, TEST_ACTOR, name="test", user=user)
    return {"authorization": f"Bearer {secret}"}


def rail_file(
    count: int = 10, *, seed: int = 1, bad_id: bool = True, bad_time: bool = True, dup: bool = True
) -> bytes:
    """A railway ticket file in GBK: ``count`` good rows, then (each optional) a row with a
    wrong ID check character, one with a time in the wrong format, and a repeat of row 1."""
    people = travellers(count + 2, seed=seed)
    rows = rail_rows(people, DAY, seed=seed)
    good = rows[:count]
    extra = []
    if bad_id:
        cells = rows[count].split(",")
        cells[2] = bad_id_number(cells[2])
        extra.append(",".join(cells))
    if bad_time:
        cells = rows[count + 1].split(",")
        cells[7] = "20200121 0835"
        extra.append(",".join(cells))
    if dup:
        extra.append(good[0])
    return ("\n".join([RAIL_HEADER, *good, *extra]) + "\n").encode("gbk")


def bad_id_number(number: str) -> str:
    """``number`` with its check character changed."""
    return number[:-1] + ("0" if number[-1] != "0" else "1")


def ingest(
    session: Session, paths: lake.LakePaths, data: bytes, name: str, category: str = "rail_ticket"
) -> FileResult:
    """Take a file in as if dropped in the agency's folder."""
    result, _row = Intake(paths).ingest_bytes(
        session, data, name, get_source(category), delivered=DAY
    )
    session.flush()
    return result


def last_audit(session: Session, action: str) -> AuditEntry:
    """The newest audit row of ``action``."""
    entry = session.scalars(
        select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq.desc())
    ).first()
    assert entry is not None, f"no audit row {action}"
    return entry
