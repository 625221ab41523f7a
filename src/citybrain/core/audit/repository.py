"""Reading the audit log (auditors' page, CLI)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.core.audit.models import AuditEntry


@dataclass(frozen=True)
class AuditFilter:
    """What an auditor narrows the trail to: an action prefix, an outcome, an area prefix, an
    actor (``user:7``, ``system``…), an object id (a fact, an override, a person's ref), and
    a time window [``since``, ``until``)."""

    action: str | None = None
    outcome: str | None = None
    area_prefix: str | None = None
    actor: str | None = None
    object_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def recent(
    session: Session, filters: AuditFilter, *, limit: int = 100, offset: int = 0
) -> tuple[int, list[AuditEntry]]:
    """Newest entries first, narrowed by ``filters``; with how many match in all."""
    statement = select(AuditEntry)
    if filters.action:
        statement = statement.where(AuditEntry.action.startswith(filters.action))
    if filters.outcome:
        statement = statement.where(AuditEntry.outcome == filters.outcome)
    if filters.area_prefix:
        statement = statement.where(AuditEntry.area_code.startswith(filters.area_prefix))
    if filters.actor:
        statement = statement.where(AuditEntry.actor == filters.actor)
    if filters.object_id:
        statement = statement.where(AuditEntry.object_id == filters.object_id)
    if filters.since:
        statement = statement.where(AuditEntry.at >= filters.since)
    if filters.until:
        statement = statement.where(AuditEntry.at < filters.until)
    total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    rows = session.scalars(
        statement.order_by(AuditEntry.seq.desc()).limit(limit).offset(offset)
    ).all()
    return int(total), list(rows)
