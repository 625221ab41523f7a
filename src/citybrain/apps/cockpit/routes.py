"""JSON API of the leadership cockpit (/api/v1/cockpit): overview, map, alerts, freshness and
the live stream, all within the viewer's jurisdiction (403 outside it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from citybrain.apps.cockpit import live, service
from citybrain.apps.cockpit.schemas import AlertOut, FreshnessOut, MapOut, OverviewOut
from citybrain.core.authz.deps import require
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.kit.db import get_database
from citybrain.kit.errors import error_responses
from citybrain.kit.web import DB

router = APIRouter(
    prefix="/api/v1/cockpit",
    tags=["cockpit 领导驾驶舱"],
    responses=error_responses(401, 403, 404, 422),
)
Viewer = Annotated[Principal, Depends(require(Permission.COCKPIT_VIEW))]
AreaCode = Annotated[
    str | None, Query(pattern=r"^\d{4,15}$", description="地区代码 (default: your jurisdiction)")
]
HEARTBEAT_SECONDS = 15.0


@router.get("/overview", response_model=OverviewOut, summary="Figures of an area")
def overview(session: DB, who: Viewer, area: AreaCode = None) -> OverviewOut:
    """The figures, trends, tiers, colours and loop times of an area."""
    return service.overview(session, who, area)


@router.get("/map", response_model=MapOut, summary="A measure over an area's children")
def map_view(
    session: DB,
    who: Viewer,
    measure: Annotated[str, Query(pattern=r"^[a-z_]{1,32}$")] = "confirmed",
    area: AreaCode = None,
) -> MapOut:
    """confirmed | contacts_managed | red_yellow_compounds | screening_backlog, per child."""
    return service.map_view(session, who, measure, area)


@router.get("/alerts", response_model=list[AlertOut], summary="The alert feed, newest first")
def alerts(
    session: DB,
    who: Viewer,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    area: AreaCode = None,
) -> list[AlertOut]:
    """New cases, red compounds, stale sources and applied overrides in an area."""
    return service.alerts(session, who, area, limit)


@router.get("/freshness", response_model=list[FreshnessOut], summary="Data freshness per source")
def freshness(session: DB, who: Viewer) -> list[FreshnessOut]:
    """When each source last delivered, its records today, and whether it is late."""
    return service.freshness(session)


def _frame(message: dict[str, object]) -> str:
    data = json.dumps(message.get("data"), ensure_ascii=False, separators=(",", ":"))
    return f"event: {message.get('event')}\ndata: {data}\n\n"


async def _events(request: Request, area_code: str) -> AsyncIterator[str]:
    connection = live.broadcaster.connect(area_code)
    try:
        yield ": connected\n\n"
        while True:
            try:
                message = await asyncio.wait_for(connection.queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield ": heartbeat\n\n"
                continue
            yield _frame(message)
    finally:
        live.broadcaster.disconnect(connection)


@router.get("/stream", summary="Live updates (server-sent events)")
def stream(request: Request, session: DB, who: Viewer) -> StreamingResponse:
    """``event: figures`` (areas and figure keys that changed) and ``event: alert``, within
    your jurisdiction; a comment every 15 s keeps the connection open."""
    # The request's unit of work would otherwise stay open as long as the stream (the
    # dependency ends after the response): on SQLite the token's last-use write would hold
    # the write lock for hours. Everything this route needs from the database is done.
    session.commit()
    live.ensure_listening(getattr(request.app.state, "database", None) or get_database())
    return StreamingResponse(
        _events(request, who.area_code),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
