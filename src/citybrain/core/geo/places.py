"""Deterministic places (场所) where codes are scanned and people gather: a gate (门岗) for every
gate of every compound, traffic checkpoints (卡口) on the roads leaving the city, the railway
and coach stations, the airport, and the venues of every street.

A place's code is a one-letter kind prefix followed by the code of the area it lies in (the
compound's code for gates) and a sequence number, so prefix scoping works on places too.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from citybrain.core.geo.compounds import (
    DEFAULT_SEED,
    CompoundRow,
    DistrictGeometry,
    street_root,
)
from citybrain.core.geo.models import (
    AIRPORT_CIVIL,
    CHECKPOINT_HIGHWAY_TOLL,
    CHECKPOINT_NATIONAL_ROAD,
    CHECKPOINT_PROVINCIAL_ROAD,
    LEVEL_DISTRICT,
    LEVEL_STREET,
    PLACE_AIRPORT,
    PLACE_CHECKPOINT,
    PLACE_COMPOUND_GATE,
    PLACE_STATION,
    PLACE_VENUE,
    STATION_COACH,
    STATION_RAILWAY,
    STREET_SUBDISTRICT,
    VENUE_FEVER_CLINIC,
    VENUE_HOSPITAL,
    VENUE_MALL,
    VENUE_MARKET,
    VENUE_PHARMACY,
    VENUE_RESTAURANT,
    VENUE_SCHOOL,
    VENUE_SUPERMARKET,
)
from citybrain.core.geo.repository import AreaRow

# One letter per kind, in front of the area code.
CODE_PREFIX = {
    PLACE_COMPOUND_GATE: "G",
    PLACE_CHECKPOINT: "K",
    PLACE_STATION: "S",
    PLACE_AIRPORT: "A",
    PLACE_VENUE: "V",
}

# 二七广场, roughly the middle of the built-up city.
CITY_CENTRE = (113.665, 34.753)

# Checkpoints (卡口) where the expressways, national roads (国道) and provincial roads (省道)
# cross into Zhengzhou, in the districts and counties on the city's edge: road, subkind,
# and the street (乡镇/街道) the checkpoint belongs to.
CHECKPOINTS: tuple[tuple[str, str, str], ...] = (
    ("京港澳高速", CHECKPOINT_HIGHWAY_TOLL, "410108100"),  # 花园口镇, Yellow River crossing
    ("京港澳高速", CHECKPOINT_HIGHWAY_TOLL, "410184106"),  # 薛店镇
    ("京港澳高速", CHECKPOINT_HIGHWAY_TOLL, "410184109"),  # 龙湖镇
    ("京港澳高速", CHECKPOINT_HIGHWAY_TOLL, "410173108"),  # 张庄镇
    ("连霍高速", CHECKPOINT_HIGHWAY_TOLL, "410181106"),  # 站街镇
    ("连霍高速", CHECKPOINT_HIGHWAY_TOLL, "410181113"),  # 回郭镇
    ("连霍高速", CHECKPOINT_HIGHWAY_TOLL, "410182102"),  # 豫龙镇
    ("连霍高速", CHECKPOINT_HIGHWAY_TOLL, "410122102"),  # 官渡镇
    ("连霍高速", CHECKPOINT_HIGHWAY_TOLL, "410122101"),  # 韩寺镇
    ("郑民高速", CHECKPOINT_HIGHWAY_TOLL, "410122103"),  # 狼城岗镇
    ("郑民高速", CHECKPOINT_HIGHWAY_TOLL, "410122104"),  # 万滩镇
    ("大广高速", CHECKPOINT_HIGHWAY_TOLL, "410122112"),  # 刘集镇
    ("大广高速", CHECKPOINT_HIGHWAY_TOLL, "410122115"),  # 姚家镇
    ("郑少高速", CHECKPOINT_HIGHWAY_TOLL, "410183107"),  # 刘寨镇
    ("郑少高速", CHECKPOINT_HIGHWAY_TOLL, "410185004"),  # 卢店街道
    ("少洛高速", CHECKPOINT_HIGHWAY_TOLL, "410185203"),  # 君召乡
    ("商登高速", CHECKPOINT_HIGHWAY_TOLL, "410185103"),  # 告成镇
    ("商登高速", CHECKPOINT_HIGHWAY_TOLL, "410183106"),  # 大隗镇
    ("商登高速", CHECKPOINT_HIGHWAY_TOLL, "410184102"),  # 辛店镇
    ("永登高速", CHECKPOINT_HIGHWAY_TOLL, "410185108"),  # 东华镇
    ("郑云高速", CHECKPOINT_HIGHWAY_TOLL, "410182103"),  # 广武镇, 桃花峪 bridge
    ("焦桐高速", CHECKPOINT_HIGHWAY_TOLL, "410181105"),  # 河洛镇
    ("焦桐高速", CHECKPOINT_HIGHWAY_TOLL, "410185100"),  # 大金店镇
    ("郑尧高速", CHECKPOINT_HIGHWAY_TOLL, "410183109"),  # 岳村镇
    ("机场高速", CHECKPOINT_HIGHWAY_TOLL, "410173400"),  # 新港街道
    ("G107", CHECKPOINT_NATIONAL_ROAD, "410108101"),  # 古荥镇
    ("G107", CHECKPOINT_NATIONAL_ROAD, "410184101"),  # 新村镇
    ("G107", CHECKPOINT_NATIONAL_ROAD, "410184105"),  # 和庄镇
    ("G310", CHECKPOINT_NATIONAL_ROAD, "410181111"),  # 西村镇
    ("G310", CHECKPOINT_NATIONAL_ROAD, "410181004"),  # 孝义街道
    ("G310", CHECKPOINT_NATIONAL_ROAD, "410182105"),  # 汜水镇
    ("G310", CHECKPOINT_NATIONAL_ROAD, "410122105"),  # 白沙镇
    ("G207", CHECKPOINT_NATIONAL_ROAD, "410185106"),  # 宣化镇
    ("G207", CHECKPOINT_NATIONAL_ROAD, "410185101"),  # 颍阳镇
    ("G234", CHECKPOINT_NATIONAL_ROAD, "410182106"),  # 高山镇
    ("G234", CHECKPOINT_NATIONAL_ROAD, "410183101"),  # 米村镇
    ("G220", CHECKPOINT_NATIONAL_ROAD, "410122109"),  # 黄店镇
    ("G343", CHECKPOINT_NATIONAL_ROAD, "410173113"),  # 八岗镇
    ("S312", CHECKPOINT_PROVINCIAL_ROAD, "410181116"),  # 涉村镇
    ("S312", CHECKPOINT_PROVINCIAL_ROAD, "410182109"),  # 崔庙镇
    ("S314", CHECKPOINT_PROVINCIAL_ROAD, "410183102"),  # 牛店镇
    ("S316", CHECKPOINT_PROVINCIAL_ROAD, "410185105"),  # 大冶镇
    ("S316", CHECKPOINT_PROVINCIAL_ROAD, "410183104"),  # 超化镇
    ("S323", CHECKPOINT_PROVINCIAL_ROAD, "410185109"),  # 唐庄镇
    ("S223", CHECKPOINT_PROVINCIAL_ROAD, "410184104"),  # 梨河镇
    ("S223", CHECKPOINT_PROVINCIAL_ROAD, "410173202"),  # 八千乡
    ("S102", CHECKPOINT_PROVINCIAL_ROAD, "410122208"),  # 刁家乡
    ("S221", CHECKPOINT_PROVINCIAL_ROAD, "410173205"),  # 大马乡
    ("S232", CHECKPOINT_PROVINCIAL_ROAD, "410181115"),  # 夹津口镇
    ("S237", CHECKPOINT_PROVINCIAL_ROAD, "410182201"),  # 高村乡
)

# Railway and coach stations and the airport: name, kind, subkind, street, and a known WGS-84
# location or None. A seeded point near the street's centre is used instead when there is
# none or it falls outside the (host) district's simplified polygon.
STATIONS: tuple[tuple[str, str, str, str, tuple[float, float] | None], ...] = (
    ("郑州站", PLACE_STATION, STATION_RAILWAY, "410103004", (113.6586, 34.7455)),  # 一马路街道
    # 商都路街道 (管城 by its NBS code); the real site falls in 金水's simplified polygon.
    ("郑州东站", PLACE_STATION, STATION_RAILWAY, "410104570", None),
    ("郑州西站", PLACE_STATION, STATION_RAILWAY, "410172360", None),  # 沟赵乡
    ("郑州航空港站", PLACE_STATION, STATION_RAILWAY, "410173401", (113.8502, 34.5207)),  # 郑港街道
    ("郑州长途汽车中心站", PLACE_STATION, STATION_COACH, "410103004", None),  # 一马路街道
    ("郑州汽车客运总站", PLACE_STATION, STATION_COACH, "410105012", None),  # 未来路街道
    ("郑州长途汽车东站", PLACE_STATION, STATION_COACH, "410104570", None),  # 商都路街道
    ("郑州长途汽车西站", PLACE_STATION, STATION_COACH, "410102010", None),  # 中原西路街道
    ("郑州长途汽车南站", PLACE_STATION, STATION_COACH, "410103007", None),  # 大学路街道
    ("郑州长途汽车北站", PLACE_STATION, STATION_COACH, "410105002", None),  # 花园路街道
    # 新港街道
    ("郑州新郑国际机场", PLACE_AIRPORT, AIRPORT_CIVIL, "410173400", (113.8409, 34.5197)),
)

# The hospital with a fever clinic (发热门诊) in each county-level unit.
HOSPITALS = {
    "410102": "郑州市中心医院",
    "410103": "郑州大学第一附属医院",
    "410104": "管城回族区人民医院",
    "410105": "河南省人民医院",
    "410106": "上街区人民医院",
    "410108": "惠济区人民医院",
    "410122": "中牟县人民医院",
    "410171": "郑州经开区中心医院",
    "410172": "郑州高新区人民医院",
    "410173": "郑州航空港区第一人民医院",
    "410181": "巩义市人民医院",
    "410182": "荥阳市人民医院",
    "410183": "新密市第一人民医院",
    "410184": "新郑市人民医院",
    "410185": "登封市人民医院",
}
# Malls in the built-up districts and zones only.
URBAN_DISTRICT_KINDS = ("district", "development_zone")

_SUPERMARKET_WORDS = ("惠民", "百姓", "万家", "家乐", "优品", "便民", "丰源", "佳佳")
_PHARMACY_WORDS = ("仁和", "康健", "百草", "同济", "益民", "安康", "德仁", "济世")
_MALL_SUFFIXES = ("购物中心", "商业广场", "百货大楼", "时代广场")
_RESTAURANTS = ("烩面馆", "胡辣汤", "家常菜馆", "羊肉汤馆", "饺子馆", "火锅店")
_GATE_DIRECTIONS = (("东门", 1, 0), ("南门", 0, -1), ("西门", -1, 0), ("北门", 0, 1))


class PlaceRow(NamedTuple):
    """One generated row of the ``places`` table."""

    code: str
    kind: str
    subkind: str | None
    name: str
    area_code: str
    compound_code: str | None
    lon: float | None
    lat: float | None


def _gate_rows(
    rng: random.Random, compounds: Sequence[CompoundRow], geometry: DistrictGeometry
) -> list[PlaceRow]:
    rows: list[PlaceRow] = []
    for compound in compounds:
        if compound.gate_count == 1:
            sides = [("大门", 0, -1)]
        else:
            picked = sorted(rng.sample(range(4), compound.gate_count))
            sides = [_GATE_DIRECTIONS[i] for i in picked]
        for number, (label, dx, dy) in enumerate(sides, start=1):
            lon, lat = compound.lon, compound.lat
            if lon is not None and lat is not None:
                # Gates sit a hundred metres or so off the compound's centre, on their side.
                step = 0.0006 + 0.0008 * rng.random()
                gate_lon, gate_lat = round(lon + dx * step, 6), round(lat + dy * step, 6)
                if geometry.contains(compound.community_code, gate_lon, gate_lat):
                    lon, lat = gate_lon, gate_lat
            rows.append(
                PlaceRow(
                    code=f"{CODE_PREFIX[PLACE_COMPOUND_GATE]}{compound.code}{number}",
                    kind=PLACE_COMPOUND_GATE,
                    subkind=None,
                    name=f"{compound.name}{label}",
                    area_code=compound.community_code,
                    compound_code=compound.code,
                    lon=lon,
                    lat=lat,
                )
            )
    return rows


class _Numbering:
    """Per-(kind, area) sequence numbers for place codes."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, str], int] = defaultdict(int)

    def code(self, kind: str, area_code: str, width: int) -> str:
        self._next[kind, area_code] += 1
        return f"{CODE_PREFIX[kind]}{area_code}{self._next[kind, area_code]:0{width}d}"


