"""Background work of the events package: the dispatcher beside every worker, a
once-a-minute delivery pass as a safety net for it (a dispatcher thread that died, events
committed by a process without one), and a nightly purge of the events delivered more than
``event_retention_days`` ago."""

from __future__ import annotations

import datetime as dt

from citybrain.core.events.dispatcher import Dispatcher, deliver_pending, purge_dispatched
from citybrain.core.jobs.queue import schedule
from citybrain.core.jobs.worker import register_service
from citybrain.kit import clock
from citybrain.kit.db import get_database
from citybrain.kit.logging import get_logger
from citybrain.kit.settings import get_settings

log = get_logger(__name__)


@schedule(minute="*")
def deliver_outbox() -> None:
    """Deliver pending outbox events; safe beside running dispatchers."""
    deliver_pending(get_database())


@schedule(minute="15", hour="4")
def purge_delivered_events() -> None:
    """At 04:15 in the city: delete the events delivered before the retention period."""
    days = get_settings().event_retention_days
    purged = purge_dispatched(get_database(), clock.now() - dt.timedelta(days=days))
    log.info("events.purged", count=purged, retention_days=days)


register_service("events.dispatcher", Dispatcher)
