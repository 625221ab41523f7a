"""The durable job queue: Huey on a SQLite file (embedded default) or on Redis (production).

Packages declare jobs in their own ``tasks.py`` at import time::

    from citybrain.core.jobs import job, schedule

    @job(retries=3)
    def send_report(report_id: int) -> None: ...

    @schedule(minute="0", hour="2")        # 02:00 China Standard Time, daily
    def purge_expired() -> None: ...

    send_report(42)                                  # enqueue; returns a huey Result
    send_report.schedule(args=(42,), delay=60)       # enqueue to run in a minute
    send_report.call_local(42)                       # run here and now

Declaring a job does not touch storage: a ``Job`` remembers the function and its options,
and the Huey instance is built from settings (``resolved_jobs_url``) the first time anything
needs it, with every declared job registered on it. ``reset_queue()`` discards the instance
(closing its storage); the next use builds a new one, which is what a process restart does.
Tests point the queue at a file of their own with ``reset_queue(f"sqlite:///{tmp_path}/q.db")``
and call ``reset_queue()`` afterwards to return to the settings (the test suite's conftest sets
``CITYBRAIN_DATA_DIR`` to a temporary directory before anything is imported, so the default
file is never the developer's).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar

from huey import PriorityRedisHuey, SqliteHuey, crontab
from sqlalchemy.engine import make_url

from citybrain.kit.clock import CHINA_TZ, UTC
from citybrain.kit.settings import get_settings

P = ParamSpec("P")
R = TypeVar("R")

QUEUE_NAME = "citybrain"

_lock = threading.RLock()
_huey: Any = None
_wrappers: dict[Job[Any, Any], Any] = {}
_declared: list[Job[Any, Any]] = []
_url_override: str | None = None


def build_queue(url: str) -> Any:
    """A new Huey instance on ``url``: ``sqlite:///path`` or ``redis://…``.

    The SQLite file's directory is created. Tasks run in a consumer, never inline
    (``immediate=False``), and results are kept until read. A failure that will be retried
    is not stored as the result, so whoever waits on a job sees its final outcome.
    """
    options: dict[str, Any] = {"immediate": False, "store_intermediate_errors": False}
    if url.startswith(("redis://", "rediss://", "unix://")):
        return PriorityRedisHuey(QUEUE_NAME, url=url, **options)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        raise ValueError("jobs URL must be sqlite:///<path> or redis://…")
    if parsed.database == ":memory:":
        raise ValueError("an in-memory job queue is not durable; give a file path")
    path = Path(parsed.database)
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(QUEUE_NAME, filename=str(path), **options)


def get_queue() -> Any:
    """The process's Huey instance, built on first use with every declared job registered."""
    global _huey, _wrappers
    with _lock:
        if _huey is None:
            huey = build_queue(_url_override or get_settings().resolved_jobs_url)
            _wrappers = {declared: declared._register(huey) for declared in _declared}
            _huey = huey
        return _huey


def reset_queue(url: str | None = None) -> None:
    """Discard the process's Huey instance; the next use builds a new one.

    With ``url``, the new instance uses it instead of the settings (tests, the CLI); without,
    it uses ``get_settings().resolved_jobs_url`` (call ``reset_settings()`` first to re-read
    the environment). What is stored survives: tasks, schedules and results live
    in the SQLite file or in Redis, not in the instance.
    """
    global _huey, _wrappers, _url_override
    with _lock:
        old, _huey, _wrappers, _url_override = _huey, None, {}, url
    if old is not None:
        old.storage.close()
        pool = getattr(old.storage, "pool", None)
        if pool is not None:
            pool.disconnect()


