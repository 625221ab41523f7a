"""Deterministic synthetic compounds (小区) on the real hierarchy, and the small geometry they
need: point-in-polygon on the district boundaries and seeded points inside them.

Everything here draws from ``random.Random`` instances seeded from the caller's seed and walks
its inputs sorted by code, so one seed gives the same names, codes and coordinates on any
machine. Only ``random()``/``randrange``-based draws and plain arithmetic are used (no
``gauss``, whose ``log``/``cos`` may differ in the last bit between C libraries), and
coordinates are rounded before they are tested against the polygons.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from citybrain.core.geo.models import (
    COMMUNITY_URBAN,
    LEVEL_COMMUNITY,
    LEVEL_STREET,
)
from citybrain.core.geo.repository import AreaRow

DEFAULT_SEED = 20200125  # the day Zhengzhou raised its first-level response, 2020-01-25
FULL_SCALE_COMPOUNDS = 10_806

# The development zones have no polygon of their own; they lie inside these districts.
HOST_DISTRICT = {"410171": "410104", "410172": "410102", "410173": "410184"}

# Urban communities hold many more compounds than villages do.
URBAN_WEIGHT = 5.0
RURAL_WEIGHT = 1.0

COORD_DECIMALS = 6

Ring = list[tuple[float, float]]


# ---------------------------------------------------------------------------------------------
# Geometry


def point_in_rings(lon: float, lat: float, rings: Sequence[Ring]) -> bool:
    """Even-odd ray casting over all rings of a polygon (outer ring and holes alike)."""
    inside = False
    for ring in rings:
        n = len(ring)
        j = n - 1
        for i in range(n):
            xi, yi = ring[i]
            xj, yj = ring[j]
            if (yi > lat) != (yj > lat) and lon < (xj - xi) * (lat - yi) / (yj - yi) + xi:
                inside = not inside
            j = i
    return inside


def _rings_of(geometry: Mapping[str, Any]) -> list[list[Ring]]:
    """Polygons (each a list of rings) of a GeoJSON Polygon or MultiPolygon."""
    kind = geometry["type"]
    coordinates = geometry["coordinates"]
    polygons = [coordinates] if kind == "Polygon" else coordinates if kind == "MultiPolygon" else []
    return [
        [[(float(x), float(y)) for x, y, *_ in ring] for ring in polygon] for polygon in polygons
    ]


def _round(value: float) -> float:
    return round(value, COORD_DECIMALS)


def _spread(rng: random.Random) -> float:
    """A bell-shaped draw with mean 0 and standard deviation 0.5 (sum of three uniforms)."""
    return rng.random() + rng.random() + rng.random() - 1.5


class DistrictGeometry:
    """The district polygons, with point tests and seeded sampling inside them."""

    def __init__(self, geojson: Mapping[str, Any]) -> None:
        self._polygons: dict[str, list[list[Ring]]] = {}
        for feature in geojson["features"]:
            self._polygons[str(feature["properties"]["adcode"])] = _rings_of(feature["geometry"])
        self._bbox: dict[str, tuple[float, float, float, float]] = {}
        for code, polygons in self._polygons.items():
            xs = [x for polygon in polygons for x, _ in polygon[0]]
            ys = [y for polygon in polygons for _, y in polygon[0]]
            self._bbox[code] = (min(xs), min(ys), max(xs), max(ys))

    @staticmethod
    def host_district(area_code: str) -> str:
        """The district whose polygon holds an area: its own district, or for the three
        development zones (开发区) the district they lie in."""
        district = area_code[:6]
        return HOST_DISTRICT.get(district, district)

    def has_polygon(self, district_code: str) -> bool:
        """Whether a polygon exists for this district (after mapping zones to hosts)."""
        return self.host_district(district_code) in self._polygons

    def contains(self, area_code: str, lon: float, lat: float) -> bool:
        """Whether the point lies inside the polygon of the area's (host) district."""
        polygons = self._polygons.get(self.host_district(area_code), [])
        return any(point_in_rings(lon, lat, rings) for rings in polygons)

    def scale(self, area_code: str) -> float:
        """The shorter side of the host district's bounding box, in degrees."""
        x0, y0, x1, y1 = self._bbox[self.host_district(area_code)]
        return min(x1 - x0, y1 - y0)

    def random_point(self, rng: random.Random, area_code: str) -> tuple[float, float]:
        """A uniform point inside the host district (rejection sampling in its box)."""
        x0, y0, x1, y1 = self._bbox[self.host_district(area_code)]
        while True:
            lon = _round(x0 + (x1 - x0) * rng.random())
            lat = _round(y0 + (y1 - y0) * rng.random())
            if self.contains(area_code, lon, lat):
                return lon, lat

    def point_near(
        self,
        rng: random.Random,
        area_code: str,
        centre: tuple[float, float],
        sigma: float,
        tries: int = 12,
    ) -> tuple[float, float]:
        """A point scattered around ``centre`` (about ``sigma`` degrees) that stays inside the
        host district; ``centre`` itself if no draw lands inside (it must be inside)."""
        for _ in range(tries):
            lon = _round(centre[0] + 2 * sigma * _spread(rng))
            lat = _round(centre[1] + 2 * sigma * _spread(rng))
            if self.contains(area_code, lon, lat):
                return lon, lat
        return centre

    def boundary_point(
        self,
        rng: random.Random,
        area_code: str,
        city_centre: tuple[float, float],
        near: tuple[float, float],
    ) -> tuple[float, float]:
        """A point just inside the district's edge, on the side away from the city centre
        (where roads leave the city) and close to ``near``: for checkpoints (卡口)."""
        polygons = self._polygons[self.host_district(area_code)]
        ring = max((polygon[0] for polygon in polygons), key=len)
        cx, cy = city_centre
        # Vertices in the outer third by distance from the city centre, in ring order; of
        # those, one of the three nearest to ``near``.
        distances = [(x - cx) ** 2 + (y - cy) ** 2 for x, y in ring]
        cutoff = sorted(distances)[(2 * len(distances)) // 3]
        outer = [p for p, d in zip(ring, distances, strict=True) if d >= cutoff]
        outer.sort(key=lambda p: ((p[0] - near[0]) ** 2 + (p[1] - near[1]) ** 2, p))
        vx, vy = outer[rng.randrange(min(3, len(outer)))]
        x0, y0, x1, y1 = self._bbox[self.host_district(area_code)]
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        for step in (0.02, 0.05, 0.1, 0.2, 0.4):
            step *= 1 + rng.random()
            lon = _round(vx + (mx - vx) * step)
            lat = _round(vy + (my - vy) * step)
            if self.contains(area_code, lon, lat):
                return lon, lat
        return self.random_point(rng, area_code)


def street_centres(
    streets: Iterable[AreaRow], geometry: DistrictGeometry, seed: int
) -> dict[str, tuple[float, float]]:
    """A seeded centre point for every street, inside its (host) district."""
    rng = random.Random(f"citybrain.geo.streets:{seed}")  # noqa: S311 - synthetic, seeded
    return {
        street.code: geometry.random_point(rng, street.code)
        for street in sorted(streets, key=lambda s: s.code)
    }


# ---------------------------------------------------------------------------------------------
# Names


def _strip_suffix(name: str, suffixes: Sequence[str]) -> str:
    for suffix in suffixes:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


_URBAN_SUFFIXES = (
    "社区居民管理委员会",
    "社区居民委员会",
    "社区管理委员会",
    "社区委员会",
    "社区居委会",
    "居民委员会",
    "居委会",
    "社区",
)
_ZONE_PREFIXES = ("郑州经济技术开发区",)


def community_root(name: str) -> str:
    """A community's name without its committee suffix: 碧沙岗社区居委会 → 碧沙岗."""
    return _strip_suffix(name, _URBAN_SUFFIXES)


def village_name(name: str) -> str:
    """A village's everyday name: 岗李村村委会 → 岗李村, 柴村 → 柴村,
    大李庄村民委员会 → 大李庄村."""
    stem = _strip_suffix(name, ("村民委员会", "村委会"))
    stem = _strip_suffix(stem, ("村",))
    return stem + "村"


def street_root(name: str) -> str:
    """A street's short name: 林山寨街道 → 林山寨, 郑州经济技术开发区明湖街道 → 明湖."""
    for prefix in _ZONE_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return _strip_suffix(name, ("街道", "镇", "乡"))


_WORDS = (
    "锦绣", "阳光", "幸福", "和谐", "翠竹", "紫荆", "盛世", "碧水", "春天", "康桥",
    "银河", "金色", "梧桐", "枫林", "书香", "怡景", "兴华", "名门", "丽景", "绿洲",
    "富田", "美景", "青年", "朝阳", "东方", "天明", "泰和", "瑞祥", "嘉禾", "同乐",
    "安居", "宏达", "福泽", "永安", "康宁", "桂园", "玉兰", "海棠", "牡丹", "丁香",
    "紫云", "凤凰", "清华", "文博", "天伦", "民安", "世纪", "金桂", "明珠", "祥和",
    "锦华", "鑫源", "升龙", "山水", "水岸", "金域", "润园", "宜家", "百合", "盛和",
    "秀水", "华林", "御景", "馨园", "博雅", "惠丰", "景苑", "绿都", "中原", "嵩山",
)  # fmt: skip
_URBAN_SUFFIX_WORDS = (
    "花园", "家园", "苑", "小区", "新城", "公寓", "雅居", "名都", "佳苑", "华庭",
    "嘉园", "府", "城", "国际", "新村", "广场", "小镇", "公馆", "丽舍", "雅苑",
)  # fmt: skip
_WORK_UNITS = (
    "郑州铁路局", "国棉三厂", "国棉六厂", "电业局", "邮电局", "粮食局", "税务局",
    "供电公司", "煤炭设计院", "第二砂轮厂", "郑州大学", "河南农业大学", "市政公司",
    "烟草公司", "省建一公司", "水利厅", "交通厅", "人民医院", "电缆厂", "纺织机械厂",
    "第一中学", "自来水公司", "公安局", "法院", "气象局", "地质队", "化工厂", "建材厂",
    "铝厂", "黄河水利委员会", "电力设计院", "中铁七局", "河南日报社", "工商局",
)  # fmt: skip
ROADS = (
    "建设路", "中原路", "桐柏路", "嵩山路", "大学路", "花园路", "经三路", "纬五路",
    "文化路", "农业路", "黄河路", "金水路", "东风路", "航海路", "陇海路", "商都路",
    "未来路", "紫荆山路", "二七路", "人民路", "伊河路", "淮河路", "长江路", "京广路",
    "秦岭路", "工人路", "政七街", "丰产路", "南阳路", "索凌路", "郑汴路", "城东路",
    "长兴路", "江山路", "科学大道", "莲花街", "须水路", "棉纺路", "汝河路", "百花路",
)  # fmt: skip
_NUMERALS = ("一", "二", "三", "四", "五", "六", "七", "八", "九", "十")


def _chinese_number(n: int) -> str:
    """1 → 一, 12 → 十二, 20 → 二十 for village groups (村民组); digits from 100 on."""
    if n >= 100:
        return str(n)
    if n <= 10:
        return _NUMERALS[n - 1]
    tens, ones = divmod(n, 10)
    head = "" if tens == 1 else _NUMERALS[tens - 1]
    return head + "十" + (_NUMERALS[ones - 1] if ones else "")


def _urban_name(rng: random.Random, root: str) -> str:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(_WORDS) + rng.choice(_URBAN_SUFFIX_WORDS)
    if roll < 0.75:
        return rng.choice(_WORK_UNITS) + "家属院"
    if roll < 0.9:
        return root + rng.choice(("小区", "花园", "新苑", "家园", f"{rng.randint(1, 12)}号院"))
    return f"{rng.choice(ROADS)}{rng.randint(1, 199)}号院"


def _rural_name(rng: random.Random, village: str, group: int) -> str:
    # Most village compounds are the village's groups (村民组); some are new resettlement
    # blocks (安置小区) built as the city grew.
    roll = rng.random()
    if roll < 0.15:
        return village[:-1] + "新村" if len(village) > 2 else village + "新区"
    if roll < 0.25:
        return village + rng.choice(("安置小区", "社区安置区", "幸福苑"))
    return f"{village}{_chinese_number(group)}组"


# ---------------------------------------------------------------------------------------------
# Compounds


class CompoundRow(NamedTuple):
    """One generated row of the ``compounds`` table."""

    code: str
    community_code: str
    name: str
    address: str
    households_estimate: int
    gate_count: int
    lon: float | None
    lat: float | None


def allocate(weights: Sequence[float], total: int) -> list[int]:
    """Split ``total`` into whole shares, at least one each, the rest in proportion to
    ``weights`` by the largest-remainder method (ties to the earlier index), so the shares
    sum to ``total`` exactly."""
    if total < len(weights):
        raise ValueError(f"cannot give {len(weights)} items at least one each of {total}")
    extra = total - len(weights)
    weight_sum = sum(weights)
    quotas = [extra * w / weight_sum for w in weights]
    shares = [int(q) for q in quotas]
    left = extra - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - shares[i]), i))
    for i in order[:left]:
        shares[i] += 1
    return [1 + s for s in shares]


