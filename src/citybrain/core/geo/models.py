"""Tables of the city's geography: areas (区划), compounds (小区) and places (场所).

Codes nest by prefix: a community's code starts with its street's, a street's with its
district's, a district's with the city's ``4101``, and a compound's with its community's.
Jurisdiction scoping relies on this: "inside area X" is "code starts with X".
"""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from citybrain.kit.db import Base

CITY_CODE = "4101"
CITY_NAME = "郑州市"
CITY_NAME_EN = "Zhengzhou"

# Levels of the hierarchy (行政层级) and the length of their NBS codes.
LEVEL_CITY = "city"
LEVEL_DISTRICT = "district"
LEVEL_STREET = "street"
LEVEL_COMMUNITY = "community"
LEVEL_COMPOUND = "compound"
AREA_LEVELS = (LEVEL_CITY, LEVEL_DISTRICT, LEVEL_STREET, LEVEL_COMMUNITY)
CODE_LENGTHS = {
    LEVEL_CITY: 4,
    LEVEL_DISTRICT: 6,
    LEVEL_STREET: 9,
    LEVEL_COMMUNITY: 12,
    LEVEL_COMPOUND: 15,
}

# Kinds of area, per level.
KIND_CITY = "city"  # 地级市
DISTRICT_KINDS = ("district", "county", "development_zone", "county_level_city")
STREET_SUBDISTRICT = "subdistrict"  # 街道
STREET_TOWN = "town"  # 镇
STREET_TOWNSHIP = "township"  # 乡
STREET_SPECIAL = "special"  # 风景区、产业集聚区等
STREET_KINDS = (STREET_SUBDISTRICT, STREET_TOWN, STREET_TOWNSHIP, STREET_SPECIAL)
COMMUNITY_URBAN = "urban"  # 社区居委会
COMMUNITY_RURAL = "rural"  # 村委会
COMMUNITY_KINDS = (COMMUNITY_URBAN, COMMUNITY_RURAL)

# Kinds of place (场所) and their subkinds.
PLACE_COMPOUND_GATE = "compound_gate"  # 小区门岗
PLACE_CHECKPOINT = "checkpoint"  # 卡口
PLACE_STATION = "station"  # 火车站、长途汽车站
PLACE_AIRPORT = "airport"  # 机场
PLACE_VENUE = "venue"  # 公共场所
PLACE_KINDS = (PLACE_COMPOUND_GATE, PLACE_CHECKPOINT, PLACE_STATION, PLACE_AIRPORT, PLACE_VENUE)

CHECKPOINT_HIGHWAY_TOLL = "highway_toll"  # 高速收费站
CHECKPOINT_NATIONAL_ROAD = "national_road"  # 国道检查站
CHECKPOINT_PROVINCIAL_ROAD = "provincial_road"  # 省道检查站
CHECKPOINT_SUBKINDS = (
    CHECKPOINT_HIGHWAY_TOLL,
    CHECKPOINT_NATIONAL_ROAD,
    CHECKPOINT_PROVINCIAL_ROAD,
)
STATION_RAILWAY = "railway"  # 火车站
STATION_COACH = "coach"  # 长途汽车站
STATION_SUBKINDS = (STATION_RAILWAY, STATION_COACH)
AIRPORT_CIVIL = "civil"  # 民用机场
VENUE_MARKET = "market"  # 农贸市场
VENUE_SUPERMARKET = "supermarket"  # 超市
VENUE_MALL = "mall"  # 商场
VENUE_RESTAURANT = "restaurant"  # 餐馆
VENUE_PHARMACY = "pharmacy"  # 药店
VENUE_HOSPITAL = "hospital"  # 医院
VENUE_FEVER_CLINIC = "fever_clinic"  # 发热门诊
VENUE_SCHOOL = "school"  # 学校
VENUE_SUBKINDS = (
    VENUE_MARKET,
    VENUE_SUPERMARKET,
    VENUE_MALL,
    VENUE_RESTAURANT,
    VENUE_PHARMACY,
    VENUE_HOSPITAL,
    VENUE_FEVER_CLINIC,
    VENUE_SCHOOL,
)
PLACE_SUBKINDS: dict[str, tuple[str, ...]] = {
    PLACE_COMPOUND_GATE: (),
    PLACE_CHECKPOINT: CHECKPOINT_SUBKINDS,
    PLACE_STATION: STATION_SUBKINDS,
    PLACE_AIRPORT: (AIRPORT_CIVIL,),
    PLACE_VENUE: VENUE_SUBKINDS,
}


class Area(Base):
    """One unit of the administrative hierarchy: city, district (区县), street (街道/乡镇)
    or community (社区/村), keyed by its NBS code (统计用区划代码)."""

    __tablename__ = "areas"

    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    level: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    name_en: Mapped[str | None] = mapped_column(String(96))
    kind: Mapped[str] = mapped_column(String(24))
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("areas.code"), index=True)
    # Feature id (adcode) in districts.geojson; development zones have no polygon of their own.
    map_polygon: Mapped[str | None] = mapped_column(String(12))


class Compound(Base):
    """A residential compound (小区) in a community; its code is the community's code plus a
    three-digit sequence number."""

    __tablename__ = "compounds"

    code: Mapped[str] = mapped_column(String(15), primary_key=True)
    community_code: Mapped[str] = mapped_column(ForeignKey("areas.code"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(128))
    households_estimate: Mapped[int] = mapped_column(Integer)
    gate_count: Mapped[int] = mapped_column(Integer)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)


class Place(Base):
    """A place where codes are scanned or people gather: a compound gate, a traffic checkpoint
    (卡口), a station, the airport or a public venue.

    ``area_code`` is the finest area the place lies in; the code after its one-letter kind
    prefix starts with that area code (and with the compound code for gates).
    """

    __tablename__ = "places"

    code: Mapped[str] = mapped_column(String(24), primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))
    subkind: Mapped[str | None] = mapped_column(String(24))
    name: Mapped[str] = mapped_column(String(96))
    area_code: Mapped[str] = mapped_column(ForeignKey("areas.code"), index=True)
    compound_code: Mapped[str | None] = mapped_column(ForeignKey("compounds.code"), index=True)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
