"""Running a request again when SQLite turned its write away, or when its write lost a race on
a unique key.

SQLite (the embedded default) begins a request's transaction when it first reads. If another
connection — the intake, an event handler, a job — commits between that read and the request's
first write, SQLite refuses the write at once ("database is locked": the request's snapshot is
stale, and no waiting can help it). The request's unit of work has then rolled back all of it,
so the whole request can simply run again on a fresh snapshot, as long as nothing of its answer
has been sent. Retrying here, once for all routes, spares every form and API from answering
a 500 under background load. A run again takes the write lock first and reuses what the first
run asked outside (``kit.attempts``); a request still refused on its last run is answered 503
by the app (``web.app``). PostgreSQL never raises this.

On either backend two requests can both find a row missing and both insert it (a resident's
double tap on "submit"); the second commit is refused on the unique key. Run once more, that
request finds the row and gives the answer it would have given a moment later. Other errors
pass through.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import nullcontext
from contextvars import ContextVar

from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citybrain.kit.attempts import one_request
from citybrain.kit.db import writes_first
from citybrain.kit.errors import RaceLost
from citybrain.kit.logging import get_logger

log = get_logger(__name__)

ATTEMPTS = 4
PAUSE_SECONDS = 0.02  # times the attempt: 20, 40, 60 ms


# A request that waited out the whole busy timeout is not run again (it would wait as long
# again); one turned away at once is.
WAITED_TOO_LONG_SECONDS = 1.0
SQLITE_BUSY_SNAPSHOT = 517  # extended result code: the snapshot is stale, waiting cannot help


def sqlite_busy(error: BaseException) -> bool:
    """Whether ``error`` is SQLite refusing a write for a lock or a stale snapshot."""
    cause = error.orig if isinstance(error, OperationalError) else error
    return isinstance(cause, sqlite3.OperationalError) and "database is locked" in str(cause)


def worth_retrying(error: BaseException, seconds: float) -> bool:
    """Whether a request that failed with ``error`` after ``seconds`` should run again: a
    stale snapshot always, any other lock refusal only when it came at once."""
    if not sqlite_busy(error):
        return False
    cause = error.orig if isinstance(error, OperationalError) else error
    if getattr(cause, "sqlite_errorcode", None) == SQLITE_BUSY_SNAPSHOT:
        return True
    return seconds < WAITED_TOO_LONG_SECONDS


SQLITE_CONSTRAINT_UNIQUE = 2067
SQLITE_CONSTRAINT_PRIMARYKEY = 1555
PG_UNIQUE_VIOLATION = "23505"


def lost_a_race(error: BaseException) -> bool:
    """Whether ``error`` is a write refused on a unique key, or a service's ``RaceLost``:
    another request (a double tap on a phone, a second gate) committed the same row since this
    one looked for it. Run again, the request sees that row and answers what the data now says
    (already registered, already recorded) instead of a 500."""
    if isinstance(error, RaceLost):
        return True
    if not isinstance(error, IntegrityError):
        return False
    cause = error.orig
    if isinstance(cause, sqlite3.IntegrityError):
        return getattr(cause, "sqlite_errorcode", None) in (
            SQLITE_CONSTRAINT_UNIQUE,
            SQLITE_CONSTRAINT_PRIMARYKEY,
        )
    return getattr(cause, "sqlstate", None) == PG_UNIQUE_VIOLATION


# Set for each run: whether another may follow, and when it began (see ``runs_again``).
_last_run: ContextVar[bool] = ContextVar("citybrain_last_run", default=True)
_run_began: ContextVar[float] = ContextVar("citybrain_run_began", default=0.0)


def runs_again(error: BaseException) -> bool:
    """Whether the request failing with ``error`` now will be run again (the app then lets
    the error through to ``run_retrying`` instead of answering it)."""
    return not _last_run.get() and worth_retrying(error, time.monotonic() - _run_began.get())


async def run_retrying(
    app: ASGIApp, scope: Scope, messages: list[Message], receive: Receive, send: Send
) -> None:
    """Run ``app`` on the request whose body ``messages`` were already read, again (up to
    ``ATTEMPTS`` in all) while it fails with SQLite busy before its answer started, and once
    when its write lost a race on a unique key (``lost_a_race``). A run again takes the
    write lock first, so it cannot be turned away for the same reason, and reuses what the
    first run asked outside (``kit.attempts``): it holds the lock only for its own reads and
    writes. The last run's failure is the app's to answer (503)."""
    raced = False
    with one_request():
        for attempt in range(1, ATTEMPTS + 1):
            pending = list(messages)
            started = False

            async def replay(pending: list[Message] = pending) -> Message:
                if pending:
                    return pending.pop(0)
                return await receive()

            async def watched(message: Message) -> None:
                nonlocal started
                if message["type"] == "http.response.start":
                    started = True
                await send(message)

            _last_run.set(attempt == ATTEMPTS)
            _run_began.set(time.monotonic())
            try:
                with writes_first() if attempt > 1 else nullcontext():
                    await app(scope, replay, watched)
                return
            except Exception as error:
                if started or attempt == ATTEMPTS:
                    raise
                if lost_a_race(error) and not raced:
                    raced = True  # once: a second time is a fault, not a race
                    reason = "unique_race"
                elif runs_again(error):  # the same verdict the app's 503 handler reached
                    reason = "database_busy"
                else:
                    raise
            # The method only: a path may carry a person's reference.
            log.warning("request.retried", reason=reason, method=scope.get("method"))
            await asyncio.sleep(PAUSE_SECONDS * attempt)
