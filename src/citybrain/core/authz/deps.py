"""FastAPI dependencies for authentication and permissions; deny by default.

A request is authenticated by a bearer token (API clients, devices) or by the session
cookie (pages). Cookie-authenticated writes must carry the CSRF token. Every route declares
``require(permission)`` or ``authenticated``; a test walks the app and refuses any route
that does neither and is not on the public list.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from citybrain.core.authz import service
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.kit.errors import NotAuthenticated
from citybrain.kit.web import CSRF_FIELD, DB, check_csrf

SESSION_USER_KEY = "uid"
SESSION_ISSUED_KEY = "iat"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
GUARD_ATTRIBUTE = "__citybrain_guard__"


async def _principal(request: Request, session: Session) -> Principal:
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        principal = service.authenticate_token(session, header[7:].strip())
    else:
        user_id = request.session.get(SESSION_USER_KEY)
        issued = float(request.session.get(SESSION_ISSUED_KEY) or 0)
        loaded = service.load_principal(session, int(user_id), issued) if user_id else None
        if loaded is None:
            request.session.clear()
            raise NotAuthenticated("请先登录", "please log in", code="not_authenticated")
        principal = loaded
        if request.method not in SAFE_METHODS:
            submitted = None
            if request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")
            ):
                form = await request.form()
                value = form.get(CSRF_FIELD)
                submitted = value if isinstance(value, str) else None
            check_csrf(request, submitted)
    request.state.principal = principal
    return principal


async def authenticated(request: Request, session: DB) -> Principal:
    """Any signed-in user or device."""
    return await _principal(request, session)


setattr(authenticated, GUARD_ATTRIBUTE, "authenticated")


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """Dependency: a principal holding ``permission``, else 401/403."""

    async def dependency(request: Request, session: DB) -> Principal:
        principal = await _principal(request, session)
        principal.require(permission)
        return principal

    setattr(dependency, GUARD_ATTRIBUTE, str(permission))
    dependency.__name__ = f"require_{permission.value.replace('.', '_')}"
    return dependency


def public(func: Any) -> Any:
    """Mark an endpoint as deliberately open (login page, health checks)."""
    setattr(func, GUARD_ATTRIBUTE, "public")
    return func


CurrentPrincipal = Annotated[Principal, Depends(authenticated)]
