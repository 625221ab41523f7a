"""Prometheus metrics of the web process."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.responses import Response

REQUESTS = Counter("citybrain_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "citybrain_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def metrics_response() -> Response:
    """The registry in Prometheus text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
