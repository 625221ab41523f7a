"""The scan writer: group commit for gate scans (扫码记录批量提交).

Requests put their verified scan on a bounded queue and wait. One thread per process and
database takes whatever is waiting (up to ``batch_max``), decides and records it all in one
transaction (``service.record_scans``: one statement for the rows, one batch row, one audit
row, one outbox event) and commits; only then is each waiting request answered. While a
commit runs the next batch gathers, so batches grow with the load and the cost per scan
falls as it rises. Nothing is answered before it is committed, so nothing answered is lost.

Past ``queue_capacity`` waiting scans a request is refused at once with ``Overloaded`` (the
API answers 429 with Retry-After): back-pressure instead of a queue that grows until every
answer is late. A database that is briefly unavailable (locked, restarting) gives the same
answer; any other failure of a batch is retried scan by scan, so one bad scan fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError

from citybrain.healthcode.service import ScanOutcome, ScanRequest, record_scans
from citybrain.healthcode.settings import get_healthcode_settings
from citybrain.kit.db import Database
from citybrain.kit.errors import CitybrainError, RateLimited
from citybrain.kit.logging import get_logger

log = get_logger(__name__)


class Overloaded(RateLimited):
    """Too many scans waiting: try again after ``retry_after`` seconds (HTTP 429)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"扫码请求过多，请{retry_after}秒后重试",
            f"too many scans waiting; retry in {retry_after} s",
            code="overloaded",
        )
        self.retry_after = retry_after


@dataclass
class _Pending:
    request: ScanRequest
    future: asyncio.Future[ScanOutcome]
    loop: asyncio.AbstractEventLoop


def _settle(results: list[tuple[asyncio.Future[ScanOutcome], ScanOutcome | BaseException]]) -> None:
    """Answer waiting requests (runs on their event loop)."""
    for future, result in results:
        if future.done():  # the request gave up waiting
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


