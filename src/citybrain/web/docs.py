"""OpenAPI documentation at /docs, served with our own copy of Swagger UI (no CDN)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import Response

from citybrain.core.authz.deps import public

router = APIRouter(include_in_schema=False)


@router.get("/docs")
@public
def swagger_ui(request: Request) -> Response:
    """Interactive API documentation."""
    response = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="citybrain 城市大脑 API",
        swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/static/favicon.svg",
    )
    # Swagger UI starts itself with an inline script; allow that on this page only.
    response.headers["content-security-policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
    )
    return response
