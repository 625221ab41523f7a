"""Reading the audit log (auditors' page, CLI)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.core.audit.models import AuditEntry


def recent(
    session: Session,
    *,
    action: str | None = None,
    outcome: str | None = None,
    area_prefix: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[AuditEntry]]:
    """Newest entries first, filtered by action prefix, outcome and area."""
    statement = select(AuditEntry)
    if action:
        statement = statement.where(AuditEntry.action.startswith(action))
    if outcome:
        statement = statement.where(AuditEntry.outcome == outcome)
    if area_prefix:
        statement = statement.where(AuditEntry.area_code.startswith(area_prefix))
    total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    rows = session.scalars(
        statement.order_by(AuditEntry.seq.desc()).limit(limit).offset(offset)
    ).all()
    return int(total), list(rows)
