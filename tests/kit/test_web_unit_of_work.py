"""A request's unit of work commits before its answer leaves the server: a client that follows
the redirect at once (a resident just registered, a form just saved) reads what it was told is
done, and a commit that fails is never answered as a success."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from sqlalchemy import event

from citybrain.core.geo.service import load_hierarchy
from citybrain.kit.db import Database
from citybrain.kit.web import db_session
from citybrain.web.app import create_app
from tests.factories import PASSWORD, STREET_A, make_user
from tests.web.conftest import CSRF
from tests.web.test_browser import serving

SLOW_COMMIT_SECONDS = 0.4


def test_the_answer_leaves_only_after_the_commit(fresh_database: Database) -> None:
    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
    with fresh_database.unit_of_work() as session:
        make_user(session, "street_officer", STREET_A, "slow-commit")
    committed: list[float] = []
    slow = threading.Event()

    # A slow disk, at the wire: every commit of this database takes a while once armed.
    def slow_commit(_connection: Any) -> None:
        if slow.is_set():
            time.sleep(SLOW_COMMIT_SECONDS)
            committed.append(time.monotonic())

    event.listen(fresh_database.engine, "commit", slow_commit)
    try:
        with serving(create_app(fresh_database)) as base, httpx.Client(base_url=base) as client:
            page = client.get("/login")
            match = CSRF.search(page.text)
            assert match is not None
            slow.set()
            answer = client.post(
                "/login",
                data={
                    "username": "slow-commit",
                    "password": PASSWORD,
                    "csrf_token": match.group(1),
                    "next": "/",
                },
                follow_redirects=False,
            )
            answered = time.monotonic()
            deadline = answered + 5
            while not committed and time.monotonic() < deadline:
                time.sleep(0.05)
            slow.clear()
    finally:
        event.remove(fresh_database.engine, "commit", slow_commit)
    assert answer.status_code == 303, answer.text
    # The login's audit row was committed (slowly) before the 303 reached the client.
    assert committed, "the request committed nothing"
    assert committed[0] <= answered, "the answer reached the client before its commit"


def test_every_route_commits_before_answering(fresh_database: Database) -> None:
    # A route or guard that took ``Depends(db_session)`` with FastAPI's default scope would
    # commit after its answer again: every use in the app is function-scoped (``kit.web.DB``).
    app = create_app(fresh_database)
    uses: list[str] = []

    def walk(dependant: Any, where: str) -> None:
        for dependency in dependant.dependencies:
            if dependency.call is db_session:
                uses.append(f"{where}: {dependency.scope}")
            walk(dependency, where)

    def routes(items: list[Any]) -> list[Any]:
        found = []
        for item in items:
            included = getattr(item, "original_router", None)  # an included router
            found.extend(routes(included.routes) if included is not None else [item])
        return found

    for route in routes(app.routes):
        dependant = getattr(route, "dependant", None)
        if dependant is not None:
            walk(dependant, getattr(route, "path", "?"))
    assert len(uses) > 50  # the app's pages and APIs, with their guards
    assert [use for use in uses if not use.endswith(": function")] == []
