"""Alembic, driven from code: upgrade, current and head revisions."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

import citybrain


def migrations_dir() -> Path:
    """The one Alembic tree: ``migrations/`` at the project root (or CITYBRAIN_MIGRATIONS_DIR)."""
    override = os.environ.get("CITYBRAIN_MIGRATIONS_DIR")
    if override:
        return Path(override)
    return Path(citybrain.__file__).resolve().parents[2] / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config for ``database_url`` without reading alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database at ``database_url`` to ``revision``."""
    command.upgrade(alembic_config(database_url), revision)


def head_revision() -> str | None:
    """The newest revision in the tree."""
    return ScriptDirectory(str(migrations_dir())).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision the connected database is at (None when never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()
