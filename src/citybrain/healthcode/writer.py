"""The scan writer: group commit for gate scans (扫码记录批量提交).

Requests put their verified scan on a bounded queue and wait. The writer of the event loop
takes whatever is waiting (up to ``batch_max``) once the oldest scan has waited
``batch_wait_ms``, decides and records it all in one transaction (``service.record_scans``:
one read for persons and colours, one insert for the rows, one batch row, one audit row, one
outbox event) and commits; only then is each waiting request answered. The busier the gate,
the more scans share a commit. Nothing is answered before it is committed, so nothing answered
is lost.

The batch runs on the event loop itself, between requests, not on a thread of its own: a
thread must win Python's global lock back after every statement (each database call lets it
go), and while the loop is busy verifying codes that costs up to a switch interval each time,
so a threaded writer spent most of its time waiting and the loop much of its time handing the
lock over (measured on two cores: about 1,000 scans/s with a p99 of 0.2-1.9 s, against about
2,300/s and 30-40 ms on the loop). A batch holds the loop for 2-5 ms on SQLite and 5-9 ms on
PostgreSQL, whose round trips it waits for (an asynchronous driver, giving the loop back at
each round trip through SQLAlchemy's greenlet bridge, was measured too: more CPU per scan,
fewer scans per second).

Past ``queue_capacity`` waiting scans a request is refused at once with ``Overloaded`` (the
API answers 429 with Retry-After): back-pressure instead of a queue that grows until every
answer is late. The writer never waits for SQLite's lock with the loop held: it takes the
database's one write lock only if it is free (``BEGIN IMMEDIATE`` without a busy wait) and
otherwise tries again a moment later while the loop serves requests (another server process,
or a job, is writing). On PostgreSQL a batch waits for a row lock at most ``lock_timeout``
(20 ms) and is then tried again in the same way, the loop serving meanwhile: the holder may be
a staff request of this very process, which cannot commit until the loop hands its work on. A
statement runs at most ``statement_timeout`` (2 s), so a stuck database holds a server
process's loop for seconds at worst. A scan that waits past ``commit_timeout_seconds``, or a
database that is unavailable, gives the same 429; any other failure of a batch is retried scan
by scan, so one bad scan fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from citybrain.healthcode import repository
from citybrain.healthcode.deps import device_tokens
from citybrain.healthcode.service import (
    FROM_DATABASE,
    DeviceWithdrawn,
    ScanOutcome,
    ScanRequest,
    record_scans,
)
from citybrain.healthcode.settings import get_healthcode_settings
from citybrain.kit.db import Database
from citybrain.kit.errors import CitybrainError, RateLimited
from citybrain.kit.logging import get_logger

log = get_logger(__name__)

# How soon a batch that found SQLite's write lock taken tries again.
BUSY_RETRY_SECONDS = 0.002
# A batch whose oldest scan waited longer than this is logged (a warning).
SLOW_BATCH_SECONDS = 0.5
# PostgreSQL: the longest a batch's statement waits for a row lock with the loop held before
# the batch gives the loop back and tries again (another process's batch holds the audit
# chain's head for a millisecond or two). Longer waits were a trap: a staff request of this
# very process holding the head cannot commit until the loop hands its work on, so the batch
# waited out the whole timeout every time.
PG_LOCK_TIMEOUT_MS = 20
PG_STATEMENT_TIMEOUT_MS = 2000
PG_CONNECT_TIMEOUT_S = 2
_SQLITE_BUSY = 5  # SQLITE_BUSY (the primary code of "database is locked")
_PG_LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout ran out


class Overloaded(RateLimited):
    """Too many scans waiting: try again after ``retry_after`` seconds (HTTP 429)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"扫码请求过多，请{retry_after}秒后重试",
            f"too many scans waiting; retry in {retry_after} s",
            code="overloaded",
        )
        self.retry_after = retry_after


class _LockBusy(Exception):
    """SQLite's write lock, or a row lock on PostgreSQL, is held by another connection: try
    the batch again soon, the loop serving meanwhile."""


def _lock_busy(error: OperationalError) -> bool:
    code = getattr(error.orig, "sqlite_errorcode", None)
    if code is not None:
        return bool((code & 0xFF) == _SQLITE_BUSY)
    return getattr(error.orig, "sqlstate", None) == _PG_LOCK_NOT_AVAILABLE


def _sqlite_no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
    # After the platform's own pragmas (busy_timeout 10 s): this engine's connections never
    # wait for the write lock, they report it busy at once; and they leave checkpoints to the
    # checkpointer's thread (a checkpoint in a commit syncs the disk with the loop held).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


