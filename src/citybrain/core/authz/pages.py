"""Login and logout pages (登录/退出), plus a token endpoint for API clients."""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from pydantic import BaseModel, Field
from starlette.responses import RedirectResponse, Response

from citybrain.core.audit.service import record
from citybrain.core.authz import repository, service
from citybrain.core.authz.deps import (
    SESSION_ISSUED_KEY,
    SESSION_USER_KEY,
    CurrentPrincipal,
    public,
)
from citybrain.kit import clock
from citybrain.kit.db import rollback_keeping
from citybrain.kit.errors import CitybrainError, error_responses
from citybrain.kit.web import DB, check_csrf, language, render

router = APIRouter(tags=["auth 登录"])


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _safe_next(target: str | None) -> str:
    # Only same-site paths: an open redirect would hand a phished login to another site.
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


@router.get("/login", include_in_schema=False)
@public
def login_page(request: Request, next: str | None = None) -> Response:
    """The login form."""
    return render(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login", include_in_schema=False)
@public
def login_submit(
    request: Request,
    session: DB,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Check the form; on success start a fresh session and go to ``next``."""
    check_csrf(request, csrf_token)
    try:
        principal = service.authenticate(session, username, password, _client_ip(request))
    except CitybrainError as error:
        # Keep the failure's record (rate-limit counter, audit row) but show the form again.
        rollback_keeping(session, error)
        return render(
            request,
            "login.html",
            {
                "next": _safe_next(next),
                "error": error.message(language(request)),
                "username": username[:64],
            },
            status_code=error.status_code,
        )
    # A new session on login: no session fixation.
    request.session.clear()
    request.session[SESSION_USER_KEY] = principal.id
    request.session[SESSION_ISSUED_KEY] = clock.now().timestamp()
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout", include_in_schema=False)
def logout(request: Request, session: DB, who: CurrentPrincipal) -> Response:
    """End the session."""
    record(session, who.actor, "auth.logout", object_type="user", object_id=who.id)
    if who.kind == "user":
        # A copied cookie must not outlive the logout.
        service.end_sessions(session, who.actor, who.id)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


class TokenIn(BaseModel):
    """Username and password for a short-lived API token."""

    username: str = Field(max_length=64)
    password: str = Field(max_length=256)


class TokenOut(BaseModel):
    """A bearer token, shown once."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105 — a scheme name, not a secret
    expires_at: str


@router.post(
    "/api/v1/auth/token",
    response_model=TokenOut,
    tags=["auth 登录"],
    responses=error_responses(401, 422, 429),
)
@public
def issue_api_token(request: Request, data: TokenIn, session: DB) -> TokenOut:
    """Exchange a username and password for a bearer token valid for 12 hours."""
    principal = service.authenticate(session, data.username, data.password, _client_ip(request))
    user = repository.user_by_id(session, principal.id)
    assert user is not None
    token, text = service.issue_token(
        session, principal.actor, name="api-login", user=user, ttl=dt.timedelta(hours=12)
    )
    assert token.expires_at is not None
    return TokenOut(access_token=text, expires_at=token.expires_at.isoformat())