class ScanWriter:
    """The group-commit writer of one process for one database."""

    def __init__(self, database: Database) -> None:
        self.database = database
        settings = get_healthcode_settings()
        self.capacity = settings.queue_capacity
        self.batch_max = settings.batch_max
        self.batch_wait = settings.batch_wait_ms / 1000.0
        self._queue: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="scan-writer", daemon=True)
        self._started = False
        # Counters (plain ints under the condition's lock): for the benchmark and metrics.
        self.committed = 0
        self.batches = 0
        self.refused = 0
        self._rate = 2000.0  # scans per second recently committed (a moving estimate)

    # -- the request side --------------------------------------------------------------------

    def submit(self, request: ScanRequest) -> asyncio.Future[ScanOutcome]:
        """Queue a scan; the returned future (of the running loop) completes after commit.
        Raises ``Overloaded`` at once when the queue is full."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ScanOutcome] = loop.create_future()
        with self._cond:
            if self._closed:
                raise Overloaded(1)
            if len(self._queue) >= self.capacity:
                self.refused += 1
                raise Overloaded(self._retry_after(len(self._queue)))
            self._queue.append(_Pending(request, future, loop))
            if not self._started:
                self._started = True
                self._thread.start()
            # Wake the writer only when it waits for a first scan or a full batch: a wake-up
            # per scan would cost a thread switch each and cut batches short.
            if len(self._queue) == 1 or len(self._queue) >= self.batch_max:
                self._cond.notify()
        return future

    async def record(self, request: ScanRequest, *, timeout: float | None = None) -> ScanOutcome:
        """Queue a scan and wait until it is committed; ``Overloaded`` if the queue is full
        or the wait exceeds ``timeout`` (the scan may still be committed then)."""
        future = self.submit(request)
        wait = timeout or get_healthcode_settings().commit_timeout_seconds
        try:
            return await asyncio.wait_for(future, wait)
        except TimeoutError as exc:
            raise Overloaded(self._retry_after(self.waiting)) from exc

    @property
    def waiting(self) -> int:
        """Scans queued and not yet taken by the writer."""
        return len(self._queue)

    def _retry_after(self, waiting: int) -> int:
        return max(1, math.ceil(waiting / max(self._rate, 1.0)))

    # -- the writer thread ------------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._started:
            self._thread.join(timeout)

    def _take(self) -> list[_Pending] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None
            if self.batch_wait and len(self._queue) < self.batch_max and not self._closed:
                # A moment for the batch to fill when the writer was idle (under load, the
                # previous commit's time does this anyway); a full batch ends it early.
                self._cond.wait(self.batch_wait)
            count = min(len(self._queue), self.batch_max)
            return [self._queue.popleft() for _ in range(count)]

    def _run(self) -> None:
        while True:
            items = self._take()
            if items is None:
                return
            started = time.perf_counter()
            results = self._write(items)
            elapsed = max(time.perf_counter() - started, 1e-4)
            with self._cond:
                self.batches += 1
                self.committed += sum(1 for r in results if not isinstance(r, BaseException))
                self._rate = 0.8 * self._rate + 0.2 * (len(items) / elapsed)
            self._answer(items, results)

    def _commit(self, requests: Sequence[ScanRequest]) -> list[ScanOutcome]:
        with self.database.unit_of_work(immediate=True) as session:
            return record_scans(session, requests)

    def _write(self, items: list[_Pending]) -> list[ScanOutcome | BaseException]:
        requests = [item.request for item in items]
        try:
            return list(self._commit(requests))
        except OperationalError as exc:
            log.warning("healthcode.scan_batch_unavailable", error=type(exc).__name__)
            return [Overloaded(1)] * len(items)
        except (CitybrainError, DBAPIError, ValueError) as exc:
            if len(items) == 1:
                return [exc]
        except Exception as exc:  # a bug: every scan of the batch learns of it
            log.exception("healthcode.scan_batch_failed")
            return [exc] * len(items)
        # One scan spoiled the batch: each alone, so only it fails.
        results: list[ScanOutcome | BaseException] = []
        for request in requests:
            try:
                results.extend(self._commit([request]))
            except OperationalError:
                results.append(Overloaded(1))
            except Exception as exc:
                results.append(exc)
        return results

    def _answer(
        self, items: list[_Pending], results: Sequence[ScanOutcome | BaseException]
    ) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for item, result in zip(items, results, strict=True):
            by_loop.setdefault(item.loop, []).append((item.future, result))
        for loop, settled in by_loop.items():
            # A closed loop (RuntimeError) means nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, settled)


_writers: dict[int, ScanWriter] = {}
_writers_lock = threading.Lock()


def writer_for(database: Database) -> ScanWriter:
    """The process's scan writer for ``database``, made on first use."""
    with _writers_lock:
        writer = _writers.get(id(database))
        if writer is None or writer.database is not database:
            writer = _writers[id(database)] = ScanWriter(database)
        return writer


def close_writers() -> None:
    """Drain and stop every writer (process shutdown, tests)."""
    with _writers_lock:
        writers = list(_writers.values())
        _writers.clear()
    for writer in writers:
        writer.close()


class LoopLag:
    """How far behind an event loop runs: a callback due every ``interval`` seconds notes how
    late it ran. When the server is past capacity on CPU rather than on the database, scans
    wait to be read, not in the writer's queue; a late loop is how that shows, and new scans
    are then refused at once (429) instead of answered seconds late."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self._lag: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, float] = (
            weakref.WeakKeyDictionary()
        )

    def lag(self) -> float:
        """Seconds the running loop's last tick was late (starts watching on first call)."""
        loop = asyncio.get_running_loop()
        if loop not in self._lag:
            self._lag[loop] = 0.0
            loop.call_later(self.interval, self._tick, loop, loop.time() + self.interval)
        return self._lag[loop]

    def _tick(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        now = loop.time()
        self._lag[loop] = max(0.0, now - due)
        loop.call_later(self.interval, self._tick, loop, now + self.interval)


loop_lag = LoopLag()


def check_capacity(writer: ScanWriter | None = None) -> None:
    """Raise ``Overloaded`` when the event loop runs too late to answer a scan in time."""
    limit = get_healthcode_settings().max_loop_lag_ms / 1000.0
    late = loop_lag.lag()
    if limit and late > limit:
        if writer is not None:
            writer.refused += 1
        raise Overloaded(max(1, math.ceil(late)))
