"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import text
from starlette.responses import JSONResponse, Response

from citybrain.core.authz.deps import public
from citybrain.core.events.service import outbox_backlog
from citybrain.kit import clock
from citybrain.kit.migrate import current_revision, head_revision
from citybrain.kit.web import DB, request_database
from citybrain.web.metrics import OUTBOX_OLDEST, OUTBOX_PENDING, metrics_response

router = APIRouter(tags=["ops 运维"])


@router.get("/healthz")
@public
async def healthz() -> dict[str, str]:
    """The process is up. Async: nothing here blocks, and a plain function would be run on
    a worker thread (the cheapest endpoint of the server, the yardstick of the scan
    benchmark, should not carry a thread hop)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "database unreachable or migrations pending 未就绪"}},
)
@public
def readyz(request: Request) -> Response:
    """Ready to serve: the database answers and its schema is at the newest migration."""
    database = request_database(request)
    try:
        with database.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            revision = current_revision(conn)
    except Exception as exc:
        return JSONResponse(
            {"status": "unavailable", "database": type(exc).__name__}, status_code=503
        )
    head = head_revision()
    ready = revision == head
    return JSONResponse(
        {"status": "ok" if ready else "migrations_pending", "revision": revision, "head": head},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", include_in_schema=False)
@public
def metrics(session: DB) -> Response:
    """Prometheus metrics (no personal data), with the outbox backlog read at scrape time."""
    pending, oldest = outbox_backlog(session)
    OUTBOX_PENDING.set(pending)
    OUTBOX_OLDEST.set((clock.now() - oldest).total_seconds() if oldest else 0)
    return metrics_response()
