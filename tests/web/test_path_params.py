"""Every path parameter is bounded: a mistyped or hostile URL is answered with what is wrong
(422) or not found, never a server error from the database (SQLite cannot take an integer past
64 bits) or a query built on a string of any length."""

from __future__ import annotations

import re
import typing

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from citybrain.core.geo.service import load_hierarchy
from tests.factories import make_user
from tests.web.conftest import csrf_of, log_in
from tests.web.test_shell import _all_routes

HUGE_NUMBER = "9" * 30
LONG_TEXT = "a" * 300
_PARAM = re.compile(r"{([a-z_]+)(?::[a-z]+)?}")


def _bounded(route: APIRoute) -> list[str]:
    """The names of the route's path parameters that take a value of any size."""
    loose = []
    for param in route.dependant.path_params:
        info = param.field_info
        kind = info.annotation
        if typing.get_origin(kind) is typing.Literal:
            continue
        limits = {
            name
            for item in info.metadata
            for name in ("max_length", "pattern", "le", "lt")
            if getattr(item, name, None) is not None
        }
        if not limits:
            loose.append(param.name)
    return loose


def test_every_path_parameter_has_a_bound(app: FastAPI) -> None:
    loose = {
        f"{sorted(r.methods)[0]} {r.path}": names
        for r in _all_routes(app)
        if (names := _bounded(r))
    }
    assert loose == {}


@pytest.mark.parametrize("role", ["city_commander", "system_admin"])
def test_an_out_of_range_path_is_never_a_server_error(
    app: FastAPI, session: Session, role: str
) -> None:
    load_hierarchy(session)
    user = make_user(session, role, "4101")
    # A server error is answered as one (500), not raised into the test.
    client = TestClient(app, base_url="http://testserver", raise_server_exceptions=False)
    log_in(client, user.name)
    token = csrf_of(client, "/")
    failures = []
    tried = 0
    for route in _all_routes(app):
        if "{" not in route.path:
            continue
        for value in (HUGE_NUMBER, LONG_TEXT):
            path = _PARAM.sub(value, route.path)
            for method in sorted(route.methods - {"HEAD"}):
                answer = client.request(
                    method, path, headers={"X-CSRF-Token": token}, follow_redirects=False
                )
                tried += 1
                if answer.status_code >= 500:
                    failures.append(f"{method} {route.path} ({len(value)}): {answer.status_code}")
    assert tried > 30
    assert failures == []
