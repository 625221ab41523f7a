"""Web fixtures: the real app on the test's transaction, and logged-in clients."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from citybrain.kit.db import Database
from citybrain.web.app import create_app
from tests.factories import PASSWORD

CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


@pytest.fixture
def app(database: Database, session: Session) -> FastAPI:
    application = create_app(database)
    # Requests share the test's transaction, so everything rolls back afterwards.
    application.state.test_session = session
    return application


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


def csrf_of(client: TestClient, path: str = "/login") -> str:
    """The CSRF token the page at ``path`` carries."""
    page = client.get(path)
    match = CSRF.search(page.text)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def log_in(client: TestClient, username: str, password: str = PASSWORD) -> None:
    """Log in through the real form."""
    token = csrf_of(client)
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
