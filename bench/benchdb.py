"""What the single-process benchmarks share: a fresh data directory and an empty schema.

Imported by the scripts beside it (``python bench/x.py`` puts this folder on the path).
"""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from citybrain.kit.db import Database


def empty_database(database_url: str | None, *, prefix: str) -> Database:
    """A fresh temporary data directory (set as ``CITYBRAIN_DATA_DIR`` before citybrain's
    settings are read) and, in ``database_url`` or a new SQLite file there, an empty schema."""
    data_dir = tempfile.mkdtemp(prefix=prefix)
    os.environ["CITYBRAIN_DATA_DIR"] = data_dir
    os.environ.setdefault("CITYBRAIN_ENV", "dev")
    from citybrain import schema
    from citybrain.kit.db import Database

    database = Database(database_url or f"sqlite:///{data_dir}/bench.db")
    schema.metadata.drop_all(database.engine)
    schema.metadata.create_all(database.engine)
    return database
