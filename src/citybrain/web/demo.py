"""The demo's outbreak player (演示回放): a simulated city's feeds reach the data centre a day
at a time, so the cockpit shows an outbreak unfolding.

``citybrain demo`` simulates a small city whose last day is today, takes in its first days at
once and then hands the rest to a ``DemoPlayer``: every ``day_seconds / speed`` seconds of
real time the next simulated day's files are copied into a drop folder of their own and taken
in through the data centre's intake, exactly as an agency's delivery would be. From there the
platform runs as it always does: cases traced on arrival, facts, colours, tiers, the cockpit's
figures and alerts, pushed to the open pages. Nothing here touches the platform's clock; the
simulated clock is the day of the feeds.

``GET /api/v1/demo/clock`` tells the simulated day and speed; ``POST`` changes the speed or
pauses (404 when no demo is playing).
"""

from __future__ import annotations

import datetime as dt
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from citybrain.core.audit.service import Actor
from citybrain.core.authz.deps import require
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.datahub.catalog import identify
from citybrain.datahub.service import IngestSummary, Intake
from citybrain.kit.db import Database
from citybrain.kit.errors import InvalidInput, NotFound, error_responses
from citybrain.kit.logging import get_logger

log = get_logger(__name__)
SPEEDS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def files_by_day(feeds: Path) -> dict[dt.date, list[Path]]:
    """The feed files under ``feeds`` by the delivery day their names give (files without a
    day are delivered with the first day)."""
    days: dict[dt.date, list[Path]] = defaultdict(list)
    undated: list[Path] = []
    for path in sorted(p for p in feeds.rglob("*") if p.is_file()):
        found = identify(path)
        if found is None:
            continue
        _, day = found
        if day:
            days[dt.datetime.strptime(day, "%Y%m%d").date()].append(path)
        else:
            undated.append(path)
    if undated and days:
        days[min(days)].extend(undated)
    return dict(sorted(days.items()))


@dataclass
class ClockState:
    """What the demo clock shows."""

    day: str | None  # the last simulated day taken in (ISO)
    next_day: str | None
    released: int
    total: int
    speed: float
    day_seconds: float
    paused: bool
    finished: bool


class DemoPlayer:
    """Releases a simulated city's feed days into the data centre on a simulated clock."""

    def __init__(
        self,
        database: Database,
        feeds: Path,
        drop: Path,
        *,
        day_seconds: float = 20.0,
        actor: Actor,
        on_day: Callable[[dt.date, IngestSummary], None] | None = None,
    ) -> None:
        self.database = database
        self.days = files_by_day(feeds)
        self.order = list(self.days)
        self.feeds = feeds
        self.drop = drop
        self.day_seconds = day_seconds
        self.actor = actor
        self.on_day = on_day  # told of each day taken in (the demo prints a line)
        self.speed = 1.0
        self.paused = False
        self.released = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def release_next(self) -> IngestSummary | None:
        """Take the next simulated day's files in; returns what the intake did (None when
        every day is out)."""
        with self._lock:
            if self.released >= len(self.order):
                return None
            day = self.order[self.released]
        folder = self.drop / f"{day:%Y%m%d}"
        for path in self.days[day]:
            target = folder / path.relative_to(self.feeds)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        intake = Intake()
        try:
            taken = intake.ingest_folder(self.database, folder, actor=self.actor)
        finally:
            intake.close()
        with self._lock:
            self.released += 1
        log.info("demo.day_released", day=day.isoformat(), accepted=taken.accepted)
        if self.on_day is not None:
            self.on_day(day, taken)
        return taken

    def release_until(self, count: int) -> None:
        """Take the first ``count`` days in at once (before serving)."""
        while self.released < min(count, len(self.order)):
            self.release_next()

    def state(self) -> ClockState:
        """The clock as the page shows it."""
        with self._lock:
            last = self.order[self.released - 1] if self.released else None
            upcoming = self.order[self.released] if self.released < len(self.order) else None
            return ClockState(
                day=last.isoformat() if last else None,
                next_day=upcoming.isoformat() if upcoming else None,
                released=self.released,
                total=len(self.order),
                speed=self.speed,
                day_seconds=self.day_seconds,
                paused=self.paused,
                finished=upcoming is None,
            )

    def set(self, *, speed: float | None = None, paused: bool | None = None) -> None:
        """Change the speed or pause; the running wait starts over at the new speed."""
        with self._lock:
            if speed is not None:
                self.speed = speed
            if paused is not None:
                self.paused = paused
        self._wake.set()

    def start(self) -> None:
        """Play the remaining days on a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="demo-player", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop playing (the day being taken in finishes first)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        due = time.monotonic() + self.day_seconds / self.speed
        while not self._stop.is_set() and self.released < len(self.order):
            self._wake.wait(timeout=max(0.0, due - time.monotonic()))
            if self._wake.is_set():
                self._wake.clear()
                due = time.monotonic() + self.day_seconds / self.speed
                continue
            if self.paused or self._stop.is_set():
                due = time.monotonic() + 1.0
                continue
            try:
                self.release_next()
            except Exception:  # the intake said why in its log; the demo goes on
                log.exception("demo.day_failed")
                with self._lock:
                    self.released += 1
            due = time.monotonic() + self.day_seconds / self.speed


_player: DemoPlayer | None = None


def install(player: DemoPlayer | None) -> None:
    """Make ``player`` the one the clock endpoints show (None: no demo)."""
    global _player
    _player = player


class ClockIn(BaseModel):
    """A change of the demo clock."""

    speed: float | None = Field(None, description=f"one of {list(SPEEDS)} 回放倍速")
    paused: bool | None = Field(None, description="pause or resume 暂停/继续")


class ClockOut(BaseModel):
    """The demo clock."""

    day: str | None
    next_day: str | None
    released: int
    total: int
    speed: float
    day_seconds: float
    paused: bool
    finished: bool
    speeds: list[float] = Field(default_factory=lambda: list(SPEEDS), description="倍速可选值")


router = APIRouter(tags=["demo 演示"], responses=error_responses(401, 403, 404, 422))
Viewer = Annotated[Principal, Depends(require(Permission.COCKPIT_VIEW))]


def _playing() -> DemoPlayer:
    if _player is None:
        raise NotFound("没有正在回放的演示", "no demo is playing", code="no_demo")
    return _player


@router.get("/api/v1/demo/clock", response_model=ClockOut)
def demo_clock(who: Viewer) -> ClockOut:
    """The demo's simulated day and speed (演示时钟)."""
    return ClockOut(**_playing().state().__dict__)


@router.post("/api/v1/demo/clock", response_model=ClockOut)
def set_demo_clock(change: ClockIn, who: Viewer) -> ClockOut:
    """Speed the demo's clock up or down, or pause it."""
    player = _playing()
    if change.speed is not None and change.speed not in SPEEDS:
        raise InvalidInput(
            f"倍速须为 {', '.join(str(s) for s in SPEEDS)} 之一",
            f"speed must be one of {', '.join(str(s) for s in SPEEDS)}",
            field="speed",
        )
    player.set(speed=change.speed, paused=change.paused)
    return ClockOut(**player.state().__dict__)