def generate_places(
    areas: Iterable[AreaRow],
    compounds: Sequence[CompoundRow],
    geometry: DistrictGeometry,
    centres: Mapping[str, tuple[float, float]],
    *,
    seed: int = DEFAULT_SEED,
) -> list[PlaceRow]:
    """All places of the city for ``seed``: gates of ``compounds``, checkpoints, stations, the
    airport and the venues of every street (``centres`` are the streets' centre points)."""
    by_code = {a.code: a for a in areas}
    rng = random.Random(f"citybrain.geo.places:{seed}")  # noqa: S311 - synthetic, seeded
    numbering = _Numbering()
    rows = _gate_rows(rng, sorted(compounds, key=lambda c: c.code), geometry)

    def near(street_code: str, spread: float = 0.01) -> tuple[float, float]:
        return geometry.point_near(
            rng, street_code, centres[street_code], geometry.scale(street_code) * spread
        )

    for road, subkind, street_code in CHECKPOINTS:
        street = by_code[street_code]
        suffix = "收费站" if subkind == CHECKPOINT_HIGHWAY_TOLL else "检查站"
        lon, lat = geometry.boundary_point(rng, street_code, CITY_CENTRE, centres[street_code])
        rows.append(
            PlaceRow(
                code=numbering.code(PLACE_CHECKPOINT, street_code, 2),
                kind=PLACE_CHECKPOINT,
                subkind=subkind,
                name=f"{road}{street_root(street.name)}{suffix}",
                area_code=street_code,
                compound_code=None,
                lon=lon,
                lat=lat,
            )
        )

    for name, kind, subkind, street_code, known in STATIONS:
        lon, lat = known if known and geometry.contains(street_code, *known) else near(street_code)
        rows.append(
            PlaceRow(
                code=numbering.code(kind, street_code, 2),
                kind=kind,
                subkind=subkind,
                name=name,
                area_code=street_code,
                compound_code=None,
                lon=lon,
                lat=lat,
            )
        )

    streets = sorted((a for a in by_code.values() if a.level == LEVEL_STREET), key=lambda a: a.code)
    districts = {a.code: a for a in by_code.values() if a.level == LEVEL_DISTRICT}
    # The hospital stands in the district's first subdistrict (街道), its seat of government.
    hospital_streets: dict[str, str] = {}
    for street in streets:
        if street.kind == STREET_SUBDISTRICT:
            hospital_streets.setdefault(street.code[:6], street.code)
    for street in streets:
        hospital_streets.setdefault(street.code[:6], street.code)
    malls_in: set[str] = set()

    def venue(street_code: str, subkind: str, name: str) -> None:
        lon, lat = near(street_code)
        rows.append(
            PlaceRow(
                code=numbering.code(PLACE_VENUE, street_code, 3),
                kind=PLACE_VENUE,
                subkind=subkind,
                name=name[:96],
                area_code=street_code,
                compound_code=None,
                lon=lon,
                lat=lat,
            )
        )

    for street in streets:
        district = street.code[:6]
        root = street_root(street.name)
        urban_street = street.kind == STREET_SUBDISTRICT
        if hospital_streets.get(district) == street.code and district in HOSPITALS:
            venue(street.code, VENUE_HOSPITAL, HOSPITALS[district])
            venue(street.code, VENUE_FEVER_CLINIC, f"{HOSPITALS[district]}发热门诊")
        venue(street.code, VENUE_MARKET, f"{root}农贸市场")
        venue(street.code, VENUE_SUPERMARKET, f"{rng.choice(_SUPERMARKET_WORDS)}超市（{root}店）")
        for word in rng.sample(_PHARMACY_WORDS, rng.randint(1, 3) if urban_street else 1):
            venue(street.code, VENUE_PHARMACY, f"{word}大药房（{root}店）")
        venue(street.code, VENUE_SCHOOL, f"{root}小学")
        if urban_street:
            venue(street.code, VENUE_SCHOOL, f"{root}中学")
            for dish in rng.sample(_RESTAURANTS, rng.randint(1, 2)):
                venue(street.code, VENUE_RESTAURANT, f"{root}{dish}")
        district_kind = districts[district].kind if district in districts else ""
        wants_mall = rng.random() < 0.5 or district not in malls_in
        if district_kind in URBAN_DISTRICT_KINDS and urban_street and wants_mall:
            venue(street.code, VENUE_MALL, f"{root}{rng.choice(_MALL_SUFFIXES)}")
            malls_in.add(district)
    return rows
