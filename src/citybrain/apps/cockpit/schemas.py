"""The cockpit's JSON shapes (the contract the page codes against)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field


class AreaOut(BaseModel):
    """An area of the hierarchy (or a compound)."""

    code: str
    name: str
    name_en: str | None = None
    level: str


class FigureOut(BaseModel):
    """One figure with its 14- and 30-day trends (oldest first, today last); ``value`` is
    null with source ``not_built`` where the platform has no source for it yet."""

    key: str
    label_zh: str
    label_en: str
    value: int | None
    source: Literal["live", "not_built"]
    trend14: list[int]
    trend30: list[int]


class LoopOut(BaseModel):
    """Median closed-loop times of today's traced cases, in minutes (city-wide: traces carry
    no area)."""

    arrival_to_contacts_min: float | None
    contacts_to_codes_min: float | None
    arrival_to_codes_min: float | None
    cases: int
    close_contacts: int = Field(default=0, description="密接人数（这些病例列出的）")
    contacts_controlled: int = Field(default=0, description="其中已落地管控")
    codes_to_control_min: float | None = Field(
        default=None, description="转码 → 落地管控（中位数，分钟）"
    )
    scope: str = "city"


class OverviewOut(BaseModel):
    """The cockpit's overview of one area."""

    area: AreaOut
    as_of: dt.datetime
    figures: list[FigureOut]
    tiers: dict[str, int]
    colours: dict[str, int]
    loop: LoopOut


class MapArea(BaseModel):
    """One child area on the map, with the measure's value."""

    code: str
    name: str
    name_en: str | None = None
    value: int | None
    has_polygon: bool


class MapOut(BaseModel):
    """A measure over the children of an area."""

    measure: str
    area: AreaOut
    level: str
    areas: list[MapArea]
    source: Literal["live", "not_built"] = "live"


class AlertOut(BaseModel):
    """One alert: area and counts only, never a person."""

    id: int
    kind: str
    at: dt.datetime
    area_code: str
    area_name: str
    title_zh: str
    title_en: str


class FreshnessOut(BaseModel):
    """One source category's freshness."""

    category: str
    name_zh: str
    name_en: str
    last_received_at: dt.datetime | None
    records_today: int
    stale: bool
    expected_every_hours: float
    origin: str
