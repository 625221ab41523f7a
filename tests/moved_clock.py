"""Real processes and browsers on the tests' clock: ``--clock-at`` moves the platform's clock in
the test process only, so a ``citybrain`` subprocess and Chromium are started with the same shift
(otherwise they keep the real time and disagree with the test on "now")."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

from citybrain.kit import clock

_SHIFTED_COMMAND = """
import datetime, sys
from citybrain.kit import clock
from citybrain.cli import app
sys.argv[0] = "citybrain"
with clock.shifted(datetime.timedelta(seconds={seconds!r})):
    app()
"""


def clock_shift() -> dt.timedelta:
    """How far the tests' clock runs from real time (zero unless ``--clock-at`` moved it)."""
    shift = clock.now() - dt.datetime.now(dt.UTC)
    return shift if abs(shift) >= dt.timedelta(seconds=1) else dt.timedelta(0)


def citybrain_command(*args: str) -> list[str]:
    """The argv that runs ``citybrain *args`` as a process on the tests' clock."""
    seconds = clock_shift().total_seconds()
    if not seconds:
        return [sys.executable, "-m", "citybrain.cli", *args]
    return [sys.executable, "-c", _SHIFTED_COMMAND.format(seconds=seconds), *args]


def on_tests_clock(context: Any) -> None:
    """Give a Playwright browser context the tests' clock: its pages' ``Date`` starts at the
    tests' "now" and ticks on (Playwright's clock); nothing changes when the clock is not moved."""
    if clock_shift():
        context.clock.install(time=clock.now())
