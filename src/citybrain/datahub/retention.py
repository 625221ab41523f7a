"""Retention (数据到期清除): a file's rows leave the lake, the linkage store and the quarantine
once the newest day they hold is older than their category's retention period (the source
catalogue's ``retention_days``: 60 days for travel records, 30 for gate scans, ...).

A file whose newest day is past it goes as a whole: its ledger row is kept as history with
``purged_at`` set, and from then on it must own no part anywhere. A file spanning several days
(late records, a backlog) loses its older days as each reaches the period, since the lake and
the linkage store are partitioned by day: its ledger row notes the last day gone
(``purged_through``) and the accepted rows that went with them (``purged_rows``, counted from
the parts before they are deleted), so reconciliation stays exact; its quarantined rows go
with the whole file. The ledger rows are marked (with one audit row and one event) and
committed first, then the parts are deleted; a run that dies in between leaves parts that
reconciliation reports and the next run removes.
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
from citybrain.datahub.vault import Vault
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
    trimmed_files: int = 0  # multi-day files that lost their days past retention
    trimmed_rows: int = 0  # the accepted rows of those days

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


def _retention_start(category: str, today: dt.date) -> dt.date | None:
    """The oldest day of ``category`` still kept on ``today`` (None: the catalogue does not
    know the category, so nothing says how long)."""
    source = catalog().get(category)
    return None if source is None else today - dt.timedelta(days=source.retention_days)


def _expired_days(
    paths: lake.LakePaths, row: IntakeFile, keep_from: dt.date, vault: Vault
) -> tuple[dt.date | None, int]:
    """The last of a file's days before ``keep_from`` not purged yet, and the accepted rows
    those days hold (counted in the linkage store, where each accepted record is once)."""
    last, rows = None, 0
    for part in lake.linkage_parts_of(paths, row.category, row.file_id):
        day = lake.day_of(part)
        if day is None or day >= keep_from:
            continue
        if row.purged_through is not None and day <= row.purged_through:
            continue
        rows += vault.metadata(part).num_rows
        last = day if last is None else max(last, day)
    return last, rows


def mark_expired_files(
    session: Session, actor: Actor = SYSTEM, paths: lake.LakePaths | None = None
) -> PurgeSummary:
    """Mark every expired file purged, and the expired days of every file spanning several,
    with one audit row and one ``datahub.files_purged`` event when any is. Never commits;
    deletes nothing (``purge_expired`` does, after)."""
    paths = paths or lake.LakePaths.default()
    now = clock.now()
    today = now.astimezone(clock.CHINA_TZ).date()
    summary = PurgeSummary()
    categories: Counter[str] = Counter()
    whole = expired_files(session, today)
    for row in whole:
        row.purged_at = now
        summary.files += 1
        summary.accepted += row.accepted - row.purged_rows
        summary.quarantined += row.quarantined
        categories[row.category] += 1
    gone = {row.id for row in whole}
    vault = Vault()
    for row in session.scalars(
        select(IntakeFile)
        .where(
            IntakeFile.status == STATUS_INGESTED,
            IntakeFile.purged_at.is_(None),
            # Only a file spanning several days can lose some of them; the rest go whole.
            IntakeFile.first_day < IntakeFile.last_day,
        )
        .order_by(IntakeFile.id)
    ):
        keep_from = _retention_start(row.category, today)
        if row.id in gone or keep_from is None or row.first_day is None:
            continue
        if row.first_day >= keep_from:
            continue
        last, rows = _expired_days(paths, row, keep_from, vault)
        if last is None:
            continue
        row.purged_through = last
        row.purged_rows += rows
        summary.trimmed_files += 1
        summary.trimmed_rows += rows
        summary.accepted += rows
        categories[row.category] += 1
    summary.by_category = dict(sorted(categories.items()))
    if summary.files or summary.trimmed_files:
        counts = {
            "files": summary.files,
            "accepted": summary.accepted,
            "quarantined": summary.quarantined,
            "trimmed_files": summary.trimmed_files,
            "trimmed_rows": summary.trimmed_rows,
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
            summary = mark_expired_files(session, actor, paths)
            purged = set(
                session.scalars(select(IntakeFile.file_id).where(IntakeFile.purged_at.is_not(None)))
            )
            trimmed = {
                file_id: day
                for file_id, day in session.execute(
                    select(IntakeFile.file_id, IntakeFile.purged_through).where(
                        IntakeFile.purged_at.is_(None), IntakeFile.purged_through.is_not(None)
                    )
                )
            }
        summary.parts_removed = lake.remove_parts_of(paths, purged)
        summary.parts_removed += lake.remove_days_of(
            paths, {file_id: day for file_id, day in trimmed.items() if day is not None}
        )
        lake.remove_empty_folders(paths)
    return summary
