"""The cockpit's live stream: messages about changed figures and new alerts, sent after the
transaction that caused them commits, to every stream connection whose viewer may see them.

Embedded (SQLite, one process): a handler queues its messages on the session; after commit
they are put on the asyncio queue of every matching connection in this process.

PostgreSQL (several server processes): the handler sends them with ``pg_notify('cockpit', …)``
inside its transaction, which PostgreSQL delivers only on commit; one LISTEN thread per
process receives every notification (its own process's too) and does the local broadcast.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from citybrain.kit.db import Database
from citybrain.kit.logging import get_logger

log = get_logger(__name__)

CHANNEL = "cockpit"
QUEUE_SIZE = 256  # a connection that falls this far behind loses messages, not the server
_PENDING = "cockpit_live_pending"


@dataclass(eq=False)
class Connection:
    """One stream connection: the viewer's area and the queue its messages go to."""

    area_code: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))


def visible(message: dict[str, Any], area_code: str) -> dict[str, Any] | None:
    """The part of ``message`` a viewer of ``area_code`` may see, or None."""
    if message.get("event") == "alert":
        alert = message.get("data") or {}
        return message if str(alert.get("area_code", "")).startswith(area_code) else None
    data = message.get("data") or {}
    areas = [a for a in data.get("areas", []) if str(a).startswith(area_code)]
    if not areas:
        return None
    return {"event": message.get("event"), "data": {**data, "areas": areas}}


class Broadcaster:
    """The stream connections of this process."""

    def __init__(self) -> None:
        self._connections: set[Connection] = set()
        self._lock = threading.Lock()

    def connect(self, area_code: str) -> Connection:
        """A new connection for a viewer of ``area_code`` (call from the event loop)."""
        connection = Connection(area_code, asyncio.get_running_loop())
        with self._lock:
            self._connections.add(connection)
        return connection

    def disconnect(self, connection: Connection) -> None:
        """Forget a connection."""
        with self._lock:
            self._connections.discard(connection)

    def __len__(self) -> int:
        with self._lock:
            return len(self._connections)

    def broadcast(self, message: dict[str, Any]) -> int:
        """Hand ``message`` to every connection that may see it (any thread); how many."""
        with self._lock:
            connections = list(self._connections)
        sent = 0
        for connection in connections:
            part = visible(message, connection.area_code)
            if part is None:
                continue
            try:
                connection.loop.call_soon_threadsafe(_offer, connection.queue, part)
                sent += 1
            except RuntimeError:
                # The connection's loop has closed: the connection is gone.
                self.disconnect(connection)
        return sent


def _offer(queue: asyncio.Queue[dict[str, Any]], message: dict[str, Any]) -> None:
    try:
        queue.put_nowait(message)
    except asyncio.QueueFull:
        log.info("cockpit.stream_queue_full")


broadcaster = Broadcaster()


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def notify(session: Session, message: dict[str, Any]) -> None:
    """Send ``message`` to the streams once the session's transaction commits (never if it
    rolls back)."""
    payload = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    if _is_postgres(session):
        session.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload}
        )
        return
    session.info.setdefault(_PENDING, []).append(message)


def _send_pending(session: Session) -> None:
    for message in session.info.pop(_PENDING, None) or []:
        broadcaster.broadcast(message)


def _drop_pending(session: Session, previous_transaction: Any) -> None:
    # Only the outermost rollback loses the messages; a savepoint's leaves the rest pending.
    if previous_transaction.parent is None:
        session.info.pop(_PENDING, None)


# One listener for every session (cheap: a dict lookup), rather than one per session that
# would have to remove itself while SQLAlchemy iterates its listeners.
event.listen(Session, "after_commit", _send_pending)
event.listen(Session, "after_soft_rollback", _drop_pending)


class Listener:
    """A thread holding ``LISTEN cockpit`` on its own PostgreSQL connection, rebroadcasting
    every notification to this process's connections; reconnects after a lost connection."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self._dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, wait: float = 5.0) -> None:
        """Start listening; returns once LISTEN is in place (or ``wait`` seconds passed)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name="citybrain-cockpit-listen", daemon=True
        )
        self._thread.start()
        self._ready.wait(wait)

    def stop(self) -> None:
        """Stop the thread (within about a second)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self) -> None:
        import psycopg

        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._ready.set()
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._deliver(note.payload)
            except Exception as exc:  # a lost connection: wait and listen again
                log.warning("cockpit.listen_failed", error=type(exc).__name__)
                self._stopping.wait(2.0)

    @staticmethod
    def _deliver(payload: str) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if isinstance(message, dict):
            broadcaster.broadcast(message)


_listeners: dict[str, Listener] = {}
_listeners_lock = threading.Lock()


def ensure_listening(database: Database) -> None:
    """On PostgreSQL, make sure this process listens for the cockpit's notifications."""
    url = database.engine.url
    if url.get_backend_name() != "postgresql":
        return
    key = url.render_as_string(hide_password=False)
    with _listeners_lock:
        listener = _listeners.get(key)
        if listener is None:
            listener = _listeners[key] = Listener(key)
    listener.start()


def stop_listening() -> None:
    """Stop every listener of this process (tests, shutdown)."""
    with _listeners_lock:
        listeners = list(_listeners.values())
        _listeners.clear()
    for listener in listeners:
        listener.stop()
