"""The one Alembic tree builds exactly the schema the models describe, on both backends."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import insert, text

from citybrain import schema
from citybrain.core.people.models import Person
from citybrain.healthcode.models import HealthCard
from citybrain.kit.db import Database
from citybrain.kit.migrate import head_revision, migrations_dir, upgrade
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


REBUILD_PERSONS = '''"""test only: rebuild the persons table, as SQLite's batch mode often does"""

import sqlalchemy as sa
from alembic import op

revision = "9001"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("persons", recreate="always") as batch_op:
        batch_op.add_column(sa.Column("rebuilt", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("persons", recreate="always") as batch_op:
        batch_op.drop_column("rebuilt")
'''


def test_a_migration_that_rebuilds_persons_keeps_the_rows_that_point_at_them(
    database_factory: DatabaseFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite's batch mode copies a table and drops the old one. With foreign keys on, the drop
    # would delete every printed health card (ON DELETE CASCADE) of every person: the
    # migrations run with them off, and are checked afterwards.
    url = database_factory.new_url()
    if not url.startswith("sqlite"):
        pytest.skip("SQLite's table rebuilds only; PostgreSQL alters tables in place")
    upgrade(url)
    at = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    database = Database(url)
    try:
        with database.unit_of_work() as session:
            session.execute(
                insert(Person).values(
                    ref="R" * 32,
                    name_enc=b"x",
                    id_number_enc=b"x",
                    id_number_bidx="b" * 64,
                    name_bidx="n" * 64,
                    birth_date=dt.date(1940, 1, 1),
                    sex="F",
                    area_code="410105001003001",
                    created_at=at,
                    updated_at=at,
                )
            )
            session.execute(
                insert(HealthCard).values(
                    person_ref="R" * 32,
                    holder_name="张*",
                    id_tail="1234",
                    area_code="410105001003001",
                    issued_via="staff",
                    issued_by="user:1",
                    issued_at=at,
                    expires_at=at + dt.timedelta(days=180),
                )
            )
    finally:
        database.dispose()
    tree = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), tree)
    (tree / "versions" / "9001_rebuild_persons.py").write_text(
        REBUILD_PERSONS.replace("{down}", str(head_revision()))
    )
    monkeypatch.setenv("CITYBRAIN_MIGRATIONS_DIR", str(tree))
    upgrade(url)
    database = Database(url)
    try:
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM health_cards")).scalar() == 1
            columns = [row[1] for row in conn.execute(text("PRAGMA table_info(persons)"))]
            assert "rebuilt" in columns
            # Foreign keys are on again for everyone else.
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        database.dispose()
