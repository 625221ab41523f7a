"""Prometheus metrics of the web process."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.responses import Response

REQUESTS = Counter("citybrain_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "citybrain_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


OUTBOX_PENDING = Gauge(
    "citybrain_outbox_pending_events", "Outbox events not yet delivered to every handler"
)
OUTBOX_OLDEST = Gauge(
    "citybrain_outbox_oldest_pending_seconds", "Age of the oldest undelivered outbox event"
)


def metrics_response() -> Response:
    """The registry in Prometheus text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
