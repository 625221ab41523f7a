"""Retention (数据到期清除): a file's rows leave the lake, the linkage store and the quarantine
once the newest day they hold is older than their category's retention period (the source
catalogue's ``retention_days``: 60 days for travel records, 30 for gate scans, ...).

A file goes as a whole, so reconciliation stays exact: its ledger row is kept as history with
``purged_at`` set, and from then on it must own no part anywhere. The ledger rows are marked
(with one audit row and one event) and committed first, then the parts are deleted; a run that
dies in between leaves parts that reconciliation reports and the next run removes.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.audit.service import SYSTEM, Actor, record
from citybrain.core.events.service import publish
from citybrain.datahub import lake
from citybrain.datahub.catalog import catalog
from citybrain.datahub.models import STATUS_INGESTED, STATUS_REJECTED, IntakeFile
from citybrain.datahub.push import intake_turn
from citybrain.kit import clock
from citybrain.kit.db import Database

TOPIC_FILES_PURGED = "datahub.files_purged"


@dataclass
class PurgeSummary:
    """What one retention run removed."""

    files: int = 0  # ledger rows newly marked purged
    accepted: int = 0  # their rows that were in the lake (and the linkage store)
    quarantined: int = 0  # their rows that were in the quarantine
    parts_removed: int = 0  # part files deleted (also of files marked by an earlier run)
    by_category: dict[str, int] = field(default_factory=dict)  # files per category

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def newest_day(row: IntakeFile) -> dt.date:
    """The newest day a file's rows belong to: its last record day, else the day it was
    delivered, else the day it was taken in (a file rejected as a whole has no record days)."""
    return row.last_day or row.delivered_day or row.ingested_at.astimezone(clock.CHINA_TZ).date()


def expired_files(session: Session, today: dt.date) -> list[IntakeFile]:
    """Finished, not yet purged files whose newest day is past their category's retention
    period on ``today`` (the city's calendar day). A category the catalogue no longer knows
    is kept: nothing says how long."""
    sources = catalog()
    finished = session.scalars(
        select(IntakeFile)
        .where(
            IntakeFile.status.in_([STATUS_INGESTED, STATUS_REJECTED]),
            IntakeFile.purged_at.is_(None),
        )
        .order_by(IntakeFile.id)
    )
    expired = []
    for row in finished:
        source = sources.get(row.category)
        if source is not None and newest_day(row) < today - dt.timedelta(
            days=source.retention_days
        ):
            expired.append(row)
    return expired


def mark_expired_files(session: Session, actor: Actor = SYSTEM) -> PurgeSummary:
    """Mark every expired file purged, with one audit row and one ``datahub.files_purged``
    event when any is. Never commits; deletes nothing (``purge_expired`` does, after)."""
    now = clock.now()
    summary = PurgeSummary()
    categories: Counter[str] = Counter()
    for row in expired_files(session, now.astimezone(clock.CHINA_TZ).date()):
        row.purged_at = now
        summary.files += 1
        summary.accepted += row.accepted
        summary.quarantined += row.quarantined
        categories[row.category] += 1
    summary.by_category = dict(sorted(categories.items()))
    if summary.files:
        counts = {
            "files": summary.files,
            "accepted": summary.accepted,
            "quarantined": summary.quarantined,
            "by_category": summary.by_category,
        }
        record(session, actor, "datahub.retention_purge", object_type="intake_file", detail=counts)
        publish(session, TOPIC_FILES_PURGED, counts)
    return summary


def purge_expired(
    database: Database, paths: lake.LakePaths | None = None, *, actor: Actor = SYSTEM
) -> PurgeSummary:
    """Take the expired files' rows out of the lake, the linkage store and the quarantine:
    mark them in the ledger and commit, then delete the parts of every purged file (so a run
    cut short between the two is finished by the next). Holds the intake lock, waiting for a
    running intake as a push does (409 ``intake_busy`` if it does not finish)."""
    paths = paths or lake.LakePaths.default()
    with intake_turn(paths):
        # Reads, then writes: on SQLite the write lock is taken up front, or a writer in
        # another thread committing in between fails the upgrade at once.
        with database.unit_of_work(immediate=True) as session:
            summary = mark_expired_files(session, actor)
            purged = set(
                session.scalars(select(IntakeFile.file_id).where(IntakeFile.purged_at.is_not(None)))
            )
        summary.parts_removed = lake.remove_parts_of(paths, purged)
        lake.remove_empty_folders(paths)
    return summary
