"""Reading the geography: the packaged source files (the NBS hierarchy and the district
polygons) and every SQL query on areas, compounds and places."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.core.geo.models import (
    CITY_CODE,
    CITY_NAME,
    CITY_NAME_EN,
    CODE_LENGTHS,
    COMMUNITY_RURAL,
    COMMUNITY_URBAN,
    KIND_CITY,
    LEVEL_CITY,
    LEVEL_COMMUNITY,
    LEVEL_COMPOUND,
    LEVEL_DISTRICT,
    LEVEL_STREET,
    PLACE_KINDS,
    STREET_SPECIAL,
    STREET_SUBDISTRICT,
    STREET_TOWN,
    STREET_TOWNSHIP,
    Area,
    Compound,
    Place,
)

# ODbL 1.0 requires this wherever the district map is shown.
MAP_ATTRIBUTION = (
    "© OpenStreetMap contributors, via geoBoundaries (Runfola et al. 2020, PLOS ONE 15(4):e0231866)"
)

_DATA_PACKAGE = "citybrain.core.geo"

# ---------------------------------------------------------------------------------------------
# Packaged source files


class AreaRow(NamedTuple):
    """One row of the ``areas`` table as read from the packaged NBS list."""

    code: str
    level: str
    name: str
    name_en: str | None
    kind: str
    parent_code: str | None
    map_polygon: str | None


def _data_text(filename: str) -> str:
    # importlib.resources works from a source tree, a wheel or a zip alike.
    return resources.files(_DATA_PACKAGE).joinpath("data", filename).read_text(encoding="utf-8")


def _csv_rows(filename: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(_data_text(filename))))


def street_kind(name: str) -> str:
    """Kind of a township-level unit from its name: 街道 subdistrict, 镇 town, 乡 township;
    anything else (风景区, 产业集聚区, 新区, 森林公园) is special."""
    if name.endswith("街道"):
        return STREET_SUBDISTRICT
    if name.endswith("镇"):
        return STREET_TOWN
    if name.endswith("乡"):
        return STREET_TOWNSHIP
    return STREET_SPECIAL


# The NBS list carries no urban/rural class here, so the name decides: 村委会/村民委员会 and the
# bare "…村" names of the airport zone are villages; 社区/居委会 and the rest are urban.
_RURAL_SUFFIXES = ("村民委员会", "村委会", "村")


def community_kind(name: str) -> str:
    """Urban (社区居委会) or rural (村委会) from a community's name."""
    return COMMUNITY_RURAL if name.endswith(_RURAL_SUFFIXES) else COMMUNITY_URBAN


@lru_cache(maxsize=1)
def hierarchy_rows() -> tuple[AreaRow, ...]:
    """The whole packaged hierarchy, parents before children, each level sorted by code:
    the city, 15 county-level units, 208 streets, 3,306 communities."""
    rows: list[AreaRow] = [
        AreaRow(CITY_CODE, LEVEL_CITY, CITY_NAME, CITY_NAME_EN, KIND_CITY, None, None)
    ]
    for r in sorted(_csv_rows("districts.csv"), key=lambda r: r["code"]):
        rows.append(
            AreaRow(
                r["code"],
                LEVEL_DISTRICT,
                r["name"],
                r["name_en"] or None,
                r["kind"],
                CITY_CODE,
                r["map_polygon"] or None,
            )
        )
    for r in sorted(_csv_rows("streets.csv"), key=lambda r: r["code"]):
        rows.append(
            AreaRow(
                r["code"],
                LEVEL_STREET,
                r["name"],
                None,
                street_kind(r["name"]),
                r["district_code"],
                None,
            )
        )
    for r in sorted(_csv_rows("communities.csv"), key=lambda r: r["code"]):
        rows.append(
            AreaRow(
                r["code"],
                LEVEL_COMMUNITY,
                r["name"],
                None,
                community_kind(r["name"]),
                r["street_code"],
                None,
            )
        )
    return tuple(rows)


@lru_cache(maxsize=1)
def _polygons_text() -> str:
    return _data_text("districts.geojson")


def district_polygons() -> dict[str, Any]:
    """The district boundaries as a GeoJSON FeatureCollection (a fresh copy each call).

    Features carry ``adcode``, ``name`` and ``name_en``; the three development zones have no
    polygon. Show ``MAP_ATTRIBUTION`` wherever this map is drawn (ODbL 1.0).
    """
    data: dict[str, Any] = json.loads(_polygons_text())
    return data


# ---------------------------------------------------------------------------------------------
# Codes


def area_level_for_code(code: str) -> str | None:
    """Level of a code by its length: 4 city, 6 district, 9 street, 12 community, 15 compound;
    ``None`` for anything else (including non-digits)."""
    if not code.isdigit() or not code.isascii():
        return None
    for level, length in CODE_LENGTHS.items():
        if len(code) == length:
            return level
    return None


