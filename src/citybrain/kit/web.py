"""Web plumbing without domain: the request's unit of work, language, CSRF and templates.

Packages' ``routes.py`` and ``pages.py`` depend on these; ``citybrain.web`` assembles the app.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi import Path as PathParam
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session
from starlette.responses import Response

from citybrain.kit.clock import CHINA_TZ
from citybrain.kit.db import Database, get_database, transaction
from citybrain.kit.errors import PermissionDenied
from citybrain.kit.i18n import negotiate, translate
from citybrain.kit.settings import get_settings

LANG_COOKIE = "citybrain_lang"
CSRF_KEY = "csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def request_database(request: Request) -> Database:
    """The database of the app serving ``request``."""
    database = getattr(request.app.state, "database", None)
    return database if database is not None else get_database()


@contextmanager
def request_unit(request: Request, *, immediate: bool = False) -> Iterator[Session]:
    """One unit of work for ``request``: a session whose writes commit together at the end
    of the block, or not at all (``immediate``: see ``Database.unit_of_work``).

    Tests may put a session of their own on ``app.state.test_session``; it is used the same
    way (commit/rollback there become savepoint operations), its own setup settled first so
    that a failed request rolls back only its own work, as it would in production.
    """
    session: Session | None = getattr(request.app.state, "test_session", None)
    if session is not None:
        session.commit()
        with transaction(session):
            yield session
        return
    with request_database(request).unit_of_work(immediate=immediate) as unit:
        yield unit


def db_session(request: Request) -> Iterator[Session]:
    """FastAPI dependency: one unit of work per request (``request_unit``), committed before
    the response.

    Use it as ``Depends(db_session, scope="function")``: FastAPI's default ("request") scope
    runs the code after ``yield`` (the commit) only once the response is sent, so a client
    could follow a redirect before the write it answers is committed, or be told "done"
    about a commit that then fails.
    """
    with request_unit(request) as unit:
        yield unit


DB = Annotated[Session, Depends(db_session, scope="function")]
"""A route's or guard's database session: the request's unit of work, committed before the
answer is sent."""

# Path parameters, bounded so that a mistyped or hostile URL is answered 422 (or not found)
# before anything reaches the database: SQLite cannot take an integer past 64 bits (a 500),
# and no query should be built on a string of any length.
RowId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="row id")]
Ref = Annotated[str, PathParam(min_length=1, max_length=32, description="pseudonymous reference")]
Action = Annotated[str, PathParam(min_length=1, max_length=16, description="action")]
CompoundCode = Annotated[str, PathParam(pattern=r"^\d{15}$", description="小区代码")]
PlaceCode = Annotated[str, PathParam(min_length=1, max_length=24, description="场所代码")]


def language(request: Request) -> str:
    """zh-CN or en: ``?lang=``, then the cookie, then Accept-Language; zh-CN by default."""
    return negotiate(
        request.query_params.get("lang") or request.cookies.get(LANG_COOKIE),
        request.headers.get("accept-language") if not request.cookies.get(LANG_COOKIE) else None,
    )


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use."""
    token = request.session.get(CSRF_KEY)
    if not token:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_KEY] = token
    return str(token)


def check_csrf(request: Request, submitted: str | None) -> None:
    """Refuse a cookie-authenticated form post whose token does not match the session's."""
    expected = request.session.get(CSRF_KEY)
    offered = submitted or request.headers.get(CSRF_HEADER)
    if not expected or not offered or not hmac.compare_digest(str(expected), str(offered)):
        raise PermissionDenied(
            "表单已失效，请刷新页面后重试",
            "the form has expired; reload the page and try again",
            code="csrf_failed",
        )


def china_time(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """Template filter: a stored UTC time as the city's local time (China Standard Time)."""
    return value.astimezone(CHINA_TZ).strftime(fmt) if value else "—"


_template_dirs: list[Path] = []
_templates: Jinja2Templates | None = None


def public_base_url(request: Request) -> str:
    """The site's address as residents reach it: ``CITYBRAIN_PUBLIC_URL``, else the address
    this request came to."""
    return (get_settings().public_url or str(request.base_url)).rstrip("/")


def download(body: bytes, filename: str, media_type: str) -> Response:
    """A file to save (an export): named ``filename``, and never kept by a browser's or a
    proxy's cache, since exports hold personal data."""
    return Response(
        body,
        media_type=media_type,
        headers={
            "content-disposition": f'attachment; filename="{filename}"',
            "cache-control": "no-store",
        },
    )


def register_templates(directory: Path) -> None:
    """Add a package's ``templates`` folder to the shared loader (the app does this)."""
    global _templates
    if directory not in _template_dirs:
        _template_dirs.append(directory)
        _templates = None


def templates() -> Jinja2Templates:
    """The shared Jinja2 templates over every registered folder."""
    global _templates
    if _templates is None:
        env = Environment(
            loader=ChoiceLoader([FileSystemLoader(str(d)) for d in _template_dirs]),
            autoescape=select_autoescape(["html", "xml"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["cst"] = china_time
        _templates = Jinja2Templates(env=env)
    return _templates


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> Response:
    """Render template ``name`` with the language, translator and CSRF token in context."""
    lang = language(request)
    full: dict[str, Any] = {
        "lang": lang,
        "t": lambda key, **kw: translate(key, lang, **kw),
        "csrf_token": csrf_token(request),
        "principal": getattr(request.state, "principal", None),
        "path": request.url.path,
    }
    full.update(context or {})
    response = templates().TemplateResponse(request, name, full, status_code=status_code)
    if request.query_params.get("lang") in ("zh-CN", "en"):
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
    return response
