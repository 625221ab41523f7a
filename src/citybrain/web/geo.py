"""JSON API over the hierarchy (/api/v1/areas, /api/v1/geo).

It lives in web rather than core.geo because it needs authz, which stands above geo."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from citybrain.core.authz.deps import require
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.geo import repository
from citybrain.core.geo.schemas import AreaDetail, AreaOut, CompoundOut, DistrictMap
from citybrain.kit.errors import NotFound, error_responses
from citybrain.kit.web import DB

router = APIRouter(tags=["geo 区划"], responses=error_responses(401, 403, 404, 422))
Viewer = Annotated[Principal, Depends(require(Permission.GEO_VIEW))]
AreaCode = Annotated[str, Path(pattern=r"^\d{4,12}$", description="area code 区划代码")]


@router.get("/api/v1/areas/{code}", response_model=AreaDetail)
def area(code: AreaCode, session: DB, who: Viewer) -> AreaDetail:
    """An area with its path from the city, its children and how many compounds it holds."""
    found = repository.get_area(session, code)
    if found is None:
        raise NotFound(f"区划 {code} 不存在", f"no area {code}", code="area_not_found")
    return AreaDetail(
        **AreaOut.model_validate(found).model_dump(),
        path=[AreaOut.model_validate(a) for a in repository.ancestors(session, code)],
        children=[AreaOut.model_validate(a) for a in repository.children(session, code)],
        compounds=repository.count_compounds_in(session, code),
    )


@router.get("/api/v1/areas/{code}/compounds", response_model=list[CompoundOut])
def compounds(
    code: AreaCode,
    session: DB,
    who: Viewer,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[CompoundOut]:
    """Compounds inside an area, by code."""
    if repository.get_area(session, code) is None:
        raise NotFound(f"区划 {code} 不存在", f"no area {code}", code="area_not_found")
    return [
        CompoundOut.model_validate(c)
        for c in repository.compounds_in(session, code, limit=limit, offset=offset)
    ]


@router.get("/api/v1/geo/districts", response_model=DistrictMap)
def districts(who: Viewer) -> DistrictMap:
    """The district polygons for maps, with their ODbL attribution."""
    return DistrictMap(
        attribution=repository.MAP_ATTRIBUTION,
        licence="ODbL-1.0",
        geojson=repository.district_polygons(),
    )
