"""Request context: an id per request, timing, metrics, one structured log line, and
security headers. Logs carry the route template, never the query string or body, so no
personal data reaches them."""

from __future__ import annotations

import time
import uuid

import structlog
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response

from citybrain.kit.logging import get_logger
from citybrain.web.metrics import LATENCY, REQUESTS

log = get_logger("citybrain.web")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'"
)


def _route_template(request: Request) -> str:
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class RequestContextMiddleware(BaseHTTPMiddleware):
    """Request id, metrics, access log and security headers."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(request)
            REQUESTS.labels(request.method, route, str(status)).inc()
            LATENCY.labels(request.method, route).observe(elapsed)
            principal = getattr(request.state, "principal", None)
            log.info(
                "request",
                method=request.method,
                route=route,
                status=status,
                ms=round(elapsed * 1000, 1),
                principal=f"{principal.kind}:{principal.id}" if principal else None,
            )
            structlog.contextvars.unbind_contextvars("request_id")
        response.headers["x-request-id"] = request_id
        response.headers.setdefault("content-security-policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("x-content-type-options", "nosniff")
        response.headers.setdefault("x-frame-options", "DENY")
        response.headers.setdefault("referrer-policy", "same-origin")
        return response