def _gates(rng: random.Random, households: int, urban: bool) -> int:
    # Bigger compounds open more gates.
    if not urban:
        return 1 if households < 300 else rng.randint(1, 2)
    if households < 600:
        return rng.randint(1, 2)
    if households < 1500:
        return rng.randint(2, 3)
    return rng.randint(3, 4)


def _unique_name(
    rng: random.Random, used: set[str], *, urban: bool, root: str, village: str, seq: int
) -> str:
    """A compound name not yet used in its community (names repeat across the city, as they
    do in life, but never within one community); records it in ``used``."""
    for attempt in range(40):
        if urban:
            name = _urban_name(rng, root)
        else:
            # After a clash, fall back to the next group numbers (村民组), which are distinct.
            name = _rural_name(rng, village, seq) if attempt == 0 else ""
            if not name or name in used:
                name = f"{village}{_chinese_number(seq + attempt)}组"
        if name not in used and len(name) <= 64:
            used.add(name)
            return name
    extra = seq
    while f"{root}{extra}号院" in used:
        extra += 1
    name = f"{root}{extra}号院"
    used.add(name)
    return name


def generate_compounds(
    areas: Iterable[AreaRow],
    geometry: DistrictGeometry,
    *,
    seed: int = DEFAULT_SEED,
    total: int = FULL_SCALE_COMPOUNDS,
    centres: Mapping[str, tuple[float, float]] | None = None,
) -> list[CompoundRow]:
    """Generate ``total`` compounds over the communities among ``areas``, by code.

    Every community gets at least one; urban communities weigh ``URBAN_WEIGHT`` against a
    village's ``RURAL_WEIGHT`` (each jittered), shared out by largest remainder. Each street has
    a centre, each community a centre near it, each compound a point near that, all inside the
    (host) district polygon.
    """
    by_code = {a.code: a for a in areas}
    communities = sorted(
        (a for a in by_code.values() if a.level == LEVEL_COMMUNITY), key=lambda a: a.code
    )
    streets = [a for a in by_code.values() if a.level == LEVEL_STREET]
    if centres is None:
        centres = street_centres(streets, geometry, seed)
    rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducible by design

    weights = [
        (URBAN_WEIGHT if c.kind == COMMUNITY_URBAN else RURAL_WEIGHT) * (0.4 + 1.2 * rng.random())
        for c in communities
    ]
    shares = allocate(weights, total)

    rows: list[CompoundRow] = []
    street_roads: dict[str, list[str]] = {}
    for community, share in zip(communities, shares, strict=True):
        if share > 999:
            raise ValueError(f"community {community.code} would need {share} compounds")
        urban = community.kind == COMMUNITY_URBAN
        street = by_code[community.code[:9]]
        if street.code not in street_roads:
            # A street's compounds front onto a few roads of their own, not the whole city's.
            street_roads[street.code] = rng.sample(ROADS, 4)
        scale = geometry.scale(community.code)
        community_centre = geometry.point_near(
            rng, community.code, centres[street.code], scale * (0.04 if urban else 0.08)
        )
        root = community_root(community.name)
        village = village_name(community.name)
        used: set[str] = set()
        for seq in range(1, share + 1):
            name = _unique_name(rng, used, urban=urban, root=root, village=village, seq=seq)
            if urban:
                households = int(rng.triangular(200, 3000, 700))
                address = (
                    f"{street.name}{rng.choice(street_roads[street.code])}{rng.randint(1, 399)}号"
                )
            else:
                households = int(rng.triangular(50, 600, 200))
                address = f"{street.name}{village}{rng.randint(1, 199)}号"
            gates = _gates(rng, households, urban)
            lon, lat = geometry.point_near(
                rng, community.code, community_centre, scale * (0.012 if urban else 0.02)
            )
            rows.append(
                CompoundRow(
                    code=f"{community.code}{seq:03d}",
                    community_code=community.code,
                    name=name,
                    address=address[:128],
                    households_estimate=households,
                    gate_count=gates,
                    lon=lon,
                    lat=lat,
                )
            )
    return rows
