"""Outbox tables: the events themselves and, per event and handler, whether it was delivered."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from citybrain.kit.db import Base, JSONType, UTCDateTime

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
EventId = BigInteger().with_variant(Integer, "sqlite")


class OutboxEvent(Base):
    """One domain event, written in the same transaction as the change it reports.

    ``key`` is the id of the aggregate the event is about (a person, a registration...), so
    consumers can group or order per aggregate. ``dispatched_at`` is set once every handler
    subscribed at dispatch time has it; until then the dispatcher keeps trying.
    """

    __tablename__ = "outbox_events"
    __table_args__ = (
        # The dispatcher's scan reads only undispatched rows in id order; a partial index keeps
        # that scan small however long the outbox grows.
        Index(
            "ix_outbox_events_undispatched",
            "id",
            postgresql_where=text("dispatched_at IS NULL"),
            sqlite_where=text("dispatched_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(64), index=True)
    key: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        # Never the payload: reprs end up in logs and tracebacks.
        return f"<OutboxEvent {self.id} {self.topic}>"


class EventDelivery(Base):
    """The delivery state of one event to one handler.

    A row with ``delivered_at`` set commits in the same transaction as the handler's own
    writes, so a database handler takes effect exactly once; a failed attempt leaves
    ``attempts``, ``last_error`` (exception class and a scrubbed short message, never
    personal data) and ``next_attempt_at`` for the backoff.
    """

    __tablename__ = "event_deliveries"

    event_id: Mapped[int] = mapped_column(
        EventId, ForeignKey("outbox_events.id", ondelete="CASCADE"), primary_key=True
    )
    handler: Mapped[str] = mapped_column(String(96), primary_key=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        state = "delivered" if self.delivered_at else f"pending after {self.attempts} attempts"
        return f"<EventDelivery {self.event_id} {self.handler} {state}>"
