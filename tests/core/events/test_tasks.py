"""The events package's background work: the safety-net schedule and the dispatcher
service that every worker starts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from citybrain.core.events import OutboxEvent, publish
from citybrain.core.jobs import TASK_MODULES, get_queue, import_task_modules, reset_queue
from citybrain.core.jobs.worker import registered_services
from citybrain.kit.db import Database, use_database


@pytest.fixture
def queue_file(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    reset_queue(url)
    yield url
    reset_queue()


def test_periodic_delivery_job_is_registered_every_minute(queue_file: str) -> None:
    assert "citybrain.core.events.tasks" in TASK_MODULES
    import_task_modules()
    queue = get_queue()
    name = "citybrain.core.events.tasks.deliver_outbox"
    periodic = {queue._registry.task_to_string(type(t)) for t in queue._registry.periodic_tasks}
    assert name in periodic
    # Due at any minute of the day, as the scheduler sees it.
    for minute in (0, 17, 59):
        due = queue.read_periodic(dt.datetime(2024, 3, 1, 3, minute))
        assert name in {queue._registry.task_to_string(type(t)) for t in due}
    assert "events.dispatcher" in registered_services()


def test_periodic_delivery_job_dispatches_pending_events(
    queue_file: str, database: Database, fresh_database: Database
) -> None:
    import_task_modules()
    with fresh_database.unit_of_work() as session:
        publish(session, "safety.net", {"n": 1})
    queue = get_queue()
    [task] = [
        t for t in queue.read_periodic(dt.datetime(2024, 3, 1, 3, 0)) if t.name == "deliver_outbox"
    ]
    with use_database(fresh_database):  # the process database the job reads
        queue.execute(task)  # as a consumer's worker would
    with fresh_database.sessions() as session:
        event = session.scalars(select(OutboxEvent)).one()
    assert event.dispatched_at is not None


def test_the_nightly_purge_of_delivered_events_is_scheduled(queue_file: str) -> None:
    import_task_modules()
    queue = get_queue()
    name = "citybrain.core.events.tasks.purge_delivered_events"
    # 04:15 in the city is 20:15 UTC the day before.
    due = queue.read_periodic(dt.datetime(2024, 3, 1, 20, 15))
    assert name in {queue._registry.task_to_string(type(t)) for t in due}
    not_due = queue.read_periodic(dt.datetime(2024, 3, 1, 4, 15))
    assert name not in {queue._registry.task_to_string(type(t)) for t in not_due}
