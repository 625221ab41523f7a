"""Request context: an id per request, timing, metrics, one structured log line, and
security headers. Logs carry the route template, never the query string or body, so no
personal data reaches them.

A pure ASGI middleware, not Starlette's ``BaseHTTPMiddleware``: that one runs every request's
app in a task group of its own and streams the answer through a memory channel, which cost
more than a whole health probe and a fair share of a gate scan. Here the request passes
straight through and only the answer's start message is touched, to add the headers.
"""

from __future__ import annotations

import os
import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citybrain.kit.logging import get_logger
from citybrain.web.metrics import LATENCY, REQUESTS

log = get_logger("citybrain.web")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)
_REQUEST_ID_HEADER = b"x-request-id"
_MAX_REQUEST_ID = 64


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers") or ():
        if name == _REQUEST_ID_HEADER:
            # A caller's id, kept printable and short: it is echoed and logged.
            text = bytes(value[:_MAX_REQUEST_ID]).decode("latin-1")
            if text.isprintable() and text.strip():
                return text
            break
    return os.urandom(8).hex()


class _Metrics:
    """The Prometheus children by label values, looked up once each (``labels()`` takes a
    lock and builds a key on every call)."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._latency: dict[tuple[str, str], Any] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        counter = self._requests.get((method, route, status))
        if counter is None:
            counter = self._requests[(method, route, status)] = REQUESTS.labels(
                method, route, str(status)
            )
        histogram = self._latency.get((method, route))
        if histogram is None:
            histogram = self._latency[(method, route)] = LATENCY.labels(method, route)
        counter.inc()
        histogram.observe(seconds)


class RequestContextMiddleware:
    """Request id, metrics, access log and security headers (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.metrics = _Metrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        # The same dict the app's ``request.state`` writes the principal into, whatever copies
        # of the scope the routers make on the way.
        state = scope.setdefault("state", {})
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers") or ())
                present = {name.lower() for name, _ in headers}
                headers.append((_REQUEST_ID_HEADER, request_id.encode("latin-1")))
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope.get("method", "")
            self.metrics.observe(method, route, status, elapsed)
            principal = state.get("principal")
            log.info(
                "request",
                method=method,
                route=route,
                status=status,
                ms=round(elapsed * 1000, 1),
                principal=f"{principal.kind}:{principal.id}" if principal else None,
            )
            structlog.contextvars.unbind_contextvars("request_id")
