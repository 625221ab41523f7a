"""Queries on the loaded hierarchy, and the code-prefix property authorization relies on."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.geo import repository
from citybrain.core.geo.compounds import DistrictGeometry
from citybrain.core.geo.models import CODE_LENGTHS, Area, Compound, Place


def test_area_codes_nest_by_prefix(session: Session) -> None:
    areas = {a.code: a for a in session.scalars(select(Area))}
    assert len(areas) == 1 + 15 + 208 + 3306
    for area in areas.values():
        assert len(area.code) == CODE_LENGTHS[area.level], area.code
        assert area.code.startswith("4101")
        if area.parent_code is None:
            assert area.code == "4101"
            continue
        parent = areas[area.parent_code]
        assert area.code.startswith(parent.code), area.code
        assert len(parent.code) < len(area.code)
        # Every prefix of a code at a level boundary is its ancestor at that level.
        chain = []
        node: Area | None = area
        while node is not None:
            chain.append(node.code)
            node = areas.get(node.parent_code) if node.parent_code else None
        prefixes = [area.code[:n] for n in (4, 6, 9, 12) if n <= len(area.code)]
        assert list(reversed(chain)) == prefixes


def test_compound_and_place_codes_nest_by_prefix(session: Session) -> None:
    levels = dict(session.execute(select(Area.code, Area.level)).all())
    compounds = dict(session.execute(select(Compound.code, Compound.community_code)).all())
    assert len(compounds) == 10806
    for code, community in compounds.items():
        assert levels[community] == "community"
        assert len(code) == 15 and code.startswith(community), code
    places = session.execute(select(Place.code, Place.area_code, Place.compound_code))
    count = 0
    for code, area_code, compound_code in places:
        count += 1
        assert area_code in levels, code
        assert code[0].isalpha() and code[1:].startswith(area_code), code
        if compound_code is not None:
            assert compound_code.startswith(area_code), code
            assert code[1:].startswith(compound_code), code
    assert count > 10806


def test_stored_coordinates_inside_district_polygons(session: Session) -> None:
    geometry = DistrictGeometry(repository.district_polygons())
    rows = session.execute(select(Compound.code, Compound.lon, Compound.lat))
    for code, lon, lat in rows:
        assert lon is not None and lat is not None
        assert geometry.contains(code, lon, lat), code


def test_area_level_for_code() -> None:
    assert repository.area_level_for_code("4101") == "city"
    assert repository.area_level_for_code("410102") == "district"
    assert repository.area_level_for_code("410102001") == "street"
    assert repository.area_level_for_code("410102001002") == "community"
    assert repository.area_level_for_code("410102001002001") == "compound"
    assert repository.area_level_for_code("41010") is None
    assert repository.area_level_for_code("4101x2") is None
    assert repository.area_level_for_code("") is None


def test_children(session: Session) -> None:
    districts = repository.children(session, "4101")
    assert len(districts) == 15
    assert [d.code for d in districts] == sorted(d.code for d in districts)
    zone_streets = repository.children(session, "410171")
    assert len(zone_streets) == 6 and all(s.code.startswith("410171") for s in zone_streets)
    assert repository.children(session, "410102001002") == []
    assert repository.children(session, "999999") == []


def test_ancestors(session: Session) -> None:
    path = repository.ancestors(session, "410102001002")
    assert [a.code for a in path] == ["4101", "410102", "410102001", "410102001002"]
    assert [a.level for a in path] == ["city", "district", "street", "community"]
    compound_path = repository.ancestors(session, "410102001002001")
    assert [a.code for a in compound_path] == [a.code for a in path]
    assert [a.code for a in repository.ancestors(session, "4101")] == ["4101"]
    assert [a.code for a in repository.ancestors(session, "410173400")] == [
        "4101",
        "410173",
        "410173400",
    ]
    assert repository.ancestors(session, "410102001002998") == []
    assert repository.ancestors(session, "410199") == []


def test_get_area_and_kinds(session: Session) -> None:
    area = repository.get_area(session, "410102")
    assert area is not None and area.name == "中原区" and area.name_en == "Zhongyuan"
    assert area.kind == "district" and area.map_polygon == "410102"
    zone = repository.get_area(session, "410173")
    assert zone is not None and zone.kind == "development_zone" and zone.map_polygon is None
    street = repository.get_area(session, "410108100")
    assert street is not None and street.kind == "town" and street.name == "花园口镇"
    village = repository.get_area(session, "410173108201")
    assert village is not None and village.name == "前霍村委会" and village.kind == "rural"
    urban = repository.get_area(session, "410102001002")
    assert urban is not None and urban.kind == "urban" and urban.parent_code == "410102001"
    assert repository.get_area(session, "000000") is None


def test_compounds_in(session: Session) -> None:
    assert repository.count_compounds_in(session, "4101") == 10806
    street = "410102001"
    total = repository.count_compounds_in(session, street)
    first = repository.compounds_in(session, street, limit=3)
    assert len(first) == min(3, total)
    assert all(c.code.startswith(street) for c in first)
    assert [c.code for c in first] == sorted(c.code for c in first)
    everything = repository.compounds_in(session, street, limit=1000)
    assert len(everything) == total
    page = repository.compounds_in(session, street, limit=2, offset=1)
    assert [c.code for c in page] == [c.code for c in everything[1:3]]
    single = repository.compounds_in(session, everything[0].code)
    assert [c.code for c in single] == [everything[0].code]
    with pytest.raises(ValueError):
        repository.compounds_in(session, "4101%")


def test_places_in(session: Session) -> None:
    gates = repository.places_in(session, "410102001002", kind="compound_gate", limit=1000)
    compounds = repository.compounds_in(session, "410102001002", limit=1000)
    assert len(gates) == sum(c.gate_count for c in compounds)
    airport = repository.places_in(session, "410173", kind="airport")
    assert [p.name for p in airport] == ["郑州新郑国际机场"]
    assert repository.get_place(session, airport[0].code) is not None
    assert repository.get_compound(session, compounds[0].code) is not None


def test_district_polygons_and_attribution() -> None:
    polygons = repository.district_polygons()
    assert polygons["type"] == "FeatureCollection"
    assert len(polygons["features"]) == 12
    polygons["features"].clear()  # callers get their own copy
    assert len(repository.district_polygons()["features"]) == 12
    assert "OpenStreetMap contributors" in repository.MAP_ATTRIBUTION
    assert repository.MAP_ATTRIBUTION == (
        "© OpenStreetMap contributors, via geoBoundaries (Runfola et al. 2020, PLOS ONE "
        "15(4):e0231866)"
    )
