"""The app factory: middleware, templates, static files, routers, error pages, background
work (jobs and event delivery) in the embedded default."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import JSONResponse, RedirectResponse, Response

import citybrain
from citybrain.kit.db import Database
from citybrain.kit.errors import CitybrainError, NotAuthenticated, ServiceBusy
from citybrain.kit.i18n import translate
from citybrain.kit.keys import get_keyring
from citybrain.kit.logging import configure_logging, get_logger
from citybrain.kit.settings import get_settings
from citybrain.kit.web import language, register_templates, render
from citybrain.web.assets import CompressedStaticFiles
from citybrain.web.guards import InputGuard
from citybrain.web.middleware import RequestContextMiddleware
from citybrain.web.retry import runs_again, sqlite_busy
from citybrain.web.routers import ROUTERS

log = get_logger(__name__)

WEB_DIR = Path(__file__).resolve().parent
PACKAGE_DIR = WEB_DIR.parent
TEMPLATE_DIRS = [
    WEB_DIR / "templates",
    PACKAGE_DIR / "core" / "people" / "templates",
    PACKAGE_DIR / "datahub" / "templates",
    PACKAGE_DIR / "analysis" / "templates",
    PACKAGE_DIR / "risk" / "templates",
    PACKAGE_DIR / "healthcode" / "templates",
    PACKAGE_DIR / "apps" / "residents" / "templates",
    PACKAGE_DIR / "apps" / "cockpit" / "templates",
]


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get(
        "accept", ""
    )


def _error_page(request: Request, message: str, status: int) -> Response:
    """The error page in the shell of the site the address belongs to: the residents' phone
    pages under /residents (back to their start), the staff's everywhere else."""
    name = "residents/error.html" if request.url.path.startswith("/residents") else "error.html"
    return render(request, name, {"message": message, "status": status}, status_code=status)


async def _citybrain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CitybrainError)
    lang = language(request)
    if _wants_json(request):
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthenticated) else None
        return JSONResponse(
            {"error": exc.to_dict(lang)}, status_code=exc.status_code, headers=headers
        )
    if isinstance(exc, NotAuthenticated):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    return _error_page(request, exc.message(lang), exc.status_code)


async def _database_error(request: Request, exc: Exception) -> Response:
    """SQLite still busy on a request's last run: 503 with Retry-After and a message saying
    nothing was kept, instead of a 500. Anything else, or a run that ``web.retry`` will run
    again, passes through."""
    assert isinstance(exc, OperationalError)
    if not sqlite_busy(exc) or runs_again(exc):
        raise exc
    log.warning("request.database_busy", method=request.method)
    busy = ServiceBusy(
        "系统繁忙，本次提交未保存，请稍后重试", "the system is busy; nothing was saved, try again"
    )
    response = await _citybrain_error(request, busy)
    response.headers["Retry-After"] = str(busy.retry_after_seconds)
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    """The framework's own answers (unknown route, wrong method, unreadable body) in our
    shape; a body that cannot be parsed is invalid input like any other (422)."""
    assert isinstance(exc, StarletteHTTPException)
    lang = language(request)
    status = 422 if exc.status_code == 400 else exc.status_code
    codes = {404: "not_found", 405: "method_not_allowed", 422: "invalid_input"}
    messages = {
        404: ("页面或接口不存在", "no such page or endpoint"),
        405: ("不支持该请求方法", "method not allowed"),
        422: (
            "请求体无法解析（须为 UTF-8 编码的 JSON 或表单）",
            "the request body cannot be parsed (UTF-8 JSON or form expected)",
        ),
    }
    zh, en = messages.get(status, (str(exc.detail), str(exc.detail)))
    message = en if lang == "en" else zh
    if not _wants_json(request):
        return _error_page(request, message, status)
    return JSONResponse(
        {"error": {"code": codes.get(status, "http_error"), "message": message}},
        status_code=status,
        headers=getattr(exc, "headers", None),
    )


def _field_of(location: tuple[Any, ...]) -> str:
    # ("body", "name") -> "name"; ("query", "limit") -> "limit"
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or ".".join(str(p) for p in location)


async def _validation_error(request: Request, exc: Exception) -> Response:
    """Request validation failures in the same shape as every other error, naming the field."""
    assert isinstance(exc, RequestValidationError)
    lang = language(request)
    problems = [
        {"field": _field_of(tuple(e.get("loc", ()))), "message": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    first = problems[0] if problems else {"field": "", "message": ""}
    summary = translate("error.invalid_field", lang, field=first["field"], message=first["message"])
    if not _wants_json(request):
        return _error_page(request, summary, 422)
    return JSONResponse(
        {
            "error": {
                "code": "invalid_input",
                "message": summary,
                "field": first["field"],
                "problems": problems,
            }
        },
        status_code=422,
    )


def create_app(database: Database | None = None, *, background: bool = False) -> FastAPI:
    """Build the web app. ``database`` defaults to the one from settings; ``background``
    runs the job consumer and event dispatcher inside this process (embedded default)."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = None
        if background:
            from citybrain.core.jobs.worker import EmbeddedWorker

            worker = EmbeddedWorker()
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()

    app = FastAPI(
        title="citybrain 城市大脑",
        version=citybrain.__version__,
        description="疫情防控大数据中心与应用 API — epidemic command centre API",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.database = database
    app.add_middleware(InputGuard, max_body_bytes=settings.max_request_bytes)
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(
        SessionMiddleware,
        secret_key=get_keyring().secret_key,
        session_cookie="citybrain_session",
        max_age=settings.session_max_age_seconds,
        same_site="lax",
        https_only=settings.secure_cookies,
    )
    for directory in TEMPLATE_DIRS:
        register_templates(directory)
    # npm packages (htmx, Swagger UI) are copied at setup into a build folder, not the source
    # tree; mounted before /static so their paths win.
    vendor = settings.vendor_dir or PACKAGE_DIR.parents[1] / "build" / "web-vendor"
    app.mount(
        "/static/vendor", CompressedStaticFiles(directory=vendor, check_dir=False), name="vendor"
    )
    # The cockpit's own script and styles (an app's static folder, beside its templates).
    app.mount(
        "/static/cockpit",
        CompressedStaticFiles(directory=PACKAGE_DIR / "apps" / "cockpit" / "static"),
        name="cockpit-static",
    )
    app.mount("/static", CompressedStaticFiles(directory=WEB_DIR / "static"), name="static")
    for router in ROUTERS:
        app.include_router(router)
    app.add_exception_handler(CitybrainError, _citybrain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_error)
    return app


# Cyclic garbage collection in a server process: a young-generation pass every this many new
# container objects (Python's default, 700, is one every request or two), and the objects
# that live as long as the process (modules, the app, mappers) frozen out of every pass, so
# the rare full pass looks only at what requests left behind (a full pass over everything was
# a pause of tens of milliseconds at the morning peak).
GC_THRESHOLDS = (50_000, 50, 1000)


def tune_for_serving() -> None:
    """Garbage collection set for a long-running server process (``citybrain serve``; not
    for tests or commands, which build many apps and exit)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
