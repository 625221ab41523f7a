"""The one Alembic tree builds exactly the schema the models describe, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import text

from citybrain import schema
from citybrain.kit.db import Database
from citybrain.kit.migrate import head_revision, upgrade
from citybrain.web.app import create_app
from tests.conftest import DatabaseFactory


def test_migrations_match_the_models_and_guard_the_audit_log(
    database_factory: DatabaseFactory,
) -> None:
    url = database_factory.new_url()
    upgrade(url)
    database = Database(url)
    try:
        with database.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), schema.metadata)
            assert differences == []
            head = conn.execute(text("SELECT seq, hash FROM audit_head")).one()
            assert head.seq == 0 and head.hash == "0" * 64
        with database.unit_of_work() as session:
            from citybrain.core.audit.service import SYSTEM, record, verify_chain

            record(session, SYSTEM, "test.migrated")
            assert verify_chain(session).ok
        with database.engine.connect() as conn:
            failed = False
            try:
                conn.execute(text("DELETE FROM audit_log"))
            except Exception as exc:
                failed = "append-only" in str(exc)
            assert failed
    finally:
        database.dispose()


def test_readyz_reports_the_schema_revision(database_factory: DatabaseFactory) -> None:
    url = database_factory.new_url()
    database = Database(url)
    try:
        with TestClient(create_app(database)) as client:
            pending = client.get("/readyz")
            assert pending.status_code == 503
            assert pending.json()["status"] == "migrations_pending"
            upgrade(url)
            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json() == {
                "status": "ok",
                "revision": head_revision(),
                "head": head_revision(),
            }
    finally:
        database.dispose()
