"""The platform's clock: aware UTC times, replaceable in tests and for a simulated city."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

UTC = dt.UTC
CHINA_TZ = dt.timezone(dt.timedelta(hours=8), name="Asia/Shanghai")

_source: Callable[[], dt.datetime] = lambda: dt.datetime.now(UTC)  # noqa: E731


def now() -> dt.datetime:
    """The current time, aware, in UTC."""
    return _source()


def today_local() -> dt.date:
    """Today's date in China Standard Time (the city's calendar day)."""
    return now().astimezone(CHINA_TZ).date()


def local_midnight(day: dt.date) -> dt.datetime:
    """The start of ``day`` on the city's calendar (00:00 China Standard Time), in UTC."""
    return dt.datetime.combine(day, dt.time(), tzinfo=CHINA_TZ).astimezone(UTC)


@contextmanager
def _using(source: Callable[[], dt.datetime]) -> Iterator[None]:
    """Read the time from ``source`` for the duration of the block."""
    global _source
    saved = _source
    _source = source
    try:
        yield
    finally:
        _source = saved


def frozen(at: dt.datetime) -> AbstractContextManager[None]:
    """Fix the clock at ``at`` for the duration of the block (tests)."""
    fixed = at if at.tzinfo else at.replace(tzinfo=UTC)
    return _using(lambda: fixed)


def shifted(by: dt.timedelta) -> AbstractContextManager[None]:
    """Run the clock ``by`` away from the current one for the duration of the block, still
    ticking (tests at a chosen local time of day, such as just after midnight in the city)."""
    base = _source
    return _using(lambda: base() + by)


def as_utc(value: dt.datetime) -> dt.datetime:
    """Treat naive datetimes as UTC (SQLite drops the zone) and convert aware ones."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
