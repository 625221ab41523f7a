"""Database base: declarative Base with naming conventions, portable column types, engines
(SQLite in WAL mode with foreign keys and a busy timeout; PostgreSQL via psycopg 3) and the
unit of work that every request, command and job runs its writes in."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

from sqlalchemy import JSON, CursorResult, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from citybrain.kit.clock import as_utc
from citybrain.kit.settings import get_settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every table; one metadata for one Alembic tree."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every backend (SQLite stores them naive; we restore the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use citybrain.kit.clock.now()")
        utc = value.astimezone(dt.UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return as_utc(value)


JSONType = JSON().with_variant(JSONB(), "postgresql")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not pysqlite, emit BEGIN: pysqlite's own transaction handling breaks
    # SAVEPOINTs, which the test suite and nested units of work rely on.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    milliseconds = round(get_settings().sqlite_busy_timeout_seconds * 1000)
    cursor.execute(f"PRAGMA busy_timeout={milliseconds}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# SQLite's deferred BEGIN lets two transactions both read and then both try to write; the
# second fails at once with "database is locked" (no busy wait can help it). Work that writes
# from several threads asks for BEGIN IMMEDIATE, which waits for the write lock up front.
_begin_immediate: ContextVar[bool] = ContextVar("citybrain_begin_immediate", default=False)


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if _begin_immediate.get() else "BEGIN")


@contextmanager
def writes_first() -> Iterator[None]:
    """Inside the block, every transaction that begins on SQLite takes the write lock first
    (``BEGIN IMMEDIATE``): for writers on several threads at once, and for work run again
    after SQLite turned its write away, which must not be turned away twice. The flag is
    restored by value, not by token (see ``Database.unit_of_work``). PostgreSQL needs
    nothing."""
    previous = _begin_immediate.get()
    _begin_immediate.set(True)
    try:
        yield
    finally:
        _begin_immediate.set(previous)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            connect_args={
                "check_same_thread": False,
                "timeout": get_settings().sqlite_busy_timeout_seconds,
            },
            # A failed statement's message names its SQL, never its values: they may be a
            # person's (an appeal's text, a ciphertext), and errors reach the logs.
            hide_parameters=True,
            **kwargs,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, hide_parameters=True, **kwargs)


_after_commit_hooks: list[Callable[[], None]] = []
_hooks_lock = threading.Lock()


def on_any_commit(hook: Callable[[], None]) -> None:
    """Call ``hook`` after every commit of a session that queued outbox events.

    The events package registers its dispatcher wake-up here, so events leave only after
    the transaction that wrote them has committed.
    """
    with _hooks_lock:
        if hook not in _after_commit_hooks:
            _after_commit_hooks.append(hook)


def _after_commit(session: Session) -> None:
    if session.info.pop("wake_after_commit", False):
        for hook in list(_after_commit_hooks):
            hook()


def _after_rollback(session: Session) -> None:
    session.info.pop("wake_after_commit", None)


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        event.listen(self.sessions, "after_commit", _after_commit)
        event.listen(self.sessions, "after_soft_rollback", lambda s, _t: _after_rollback(s))

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextmanager
    def unit_of_work(self, *, immediate: bool = False) -> Iterator[Session]:
        """A session whose writes commit together at the end of the block, or not at all.

        ``immediate``: on SQLite take the write lock when the transaction starts (for writers
        that run on several threads at once); PostgreSQL needs nothing.
        """
        # Only writers that ask touch the flag (``writes_first`` restores it by value: a
        # generator dependency may finish in another context than it started in, where
        # resetting a ContextVar token raises).
        with writes_first() if immediate else nullcontext():
            session = self.sessions()
            try:
                with transaction(session):
                    yield session
            finally:
                session.close()

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()


# How long a long job leaves SQLite's write lock free between its transactions. A gate's
# scan writer (healthcode.writer) looks for the lock every 2 ms and never waits for it: a job
# that takes the lock again at once is nearly never found without it, and gates wait for the
# whole job (0 takes in a list's 4 chunks without the pause, tests/risk/test_batches.py).
WRITE_LOCK_PAUSE_SECONDS = 0.02


def let_writers_in(database: Database) -> None:
    """Between two transactions of a long job's loop (a list's facts, a city's colours
    after a rule change, a night's purge): on SQLite, leave the one write lock free for a
    moment so that gates' scans and staff's requests get in; on PostgreSQL, nothing."""
    if database.dialect == "sqlite":
        time.sleep(WRITE_LOCK_PAUSE_SECONDS)


def rows_affected(result: Any) -> int:
    """How many rows an UPDATE or DELETE statement's ``result`` touched (0 for anything else)."""
    return int(result.rowcount) if isinstance(result, CursorResult) else 0


@contextmanager
def transaction(session: Session) -> Iterator[Session]:
    """Commit ``session`` at the end of the block; on error roll back, then run and commit the
    error's ``after_rollback`` hooks (see CitybrainError.keep) before re-raising."""
    try:
        yield session
        session.commit()
    except BaseException as exc:
        rollback_keeping(session, exc)
        raise


def rollback_keeping(session: Session, exc: BaseException) -> None:
    """Roll back the failed work, then run and commit what ``exc`` asks to keep (the record
    of a denied attempt, a failed login's counter)."""
    session.rollback()
    hooks = getattr(exc, "after_rollback", None)
    if hooks:
        for hook in hooks:
            hook(session)
        session.commit()


_database: Database | None = None
_database_lock = threading.Lock()


def get_database() -> Database:
    """The process's database, built from settings on first use."""
    global _database
    with _database_lock:
        if _database is None:
            _database = Database(get_settings().resolved_database_url)
        return _database


def set_database(database: Database | None) -> None:
    """Replace the process's database (tests, the CLI's --database option)."""
    global _database
    with _database_lock:
        if _database is not None and database is not _database:
            _database.dispose()
        _database = database


@contextmanager
def use_database(database: Database) -> Iterator[Database]:
    """Make ``database`` the process's database for the block, then restore the previous one
    (jobs and commands that call get_database(), in tests)."""
    global _database
    with _database_lock:
        previous, _database = _database, database
    try:
        yield database
    finally:
        with _database_lock:
            _database = previous