class Job(Generic[P, R]):
    """A declared background job; a lazy proxy to its Huey task on the current queue.

    Calling it enqueues it and returns a huey ``Result``. Any other attribute of Huey's task
    wrapper (``s``, ``map``, ``revoke``, ``restore``, ``is_revoked``…) is reached through it.
    """

    def __init__(
        self,
        func: Callable[P, R],
        options: dict[str, Any],
        validate_datetime: Callable[[dt.datetime], bool] | None = None,
    ) -> None:
        self.func = func
        self.options = options
        self.validate_datetime = validate_datetime
        self.__doc__ = func.__doc__
        self.__name__ = func.__name__
        self.__module__ = func.__module__

    @property
    def name(self) -> str:
        """The name Huey stores tasks under (module and function name)."""
        return f"{self.func.__module__}.{self.options.get('name') or self.func.__name__}"

    @property
    def periodic(self) -> bool:
        """Whether the scheduler enqueues this job by itself."""
        return self.validate_datetime is not None

    def _register(self, huey: Any) -> Any:
        if self.validate_datetime is not None:
            return huey.periodic_task(self.validate_datetime, **self.options)(self.func)
        return huey.task(**self.options)(self.func)

    @property
    def task(self) -> Any:
        """Huey's task wrapper for this job on the current queue."""
        with _lock:
            huey = get_queue()
            wrapper = _wrappers.get(self)
            if wrapper is None:  # built directly rather than through job() or schedule()
                wrapper = _wrappers[self] = self._register(huey)
            return wrapper

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Enqueue the job with these arguments; returns a huey ``Result``."""
        return self.task(*args, **kwargs)

    def schedule(
        self,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        eta: dt.datetime | None = None,
        delay: float | dt.timedelta | None = None,
        **options: Any,
    ) -> Any:
        """Enqueue the job to run at ``eta`` (aware datetime) or after ``delay`` seconds."""
        if eta is not None and eta.tzinfo is None:
            raise ValueError("eta must be an aware datetime; use citybrain.kit.clock.now()")
        if isinstance(delay, dt.timedelta):
            delay = delay.total_seconds()
        return self.task.schedule(args, kwargs, eta=eta, delay=delay, **options)

    def call_local(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function in this thread, bypassing the queue."""
        return self.func(*args, **kwargs)

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return getattr(self.task, attribute)

    def __repr__(self) -> str:
        kind = "periodic job" if self.periodic else "job"
        return f"<{kind} {self.name}>"


def _declare(job_: Job[P, R]) -> Job[P, R]:
    with _lock:
        if any(existing.name == job_.name for existing in _declared):
            raise ValueError(f"a job named {job_.name!r} is already declared; pass name=")
        _declared.append(job_)
        if _huey is not None:
            _wrappers[job_] = job_._register(_huey)
    return job_


def job(
    *,
    retries: int = 5,
    retry_delay: float = 2.0,
    backoff: float = 2.0,
    priority: int | None = None,
    timeout: float | None = None,
    expires: float | dt.timedelta | None = None,
    name: str | None = None,
    context: bool = False,
) -> Callable[[Callable[P, R]], Job[P, R]]:
    """Declare the decorated function a durable job.

    A failure is retried ``retries`` times, first after ``retry_delay`` seconds, each wait
    ``backoff`` times the previous one (2 s, 4 s, 8 s… by default). ``priority`` orders the
    Redis queue (higher first); ``timeout`` (seconds) interrupts a run in process workers
    only; ``expires`` drops a run not started in time. With ``context=True`` the function
    receives Huey's task as ``task=`` (its ``retries`` left, its ``retry_delay``).
    """
    options: dict[str, Any] = {
        "retries": retries,
        "retry_delay": retry_delay,
        "retry_backoff": backoff,
        "priority": priority,
        "timeout": timeout,
        "expires": expires,
        "name": name,
        "context": context,
    }

    def decorator(func: Callable[P, R]) -> Job[P, R]:
        return _declare(Job(func, options))

    return decorator


def city_crontab(
    minute: str = "*",
    hour: str = "*",
    day: str = "*",
    month: str = "*",
    day_of_week: str = "*",
) -> Callable[[dt.datetime], bool]:
    """A crontab test read on the city's clock (China Standard Time).

    Huey passes the scheduler's time as naive UTC; operators mean "02:00" in Zhengzhou.
    """
    matches = crontab(
        minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week, strict=True
    )

    def validate(timestamp: dt.datetime) -> bool:
        aware = timestamp.replace(tzinfo=UTC) if timestamp.tzinfo is None else timestamp
        return bool(matches(aware.astimezone(CHINA_TZ).replace(tzinfo=None)))

    return validate


def schedule(
    *,
    minute: str = "*",
    hour: str = "*",
    day: str = "*",
    month: str = "*",
    day_of_week: str = "*",
    retries: int = 0,
    retry_delay: float = 0.0,
    name: str | None = None,
) -> Callable[[Callable[[], R]], Job[[], R]]:
    """Declare the decorated no-argument function a periodic job, crontab-style.

    Fields are in China Standard Time and take ``*``, ``*/n``, ``m-n`` and ``m,n``; the
    consumer's scheduler checks them once a minute. A missed minute (consumer down) is not
    made up, so periodic jobs should catch up on whatever is due rather than on "now".
    """
    validate = city_crontab(minute, hour, day, month, day_of_week)
    options: dict[str, Any] = {"retries": retries, "retry_delay": retry_delay, "name": name}

    def decorator(func: Callable[[], R]) -> Job[[], R]:
        return _declare(Job(func, options, validate))

    return decorator


def declared_jobs() -> list[Job[Any, Any]]:
    """Every job declared so far in this process (imported task modules)."""
    with _lock:
        return list(_declared)