class Checkpointer:
    """SQLite: copies the write-ahead log back into the database every ``interval`` seconds,
    on a thread of its own (``PRAGMA wal_checkpoint(PASSIVE)``: it waits for no reader or
    writer and none waits for it). The scan writer's connections never checkpoint in a commit,
    where the disk syncs of a checkpoint would hold the event loop for tens of milliseconds at
    the worst moment; kept short this way, the log rarely reaches the size at which other
    connections checkpoint in their commits either."""

    def __init__(self, database: Database, interval: float = 1.0) -> None:
        self.database = database
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scan-checkpointer", daemon=True)
        self.checkpoints = 0

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (after its current checkpoint)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self.database.engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
                self.checkpoints += 1
            except Exception as exc:  # the next interval tries again
                log.warning("healthcode.checkpoint_failed", error=type(exc).__name__)


class PlaceCache:
    """The places scans are made at, kept in memory for ``seconds``: a place's kind, name and
    compound almost never change, and the writer would otherwise read them for every batch.
    A place deleted meanwhile is still refused, by the scan rows' foreign key: the batch
    fails, and each of its scans is retried alone with the places read afresh."""

    def __init__(self, seconds: float = 60.0) -> None:
        self.seconds = seconds
        self._places: dict[str, tuple[repository.PlaceAtGate, float]] = {}

    def places(self, session: Session, codes: set[str]) -> dict[str, repository.PlaceAtGate]:
        """The places of ``codes`` that exist, by code (the database asked for those not
        known or known for too long)."""
        now = time.monotonic()
        found: dict[str, repository.PlaceAtGate] = {}
        unknown = set()
        for code in codes:
            hit = self._places.get(code)
            if hit is not None and hit[1] > now:
                found[code] = hit[0]
            else:
                unknown.add(code)
        if unknown:
            fresh = repository.places_at_gate(session, unknown)
            if len(self._places) > 100_000:
                self._places.clear()
            for code, place in fresh.items():
                self._places[code] = (place, now + self.seconds)
            found.update(fresh)
        return found

    def clear(self) -> None:
        """Forget every place (after a batch failed)."""
        self._places.clear()


@dataclass
class _Pending:
    request: ScanRequest
    future: asyncio.Future[ScanOutcome]
    queued_at: float


def _settle(settled: list[tuple[asyncio.Future[ScanOutcome], ScanOutcome | BaseException]]) -> None:
    """Answer waiting requests (on their event loop)."""
    for future, result in settled:
        if future.done():  # the request gave up waiting
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


