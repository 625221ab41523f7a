"""JSON API of the data centre (/api/v1/datahub): agencies push batches; data staff read the
status board, the file ledger and the quarantine."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from citybrain.core.authz.deps import authenticated, require
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.datahub import lake, push, review
from citybrain.datahub.catalog import get_source
from citybrain.datahub.schemas import (
    CategoryStatusOut,
    FilePage,
    IntakeFileOut,
    PushResult,
    QuarantinePage,
    StatusOut,
)
from citybrain.datahub.service import Intake
from citybrain.datahub.status import category_status, count_files, recent_files
from citybrain.kit import clock
from citybrain.kit.errors import ErrorBody, error_responses
from citybrain.kit.web import DB, language

router = APIRouter(prefix="/api/v1/datahub", tags=["datahub 数据中心"])


def lake_paths() -> lake.LakePaths:
    """The lake of this process, under the data directory (tests override this)."""
    return lake.LakePaths.default()


def intake(paths: Annotated[lake.LakePaths, Depends(lake_paths)]) -> Iterator[Intake]:
    """Intake machinery for one request."""
    machinery = Intake(paths)
    try:
        yield machinery
    finally:
        machinery.close()


async def raw_body(request: Request) -> bytes:
    """The request body as sent: a pushed batch is bytes in the agency's own encoding."""
    return await request.body()


def _error(status: int, text: str) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody, "description": text}}


PUSH_DESCRIPTION = """
Push one batch of a feed (接口推送): the body is the file **exactly as the agency would drop
it** in its folder, same bytes, encoding and columns as the catalogue's contract for the
category (e.g. `rail_ticket` is CSV in GBK with a header row). The media type must be the
category's format: `text/csv`, `application/x-ndjson` (one JSON object per line) or
`application/vnd.openxmlformats-officedocument.spreadsheetml.sheet` (Excel). A `charset`
parameter is ignored: the contract says the encoding. The body goes through the same intake as
a dropped file: validated, pseudonymised, bad rows quarantined with line and reason.

`Idempotency-Key` (1–100 visible ASCII characters, scoped to your agency) names the batch:
the same key with the same body answers the first answer again (200, header
`Idempotent-Replayed: true`) and takes nothing in twice; the same key with another body or
category is refused (409 `idempotency_key_reused`). Use a new key for every new batch, e.g. a
UUID. The same bytes already taken in under another key answer `already_ingested` with zero
counts.

Answer (201): `received = accepted + quarantined + duplicate`, with the problem reasons and
their counts; `status` is `ingested`, `rejected` (unreadable as a whole, see `error`) or
`already_ingested`. Needs an agency token (`datahub.push`) allowed to push the category
(else 403); an unknown category is 404; a body over the size limit is 413; while a large
folder run holds the intake, 409 `intake_busy` (retry with the same key).
"""


@router.post(
    "/batches",
    response_model=PushResult,
    status_code=201,
    summary="Push a batch of an agency feed (agency token)",
    description=PUSH_DESCRIPTION,
    responses={
        200: {"model": PushResult, "description": "Replay of an earlier push with this key"},
        **error_responses(401, 403, 404, 409, 422),
        **_error(413, "Body over the size limit 超过大小限制"),
        **_error(415, "Not the category's file format 格式不符"),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the agency's file, byte for byte",
            "content": {
                push.MEDIA_TYPES["csv"]: {"schema": {"type": "string"}},
                push.MEDIA_TYPES["jsonl"]: {"schema": {"type": "string"}},
                push.MEDIA_TYPES["xlsx"]: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
def push_batch(
    request: Request,
    response: Response,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.DATAHUB_PUSH))],
    body: Annotated[bytes, Depends(raw_body)],
    machinery: Annotated[Intake, Depends(intake)],
    category: Annotated[str, Query(min_length=1, max_length=40, description="数据类别代码")],
    idempotency_key: Annotated[
        str,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=100,
            pattern=push.KEY_PATTERN,
            description="幂等键：同一批数据重试时使用同一个键",
        ),
    ],
    day: Annotated[dt.date | None, Query(description="交付日（默认今天），用于判断迟报")] = None,
) -> PushResult:
    """Take one batch in through the intake; replays answer 200."""
    # The intake lock is held until the commit, so a folder run never takes this push's
    # published-but-uncommitted parts for a crash's orphans.
    with push.intake_turn(machinery.paths):
        result, replayed = push.push_batch(
            session,
            machinery,
            who,
            category=category,
            key=idempotency_key,
            body=body,
            media_type=request.headers.get("content-type", ""),
            day=day,
        )
        session.commit()
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return result


@router.get(
    "/status",
    response_model=StatusOut,
    summary="Every category's intake figures and freshness",
    responses=error_responses(401, 403),
)
def status(
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.DATAHUB_VIEW))],
) -> StatusOut:
    """All 42 categories in catalogue order (数据汇聚状态): files, records, quarantine,
    duplicates, last data day and file, hours since, and the state (ok, stale, no_data,
    awaiting_app)."""
    return StatusOut(
        generated_at=clock.now(),
        categories=[CategoryStatusOut(**c.as_dict()) for c in category_status(session)],
    )


@router.get(
    "/files",
    response_model=FilePage,
    summary="The intake ledger, newest first",
    responses=error_responses(401, 403, 404, 422),
)
def files(
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.DATAHUB_VIEW))],
    category: Annotated[str | None, Query(max_length=40, description="数据类别代码")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> FilePage:
    """Files and pushed batches taken in (汇聚台账) with their reconciliation counts."""
    if category:
        get_source(category)
    rows = recent_files(session, category=category or None, limit=limit, offset=offset)
    return FilePage(
        total=count_files(session, category=category or None),
        limit=limit,
        offset=offset,
        items=[
            IntakeFileOut(
                file_id=r.file_id,
                category=r.category,
                name=r.name,
                channel=r.channel,
                status=r.status,
                error=r.error,
                size_bytes=r.size_bytes,
                delivered_day=r.delivered_day,
                first_day=r.first_day,
                last_day=r.last_day,
                received=r.received,
                accepted=r.accepted,
                quarantined=r.quarantined,
                duplicate=r.duplicate,
                late=r.late,
                reasons=dict(sorted((r.reasons or {}).items())),
                ingested_at=clock.as_utc(r.ingested_at),
            )
            for r in rows
        ],
    )


@router.get(
    "/quarantine",
    response_model=QuarantinePage,
    summary="Quarantined rows: masked, or plain with a stated purpose (audited)",
    responses=error_responses(401, 403, 404, 422),
)
def quarantine(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(authenticated)],
    paths: Annotated[lake.LakePaths, Depends(lake_paths)],
    category: Annotated[str | None, Query(max_length=40, description="数据类别代码")] = None,
    file_id: Annotated[str | None, Query(max_length=20, description="文件编号")] = None,
    reason: Annotated[str | None, Query(max_length=40, description="原因代码")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    purpose: Annotated[
        str | None, Query(max_length=200, description="查看原文的事由（给出时返回原文）")
    ] = None,
) -> QuarantinePage:
    """Bad rows by category, file and line with the reason (问题数据); needs
    ``datahub.quarantine``. Raw rows are masked unless a purpose is stated; every read, and
    every refusal, is written to the audit log (``datahub.quarantine.view``)."""
    return review.read_quarantine(
        session,
        who,
        paths,
        category=category,
        file_id=file_id,
        reason=reason,
        limit=limit,
        offset=offset,
        purpose=purpose,
        lang=language(request),
    )
