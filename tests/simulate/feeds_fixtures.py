"""A small hand-built city and its days, per ``simulate/schema.py``, for the feed writers' tests.

It stands in for ``simulate.model`` (same attributes as ``City`` and ``Day``) so the writers are
tested on known content: a couple of thousand persons with valid IDs, all kinds of places, and
days with every table filled, including every health event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from citybrain.simulate import schema
from citybrain.simulate.config import (
    AreaInput,
    FaultRates,
    GeoInput,
    SimulationConfig,
)
from citybrain.simulate.persons import generate_persons

START = dt.date(2020, 1, 20)
GEO = GeoInput(
    areas=[
        AreaInput("410100", "city", "郑州市", None),
        AreaInput("410105", "district", "金水区", "410100"),
        AreaInput("410103", "district", "二七区", "410100"),
        AreaInput("410105001", "street", "经八路街道", "410105"),
        AreaInput("410103004", "street", "一马路街道", "410103"),
        AreaInput("410105001001", "community", "省委家属院社区居委会", "410105001"),
        AreaInput("410105001002", "community", "经八路社区居委会", "410105001"),
        AreaInput("410103004001", "community", "兴华街社区居委会", "410103004"),
    ],
    compounds=[],
    places=[],
)
COMMUNITIES = ("410105001001", "410105001002", "410103004001")
STREETS = ("410105001", "410103004")
CITIES = ("武汉市", "北京市", "上海市", "开封市", "孝感市")


@dataclass
class FakeCity:
    """Stand-in for ``model.City``."""

    config: SimulationConfig
    persons: pa.Table
    enterprises: pa.Table
    schools: pa.Table
    classes: pa.Table
    care_homes: pa.Table
    places: pa.Table
    risk_areas: pa.Table


@dataclass
class FakeDay:
    """Stand-in for ``model.Day``."""

    date: dt.date
    tables: dict[str, pa.Table] = field(default_factory=dict)


def _table(schema_: pa.Schema, columns: dict[str, Any]) -> pa.Table:
    return pa.table({f.name: pa.array(columns[f.name], f.type) for f in schema_}, schema=schema_)


def _ts(values: np.ndarray) -> list[dt.datetime | None]:
    base = dt.datetime(1970, 1, 1)
    return [None if v < 0 else base + dt.timedelta(seconds=int(v)) for v in values]


def _day_start(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * 86400


def make_city(people: int = 1500, seed: int = 3, days: int = 3) -> FakeCity:
    """A small city: households, workers, students and teachers, a care home, places."""
    rng = np.random.default_rng(seed)
    config = SimulationConfig(people=people, days=days, seed=seed, start=START)
    persons = list(generate_persons(people, seed, today=START))
    age = np.array([(START - p.birth_date).days // 365 for p in persons])
    resident = rng.random(people) > 0.05
    household = np.where(resident, np.arange(people) // 3, -1)
    occupation = np.where(
        age < 6,
        "child",
        np.where(
            age <= 18,
            "student",
            np.where(age >= 80, "care_resident", np.where(age >= 60, "retired", "worker")),
        ),
    ).astype(object)
    adults = np.flatnonzero(occupation == "worker")
    teachers = adults[: max(4, len(adults) // 40)]
    occupation[teachers] = "teacher"
    carers = adults[len(teachers) : len(teachers) + 5]
    n_classes = 12
    students = np.flatnonzero(occupation == "student")
    school_class = np.full(people, -1)
    school_class[students] = np.arange(len(students)) % n_classes
    class_school = np.arange(n_classes) % 2
    school = np.full(people, -1)
    school[students] = class_school[school_class[students]]
    school[teachers] = np.arange(len(teachers)) % 2
    care_home = np.full(people, -1)
    care_home[occupation == "care_resident"] = 0
    care_home[carers] = 0
    workplace = np.where(occupation == "worker", np.arange(people) % 5, -1)
    has_plate = rng.random(people) < 0.4
    has_card = rng.random(people) < 0.6
    has_passport = rng.random(people) < 0.15
    # A few foreigners with only a passport (no resident ID).
    foreign = (~resident) & (rng.random(people) < 0.5)
    has_passport |= foreign
    community = np.array(COMMUNITIES)[np.arange(people) % 3]
    persons_table = _table(
        schema.PERSONS,
        {
            "person": np.arange(people, dtype=np.int32),
            "person_id": [f"P{i:08d}" for i in range(people)],
            "name": [p.name for p in persons],
            "sex": [p.sex for p in persons],
            "birth_date": [p.birth_date for p in persons],
            "id_number": [None if foreign[i] else p.id_number for i, p in enumerate(persons)],
            "phone": [p.phone for p in persons],
            "phone2": [None] * people,
            "passport": [f"E{10_000_000 + i}" if has_passport[i] else None for i in range(people)],
            "household": household.astype(np.int32),
            "compound_code": [
                f"C{c}01" if r else None for c, r in zip(community, resident, strict=True)
            ],
            "community_code": [c if r else None for c, r in zip(community, resident, strict=True)],
            "address": [
                f"金水区经八路街道幸福小区{i % 9 + 1}号楼{i % 3 + 1}单元{100 + i % 30}"
                if resident[i]
                else None
                for i in range(people)
            ],
            "resident": resident,
            "home_city": ["郑州市" if r else CITIES[i % 5] for i, r in enumerate(resident)],
            "occupation": occupation.tolist(),
            "workplace": workplace.astype(np.int32),
            "school_class": school_class.astype(np.int32),
            "school": school.astype(np.int32),
            "care_home": care_home.astype(np.int32),
            "plate": [f"豫A{10000 + i}" if has_plate[i] else None for i in range(people)],
            "transit_card": [f"31041{i:010d}" if has_card[i] else None for i in range(people)],
        },
    )
    enterprises = _table(
        schema.ENTERPRISES,
        {
            "enterprise": np.arange(5, dtype=np.int32),
            "credit_code": [f"91410100MA{i:08d}" for i in range(5)],
            "name": [f"郑州市{w}有限公司" for w in ("宏达", "中原", "金水", "华信", "豫商")],
            "street_code": [STREETS[i % 2] for i in range(5)],
            "place": [f"enterprise:E{i:06d}" for i in range(5)],
        },
    )
    schools = _table(
        schema.SCHOOLS,
        {
            "school": np.arange(2, dtype=np.int32),
            "name": ["郑州市金水区文化路第一小学", "郑州市第八中学"],
            "school_code": ["2141000101", "2141000102"],
            "street_code": list(STREETS),
            "place": ["V410105001S01", "V410103004S01"],
        },
    )
    classes = _table(
        schema.CLASSES,
        {
            "school_class": np.arange(n_classes, dtype=np.int32),
            "school": class_school.astype(np.int32),
            "grade": (np.arange(n_classes) % 12 + 1).astype(np.int8),
            "class_no": (np.arange(n_classes) // 12 + 1).astype(np.int8),
            "place": [f"class:C{i:05d}" for i in range(n_classes)],
        },
    )
    care_homes = _table(
        schema.CARE_HOMES,
        {
            "care_home": np.array([0], np.int32),
            "name": ["金水区颐养院"],
            "street_code": ["410105001"],
            "place": ["care_home:0"],
        },
    )
    place_rows = [
        ("S41010457001", "station", "railway", "郑州东站", "410104570", "S41010457001"),
        ("S41010300401", "station", "railway", "郑州站", "410103004", "S41010300401"),
        ("S41010300402", "station", "coach", "郑州长途汽车中心站", "410103004", "S41010300402"),
        ("A41017340001", "airport", "civil", "郑州新郑国际机场", "410173400", "A41017340001"),
        (
            "K41018410601",
            "checkpoint",
            "highway_toll",
            "京港澳高速薛店收费站",
            "410184106",
            "410100000101",
        ),
        (
            "K41010810101",
            "checkpoint",
            "national_road",
            "G107古荥检查站",
            "410108101",
            "410100000102",
        ),
        ("hotel:H0001", "hotel", None, "如家酒店(郑州二七广场店)", "410103004", "4101030001"),
        ("hotel:H0002", "hotel", None, "锦江之星(郑州火车站店)", "410103004", "4101030002"),
        (
            "V410105001M01",
            "pharmacy",
            "pharmacy",
            "仁和大药房(经八路店)",
            "410105001",
            "YD41010500101",
        ),
        ("V410105001H01", "hospital", None, "河南省人民医院", "410105001", "H41010500101"),
        ("V410103004C01", "cold_store", None, "郑州万邦冷库", "410103004", "LK41010300401"),
        ("cell:41001-23015", "cell", None, "金水区基站1", "410105001", "41001-23015"),
        ("cell:41001-23016", "cell", None, "金水区基站2", "410105001", "41001-23016"),
        ("cell:41002-10001", "cell", None, "二七区基站1", "410103004", "41002-10001"),
    ]
    places = pa.table(
        {f.name: pa.array([r[i] for r in place_rows], f.type) for i, f in enumerate(schema.PLACES)},
        schema=schema.PLACES,
    )
    risk = _table(
        schema.RISK_AREAS,
        {
            "area": ["武汉市", "孝感市"],
            "level": ["high", "high"],
            "start": [dt.date(2020, 1, 20), dt.date(2020, 1, 23)],
            "end": [None, None],
        },
    )
    return FakeCity(config, persons_table, enterprises, schools, classes, care_homes, places, risk)


def make_day(city: FakeCity, index: int) -> FakeDay:
    """One day of every table, drawn from a generator seeded by the city's seed and the day."""
    rng = np.random.default_rng([city.config.seed, index])
    date = city.config.start + dt.timedelta(days=index)
    base = _day_start(date)
    p = city.persons
    n = p.num_rows
    phones = p.column("phone").to_pylist()
    cards = p.column("transit_card").to_pylist()
    plates = p.column("plate").to_pylist()
    tables: dict[str, pa.Table] = {}

    def secs(k: int, lo: int = 6 * 3600, hi: int = 22 * 3600) -> np.ndarray:
        return base + rng.integers(lo, hi, k)

    # cell: three stays per phone, some people
    who = np.repeat(rng.choice(n, n // 2, replace=False), 3)
    start = secs(len(who))
    cells = ["cell:41001-23015", "cell:41001-23016", "cell:41002-10001"]
    tables["cell"] = _table(
        schema.CELL,
        {
            "person": who.astype(np.int32),
            "phone": [phones[i] for i in who],
            "cell": [cells[i] for i in rng.integers(0, 3, len(who))],
            "start": _ts(start),
            "end": _ts(start + rng.integers(60, 7200, len(who))),
        },
    )
    holders = np.array([i for i in range(n) if cards[i]])
    who = np.repeat(rng.choice(holders, min(300, len(holders)), replace=False), 2)
    t0 = secs(len(who))
    tables["transit"] = _table(
        schema.TRANSIT,
        {
            "person": who.astype(np.int32),
            "card": [cards[i] for i in who],
            "line": ["地铁1号线" if i % 2 else "B32路" for i in range(len(who))],
            "station": ["二七广场站" if i % 3 else "紫荆山站" for i in range(len(who))],
            "ts": _ts(t0 + np.where(np.arange(len(who)) % 2, 1800, 0)),
            "tap": ["out" if i % 2 else "in" for i in range(len(who))],
        },
    )
    owners = np.array([i for i in range(n) if plates[i]])
    who = rng.choice(owners, 80, replace=False)
    ts = secs(80)
    toll = rng.random(80) < 0.4
    tables["vehicle"] = _table(
        schema.VEHICLE,
        {
            "person": who.astype(np.int32),
            "plate": [plates[i] for i in who],
            "checkpoint": ["K41018410601" if t else "K41010810101" for t in toll],
            "ts": _ts(ts),
            "direction": ["in" if i % 2 else "out" for i in range(80)],
            "toll_entry": ["开封西收费站" if t else None for t in toll],
            "toll_entry_ts": _ts(np.where(toll, ts - 3600 * (np.arange(80) % 2 * 2 - 1), -1)),
        },
    )
    who = rng.choice(n, 60, replace=False)
    ts = secs(60)
    tables["rides"] = _table(
        schema.RIDES,
        {
            "order_id": [f"DD{date:%Y%m%d}{index}{i:06d}" for i in range(60)],
            "person": who.astype(np.int32),
            "phone": [phones[i] for i in who],
            "driver": np.full(60, -1, np.int32),
            "plate": ["豫AD12345"] * 60,
            "start": _ts(ts),
            "end": _ts(ts + 1200),
            "from_street": [STREETS[i % 2] for i in range(60)],
            "to_street": [STREETS[(i + 1) % 2] for i in range(60)],
        },
    )
    # travel: rail, air, coach, overseas, both directions
    rows: dict[str, list[Any]] = {f.name: [] for f in schema.TRAVEL}
    passports = p.column("passport").to_pylist()
    travellers = rng.choice(n, 80, replace=False)
    for k, person in enumerate(travellers):
        mode = ("rail", "air", "coach", "overseas")[k % 4]
        if mode == "overseas" and not passports[person]:
            mode = "air"
        direction = "in" if (k // 4) % 2 else "out"
        far = CITIES[k % len(CITIES)]
        depart = base + int(rng.integers(6 * 3600, 20 * 3600))
        station = {"rail": "S41010457001", "air": "A41017340001", "coach": "S41010300402"}.get(
            mode, "A41017340001"
        )
        rows["person"].append(int(person))
        rows["mode"].append(mode)
        rows["number"].append(
            {"rail": f"G{500 + k}", "air": f"CZ{3000 + k}", "coach": f"K{k:03d}"}.get(
                mode, f"MU{500 + k}"
            )
        )
        rows["carriage"].append(k % 16 + 1 if mode == "rail" else None)
        rows["row"].append(k % 30 + 1 if mode in ("air", "coach") else None)
        rows["seat"].append(
            {"rail": f"{k % 20 + 1:02d}F", "air": f"{k % 30 + 1}A", "coach": f"{k % 40 + 1}"}.get(
                mode, f"{k % 30 + 1}C"
            )
        )
        abroad = mode == "overseas"
        home = "郑州市"
        origin = ("日本" if abroad else far) if direction == "in" else home
        dest = home if direction == "in" else ("日本" if abroad else far)
        rows["origin"].append(origin)
        rows["destination"].append(dest)
        rows["depart"].append(_ts(np.array([depart]))[0])
        rows["arrive"].append(_ts(np.array([depart + 3 * 3600]))[0])
        rows["direction"].append(direction)
        rows["station"].append(station)
        rows["port"].append("郑州新郑国际机场口岸" if abroad else None)
        rows["country"].append("日本" if abroad else None)
    tables["travel"] = _table(schema.TRAVEL, rows)
    visitors = np.flatnonzero(~np.asarray(p.column("resident").to_pylist()))[:20]
    tables["roaming"] = _table(
        schema.ROAMING,
        {
            "person": visitors.astype(np.int32),
            "phone": [phones[i] for i in visitors],
            "home_city": [p.column("home_city")[int(i)].as_py() for i in visitors],
            "ts": _ts(secs(len(visitors))),
            "cell": ["cell:41001-23015"] * len(visitors),
        },
    )
    who = rng.choice(n, 30, replace=False)
    tables["itinerary"] = _table(
        schema.ITINERARY,
        {
            "person": who.astype(np.int32),
            "phone": [phones[i] for i in who],
            "cities": ["郑州市,武汉市" if i % 2 else "郑州市" for i in range(30)],
            "query_date": [date] * 30,
        },
    )
    who = rng.choice(n, 12, replace=False)
    ts = secs(12, 12 * 3600, 23 * 3600)
    tables["hotel"] = _table(
        schema.HOTEL,
        {
            "person": who.astype(np.int32),
            "hotel": ["hotel:H0001" if i % 2 else "hotel:H0002" for i in range(12)],
            "room": [f"{800 + i}" for i in range(12)],
            "checkin": _ts(ts),
            "checkout": _ts(np.where(np.arange(12) % 3 == 0, -1, ts + 86400)),
            "from_city": [CITIES[i % 5] for i in range(12)],
        },
    )
    events: list[tuple[str, str | None, str | None, str | None, int]] = [
        ("onset", None, None, None, 10),
        ("pharmacy", "V410105001M01", "布洛芬缓释胶囊", "2盒", 15),
        ("test", "V410105001H01", "negative", "核酸检测", 200),
        ("test", "V410105001H01", "positive", None, 5),
        ("suspected", "V410105001H01", None, None, 4),
        ("confirmed", "V410105001H01", "positive", "郑州市2020-0001", 3),
        ("asymptomatic", None, None, "无症状感染者，集中隔离医学观察", 2),
        ("admission", "V410105001H01", None, "定点医院隔离治疗", 3),
        ("discharge", "V410105001H01", None, None, 1),
        ("vaccination", None, None, "流感疫苗", 6),
        ("coop_contact", None, "close", "武汉市", 4),
        ("coop_contact", None, "secondary", "孝感市", 3),
        ("tipoff", None, None, None, 3),
        ("coldchain", "V410103004C01", "negative", "进口冻带鱼（印度）批次B20200120-0042", 4),
    ]
    h: dict[str, list[Any]] = {f.name: [] for f in schema.HEALTH}
    for event, place, result, detail, count in events:
        who = rng.choice(n, count, replace=False)
        for person, t in zip(who, secs(count), strict=True):
            h["person"].append(int(person))
            h["event"].append(event)
            h["ts"].append(_ts(np.array([t]))[0])
            h["place"].append(place)
            h["result"].append(result)
            h["detail"].append(detail)
    tables["health"] = _table(schema.HEALTH, h)
    who = rng.choice(n, 5, replace=False)
    tables["infections"] = _table(
        schema.INFECTIONS,
        {
            "infectee": who.astype(np.int32),
            "infector": np.array([-1, *who[:4]], np.int32),
            "setting": ["household"] * 5,
            "place": ["household:H1"] * 5,
            "ts": _ts(secs(5)),
            "symptomatic": [True, True, False, True, False],
            "onset": _ts(np.array([base + 5 * 86400, base + 4 * 86400, -1, base, -1])),
        },
    )
    tables["exposures"] = _table(
        schema.EXPOSURES,
        {
            "case": who.astype(np.int32),
            "contact": np.roll(who, 1).astype(np.int32),
            "setting": ["household"] * 5,
            "place": ["household:H1"] * 5,
            "start": _ts(secs(5)),
            "end": _ts(secs(5) + 3600),
        },
    )
    tables["presence"] = _table(
        schema.PRESENCE,
        {"person": [], "place": [], "setting": [], "start": [], "end": []},
    )
    for name in schema.DAY_TABLES:
        assert name in tables, name
    return FakeDay(date, tables)


class FakeModel:
    """The model's API over the fake city, for ``run_simulation(model=...)``."""

    def __init__(self, people: int = 1500) -> None:
        self.people = people

    def build_city(self, config: SimulationConfig, geo: GeoInput) -> FakeCity:
        """A small city at the config's seed and length."""
        city = make_city(self.people, config.seed, config.days)
        city.config = config
        return city

    def simulate_days(self, city: FakeCity) -> Iterator[FakeDay]:
        """The city's days."""
        for index in range(city.config.days):
            yield make_day(city, index)


def config(days: int = 3, seed: int = 3, faults: FaultRates | None = None) -> SimulationConfig:
    """A run of the fake city."""
    return SimulationConfig(
        people=1500, days=days, seed=seed, start=START, faults=faults or FaultRates.none()
    )
