"""The platform's geography (handed in as plain rows) turned into the arrays the model needs:
districts, streets and compounds by index, the venues of each street, stations, checkpoints and
hospitals."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from citybrain.simulate.config import GeoInput, PlaceInput
from citybrain.simulate.model_util import F64, I32, I64, B

# Districts that are counties or county-level cities (县, 县级市) rather than the built-up city:
# they have no metro, fewer cars per person in the centre and commuters cross checkpoints.
COUNTY_DISTRICTS = ("410122", "410181", "410182", "410183", "410184", "410185")
_HOUSE_NUMBER = re.compile(r"\d+号$")


@dataclass
class Geo:
    """Indexed geography. Streets and compounds are sorted by code, so a district's streets and
    a street's compounds are contiguous."""

    city_name: str
    district_codes: list[str]
    district_names: list[str]
    district_county: B
    street_codes: list[str]
    street_names: list[str]
    street_district: I32
    street_urban: B  # 街道 (subdistrict) rather than 镇/乡
    compound_codes: list[str]
    compound_names: list[str]
    compound_address: list[str]
    compound_village_base: list[str]  # rural address without the house number
    compound_community: list[str]
    compound_street: I32
    compound_rural: B
    compound_households: I64  # households_estimate at full scale
    compound_gate: list[str | None]  # the first gate's place code
    street_lonlat: F64  # (streets, 2): mean position of the street's compounds
    venues: list[PlaceInput]  # kind venue, sorted by code
    venue_street: I32
    venue_subkind: list[str]
    stations: list[PlaceInput]  # railway and coach stations and the airport
    checkpoints: list[PlaceInput]
    checkpoint_district: I32
    hospital: list[int]  # per district: venue number of its hospital (-1: none)
    fever_clinic: list[int]  # per district: venue number of its fever clinic (-1: none)

    def street_of(self, code: str) -> int:
        """Index of a street code."""
        return self.street_codes.index(code)

    def street_km(self, a: I64 | I32, b: I64 | I32) -> F64:
        """Rough distance in kilometres between the centres of streets ``a`` and ``b``."""
        d = self.street_lonlat[a] - self.street_lonlat[b]
        return np.hypot(d[..., 0] * 91.5, d[..., 1] * 111.0)


def build_geo(geo: GeoInput) -> Geo:
    """Index ``geo``. Raises ValueError when it has no districts, streets or compounds."""
    areas = sorted(geo.areas, key=lambda a: a.code)
    city = next((a for a in areas if a.level == "city"), None)
    districts = [a for a in areas if a.level == "district"]
    streets = [a for a in areas if a.level == "street"]
    communities = {a.code: a for a in areas if a.level == "community"}
    if not districts or not streets or not geo.compounds:
        raise ValueError("the geography needs districts, streets and compounds")
    d_index = {a.code: i for i, a in enumerate(districts)}
    s_index = {a.code: i for i, a in enumerate(streets)}
    compounds = sorted(geo.compounds, key=lambda c: c.code)
    gates: dict[str, str] = {}
    for p in sorted(geo.places, key=lambda p: p.code):
        if p.kind == "compound_gate" and p.compound_code and p.compound_code not in gates:
            gates[p.compound_code] = p.code

    def street_of_community(code: str) -> int:
        community = communities.get(code)
        parent = community.parent_code if community is not None else None
        return s_index[parent] if parent in s_index else s_index[code[:9]]

    def rural(code: str) -> bool:
        community = communities.get(code)
        name = community.name if community is not None else ""
        return "村" in name and "社区" not in name

    venues = sorted((p for p in geo.places if p.kind == "venue"), key=lambda p: p.code)
    venue_street = np.array([s_index.get(p.area_code[:9], -1) for p in venues], dtype=np.int32)
    hospital = [-1] * len(districts)
    fever = [-1] * len(districts)
    for i, p in enumerate(venues):
        district = d_index.get(p.area_code[:6])
        if district is None:
            continue
        if p.subkind == "hospital" and hospital[district] < 0:
            hospital[district] = i
        if p.subkind == "fever_clinic" and fever[district] < 0:
            fever[district] = i
    # Districts without a hospital of their own use the first district's.
    first_h = next((h for h in hospital if h >= 0), -1)
    first_f = next((f for f in fever if f >= 0), -1)
    hospital = [h if h >= 0 else first_h for h in hospital]
    fever = [f if f >= 0 else first_f for f in fever]
    compound_street = np.array(
        [street_of_community(c.community_code) for c in compounds], dtype=np.int32
    )
    lon = np.array([c.lon if c.lon is not None else np.nan for c in compounds])
    lat = np.array([c.lat if c.lat is not None else np.nan for c in compounds])
    street_lonlat = np.full((len(streets), 2), np.nan)
    known = ~np.isnan(lon) & ~np.isnan(lat)
    counts = np.bincount(compound_street[known], minlength=len(streets))
    with np.errstate(invalid="ignore", divide="ignore"):
        street_lonlat[:, 0] = np.bincount(compound_street[known], lon[known], len(streets)) / counts
        street_lonlat[:, 1] = np.bincount(compound_street[known], lat[known], len(streets)) / counts
    # Streets without a located compound sit at their district's mean (else the city's).
    fallback = np.nanmean(street_lonlat, axis=0) if known.any() else np.array([113.66, 34.75])
    street_lonlat = np.where(np.isnan(street_lonlat), fallback, street_lonlat)
    checkpoints = sorted((p for p in geo.places if p.kind == "checkpoint"), key=lambda p: p.code)
    stations = sorted(
        (p for p in geo.places if p.kind in ("station", "airport")), key=lambda p: p.code
    )
    return Geo(
        city_name=city.name if city is not None else "郑州市",
        district_codes=[a.code for a in districts],
        district_names=[a.name for a in districts],
        district_county=np.array([a.code in COUNTY_DISTRICTS for a in districts]),
        street_codes=[a.code for a in streets],
        street_names=[a.name for a in streets],
        street_district=np.array(
            [d_index.get(a.parent_code or a.code[:6], d_index.get(a.code[:6], 0)) for a in streets],
            dtype=np.int32,
        ),
        street_urban=np.array([a.name.endswith("街道") for a in streets]),
        compound_codes=[c.code for c in compounds],
        compound_names=[c.name for c in compounds],
        compound_address=[c.address for c in compounds],
        compound_village_base=[_HOUSE_NUMBER.sub("", c.address) for c in compounds],
        compound_community=[c.community_code for c in compounds],
        compound_street=compound_street,
        compound_rural=np.array([rural(c.community_code) for c in compounds]),
        compound_households=np.array(
            [max(1, c.households_estimate) for c in compounds], dtype=np.int64
        ),
        compound_gate=[gates.get(c.code) for c in compounds],
        street_lonlat=street_lonlat,
        venues=venues,
        venue_street=venue_street,
        venue_subkind=[p.subkind or "" for p in venues],
        stations=stations,
        checkpoints=checkpoints,
        checkpoint_district=np.array(
            [d_index.get(p.area_code[:6], -1) for p in checkpoints], dtype=np.int32
        ),
        hospital=hospital,
        fever_clinic=fever,
    )


def street_root(name: str) -> str:
    """A street's short name: 林山寨街道 → 林山寨, 郑州经济技术开发区明湖街道 → 明湖."""
    name = name.removeprefix("郑州经济技术开发区")
    for suffix in ("街道", "镇", "乡"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name