# ---------------------------------------------------------------------------------------------
# Queries


def get_area(session: Session, code: str) -> Area | None:
    """The area with this code, or ``None``."""
    return session.get(Area, code)


def get_compound(session: Session, code: str) -> Compound | None:
    """The compound (小区) with this code, or ``None``."""
    return session.get(Compound, code)


def get_place(session: Session, code: str) -> Place | None:
    """The place (场所) with this code, or ``None``."""
    return session.get(Place, code)


def children(session: Session, code: str) -> list[Area]:
    """The areas directly under ``code``, by code (a community has none: its compounds are not
    areas, see ``compounds_in``)."""
    return list(session.scalars(select(Area).where(Area.parent_code == code).order_by(Area.code)))


def names_of(session: Session, codes: Iterable[str]) -> dict[str, str]:
    """Names by code of areas (district, street, community) and compounds; codes that name
    nothing are left out. Read in chunks, so a long list stays one short query a chunk."""
    wanted = sorted({c for c in codes if c and c.isdigit()})
    names: dict[str, str] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        areas = [c for c in chunk if len(c) < 15]
        compounds = [c for c in chunk if len(c) == 15]
        if areas:
            found_areas = select(Area.code, Area.name).where(Area.code.in_(areas))
            names.update({code: name for code, name in session.execute(found_areas)})
        if compounds:
            found = select(Compound.code, Compound.name).where(Compound.code.in_(compounds))
            names.update({code: name for code, name in session.execute(found)})
    return names


def ancestors(session: Session, code: str) -> list[Area]:
    """The path city → … → the area itself, for an area code; for a compound code, the path to
    its community. Empty when the code is unknown."""
    if area_level_for_code(code) == LEVEL_COMPOUND:
        compound = session.get(Compound, code)
        if compound is None:
            return []
        code = compound.community_code
    path: list[Area] = []
    current = session.get(Area, code)
    while current is not None:
        path.append(current)
        current = session.get(Area, current.parent_code) if current.parent_code else None
    path.reverse()
    return path


def _prefix(area_code: str) -> str:
    # Codes are digits only; refuse anything that could act as a LIKE wildcard.
    if not area_code.isdigit():
        raise ValueError(f"not an area code: {area_code!r}")
    return area_code + "%"


def compounds_in(
    session: Session, area_code: str, limit: int = 100, offset: int = 0
) -> list[Compound]:
    """Compounds inside an area (or the compound itself for a compound code), by code."""
    return list(
        session.scalars(
            select(Compound)
            .where(Compound.code.like(_prefix(area_code)))
            .order_by(Compound.code)
            .limit(limit)
            .offset(offset)
        )
    )


def count_compounds_in(session: Session, area_code: str) -> int:
    """How many compounds lie inside an area."""
    return int(
        session.scalar(
            select(func.count()).select_from(Compound).where(Compound.code.like(_prefix(area_code)))
        )
        or 0
    )


def places_in(
    session: Session,
    area_code: str,
    *,
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Place]:
    """Places inside an area, optionally of one kind, by code."""
    query = select(Place).where(Place.area_code.like(_prefix(area_code)))
    if kind is not None:
        query = query.where(Place.kind == kind)
    return list(session.scalars(query.order_by(Place.code).limit(limit).offset(offset)))


def counts(session: Session) -> dict[str, Any]:
    """Rows per level and per place kind: ``districts`` (county-level units, the city row not
    counted), ``streets``, ``communities``, ``compounds``, ``places``, ``places_by_kind``."""
    by_level = dict(session.execute(select(Area.level, func.count()).group_by(Area.level)).all())
    by_kind = dict(session.execute(select(Place.kind, func.count()).group_by(Place.kind)).all())
    compounds = session.scalar(select(func.count()).select_from(Compound)) or 0
    return {
        "districts": int(by_level.get(LEVEL_DISTRICT, 0)),
        "streets": int(by_level.get(LEVEL_STREET, 0)),
        "communities": int(by_level.get(LEVEL_COMMUNITY, 0)),
        "compounds": int(compounds),
        "places": int(sum(by_kind.values())),
        "places_by_kind": {kind: int(by_kind[kind]) for kind in PLACE_KINDS if kind in by_kind},
    }


def existing_rows(
    session: Session, model: type[Area | Compound | Place]
) -> dict[str, tuple[Any, ...]]:
    """Every stored row of a geo table as code → tuple of its columns in table order; the
    loader compares these with the generated rows to insert or update only what differs."""
    columns = list(model.__table__.columns)
    result = session.execute(select(*columns))
    return {row[0]: tuple(row) for row in result}
