"""Fixtures of the cockpit tests: the real app on the test's transaction, bearer tokens, and
delivery of outbox events to the cockpit's real handlers inside the test's transaction."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

import citybrain.apps.cockpit.tasks  # noqa: F401 - subscribes the handlers
from citybrain.core.authz import repository as authz_repository
from citybrain.core.authz.service import issue_token
from citybrain.core.events.dispatcher import default_registry
from citybrain.core.events.models import OutboxEvent
from tests.factories import TEST_ACTOR
from tests.web.conftest import app, client  # noqa: F401 - fixtures for the API tests
from tests.web.test_browser import browser  # noqa: F401 - fixture for the browser tests

_DELIVERED = "cockpit_test_delivered"


def bearer(session: Session, user_id: int) -> dict[str, str]:
    """An Authorization header for the user."""
    user = authz_repository.user_by_id(session, user_id)
    _token, secret = issue_token(session, TEST_ACTOR, name="cockpit-test", user=user)
    return {"authorization": f"Bearer {secret}"}


def deliver(session: Session) -> int:
    """Hand every outbox event not yet handed over to the cockpit's subscribed handlers, as
    the dispatcher would (in the test's transaction, so it rolls back); how many events."""
    session.flush()
    done: set[int] = session.info.setdefault(_DELIVERED, set())
    count = 0
    for event in session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all():
        if event.id in done:
            continue
        done.add(event.id)
        count += 1
        for subscription in default_registry.handlers_for(event.topic):
            if subscription.name.startswith("cockpit."):
                subscription.handler(session, event)
    return count