class ScanWriter:
    """The group-commit writer of one event loop for one database.

    It writes through an engine of its own (one connection): on SQLite one that never waits
    for the write lock, on PostgreSQL one whose statements give up after ``lock_timeout``.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        settings = get_healthcode_settings()
        self.capacity = settings.queue_capacity
        self.batch_max = settings.batch_max
        self.batch_wait = settings.batch_wait_ms / 1000.0
        self.commit_timeout = settings.commit_timeout_seconds
        self.places = PlaceCache()
        self._queue: deque[_Pending] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_at: asyncio.Handle | None = None
        self._closed = False
        self._writes: Database | None = None
        self._checkpointer: Checkpointer | None = None
        # Counters: for the benchmark and metrics.
        self.committed = 0
        self.batches = 0
        self.refused = 0
        self.lock_busy = 0
        self._rate = 2000.0  # scans per second recently committed (a moving estimate)

    # -- the request side --------------------------------------------------------------------

    def submit(self, request: ScanRequest) -> asyncio.Future[ScanOutcome]:
        """Queue a scan; the returned future completes after its batch commits. Raises
        ``Overloaded`` at once when the queue is full. Call it on the writer's event loop."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError("a scan writer serves one event loop (see writer_for)")
        if self._closed:
            raise Overloaded(1)
        self.check_room()
        future: asyncio.Future[ScanOutcome] = loop.create_future()
        self._queue.append(_Pending(request, future, time.monotonic()))
        if len(self._queue) >= self.batch_max:
            # A full batch goes now rather than when its oldest scan is due.
            if self._flush_at is not None:
                self._flush_at.cancel()
            self._flush_at = loop.call_soon(self._flush)
        else:
            self._schedule()
        return future

    def check_room(self) -> None:
        """Raise ``Overloaded`` if the queue is full: the API asks before it verifies a code,
        so a refused scan costs no signature check."""
        if len(self._queue) >= self.capacity:
            self.refused += 1
            raise Overloaded(self._retry_after(len(self._queue)))

    async def record(self, request: ScanRequest, *, timeout: float | None = None) -> ScanOutcome:
        """Queue a scan and wait until it is committed; ``Overloaded`` if the queue is full
        or the wait exceeds ``timeout`` (the scan may still be committed then)."""
        future = self.submit(request)
        # A timer on the loop rather than ``asyncio.wait_for``, which wraps the wait in a task
        # of its own: this runs once per scan.
        timer = future.get_loop().call_later(timeout or self.commit_timeout, self._expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    def _expire(self, future: asyncio.Future[ScanOutcome]) -> None:
        if not future.done():
            future.set_exception(Overloaded(self._retry_after(self.waiting)))

    @property
    def waiting(self) -> int:
        """Scans queued and not yet committed."""
        return len(self._queue)

    def _retry_after(self, waiting: int) -> int:
        return max(1, math.ceil(waiting / max(self._rate, 1.0)))

    # -- the batches -------------------------------------------------------------------------

    def _schedule(self, delay: float | None = None) -> None:
        """Flush when the oldest waiting scan is due (or after ``delay``)."""
        if self._flush_at is not None or not self._queue or self._loop is None:
            return
        if delay is None:
            delay = self._queue[0].queued_at + self.batch_wait - time.monotonic()
        self._flush_at = self._loop.call_later(max(0.0, delay), self._flush)

    def _flush(self) -> None:
        """Write one batch (on the loop) and answer its requests."""
        self._flush_at = None
        if not self._queue:
            return
        items = [self._queue.popleft() for _ in range(min(len(self._queue), self.batch_max))]
        started = time.perf_counter()
        try:
            results = self._write(items)
        except _LockBusy:
            # Another writer holds the lock: the loop goes on serving, the batch waits.
            self._queue.extendleft(reversed(items))
            self.lock_busy += 1
            self._schedule(BUSY_RETRY_SECONDS)
            return
        self._count(items, results, time.perf_counter() - started)
        waited = time.monotonic() - items[0].queued_at
        if waited > SLOW_BATCH_SECONDS:
            # Rare and telling: another writer (a lake export on SQLite) held the lock.
            log.warning(
                "healthcode.scan_batch_late",
                waited_ms=round(waited * 1000),
                scans=len(items),
                lock_busy=self.lock_busy,
            )
        _settle([(item.future, result) for item, result in zip(items, results, strict=True)])
        self._schedule()

    def _count(
        self, items: list[_Pending], results: Sequence[ScanOutcome | BaseException], took: float
    ) -> None:
        self.batches += 1
        self.committed += sum(1 for r in results if not isinstance(r, BaseException))
        self._rate = 0.8 * self._rate + 0.2 * (len(items) / max(took, 1e-4))

    def _own_database(self) -> Database:
        if self._writes is None:
            url = self.database.url
            if self.database.dialect == "postgresql":
                options = (
                    f"-c lock_timeout={PG_LOCK_TIMEOUT_MS} "
                    f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS}"
                )
                # No ping per checkout (a round trip per batch): a broken connection fails one
                # batch (429, retried by the gate) and the pool replaces it.
                self._writes = Database(
                    url,
                    pool_size=1,
                    max_overflow=1,
                    pool_pre_ping=False,
                    connect_args={"options": options, "connect_timeout": PG_CONNECT_TIMEOUT_S},
                )
            else:
                self._writes = Database(url, pool_size=1, max_overflow=1)
                event.listen(self._writes.engine, "connect", _sqlite_no_busy_wait)
                self._checkpointer = Checkpointer(self._writes)
                self._checkpointer.start()
        return self._writes

    @contextlib.contextmanager
    def _unit_of_work(self) -> Iterator[Session]:
        with self._own_database().unit_of_work(immediate=True) as session:
            try:
                session.connection()  # begins: SQLite takes its write lock here, or says busy
            except OperationalError as exc:
                if _lock_busy(exc):
                    raise _LockBusy from exc
                raise
            yield session

    def _commit(self, requests: Sequence[ScanRequest], *, cached: bool = True) -> list[ScanOutcome]:
        with self._unit_of_work() as session:
            outcomes = record_scans(
                session, requests, places=self.places if cached else FROM_DATABASE
            )
            # The batch's event leaves with the dispatcher's next poll (every 2 s), not by a
            # wake-up after this commit: its one handler schedules the lake export 30 s later,
            # so at once gains nothing, while a delivery pass per batch (three transactions,
            # each waiting for SQLite's write lock) would cost as much as the batch itself.
            session.info.pop("wake_after_commit", None)
            return outcomes

    def _write(self, items: list[_Pending]) -> list[ScanOutcome | BaseException]:
        """The outcome (or the error) of each scan; raises ``_LockBusy`` to be tried again."""
        requests = [item.request for item in items]
        try:
            return list(self._commit(requests))
        except _LockBusy:
            raise
        except DeviceWithdrawn as withdrawn:
            return self._without_devices(items, withdrawn.token_ids)
        except OperationalError as exc:
            if _lock_busy(exc):
                raise _LockBusy from exc
            log.warning("healthcode.scan_batch_unavailable", error=type(exc).__name__)
            return [Overloaded(1)] * len(items)
        except (CitybrainError, DBAPIError, ValueError) as exc:
            if len(items) == 1 and not isinstance(exc, DBAPIError):
                return [exc]
        except Exception as exc:  # a bug: every scan of the batch learns of it
            log.exception("healthcode.scan_batch_failed")
            return [exc] * len(items)
        # One scan spoiled the batch: each alone, with the places read afresh, so only it
        # fails (a place deleted meanwhile: InvalidInput, not the foreign key's error).
        self.places.clear()
        results: list[ScanOutcome | BaseException] = []
        for request in requests:
            try:
                results.extend(self._commit([request], cached=False))
            except (_LockBusy, OperationalError):
                results.append(Overloaded(1))
            except Exception as exc:
                results.append(exc)
        return results

    def _without_devices(
        self, items: list[_Pending], token_ids: frozenset[int]
    ) -> list[ScanOutcome | BaseException]:
        """Refuse the scans of withdrawn device tokens (401) and record the rest of the batch
        (raises ``_LockBusy`` to try the whole batch again, which asks again)."""
        device_tokens.forget(token_ids)
        kept = [item for item in items if item.request.device_token_id not in token_ids]
        outcomes = iter(self._write(kept) if kept else [])
        return [
            DeviceWithdrawn.refusal()
            if item.request.device_token_id in token_ids
            else next(outcomes)
            for item in items
        ]

    # -- shutting down -----------------------------------------------------------------------

    async def aclose(self, timeout: float = 10.0) -> None:
        """On the writer's loop: commit what is queued (waiting for SQLite's lock up to
        ``timeout``), answer it, refuse anything new, and release the writer's connection."""
        self._closed = True
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        deadline = time.monotonic() + timeout
        while self._queue:
            items = [self._queue.popleft() for _ in range(min(len(self._queue), self.batch_max))]
            try:
                results = self._write(items)
            except _LockBusy:
                if time.monotonic() < deadline:
                    self._queue.extendleft(reversed(items))
                    await asyncio.sleep(BUSY_RETRY_SECONDS)
                    continue
                results = [Overloaded(1)] * len(items)
            _settle([(item.future, result) for item, result in zip(items, results, strict=True)])
        self._dispose()

    def close(self, timeout: float = 10.0) -> None:
        """``aclose`` from outside the writer's loop: run on that loop while it runs (from
        another thread), else done here (the loop has ended: nobody awaits an answer, but
        what was queued is still committed)."""
        loop = self._loop
        if loop is not None and loop.is_running():
            if _running_on(loop):
                raise RuntimeError("on the writer's own loop, await aclose()")
            asyncio.run_coroutine_threadsafe(self.aclose(timeout), loop).result(timeout + 5)
            return
        self._closed = True
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        deadline = time.monotonic() + timeout
        while self._queue:
            items = [self._queue.popleft() for _ in range(min(len(self._queue), self.batch_max))]
            try:
                self._write(items)
            except _LockBusy:
                if time.monotonic() > deadline:
                    break
                self._queue.extendleft(reversed(items))
                time.sleep(BUSY_RETRY_SECONDS)
        self._queue.clear()
        self._dispose()

    def _dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        if self._writes is not None:
            self._writes.dispose()
            self._writes = None


def _running_on(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the calling thread is running ``loop``."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


_writers: dict[tuple[int, int], ScanWriter] = {}
_writers_lock = threading.Lock()


def writer_for(database: Database) -> ScanWriter:
    """The scan writer of the running event loop for ``database``, made on first use (a
    server process has one loop, so one writer per database)."""
    loop = asyncio.get_running_loop()
    key = (id(database), id(loop))
    with _writers_lock:
        writer = _writers.get(key)
        if writer is None or writer.database is not database or writer._loop not in (None, loop):
            writer = _writers[key] = ScanWriter(database)
        return writer


def close_writers() -> None:
    """Commit what is queued and stop every writer (process shutdown, tests)."""
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
