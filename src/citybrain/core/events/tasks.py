"""Background work of the events package: the dispatcher beside every worker, and a
once-a-minute delivery pass as a safety net for it (a dispatcher thread that died, events
committed by a process without one)."""

from __future__ import annotations

from citybrain.core.events.dispatcher import Dispatcher, deliver_pending
from citybrain.core.jobs.queue import schedule
from citybrain.core.jobs.worker import register_service
from citybrain.kit.db import get_database


@schedule(minute="*")
def deliver_outbox() -> None:
    """Deliver pending outbox events; safe beside running dispatchers."""
    deliver_pending(get_database())


register_service("events.dispatcher", Dispatcher)
