"""Pages for the data staff (数据中心): the status board of all 42 categories, the intake
ledger, and the quarantine with its audited export for the agencies."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from citybrain.core.authz.deps import authenticated, require
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.datahub import lake, review
from citybrain.datahub.catalog import catalog, get_source
from citybrain.datahub.routes import lake_paths
from citybrain.datahub.status import CategoryStatus, category_status, count_files, recent_files
from citybrain.datahub.validate import REASONS, reason_text
from citybrain.kit.db import rollback_keeping
from citybrain.kit.errors import CitybrainError
from citybrain.kit.export import CSV_MEDIA_TYPE, csv_bytes
from citybrain.kit.i18n import translate
from citybrain.kit.web import DB, download, language, render

router = APIRouter(include_in_schema=False)
Paths = Annotated[lake.LakePaths, Depends(lake_paths)]
PAGE_SIZE = 50
STATES = ("ok", "stale", "no_data", "awaiting_app")
STATE_KEYS = {state: f"datahub.state_{state}" for state in STATES}
CHANNEL_KEYS = {"drop": "datahub.channel_drop", "push": "datahub.channel_push"}
STATUS_KEYS = {"ingested": "datahub.status_ingested", "rejected": "datahub.status_rejected"}
TOTALLED = ("files", "rejected_files", "received", "records", "quarantined", "duplicate", "late")
STATUS_CSV_HEADER = (
    "类别代码",
    "报送机构",
    "数据类别",
    "敏感级别",
    "更新频率",
    "文件数",
    "拒收文件",
    "收到行数",
    "入湖记录",
    "隔离",
    "重复",
    "迟报",
    "最早数据日",
    "最近数据日",
    "最近文件",
    "最近汇聚时间",
    "距今小时",
    "状态",
)


def _labels(lang: str, keys: dict[str, str]) -> dict[str, str]:
    return {code: translate(key, lang) for code, key in keys.items()}


def _agencies(lang: str) -> list[tuple[str, str]]:
    """Every agency of the catalogue (as filter value, label), in catalogue order."""
    seen: dict[str, str] = {}
    for source in catalog().values():
        seen.setdefault(source.agency, source.agency_en if lang == "en" else source.agency)
    return list(seen.items())


def _board(
    session: Session, agency: str, state: str
) -> tuple[list[CategoryStatus], dict[str, int], dict[str, int]]:
    """The filtered board, its totals and how many categories are in each state (of all)."""
    everything = category_status(session)
    states = {s: sum(1 for c in everything if c.state == s) for s in STATES}
    rows = [
        c
        for c in everything
        if (not agency or c.agency == agency) and (not state or c.state == state)
    ]
    totals = {name: sum(int(getattr(c, name)) for c in rows) for name in TOTALLED}
    return rows, totals, states


@router.get("/datahub")
def status_board(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.DATAHUB_VIEW))],
    agency: Annotated[str, Query(max_length=40)] = "",
    state: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    """All 42 categories: counts, freshness and state, stale ones flagged (数据汇聚状态)."""
    lang = language(request)
    rows, totals, states = _board(session, agency, state)
    sources = catalog()
    return render(
        request,
        "datahub/status.html",
        {
            "rows": rows,
            "totals": totals,
            "states": states,
            "agency": agency,
            "state": state,
            "agencies": _agencies(lang),
            "state_labels": _labels(lang, STATE_KEYS),
            "agency_label": {
                c.code: sources[c.code].agency_en if lang == "en" else c.agency for c in rows
            },
            "category_label": {c.code: sources[c.code].label(lang) for c in rows},
            "can_quarantine": who.can(Permission.DATAHUB_QUARANTINE),
        },
    )


@router.get("/datahub/status.csv")
def status_export(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.DATAHUB_VIEW))],
    agency: Annotated[str, Query(max_length=40)] = "",
    state: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    """The board as CSV (no personal data in it), every cell neutralised."""
    lang = language(request)
    rows, _totals, _states = _board(session, agency, state)
    labels = _labels(lang, STATE_KEYS)
    body = csv_bytes(
        STATUS_CSV_HEADER,
        (
            [
                c.code,
                c.agency,
                c.name,
                c.sensitivity_label(lang),
                c.frequency_label(lang),
                c.files,
                c.rejected_files,
                c.received,
                c.records,
                c.quarantined,
                c.duplicate,
                c.late,
                c.first_day or "",
                c.last_day or "",
                c.last_file or "",
                c.last_ingested_at or "",
                "" if c.hours_since_last_file is None else c.hours_since_last_file,
                labels[c.state],
            ]
            for c in rows
        ),
    )
    return download(body, "datahub-status.csv", CSV_MEDIA_TYPE)


@router.get("/datahub/files")
def files_page(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.DATAHUB_VIEW))],
    category: Annotated[str, Query(max_length=40)] = "",
    page: Annotated[int, Query(ge=1, le=20_000)] = 1,
) -> Response:
    """The intake ledger (汇聚台账), newest first, by category, page by page."""
    lang = language(request)
    if category:
        get_source(category)
    total = count_files(session, category=category or None)
    rows = recent_files(
        session, category=category or None, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    sources = catalog()
    return render(
        request,
        "datahub/files.html",
        {
            "rows": rows,
            "total": total,
            "page": page,
            "pages": max(1, -(-total // PAGE_SIZE)),
            "category": category,
            "categories": [(s.code, s.label(lang)) for s in sources.values() if s.is_feed],
            "category_label": {code: s.label(lang) for code, s in sources.items()},
            "channel_labels": _labels(lang, CHANNEL_KEYS),
            "status_labels": _labels(lang, STATUS_KEYS),
            "reason_label": lambda code: reason_text(code, lang),
            "can_quarantine": who.can(Permission.DATAHUB_QUARANTINE),
        },
    )


def _raw_cells(raw: str) -> list[tuple[str, str]] | None:
    """A (masked) row sent as columns, as (column, value) pairs to show; None for a line
    that could not be split, which is shown as it is."""
    try:
        row = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(row, dict):
        return None
    return [(str(k), "" if v is None else str(v)) for k, v in row.items()]


def _quarantine_page(
    request: Request,
    session: Session,
    who: Principal,
    paths: lake.LakePaths,
    filters: dict[str, Any],
    page: int,
    *,
    error: str | None = None,
    purpose: str = "",
    status_code: int = 200,
) -> Response:
    lang = language(request)
    result = review.read_quarantine(
        session,
        who,
        paths,
        category=filters["category"] or None,
        file_id=filters["file_id"] or None,
        reason=filters["reason"] or None,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
        lang=lang,
    )
    sources = catalog()
    return render(
        request,
        "datahub/quarantine.html",
        {
            "result": result,
            "page": page,
            **filters,
            "categories": [(s.code, s.label(lang)) for s in sources.values() if s.is_feed],
            "category_label": {code: s.label(lang) for code, s in sources.items()},
            "reasons": [(code, reason_text(code, lang)) for code in REASONS],
            "raw_cells": _raw_cells,
            "error": error,
            "purpose": purpose,
        },
        status_code=status_code,
    )


@router.get("/datahub/quarantine")
def quarantine_page(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(authenticated)],
    paths: Paths,
    category: Annotated[str, Query(max_length=40)] = "",
    file_id: Annotated[str, Query(max_length=20)] = "",
    reason: Annotated[str, Query(max_length=40)] = "",
    page: Annotated[int, Query(ge=1, le=20_000)] = 1,
) -> Response:
    """Quarantined rows with line, column and reason; the rows masked. Needs
    ``datahub.quarantine``; every view and every refusal is audited."""
    filters = {"category": category, "file_id": file_id, "reason": reason}
    return _quarantine_page(request, session, who, paths, filters, page)


@router.post("/datahub/quarantine/export.csv")
def quarantine_export(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(authenticated)],
    paths: Paths,
    category: Annotated[str, Form(max_length=40)] = "",
    file_id: Annotated[str, Form(max_length=20)] = "",
    reason: Annotated[str, Form(max_length=40)] = "",
    purpose: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """The full rows as the agency sent them, as CSV for the agency to correct; a form post
    (with the CSRF token) that states its purpose, because it discloses personal data."""
    filters = {"category": category, "file_id": file_id, "reason": reason}
    try:
        body, _rows = review.export_quarantine(
            session,
            who,
            paths,
            purpose=purpose,
            category=category or None,
            file_id=file_id or None,
            reason=reason or None,
            lang=language(request),
        )
    except CitybrainError as error:
        if error.status_code in (401, 403):
            raise
        rollback_keeping(session, error)
        return _quarantine_page(
            request,
            session,
            who,
            paths,
            filters,
            1,
            error=error.message(language(request)),
            purpose=purpose,
            status_code=error.status_code,
        )
    name = f"quarantine-{file_id or category or 'all'}.csv"
    return download(body, f"{name}", CSV_MEDIA_TYPE)
