"""Running a request again when SQLite turned its write away.

SQLite (the embedded default) begins a request's transaction when it first reads. If another
connection — the intake, an event handler, a job — commits between that read and the request's
first write, SQLite refuses the write at once ("database is locked": the request's snapshot is
stale, and no waiting can help it). The request's unit of work has then rolled back all of it,
so the whole request can simply run again on a fresh snapshot, as long as nothing of its answer
has been sent. Retrying here, once for all routes, spares every form and API from answering
a 500 under background load. PostgreSQL never raises this; other errors pass through.
"""

from __future__ import annotations

import asyncio
import sqlite3

from sqlalchemy.exc import OperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citybrain.kit.logging import get_logger

log = get_logger(__name__)

ATTEMPTS = 4
PAUSE_SECONDS = 0.02  # times the attempt: 20, 40, 60 ms


def sqlite_busy(error: BaseException) -> bool:
    """Whether ``error`` is SQLite refusing a write for a lock or a stale snapshot."""
    cause = error.orig if isinstance(error, OperationalError) else error
    return isinstance(cause, sqlite3.OperationalError) and "database is locked" in str(cause)


async def run_retrying(
    app: ASGIApp, scope: Scope, messages: list[Message], receive: Receive, send: Send
) -> None:
    """Run ``app`` on the request whose body ``messages`` were already read, again (up to
    ``ATTEMPTS`` in all) while it fails with SQLite busy before its answer started."""
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

        try:
            await app(scope, replay, watched)
            return
        except Exception as error:
            if started or attempt == ATTEMPTS or not sqlite_busy(error):
                raise
        # The method only: a path may carry a person's reference.
        log.warning("request.retried", reason="database_busy", method=scope.get("method"))
        await asyncio.sleep(PAUSE_SECONDS * attempt)
