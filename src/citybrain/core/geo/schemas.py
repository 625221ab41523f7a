"""Pydantic I/O for the hierarchy."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class AreaOut(BaseModel):
    """An area of the hierarchy (区县/街道/社区)."""

    model_config = ConfigDict(from_attributes=True)

    code: str
    level: str
    name: str
    name_en: str | None
    kind: str
    parent_code: str | None


class AreaDetail(AreaOut):
    """An area with its path from the city and its children."""

    path: list[AreaOut]
    children: list[AreaOut]
    compounds: int


class CompoundOut(BaseModel):
    """A compound (小区)."""

    model_config = ConfigDict(from_attributes=True)

    code: str
    community_code: str
    name: str
    address: str
    households_estimate: int
    gate_count: int
    lon: float | None
    lat: float | None


class DistrictMap(BaseModel):
    """District polygons (GeoJSON) with the attribution their licence requires."""

    attribution: str
    licence: str
    geojson: dict[str, Any]
