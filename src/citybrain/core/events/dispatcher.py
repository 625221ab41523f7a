"""Delivering outbox events to subscribed handlers, at least once, after their commit.

Each (event, handler) pair runs in its own transaction, which also writes the pair's
``EventDelivery`` row: a handler's database effects and the mark that it has the event commit
together, so a database handler takes effect once; a crash between the two re-runs it (at
least once), so handlers with outside effects must be idempotent.

Concurrency: the delivery row is claimed (inserted, or updated while still undelivered) as the
transaction's first statement, before the handler runs. A second dispatcher claiming the same
pair waits for the first (row lock on PostgreSQL, the write lock on SQLite) and then finds the
row taken, which means someone else did it. The event itself is marked dispatched by one
conditional statement that counts the delivered rows in the database, never from one
dispatcher's own view.

The claim is a write, so on SQLite a handler runs while holding the database's write lock:
handlers must be short. Slow outside work (a call, a file) belongs in a job the handler
enqueues (``citybrain.core.jobs``), which is durable and retried on its own.

Handlers subscribe at import time of their package's ``tasks.py``, which is listed in
``citybrain.core.jobs.worker.TASK_MODULES``: a process that dispatches without having imported
a handler would mark its events dispatched without it.
"""

from __future__ import annotations

import copy
import datetime as dt
import enum
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import (
    ColumnElement,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from citybrain.core.events.models import EventDelivery, OutboxEvent
from citybrain.core.events.service import validate_topic
from citybrain.kit import clock
from citybrain.kit.db import (
    Database,
    get_database,
    let_writers_in,
    on_any_commit,
    rows_affected,
)
from citybrain.kit.logging import get_logger, scrub

log = get_logger(__name__)

EventHandler = Callable[[Session, OutboxEvent], None]
H = TypeVar("H", bound=EventHandler)

MAX_HANDLER_NAME = 96
RETRY_BASE_DELAY = dt.timedelta(seconds=1)
RETRY_MAX_DELAY = dt.timedelta(minutes=10)
MAX_ERROR_LENGTH = 200

_PREFIX_PATTERN = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")


@dataclass(frozen=True)
class Subscription:
    """A handler and the topics it receives, under the name its deliveries are recorded by."""

    pattern: str
    name: str
    handler: EventHandler

    def matches(self, topic: str) -> bool:
        """Whether an event of ``topic`` goes to this handler."""
        if self.pattern == "*":
            return True
        if self.pattern.endswith(".*"):
            return topic.startswith(self.pattern[:-1])
        return topic == self.pattern


def _validate_pattern(pattern: str) -> str:
    if pattern == "*":
        return pattern
    if pattern.endswith(".*"):
        if not _PREFIX_PATTERN.fullmatch(pattern[:-2]):
            raise ValueError(f"invalid topic prefix pattern {pattern!r}; use e.g. 'person.*'")
        return pattern
    return validate_topic(pattern)


class HandlerRegistry:
    """Subscriptions of handlers to topics.

    The process-wide registry is ``default_registry``; tests may build their own and pass it to
    ``deliver_pending`` and ``Dispatcher``.
    """

    def __init__(self) -> None:
        self._subscriptions: dict[str, Subscription] = {}
        self._lock = threading.Lock()

    def add(self, pattern: str, handler: EventHandler, *, name: str | None = None) -> Subscription:
        """Subscribe ``handler`` to ``pattern`` (a topic, ``prefix.*`` or ``*``).

        ``name`` is stored with every delivery, so it must stay stable across releases: a
        renamed handler is a new handler and receives only events not yet dispatched. It
        defaults to the function's module and qualified name.
        """
        _validate_pattern(pattern)
        name = name or f"{handler.__module__}.{handler.__qualname__}"
        if len(name) > MAX_HANDLER_NAME:
            raise ValueError(f"handler name longer than {MAX_HANDLER_NAME} characters; pass name=")
        subscription = Subscription(pattern, name, handler)
        with self._lock:
            existing = self._subscriptions.get(name)
            if existing is not None and existing != subscription:
                raise ValueError(f"another handler is already subscribed as {name!r}")
            self._subscriptions[name] = subscription
        return subscription

    def subscribe(self, pattern: str, *, name: str | None = None) -> Callable[[H], H]:
        """Decorator form of ``add``: ``@subscribe("person.*")`` on ``fn(session, event)``."""

        def decorator(handler: H) -> H:
            self.add(pattern, handler, name=name)
            return handler

        return decorator

    def unsubscribe(self, name: str) -> bool:
        """Remove the subscription called ``name``; whether there was one."""
        with self._lock:
            return self._subscriptions.pop(name, None) is not None

    def handlers_for(self, topic: str) -> list[Subscription]:
        """The subscriptions receiving ``topic``, in name order (deterministic runs)."""
        with self._lock:
            matching = [s for s in self._subscriptions.values() if s.matches(topic)]
        return sorted(matching, key=lambda s: s.name)

    def __len__(self) -> int:
        with self._lock:
            return len(self._subscriptions)


default_registry = HandlerRegistry()


def subscribe(pattern: str, *, name: str | None = None) -> Callable[[H], H]:
    """Subscribe the decorated ``handler(session, event)`` to ``pattern`` in the process's
    registry. ``pattern`` is an exact topic, a prefix like ``person.*``, or ``*``."""
    return default_registry.subscribe(pattern, name=name)


@dataclass
class DeliveryStats:
    """What one ``deliver_pending`` pass did (counts only, for logs and tests)."""

    events: int = 0
    delivered: int = 0
    failed: int = 0
    skipped: int = 0
    backing_off: int = 0
    dispatched: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict."""
        return {
            "events": self.events,
            "delivered": self.delivered,
            "failed": self.failed,
            "skipped": self.skipped,
            "backing_off": self.backing_off,
            "dispatched": self.dispatched,
        }


class _Outcome(enum.Enum):
    DELIVERED = "delivered"
    FAILED = "failed"
    SKIPPED = "skipped"


def retry_delay(attempts: int) -> dt.timedelta:
    """Wait before the next attempt after ``attempts`` failures: 1 s, 2 s, 4 s… up to 10 min."""
    exponent = min(max(attempts - 1, 0), 20)
    return min(RETRY_BASE_DELAY * (1 << exponent), RETRY_MAX_DELAY)


def describe_error(exc: BaseException) -> str:
    """Exception class and the first line of its message, scrubbed and cut short.

    Driver errors carry SQL parameters and key values after the first line; those may be
    personal data and must not be stored.
    """
    source: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    lines = str(source).strip().splitlines()
    message = scrub(lines[0]) if lines else ""
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:MAX_ERROR_LENGTH]


# One statement, its values bound: ``insert().values(...)`` with the values inside builds
# (and keys for the statement cache) a new statement for every pair delivered.
_CLAIM_NEW = insert(EventDelivery)


def _claim(session: Session, event_id: int, handler: str, known: EventDelivery | None) -> bool:
    """Take the pair as this transaction's first write; False if it is not ours to run."""
    now = clock.now()
    if known is None:
        # A concurrent claim of the same key blocks here until the other transaction ends,
        # then raises IntegrityError if it committed.
        session.execute(
            _CLAIM_NEW,
            {"event_id": event_id, "handler": handler, "attempts": 1, "delivered_at": now},
        )
        return True
    result = session.execute(
        update(EventDelivery)
        .where(
            EventDelivery.event_id == event_id,
            EventDelivery.handler == handler,
            EventDelivery.delivered_at.is_(None),
            # Re-checked here because another dispatcher may have failed it since our scan.
            (EventDelivery.next_attempt_at.is_(None)) | (EventDelivery.next_attempt_at <= now),
        )
        .values(attempts=EventDelivery.attempts + 1, delivered_at=now, next_attempt_at=None)
        .execution_options(synchronize_session=False)
    )
    return rows_affected(result) == 1


def _record_failure(
    database: Database, event_id: int, handler: str, exc: Exception, attempts: int
) -> None:
    now = clock.now()
    values = {
        "attempts": attempts,
        "last_error": describe_error(exc),
        "next_attempt_at": now + retry_delay(attempts),
    }
    with database.sessions() as session:
        try:
            result = session.execute(
                update(EventDelivery)
                .where(
                    EventDelivery.event_id == event_id,
                    EventDelivery.handler == handler,
                    EventDelivery.delivered_at.is_(None),
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if rows_affected(result) == 0:
                session.execute(
                    insert(EventDelivery).values(event_id=event_id, handler=handler, **values)
                )
            session.commit()
        except (IntegrityError, OperationalError) as record_error:
            # A delivered row appeared meanwhile (another dispatcher succeeded), or the database
            # is busy: the pair stays undelivered or delivered as the database says.
            session.rollback()
            log.info(
                "events.failure_not_recorded",
                event_id=event_id,
                handler=handler,
                reason=type(record_error).__name__,
            )


def _snapshot(event: OutboxEvent) -> OutboxEvent:
    """A private, unattached copy for one handler: a handler that changes the payload must
    not change what the next handler receives."""
    return OutboxEvent(
        id=event.id,
        topic=event.topic,
        key=event.key,
        payload=copy.deepcopy(event.payload),
        created_at=event.created_at,
        dispatched_at=event.dispatched_at,
    )


def _attempt(
    database: Database, subscription: Subscription, event: OutboxEvent, known: EventDelivery | None
) -> _Outcome:
    with database.sessions() as session:
        try:
            claimed = _claim(session, event.id, subscription.name, known)
        except (IntegrityError, OperationalError) as exc:
            # Another dispatcher holds or finished this pair (or the lock wait timed out).
            session.rollback()
            log.debug(
                "events.claim_lost",
                event_id=event.id,
                handler=subscription.name,
                reason=type(exc).__name__,
            )
            return _Outcome.SKIPPED
        if not claimed:
            session.rollback()
            return _Outcome.SKIPPED
        try:
            subscription.handler(session, _snapshot(event))
            session.commit()
        except Exception as exc:
            session.rollback()
            attempts = (known.attempts if known is not None else 0) + 1
            _record_failure(database, event.id, subscription.name, exc, attempts)
            log.warning(
                "events.handler_failed",
                event_id=event.id,
                handler=subscription.name,
                attempts=attempts,
                error=type(exc).__name__,
            )
            return _Outcome.FAILED
    return _Outcome.DELIVERED


def _mark_dispatched(
    database: Database, complete: dict[tuple[str, ...], list[int]], now: dt.datetime
) -> int:
    """Set ``dispatched_at`` on the events whose handlers all have them, as the database
    says; events are grouped by their handler names, one statement per group."""
    dispatched = 0
    with database.sessions() as session:
        try:
            for handlers, event_ids in complete.items():
                condition: list[ColumnElement[bool]] = [
                    OutboxEvent.id.in_(event_ids),
                    OutboxEvent.dispatched_at.is_(None),
                ]
                if handlers:
                    delivered = (
                        select(func.count())
                        .select_from(EventDelivery)
                        .where(
                            EventDelivery.event_id == OutboxEvent.id,
                            EventDelivery.delivered_at.is_not(None),
                            EventDelivery.handler.in_(handlers),
                        )
                        .scalar_subquery()
                    )
                    condition.append(delivered == len(handlers))
                result = session.execute(
                    update(OutboxEvent)
                    .where(*condition)
                    .values(dispatched_at=now)
                    .execution_options(synchronize_session=False)
                )
                dispatched += rows_affected(result)
            session.commit()
        except OperationalError as exc:
            # Busy database: the next pass finds these events complete and marks them.
            session.rollback()
            log.info("events.mark_deferred", reason=type(exc).__name__)
            return 0
    return dispatched


def _load_pending(
    database: Database, limit: int, now: dt.datetime
) -> tuple[list[OutboxEvent], dict[tuple[int, str], EventDelivery]]:
    backing_off = exists().where(
        EventDelivery.event_id == OutboxEvent.id,
        EventDelivery.delivered_at.is_(None),
        EventDelivery.next_attempt_at > now,
    )
    with database.sessions() as session:
        # Events whose failed handler is still waiting are left out, so a stuck handler
        # cannot fill every batch and starve the events behind it.
        events = list(
            session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.dispatched_at.is_(None), ~backing_off)
                .order_by(OutboxEvent.id)
                .limit(limit)
            )
        )
        if not events:
            return [], {}
        rows = session.scalars(
            select(EventDelivery).where(EventDelivery.event_id.in_([e.id for e in events]))
        )
        known = {(row.event_id, row.handler): row for row in rows}
    return events, known


def deliver_pending(
    database: Database, *, limit: int = 500, registry: HandlerRegistry | None = None
) -> DeliveryStats:
    """Deliver up to ``limit`` undispatched events, oldest first, to their handlers.

    Each (event, handler) pair not yet delivered runs in its own transaction together with
    its delivery mark. A failing handler is rolled back and retried on a later pass after an
    exponential backoff; the other handlers go on, and the event is dispatched once all of
    its handlers have it. Safe to run in several threads and processes at once.
    """
    handlers_registry = registry if registry is not None else default_registry
    stats = DeliveryStats()
    now = clock.now()
    events, known = _load_pending(database, limit, now)
    complete_events: dict[tuple[str, ...], list[int]] = {}
    for event in events:
        stats.events += 1
        subscriptions = handlers_registry.handlers_for(event.topic)
        complete = True
        for subscription in subscriptions:
            row = known.get((event.id, subscription.name))
            if row is not None and row.delivered_at is not None:
                continue
            if row is not None and row.next_attempt_at is not None and row.next_attempt_at > now:
                stats.backing_off += 1
                complete = False
                continue
            outcome = _attempt(database, subscription, event, row)
            if outcome is _Outcome.DELIVERED:
                stats.delivered += 1
            elif outcome is _Outcome.FAILED:
                stats.failed += 1
                complete = False
            else:
                # Someone else has it; whether it is done is for the database to say below.
                stats.skipped += 1
        if complete:
            complete_events.setdefault(tuple(s.name for s in subscriptions), []).append(event.id)
    if complete_events:
        stats.dispatched = _mark_dispatched(database, complete_events, clock.now())
    if stats.events:
        log.info("events.delivery_pass", **stats.as_dict())
    return stats


def purge_dispatched(database: Database, before: dt.datetime, *, chunk: int = 5000) -> int:
    """Delete the events dispatched before ``before`` with their delivery rows, ``chunk`` at
    a time, each chunk its own short transaction, the write lock left free for a moment
    between them (a night's purge neither holds it nor keeps gates from it). Events not yet
    dispatched stay, however old. Returns how many went."""
    purged = 0
    while True:
        with database.unit_of_work(immediate=True) as session:
            ids = list(
                session.scalars(
                    select(OutboxEvent.id)
                    .where(OutboxEvent.dispatched_at < before)
                    .order_by(OutboxEvent.id)
                    .limit(chunk)
                )
            )
            if ids:
                session.execute(delete(EventDelivery).where(EventDelivery.event_id.in_(ids)))
                session.execute(delete(OutboxEvent).where(OutboxEvent.id.in_(ids)))
        purged += len(ids)
        if len(ids) < chunk:
            return purged
        let_writers_in(database)


# Dispatchers running in this process; one after-commit hook wakes them all, so stopping a
# dispatcher leaves no hook behind.
_running: set[Dispatcher] = set()
_running_lock = threading.Lock()


def _wake_running() -> None:
    with _running_lock:
        dispatchers = list(_running)
    for dispatcher in dispatchers:
        dispatcher.wake()


on_any_commit(_wake_running)


class Dispatcher:
    """A daemon thread that delivers events: at once after a commit that published some,
    and every ``interval`` seconds for retries and for events committed by other processes.

    ``citybrain serve`` and ``citybrain worker`` start one each; running several is safe.
    """

    def __init__(
        self,
        database: Database | None = None,
        *,
        interval: float = 2.0,
        limit: int = 500,
        registry: HandlerRegistry | None = None,
    ) -> None:
        self._database = database
        self.interval = interval
        self.limit = limit
        self._registry = registry
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """Run a delivery pass now rather than at the next poll."""
        self._wakeup.set()

    def start(self) -> None:
        """Start the thread (no-op if running)."""
        if self.running:
            return
        if self._registry is None:
            # The process registry fills as task modules import; make sure every handler has
            # subscribed before the first pass, or its events would be dispatched without it.
            from citybrain.core.jobs.worker import import_task_modules

            import_task_modules()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="citybrain-events", daemon=True)
        with _running_lock:
            _running.add(self)
        self._thread.start()
        log.info("events.dispatcher_started", interval=self.interval)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread, letting a running pass finish (up to ``timeout`` seconds)."""
        with _running_lock:
            _running.discard(self)
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        log.info("events.dispatcher_stopped", passes=self.passes)

    def _run(self) -> None:
        database = self._database or get_database()
        while not self._stopping.is_set():
            # Clear before the pass: a commit during the pass sets it again, so its events
            # are picked up by an immediate next pass instead of waiting for the poll.
            self._wakeup.clear()
            full_batch = False
            try:
                stats = deliver_pending(database, limit=self.limit, registry=self._registry)
                full_batch = stats.events >= self.limit
            except Exception as exc:
                log.error("events.dispatch_pass_failed", error=describe_error(exc))
            self.passes += 1
            if not full_batch:
                self._wakeup.wait(self.interval)
