"""The data staff's audited reads of the quarantine (问题数据复核).

Quarantined rows are kept exactly as the agency sent them, so reading them is reading raw
personal data: every read is audited (``datahub.quarantine.view`` / ``.export``) with its
outcome, a refusal included. On screen the rows are masked (IDs, phones, names, passports,
plates, cards, addresses); the plain rows go out only with a stated purpose, in the API or as
the CSV export the agency gets back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import islice

from sqlalchemy.orm import Session

from citybrain.core.audit.service import record
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.datahub import lake
from citybrain.datahub.catalog import Source, catalog, get_source
from citybrain.datahub.schemas import QuarantinePage, QuarantineRowOut
from citybrain.datahub.status import (
    QUARANTINE_HEADER,
    QuarantinedRow,
    quarantine_csv_rows,
    quarantined_rows,
)
from citybrain.kit.errors import InvalidInput, NotFound, PermissionDenied
from citybrain.kit.export import csv_bytes
from citybrain.kit.masking import mask_name, mask_passport, mask_phone, mask_resident_id

VIEW = "datahub.quarantine.view"
EXPORT = "datahub.quarantine.export"
EXPORT_LIMIT = 100_000
FILE_ID = re.compile(r"^[0-9a-f]{1,20}$")
REASON = re.compile(r"^[a-z_]{1,40}$")

# Runs of nine or more digits (IDs, phones, cards; not dates), and passport-like numbers.
_NUMBER = re.compile(r"(?<![0-9A-Za-z])(?:\d{9,}[0-9Xx]?|[A-Za-z]{1,2}\d{7,9})(?![0-9A-Za-z])")
_MOBILE = re.compile(r"^1\d{10}$")
# A whole cell of two to four Chinese characters is probably a name; in a row that could not
# be split into columns, masking a station's name too is the price of not showing a person's.
_NAME_CELL = re.compile(r"(^|[,\t\"'：:\s])([\u4e00-\u9fff·]{2,4})(?=$|[,\t\"'\s])")


def _keep(value: str, start: int, end: int) -> str:
    hidden = len(value) - start - end
    if hidden <= 0:
        return "*" * len(value)
    return value[:start] + "*" * hidden + (value[len(value) - end :] if end else "")


def _mask_number(match: re.Match[str]) -> str:
    text = match.group(0)
    if _MOBILE.match(text):
        return mask_phone(text)
    if text[0].isalpha():
        return mask_passport(text)
    return mask_resident_id(text)


def mask_text(text: str, *, names: bool = True) -> str:
    """Mask what looks like an identifier (and, with ``names``, a name) in free text."""
    text = _NUMBER.sub(_mask_number, text)
    if names:
        text = _NAME_CELL.sub(lambda m: m.group(1) + mask_name(m.group(2)), text)
    return text


_BY_TYPE: dict[str, Callable[[str], str]] = {
    "name": mask_name,
    "id_number": mask_resident_id,
    "phone": mask_phone,
    "passport": mask_passport,
    "plate": lambda v: _keep(v, 2, 1),
    "card": lambda v: _keep(v, 4, 4),
}


def _mask_cell(column: str, value: object, source: Source | None) -> object:
    if not isinstance(value, str) or not value:
        return value
    spec = None
    if source is not None:
        spec = next((f for f in source.fields if f.column == column), None)
    if spec is None:
        # A column outside the contract: nobody agreed what it holds.
        return mask_text(value)
    masker = _BY_TYPE.get(spec.type)
    if masker is not None:
        return masker(value.strip())
    if spec.name == "address":
        return _keep(value, 6, 0)
    return mask_text(value, names=False)


def mask_raw(raw: str, source: Source | None) -> str:
    """A quarantined row as the page may show it: each agreed column masked by its type, the
    rest searched for identifiers and names."""
    try:
        row = json.loads(raw)
    except ValueError:
        row = None
    if isinstance(row, dict):
        masked = {str(k): _mask_cell(str(k), v, source) for k, v in row.items()}
        return json.dumps(masked, ensure_ascii=False)
    return mask_text(raw)


def _check_access(session: Session, who: Principal, action: str, target: str) -> None:
    """Refuse (and audit the refusal) unless ``who`` may read the quarantine."""
    if who.can(Permission.DATAHUB_QUARANTINE):
        return
    denied = PermissionDenied(
        "无权查看问题数据（含原始个人信息）",
        "you may not read the quarantine (raw personal data)",
        code="permission_denied",
    )
    raise denied.keep(
        lambda s: record(
            s,
            who.actor,
            action,
            object_type="quarantine",
            object_id=target,
            area_code=who.area_code,
            outcome="denied",
            detail={"reason": "missing_permission"},
        )
    )


def _filters(
    category: str | None, file_id: str | None, reason: str | None
) -> tuple[str | None, str | None, str | None]:
    category = category or None
    file_id = (file_id or "").strip().lower() or None
    reason = (reason or "").strip() or None
    if category is not None:
        get_source(category)  # 404 for an unknown one; never a path built from raw input
    if file_id is not None and not FILE_ID.match(file_id):
        raise InvalidInput("文件编号应为十六进制", "a file id is hexadecimal", field="file_id")
    if reason is not None and not REASON.match(reason):
        raise InvalidInput("未知的问题原因", "unknown reason code", field="reason")
    return category, file_id, reason


def _purpose(purpose: str | None, required: bool) -> str | None:
    if purpose is None and not required:
        return None
    cleaned = " ".join((purpose or "").split())
    if len(cleaned) < 4:
        raise InvalidInput(
            "请说明查看原文的事由（至少4个字）",
            "state the purpose (at least 4 characters)",
            field="purpose",
        )
    return cleaned[:200]


def read_quarantine(
    session: Session,
    who: Principal,
    paths: lake.LakePaths,
    *,
    category: str | None = None,
    file_id: str | None = None,
    reason: str | None = None,
    limit: int = 100,
    offset: int = 0,
    purpose: str | None = None,
    lang: str = "zh-CN",
) -> QuarantinePage:
    """One page of quarantined rows (问题数据), masked; plain when a ``purpose`` is stated.
    Audited either way, since the server decrypts the rows to answer."""
    target = file_id or category or "all"
    _check_access(session, who, VIEW, target)
    category, file_id, reason = _filters(category, file_id, reason)
    stated = _purpose(purpose, required=False)
    rows = list(
        islice(
            quarantined_rows(paths, category=category, file_id=file_id, reason=reason, lang=lang),
            offset,
            offset + limit + 1,
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    sources = catalog()
    items = [
        QuarantineRowOut(
            category=r.category,
            file_name=r.file_name,
            line=r.line,
            column=r.column,
            reason=r.reason,
            message=r.message,
            errors=r.errors,
            raw=r.raw if stated else mask_raw(r.raw, sources.get(r.category)),
        )
        for r in rows
    ]
    record(
        session,
        who.actor,
        VIEW,
        object_type="quarantine",
        object_id=target,
        area_code=who.area_code,
        purpose=stated,
        detail={
            "category": category,
            "file_id": file_id,
            "reason": reason,
            "offset": offset,
            "rows": len(items),
            "plain": stated is not None,
        },
    )
    return QuarantinePage(
        plain=stated is not None, limit=limit, offset=offset, more=more, items=items
    )


def export_quarantine(
    session: Session,
    who: Principal,
    paths: lake.LakePaths,
    *,
    purpose: str,
    category: str | None = None,
    file_id: str | None = None,
    reason: str | None = None,
    lang: str = "zh-CN",
) -> tuple[bytes, int]:
    """The full quarantined rows as CSV for the agency to correct (问题数据导出), formulas
    neutralised, at most 100,000 rows; needs a stated purpose and is audited. Returns the
    CSV and how many rows it holds."""
    target = file_id or category or "all"
    _check_access(session, who, EXPORT, target)
    category, file_id, reason = _filters(category, file_id, reason)
    stated = _purpose(purpose, required=True)
    rows: list[QuarantinedRow] = list(
        islice(
            quarantined_rows(paths, category=category, file_id=file_id, reason=reason, lang=lang),
            EXPORT_LIMIT,
        )
    )
    if not rows:
        raise NotFound("没有符合条件的问题数据", "no quarantined rows match", code="no_rows")
    body = csv_bytes(QUARANTINE_HEADER, quarantine_csv_rows(iter(rows)))
    record(
        session,
        who.actor,
        EXPORT,
        object_type="quarantine",
        object_id=target,
        area_code=who.area_code,
        purpose=stated,
        detail={"category": category, "file_id": file_id, "reason": reason, "rows": len(rows)},
    )
    return body, len(rows)
