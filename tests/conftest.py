"""Shared fixtures: a real database (SQLite file or a fresh PostgreSQL database), a
transaction per test, the loaded hierarchy as the small synthetic city, and factories.

Choose the backend with ``CITYBRAIN_TEST_DB=sqlite|postgresql``; PostgreSQL is reached at
``CITYBRAIN_TEST_PG_URL`` (default: the local server on 127.0.0.1:5432).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

# Settings are read at import time by some modules (the job queue); fix them first.
_TEST_DATA_DIR = Path(tempfile.mkdtemp(prefix="citybrain-test-"))
os.environ["CITYBRAIN_ENV"] = "test"
os.environ["CITYBRAIN_DATA_DIR"] = str(_TEST_DATA_DIR)
os.environ.pop("CITYBRAIN_DATABASE_URL", None)
os.environ.pop("CITYBRAIN_JOBS_URL", None)

import pytest  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from citybrain import schema  # noqa: E402
from citybrain.kit.db import Database, set_database  # noqa: E402
from citybrain.kit.settings import reset_settings  # noqa: E402
from tests.identity_service import TOKEN as IDENTITY_TOKEN  # noqa: E402
from tests.identity_service import FakeIdentityService  # noqa: E402
from tests.sms_gateway import TOKEN as SMS_TOKEN  # noqa: E402
from tests.sms_gateway import FakeSmsGateway  # noqa: E402

BACKEND = os.environ.get("CITYBRAIN_TEST_DB", "sqlite")
PG_ADMIN_URL = os.environ.get(
    "CITYBRAIN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock-at",
        default=None,
        metavar="HH:MM",
        help="move the platform's clock so that the run starts at HH:MM today in the city's "
        "time (CST), still ticking: finds tests that fail near a local midnight",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL pass runs the tests that can reach a database: those built on
    ``database_factory`` (every database of the tests comes from it). It leaves to the SQLite
    pass what would only run the same code on the same input again — generators, engines on
    the lake, parsers, pure functions — and what costs much CPU for an answer the backend does
    not change: the Spark parity tests (``one_backend``) and the pages in Chromium
    (``browser``; the queries behind every page run on PostgreSQL in their own tests). The
    suite must fit CI's 20 minutes on two cores."""
    if BACKEND != "postgresql":
        return
    kept, once = [], []
    for item in items:
        reaches_database = "database_factory" in getattr(item, "fixturenames", ())
        backend_blind = item.get_closest_marker("one_backend") or item.get_closest_marker("browser")
        if reaches_database and not backend_blind:
            kept.append(item)
        else:
            once.append(item)
    if once:
        config.hook.pytest_deselected(items=once)
        items[:] = kept


def pytest_configure(config: pytest.Config) -> None:
    at = config.getoption("--clock-at")
    if at:
        from citybrain.kit import clock

        hours, minutes = (int(part) for part in str(at).split(":"))
        local = clock.now().astimezone(clock.CHINA_TZ)
        start = local.replace(hour=hours, minute=minutes, second=0, microsecond=0)
        shift = clock.shifted(start - local)
        shift.__enter__()
        config.add_cleanup(lambda: shift.__exit__(None, None, None))


def pytest_report_header(config: pytest.Config) -> str:
    at = config.getoption("--clock-at")
    moved = f"; clock moved to {at} CST" if at else ""
    return f"citybrain test database backend: {BACKEND}{moved}"


class DatabaseFactory:
    """Creates empty databases on the backend under test and drops them afterwards."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.created: list[str] = []

    def new_url(self) -> str:
        """URL of a new, empty database."""
        name = f"cbtest_{uuid.uuid4().hex[:12]}"
        if BACKEND == "sqlite":
            return f"sqlite:///{self.root / (name + '.db')}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        self.created.append(name)
        return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    def new_database(self) -> Database:
        """A new database with the full schema."""
        database = Database(self.new_url())
        schema.metadata.create_all(database.engine)
        return database

    def drop_all(self) -> None:
        if not self.created:
            return
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in self.created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session", autouse=True)
def sms_gateway() -> Iterator[FakeSmsGateway]:
    """The city's SMS platform as a real HTTP server for the whole run (each xdist worker has
    its own); ``kit.sms`` posts to it, and tests read residents' codes from it."""
    gateway = FakeSmsGateway()
    gateway.start()
    os.environ["CITYBRAIN_SMS_GATEWAY_URL"] = gateway.url
    os.environ["CITYBRAIN_SMS_GATEWAY_TOKEN"] = SMS_TOKEN
    # Tests ask for codes back to back; the resend interval has its own test.
    os.environ["CITYBRAIN_SMS_RESEND_SECONDS"] = "0"
    reset_settings()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session", autouse=True)
def identity_service() -> Iterator[FakeIdentityService]:
    """The city's real-name verification service as a real HTTP server for the whole run,
    knowing the synthetic people the factories hand out; ``kit.identity`` asks it."""
    service = FakeIdentityService()
    service.start()
    os.environ["CITYBRAIN_IDENTITY_GATEWAY_URL"] = service.url
    os.environ["CITYBRAIN_IDENTITY_GATEWAY_TOKEN"] = IDENTITY_TOKEN
    reset_settings()
    yield service
    service.stop()


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str | None], None]]:
    """Set (or, with None, remove) a ``CITYBRAIN_*`` variable for this test and re-read the
    settings; both are undone afterwards."""

    def set_variable(name: str, value: str | None) -> None:
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
        reset_settings()

    yield set_variable
    monkeypatch.undo()
    reset_settings()


@pytest.fixture(scope="session")
def database_factory() -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(_TEST_DATA_DIR)
    yield factory
    factory.drop_all()


@pytest.fixture(scope="session")
def database(database_factory: DatabaseFactory) -> Iterator[Database]:
    """The session's database: full schema and the real hierarchy with its compounds."""
    db = database_factory.new_database()
    from citybrain.core.geo.service import load_hierarchy

    with db.unit_of_work() as session:
        load_hierarchy(session)
    set_database(db)
    yield db
    set_database(None)
    db.dispose()


@pytest.fixture
def session(database: Database) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test.

    Code under test may commit: commits become SAVEPOINT releases inside the outer
    transaction, so nothing outlives the test.
    """
    connection = database.engine.connect()
    outer = connection.begin()
    test_session = Session(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    try:
        yield test_session
    finally:
        test_session.close()
        outer.rollback()
        connection.close()


@pytest.fixture
def fresh_database(database_factory: DatabaseFactory) -> Iterator[Database]:
    """A database of its own for tests that commit for real (CLI, server, browser)."""
    db = database_factory.new_database()
    yield db
    db.dispose()
