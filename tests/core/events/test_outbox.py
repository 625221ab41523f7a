"""The transactional outbox: events leave only after commit, reach every handler at least
once, and a database handler's effects commit together with its delivery mark."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.core.events import (
    Dispatcher,
    EventDelivery,
    HandlerRegistry,
    OutboxEvent,
    deliver_pending,
    publish,
)
from citybrain.core.events.dispatcher import describe_error, purge_dispatched, retry_delay
from citybrain.kit import clock
from citybrain.kit.db import Database


@pytest.fixture
def handlers() -> HandlerRegistry:
    """A registry of the test's own, so handlers of other packages never run here."""
    return HandlerRegistry()


def _events(database: Database, topic: str | None = None) -> list[OutboxEvent]:
    with database.sessions() as session:
        query = select(OutboxEvent).order_by(OutboxEvent.id)
        if topic is not None:
            query = query.where(OutboxEvent.topic == topic)
        return list(session.scalars(query))


def _deliveries(database: Database) -> list[EventDelivery]:
    with database.sessions() as session:
        return list(
            session.scalars(
                select(EventDelivery).order_by(EventDelivery.event_id, EventDelivery.handler)
            )
        )


def _wait_for(condition: Any, timeout: float) -> float:
    """Poll ``condition`` until true; the seconds it took. Fails the test on timeout."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - start


def test_publish_in_rolled_back_transaction_leaves_no_event(
    fresh_database: Database, handlers: HandlerRegistry
) -> None:
    calls: list[int] = []
    handlers.add("case.reported", lambda _s, e: calls.append(e.id), name="test.recorder")

    with pytest.raises(RuntimeError), fresh_database.unit_of_work() as session:
        publish(session, "case.reported", {"case_id": 7}, key="7")
        session.flush()  # the row really was written inside the transaction
        raise RuntimeError("the change failed after the event was queued")

    assert _events(fresh_database) == []
    stats = deliver_pending(fresh_database, registry=handlers)
    assert stats.events == 0
    assert calls == []
    assert _deliveries(fresh_database) == []


def test_publish_never_commits_and_flags_the_session(fresh_database: Database) -> None:
    with fresh_database.sessions() as session:
        event = publish(session, "case.reported", {"case_id": 1}, key="1")
        assert session.info["wake_after_commit"] is True
        assert event in session.new  # queued in the caller's unit of work, not committed
        session.flush()
        assert event.id is not None
        assert event.created_at.tzinfo is not None
        session.rollback()
        assert "wake_after_commit" not in session.info
    assert _events(fresh_database) == []


def test_commit_delivers_payload_once_and_marks_dispatched(
    fresh_database: Database, handlers: HandlerRegistry
) -> None:
    received: list[tuple[str, str | None, dict[str, Any]]] = []

    @handlers.subscribe("case.*", name="test.cases")
    def on_case(_session: Session, event: OutboxEvent) -> None:
        received.append((event.topic, event.key, event.payload))

    with fresh_database.unit_of_work() as session:
        publish(session, "case.reported", {"case_id": 42, "areas": ["410102"]}, key="42")

    stats = deliver_pending(fresh_database, registry=handlers)
    assert (stats.events, stats.delivered, stats.dispatched) == (1, 1, 1)
    assert received == [("case.reported", "42", {"case_id": 42, "areas": ["410102"]})]
    [event] = _events(fresh_database)
    assert event.dispatched_at is not None
    [delivery] = _deliveries(fresh_database)
    assert (delivery.handler, delivery.attempts, delivery.last_error) == ("test.cases", 1, None)
    assert delivery.delivered_at is not None

    again = deliver_pending(fresh_database, registry=handlers)
    assert again.events == 0
    assert len(received) == 1


def test_delivered_handlers_are_not_rerun_while_another_is_pending(
    fresh_database: Database, handlers: HandlerRegistry
) -> None:
    good_calls: list[int] = []
    handlers.add("case.reported", lambda _s, e: good_calls.append(e.id), name="test.good")

    def broken(_session: Session, _event: OutboxEvent) -> None:
        raise RuntimeError("downstream unavailable")

    handlers.add("case.reported", broken, name="test.broken")
    with fresh_database.unit_of_work() as session:
        publish(session, "case.reported", {"case_id": 1})

    start = clock.now()
    for minutes in range(4):
        with clock.frozen(start + dt.timedelta(minutes=minutes)):
            deliver_pending(fresh_database, registry=handlers)
    assert len(good_calls) == 1
    delivery = {d.handler: d for d in _deliveries(fresh_database)}
    assert delivery["test.broken"].attempts == 4
    assert delivery["test.broken"].delivered_at is None
    assert _events(fresh_database)[0].dispatched_at is None


def test_failing_handler_backs_off_without_blocking_others(
    fresh_database: Database, handlers: HandlerRegistry
) -> None:
    good_calls: list[int] = []
    flaky_calls: list[int] = []
    later_calls: list[int] = []

    @handlers.subscribe("case.reported", name="test.good")
    def good(_session: Session, event: OutboxEvent) -> None:
        good_calls.append(event.id)

    @handlers.subscribe("case.*", name="test.flaky")
    def flaky(session: Session, event: OutboxEvent) -> None:
        flaky_calls.append(event.id)
        # Written, then undone by the failure: nothing of a failed run may survive.
        publish(session, "effect.recorded", {"of": event.id})
        if event.topic == "case.reported" and flaky_calls.count(event.id) <= 2:
            raise RuntimeError("callback to 13812345678 timed out\nDETAIL: raw row data")

    handlers.add("case.later", lambda _s, e: later_calls.append(e.id), name="test.later")

    with fresh_database.unit_of_work() as session:
        publish(session, "case.reported", {"case_id": 5}, key="5")

    t0 = dt.datetime(2024, 3, 1, 8, 0, tzinfo=dt.UTC)
    with clock.frozen(t0):
        first = deliver_pending(fresh_database, registry=handlers)
    assert (first.delivered, first.failed, first.dispatched) == (1, 1, 0)
    assert good_calls == flaky_calls == [1]
    flaky_row = {d.handler: d for d in _deliveries(fresh_database)}["test.flaky"]
    assert flaky_row.attempts == 1
    assert flaky_row.delivered_at is None
    assert flaky_row.next_attempt_at == t0 + dt.timedelta(seconds=1)
    # Class and first line only, scrubbed: no phone number, no driver detail.
    assert flaky_row.last_error == "RuntimeError: callback to 138****5678 timed out"
    assert _events(fresh_database, "effect.recorded") == []

    # Before the backoff ends nothing is retried, and a newer event is not held up behind it.
    with fresh_database.unit_of_work() as session:
        publish(session, "case.later", {})
    with clock.frozen(t0 + dt.timedelta(milliseconds=500)):
        waiting = deliver_pending(fresh_database, registry=handlers)
    assert (waiting.failed, waiting.delivered, waiting.dispatched) == (0, 2, 1)
    assert flaky_calls == [1, 2]
    assert later_calls == [2]

    t1 = t0 + dt.timedelta(seconds=2)
    with clock.frozen(t1):
        second = deliver_pending(fresh_database, registry=handlers)
    assert second.failed == 1
    flaky_row = {d.handler: d for d in _deliveries(fresh_database) if d.event_id == 1}["test.flaky"]
    assert flaky_row.attempts == 2
    assert flaky_row.next_attempt_at == t1 + dt.timedelta(seconds=2)  # the wait doubled
    assert _events(fresh_database)[0].dispatched_at is None

    with clock.frozen(t1 + dt.timedelta(seconds=3)):
        third = deliver_pending(fresh_database, registry=handlers)
    assert (third.delivered, third.failed) == (1, 0)
    assert good_calls == [1]  # never re-run while the flaky handler was retried
    assert flaky_calls == [1, 2, 1, 1]
    assert _events(fresh_database)[0].dispatched_at == t1 + dt.timedelta(seconds=3)
    final = {d.handler: d for d in _deliveries(fresh_database) if d.event_id == 1}["test.flaky"]
    assert final.attempts == 3
    assert final.delivered_at is not None
    effects = _events(fresh_database, "effect.recorded")
    assert sorted(e.payload["of"] for e in effects) == [1, 2]


def test_event_without_subscribers_is_dispatched(
    fresh_database: Database, handlers: HandlerRegistry
) -> None:
    with fresh_database.unit_of_work() as session:
        publish(session, "nobody.listens", {"n": 1})
    stats = deliver_pending(fresh_database, registry=handlers)
    assert stats.dispatched == 1
    assert _deliveries(fresh_database) == []


def test_two_dispatcher_threads_apply_each_delivery_exactly_once(
    fresh_database: Database, handlers: HandlerRegistry
) -> None:
    runs = Counter[int]()
    lock = threading.Lock()

    @handlers.subscribe("ping.sent", name="test.echo")
    def echo(session: Session, event: OutboxEvent) -> None:
        # A database effect: a follow-up event keyed by the ping it answers.
        publish(session, "ping.echoed", {"ping": event.id}, key=str(event.id))
        time.sleep(0.002)  # widen the window in which the two dispatchers overlap
        with lock:
            runs[event.id] += 1

    pings = 40
    with fresh_database.unit_of_work() as session:
        for n in range(pings):
            publish(session, "ping.sent", {"n": n})

    dispatchers = [
        Dispatcher(fresh_database, interval=0.05, limit=10, registry=handlers) for _ in range(2)
    ]
    for dispatcher in dispatchers:
        dispatcher.start()
    try:
        _wait_for(lambda: all(e.dispatched_at for e in _events(fresh_database, "ping.sent")), 15)
    finally:
        for dispatcher in dispatchers:
            dispatcher.stop()

    echoes = Counter(e.key for e in _events(fresh_database, "ping.echoed"))
    ping_ids = [e.id for e in _events(fresh_database, "ping.sent")]
    assert echoes == Counter({str(i): 1 for i in ping_ids})
    assert runs == Counter({i: 1 for i in ping_ids})
    deliveries = [d for d in _deliveries(fresh_database) if d.handler == "test.echo"]
    assert len(deliveries) == pings
    assert all(d.delivered_at is not None and d.attempts == 1 for d in deliveries)
    assert all(d.passes > 0 for d in dispatchers)


def test_commit_wakes_the_dispatcher_within_a_second(
    fresh_database: Database, handlers: HandlerRegistry
) -> None:
    delivered = threading.Event()
    handlers.add("case.reported", lambda _s, _e: delivered.set(), name="test.wake")
    # A poll interval far beyond the test: only the after-commit wake-up can deliver in time.
    dispatcher = Dispatcher(fresh_database, interval=60, registry=handlers)
    dispatcher.start()
    try:
        _wait_for(lambda: dispatcher.passes >= 1, 5)  # idle, waiting on its wake-up event
        with fresh_database.unit_of_work() as session:
            publish(session, "case.reported", {"case_id": 3})
        assert delivered.wait(1.0), "event not delivered within a second of the commit"
    finally:
        dispatcher.stop()
    assert not dispatcher.running
    with fresh_database.sessions() as session:
        undispatched = session.scalar(
            select(func.count()).where(OutboxEvent.dispatched_at.is_(None))
        )
    assert undispatched == 0


@pytest.mark.parametrize(
    "topic", ["Person.Registered", "person", "person registered", "person.", "a." + "b" * 70]
)
def test_publish_rejects_malformed_topics(topic: str) -> None:
    with pytest.raises(ValueError, match="topic"):
        publish(Session(), topic, {})


def test_publish_rejects_payload_that_is_not_json() -> None:
    session = Session()  # validation happens before anything reaches a database
    with pytest.raises(ValueError, match="JSON"):
        publish(session, "case.reported", {"at": clock.now()})
    with pytest.raises(ValueError, match="key"):
        publish(session, "case.reported", {}, key="k" * 65)


def test_subscription_patterns(handlers: HandlerRegistry) -> None:
    def noop(_session: Session, _event: OutboxEvent) -> None:
        return None

    handlers.add("person.registered", noop, name="exact")
    handlers.add("person.*", noop, name="prefix")
    handlers.add("*", noop, name="all")
    assert [s.name for s in handlers.handlers_for("person.registered")] == [
        "all",
        "exact",
        "prefix",
    ]
    assert [s.name for s in handlers.handlers_for("person.moved.out")] == ["all", "prefix"]
    assert [s.name for s in handlers.handlers_for("personnel.hired")] == ["all"]
    with pytest.raises(ValueError):
        handlers.add("person.*", lambda _s, _e: None, name="exact")  # name taken
    with pytest.raises(ValueError):
        handlers.add("Person.*", noop, name="bad")
    with pytest.raises(ValueError):
        handlers.add("person.*", noop, name="x" * 97)
    assert handlers.unsubscribe("prefix")
    assert [s.name for s in handlers.handlers_for("person.moved.out")] == ["all"]


def test_retry_delay_grows_and_is_capped() -> None:
    delays = [retry_delay(n).total_seconds() for n in range(1, 14)]
    assert delays[:4] == [1, 2, 4, 8]
    assert delays[-1] == 600
    assert all(a <= b for a, b in itertools.pairwise(delays))


def test_describe_error_keeps_no_personal_data() -> None:
    text = describe_error(ValueError("person 410102199003071234 rejected\nrow: secret"))
    assert text == "ValueError: person 4101**********1234 rejected"


def test_each_handler_gets_its_own_copy_of_the_payload(
    fresh_database: Database, handlers: HandlerRegistry
) -> None:
    seen: list[dict[str, Any]] = []

    def greedy(_session: Session, event: OutboxEvent) -> None:
        event.payload["areas"].clear()
        event.payload["mutated"] = True

    handlers.add("case.reported", greedy, name="test.a_greedy")
    handlers.add("case.reported", lambda _s, e: seen.append(e.payload), name="test.b_reader")
    with fresh_database.unit_of_work() as session:
        publish(session, "case.reported", {"areas": ["410102"]})
    deliver_pending(fresh_database, registry=handlers)
    assert seen == [{"areas": ["410102"]}]
    assert _events(fresh_database)[0].payload == {"areas": ["410102"]}


def test_delivered_events_are_purged_after_their_retention_and_pending_ones_stay(
    fresh_database: Database, handlers: HandlerRegistry
) -> None:
    handlers.add("case.reported", lambda _s, _e: None, name="test.good")

    def broken(_session: Session, _event: OutboxEvent) -> None:
        raise RuntimeError("downstream unavailable")

    handlers.add("case.stuck", broken, name="test.broken")
    start = clock.now() - dt.timedelta(days=10)
    with clock.frozen(start):
        with fresh_database.unit_of_work() as session:
            for n in range(7):
                publish(session, "case.reported", {"case_id": n})
            publish(session, "case.stuck", {"case_id": 99})
        deliver_pending(fresh_database, registry=handlers)
    with fresh_database.unit_of_work() as session:
        publish(session, "case.reported", {"case_id": 100})
    deliver_pending(fresh_database, registry=handlers)
    assert len(_events(fresh_database)) == 9 and len(_deliveries(fresh_database)) == 9

    # Three at a time: several short transactions, and the last finds fewer than three.
    purged = purge_dispatched(fresh_database, clock.now() - dt.timedelta(days=7), chunk=3)
    assert purged == 7
    left = _events(fresh_database)
    # The old event no handler has yet stays, however old; the recent one stays.
    assert [e.payload["case_id"] for e in left] == [99, 100]
    assert {d.event_id for d in _deliveries(fresh_database)} == {e.id for e in left}
    assert purge_dispatched(fresh_database, clock.now() - dt.timedelta(days=7)) == 0
