"""Background work of the big-data centre: every night, the rows past their retention period
leave the lake, the linkage store and the quarantine (``datahub.retention``)."""

from __future__ import annotations

from citybrain.core.jobs.queue import schedule
from citybrain.datahub.retention import purge_expired
from citybrain.kit.db import get_database
from citybrain.kit.logging import get_logger

log = get_logger(__name__)


@schedule(minute="45", hour="3")
def purge_expired_lake_files() -> None:
    """At 03:45 in the city: purge the files whose retention period is over (after the gate
    scans' own purge at 03:30, whose exported files are purged here in their turn)."""
    summary = purge_expired(get_database())
    log.info(
        "datahub.retention_purged",
        files=summary.files,
        parts=summary.parts_removed,
        by_category=summary.by_category,
    )
