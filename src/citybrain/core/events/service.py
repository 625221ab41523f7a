"""Publishing events: one row in the caller's transaction, sent only after it commits."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.core.events.models import OutboxEvent
from citybrain.kit import clock

# Dotted lowercase, at least two segments: ``person.registered``, ``fever_clinic.case.cleared``.
TOPIC_PATTERN = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")
MAX_TOPIC_LENGTH = 64
MAX_KEY_LENGTH = 64


def validate_topic(topic: str) -> str:
    """Return ``topic`` if it is a dotted lowercase name of at most 64 characters."""
    if len(topic) > MAX_TOPIC_LENGTH or not TOPIC_PATTERN.fullmatch(topic):
        raise ValueError(
            "event topic must be dotted lowercase like 'person.registered' "
            f"(at most {MAX_TOPIC_LENGTH} characters)"
        )
    return topic


def publish(
    session: Session, topic: str, payload: dict[str, Any], *, key: str | None = None
) -> OutboxEvent:
    """Queue an event in the caller's transaction; it leaves only after that commits.

    Never commits. If the transaction rolls back, the event never existed. ``payload`` must be
    JSON-serialisable (ids, codes, counts; no raw personal data: it may reach the lake).
    ``key`` is the id of the aggregate the event is about. The row's id is assigned when the
    session flushes.
    """
    validate_topic(topic)
    if key is not None and len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"event key is longer than {MAX_KEY_LENGTH} characters")
    if not isinstance(payload, dict):
        raise TypeError("event payload must be a dict")
    try:
        # Fail here, at the caller, rather than at flush time with an obscure driver error.
        json.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"event payload is not JSON-serialisable: {type(exc).__name__}") from exc
    event = OutboxEvent(topic=topic, key=key, payload=payload, created_at=clock.now())
    session.add(event)
    # kit.db runs the after-commit hooks (the dispatcher's wake-up) for sessions with this flag.
    session.info["wake_after_commit"] = True
    return event


def outbox_backlog(session: Session) -> tuple[int, dt.datetime | None]:
    """How many events wait for delivery, and when the oldest of them was written."""
    count, oldest = session.execute(
        select(func.count(), func.min(OutboxEvent.created_at)).where(
            OutboxEvent.dispatched_at.is_(None)
        )
    ).one()
    return int(count or 0), clock.as_utc(oldest) if oldest is not None else None
