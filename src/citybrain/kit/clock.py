"""The platform's clock: aware UTC times, replaceable in tests and for a simulated city."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager

UTC = dt.UTC
CHINA_TZ = dt.timezone(dt.timedelta(hours=8), name="Asia/Shanghai")

_source: Callable[[], dt.datetime] = lambda: dt.datetime.now(UTC)  # noqa: E731


def now() -> dt.datetime:
    """The current time, aware, in UTC."""
    return _source()


def today_local() -> dt.date:
    """Today's date in China Standard Time (the city's calendar day)."""
    return now().astimezone(CHINA_TZ).date()


@contextmanager
def frozen(at: dt.datetime) -> Iterator[None]:
    """Fix the clock at ``at`` for the duration of the block (tests)."""
    global _source
    saved = _source
    fixed = at if at.tzinfo else at.replace(tzinfo=UTC)
    _source = lambda: fixed  # noqa: E731
    try:
        yield
    finally:
        _source = saved


@contextmanager
def shifted(by: dt.timedelta) -> Iterator[None]:
    """Run the clock ``by`` away from real time for the duration of the block, still ticking
    (tests at a chosen local time of day, such as just after midnight in the city)."""
    global _source
    saved = _source
    _source = lambda: saved() + by  # noqa: E731
    try:
        yield
    finally:
        _source = saved


def as_utc(value: dt.datetime) -> dt.datetime:
    """Treat naive datetimes as UTC (SQLite drops the zone) and convert aware ones."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
