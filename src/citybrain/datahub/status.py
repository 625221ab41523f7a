"""What the data staff watch: every category's counts and freshness, stale sources flagged,
and the quarantine to send back to the agencies."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.datahub import lake
from citybrain.datahub.catalog import FREQUENCY_LABELS, SENSITIVITY_LABELS, catalog
from citybrain.datahub.models import STATUS_INGESTED, STATUS_REJECTED, IntakeFile
from citybrain.datahub.validate import reason_text
from citybrain.datahub.vault import Vault
from citybrain.kit import clock


@dataclass
class CategoryStatus:
    """One category's line on the status board."""

    code: str
    name: str
    name_en: str
    agency: str
    origin: str
    kinds: list[str]
    sensitivity: str
    retention_days: int
    frequency: str
    files: int
    rejected_files: int
    received: int
    records: int  # accepted into the lake
    quarantined: int
    duplicate: int
    late: int
    first_day: str | None
    last_day: str | None
    last_file: str | None
    last_ingested_at: str | None
    hours_since_last_file: float | None
    stale: bool
    state: str  # ok | stale | no_data | awaiting_app

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    def frequency_label(self, lang: str = "zh-CN") -> str:
        """Expected frequency in words."""
        zh, en = FREQUENCY_LABELS[self.frequency]
        return en if lang == "en" else zh

    def sensitivity_label(self, lang: str = "zh-CN") -> str:
        """Sensitivity class in words."""
        zh, en = SENSITIVITY_LABELS[self.sensitivity]
        return f"{self.sensitivity} {en if lang == 'en' else zh}"


def category_status(session: Session, *, now: dt.datetime | None = None) -> list[CategoryStatus]:
    """All 42 categories in catalogue order, with their intake figures."""
    now = now or clock.now()
    ingested = IntakeFile.status == STATUS_INGESTED
    totals = {
        row.category: row
        for row in session.execute(
            select(
                IntakeFile.category,
                func.count().filter(ingested).label("files"),
                func.count().filter(IntakeFile.status == STATUS_REJECTED).label("rejected"),
                func.coalesce(func.sum(IntakeFile.received), 0).label("received"),
                func.coalesce(func.sum(IntakeFile.accepted), 0).label("accepted"),
                func.coalesce(func.sum(IntakeFile.quarantined), 0).label("quarantined"),
                func.coalesce(func.sum(IntakeFile.duplicate), 0).label("duplicate"),
                func.coalesce(func.sum(IntakeFile.late), 0).label("late"),
                func.min(IntakeFile.first_day).label("first_day"),
                func.max(IntakeFile.last_day).label("last_day"),
                func.max(IntakeFile.ingested_at).label("last_at"),
            ).group_by(IntakeFile.category)
        )
    }
    latest_id = (
        select(IntakeFile.category, func.max(IntakeFile.id).label("id"))
        .group_by(IntakeFile.category)
        .subquery()
    )
    last_names = dict(
        session.execute(
            select(IntakeFile.category, IntakeFile.name).join(
                latest_id, IntakeFile.id == latest_id.c.id
            )
        ).all()
    )
    out = []
    for source in catalog().values():
        row = totals.get(source.code)
        last_at = row.last_at if row is not None else None
        hours = round((now - clock.as_utc(last_at)).total_seconds() / 3600, 1) if last_at else None
        if not source.is_feed and row is None:
            state, stale = "awaiting_app", False
        elif row is None or not row.files:
            state, stale = "no_data", source.is_feed
        elif hours is not None and source.stale_after_hours and hours > source.stale_after_hours:
            state, stale = "stale", True
        else:
            state, stale = "ok", False
        out.append(
            CategoryStatus(
                code=source.code,
                name=source.name,
                name_en=source.name_en,
                agency=source.agency,
                origin=source.origin,
                kinds=list(source.kinds),
                sensitivity=source.sensitivity,
                retention_days=source.retention_days,
                frequency=source.frequency,
                files=int(row.files) if row else 0,
                rejected_files=int(row.rejected) if row else 0,
                received=int(row.received) if row else 0,
                records=int(row.accepted) if row else 0,
                quarantined=int(row.quarantined) if row else 0,
                duplicate=int(row.duplicate) if row else 0,
                late=int(row.late) if row else 0,
                first_day=row.first_day.isoformat() if row and row.first_day else None,
                last_day=row.last_day.isoformat() if row and row.last_day else None,
                last_file=last_names.get(source.code),
                last_ingested_at=clock.as_utc(last_at).isoformat() if last_at else None,
                hours_since_last_file=hours,
                stale=stale,
                state=state,
            )
        )
    return out


def recent_files(
    session: Session, *, category: str | None = None, limit: int = 100, offset: int = 0
) -> list[IntakeFile]:
    """The ledger, newest first."""
    query = select(IntakeFile).order_by(IntakeFile.id.desc()).limit(limit).offset(offset)
    if category:
        query = query.where(IntakeFile.category == category)
    return list(session.scalars(query))


def count_files(session: Session, *, category: str | None = None) -> int:
    """How many files the ledger holds (of one category)."""
    query = select(func.count()).select_from(IntakeFile)
    if category:
        query = query.where(IntakeFile.category == category)
    return int(session.scalar(query) or 0)


@dataclass
class QuarantinedRow:
    """A bad row as the agency sent it, with what is wrong and where."""

    category: str
    file_name: str
    line: int
    column: str | None
    reason: str
    message: str
    errors: str | None
    raw: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def quarantined_rows(
    paths: lake.LakePaths | None = None,
    *,
    category: str | None = None,
    file_id: str | None = None,
    reason: str | None = None,
    lang: str = "zh-CN",
) -> Iterator[QuarantinedRow]:
    """Bad rows, decrypted for the data staff, by category, file and line."""
    paths = paths or lake.LakePaths.default()
    top = paths.quarantine
    if not top.exists():
        return
    folders = [top / f"category={category}"] if category else sorted(top.glob("category=*"))
    vault = Vault()
    for folder in folders:
        if not folder.exists():
            continue
        code = folder.name.split("=", 1)[1]
        for part in sorted(folder.glob("*.parquet")):
            if file_id and lake.file_id_of(part) != file_id:
                continue
            for row in vault.read(part).to_pylist():
                if reason and row["reason"] != reason:
                    continue
                yield QuarantinedRow(
                    category=code,
                    file_name=row["file_name"],
                    line=int(row["line"]),
                    column=row["column"],
                    reason=row["reason"],
                    message=reason_text(row["reason"], lang),
                    errors=row["errors"],
                    raw=row["raw"],
                )


QUARANTINE_HEADER = ("类别", "文件", "行号", "列", "原因代码", "原因", "全部问题列", "原始内容")


def quarantine_csv_rows(rows: Iterator[QuarantinedRow]) -> Iterator[tuple[Any, ...]]:
    """Rows for a CSV export (neutralised by ``kit.export.csv_bytes``)."""
    for r in rows:
        yield (r.category, r.file_name, r.line, r.column, r.reason, r.message, r.errors, r.raw)
