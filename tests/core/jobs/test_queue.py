"""Durable jobs on a real SQLite queue file: they survive a restart, retry with growing
delays, keep their scheduled time, and run in an in-process consumer."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huey import PriorityRedisHuey, SqliteHuey

from citybrain.core.jobs import EmbeddedWorker, build_queue, get_queue, job, reset_queue
from citybrain.core.jobs.queue import city_crontab
from citybrain.kit.db import Database

ATTEMPTS: dict[str, list[tuple[float, int, float]]] = defaultdict(list)


@job(retries=0)
def add(a: int, b: int) -> int:
    """A job with a result to read back."""
    return a + b


@job(retries=2, retry_delay=0.25, backoff=4.0, context=True)
def flaky(token: str, task: Any = None) -> str:
    """Fails on its first two runs; records when it ran and what huey planned next."""
    ATTEMPTS[token].append((time.monotonic(), task.retries, task.retry_delay))
    if len(ATTEMPTS[token]) <= 2:
        raise RuntimeError("not yet")
    return "done"


@job(retries=0)
def wall_clock() -> float:
    """When it ran (epoch seconds)."""
    return time.time()


@pytest.fixture
def queue_file(tmp_path: Path) -> Iterator[str]:
    """Point the process's queue at a file of this test's own; back to settings afterwards."""
    url = f"sqlite:///{tmp_path / 'queue' / 'jobs.db'}"
    reset_queue(url)
    yield url
    reset_queue()


def _wait_for(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.02)


def test_queue_is_built_from_the_url_and_creates_the_directory(queue_file: str) -> None:
    queue = get_queue()
    assert isinstance(queue, SqliteHuey)
    assert queue.name == "citybrain"
    assert not queue.immediate
    assert not queue.store_intermediate_errors  # waiters see the final outcome of retries
    assert Path(queue.storage.filename).is_file()
    assert get_queue() is queue  # cached
    with pytest.raises(ValueError):
        build_queue("sqlite:///:memory:")
    with pytest.raises(ValueError):
        build_queue("postgresql://localhost/jobs")


def test_enqueued_job_survives_a_restart_and_runs(queue_file: str) -> None:
    result = add(2, 3)
    before = get_queue()
    assert before.pending_count() == 1

    reset_queue(queue_file)  # what a process restart does: a new instance on the same file
    after = get_queue()
    assert after is not before
    assert after.pending_count() == 1

    worker = EmbeddedWorker(workers=1, services=[], periodic=False)
    worker.start()
    try:
        assert after.result(result.id, blocking=True, timeout=4) == 5
    finally:
        worker.stop()
    assert after.pending_count() == 0


def test_failing_job_is_retried_with_growing_delays(queue_file: str) -> None:
    token = f"flaky-{time.monotonic_ns()}"
    worker = EmbeddedWorker(workers=1, services=[], periodic=False)
    worker.start()
    try:
        result = flaky(token)
        assert get_queue().result(result.id, blocking=True, timeout=4.5) == "done"
    finally:
        worker.stop()

    runs = ATTEMPTS[token]
    assert len(runs) == 3
    assert [left for _, left, _ in runs] == [2, 1, 0]
    planned = [delay for _, _, delay in runs]
    assert planned == [0.25, 1.0, 4.0]  # each wait ``backoff`` times the previous one
    # Each retry waits at least its planned delay. (Not that the second gap is longer than
    # the first: the consumer looks at its schedule about once a second, so under load a
    # 0.25 s wait can last longer than a 1 s one.)
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(runs)]
    assert gaps[0] >= planned[0]
    assert gaps[1] >= planned[1]


def test_job_defaults_retry_five_times_with_backoff() -> None:
    @job()
    def defaults_probe() -> None:
        return None

    task = defaults_probe.task
    assert (task.retries, task.retry_delay) == (5, 2.0)
    assert task.task_class.default_retry_backoff == 2.0
    assert defaults_probe.call_local() is None


def test_scheduled_job_keeps_its_time_across_a_restart(queue_file: str) -> None:
    worker = EmbeddedWorker(workers=1, services=[], periodic=False)
    worker.start()
    # The queue keeps wall time (not the platform's clock, which a test run may move).
    eta = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
    result = wall_clock.schedule(eta=eta)
    try:
        # The worker takes it off the queue and parks it in the schedule until its time.
        _wait_for(lambda: get_queue().scheduled_count() == 1, 1.0)
    finally:
        worker.stop()

    reset_queue(queue_file)
    queue = get_queue()
    assert (queue.pending_count(), queue.scheduled_count()) == (0, 1)
    worker = EmbeddedWorker(workers=1, services=[], periodic=False)
    worker.start()
    try:
        ran_at = queue.result(result.id, blocking=True, timeout=4)
    finally:
        worker.stop()
    assert ran_at >= eta.timestamp()
    with pytest.raises(ValueError):
        wall_clock.schedule(eta=dt.datetime(2030, 1, 1))  # naive: refused


def test_embedded_worker_leaves_signal_handlers_and_runs_services(queue_file: str) -> None:
    class Recorder:
        def __init__(self) -> None:
            self.events: list[str] = []

        def start(self) -> None:
            self.events.append("start")

        def stop(self) -> None:
            self.events.append("stop")

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    service = Recorder()
    worker = EmbeddedWorker(workers=2, services=[service], periodic=False)
    worker.start()
    try:
        assert worker.running
        assert service.events == ["start"]
        # Huey's own Consumer.start() would have replaced these (and broken uvicorn's Ctrl-C).
        assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    finally:
        worker.stop()
    assert service.events == ["start", "stop"]
    assert not worker.running


def test_crontab_fields_are_read_in_china_time() -> None:
    two_am_in_zhengzhou = city_crontab(minute="0", hour="2")
    assert two_am_in_zhengzhou(dt.datetime(2024, 3, 1, 18, 0))  # naive UTC, as huey passes it
    assert not two_am_in_zhengzhou(dt.datetime(2024, 3, 1, 2, 0))
    with pytest.raises(ValueError):
        city_crontab(hour="25")


def _redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _redis_available(), reason="no Redis on 127.0.0.1:6379")
def test_redis_url_builds_the_priority_redis_queue() -> None:
    queue = build_queue("redis://127.0.0.1:6379/15")
    assert isinstance(queue, PriorityRedisHuey)
    queue.storage.enqueue(b"low", priority=1)
    queue.storage.enqueue(b"high", priority=9)
    try:
        assert queue.storage.dequeue() == b"high"
        assert queue.storage.dequeue() == b"low"
    finally:
        queue.storage.flush_queue()
        queue.storage.pool.disconnect()


def test_worker_process_delivers_events_and_stops_gracefully(
    fresh_database: Database, tmp_path: Path
) -> None:
    from citybrain.core.events import OutboxEvent, publish

    with fresh_database.unit_of_work() as session:
        publish(session, "worker.probe", {"n": 1})
    env = dict(os.environ)
    env.update(
        CITYBRAIN_DATA_DIR=str(tmp_path),
        CITYBRAIN_DATABASE_URL=fresh_database.url,
        CITYBRAIN_JOBS_URL=f"sqlite:///{tmp_path / 'jobs.db'}",
    )
    code = "from citybrain.core.jobs import run_worker; run_worker(1)"
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def dispatched() -> bool:
            with fresh_database.sessions() as session:
                event = session.query(OutboxEvent).one()
                return event.dispatched_at is not None

        _wait_for(dispatched, 4.5)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr[-2000:]
