"""The model's true events as each agency records them: one builder per feed.

A builder takes a day's model tables and returns the agency's rows as Arrow columns keyed by
the data centre's field names (``shapes.Col.field``), in the model's terms still: canonical
enum values ("in", "M"), timestamps as ``timestamp[s]``, integers as integers. The renderer
turns them into the agency's formats and the pipeline adds the agencies' faults.

Each agency knows people by what it records (names, ID numbers, phones, passports, plates,
card numbers) and places by its own names and codes (``City.places``); nothing here carries
the model's person index into a file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from citybrain.simulate.feeds.render import (
    choose,
    civil,
    map_strings,
    one_chunk,
    seconds,
    zero_pad,
)

Int64s = npt.NDArray[np.int64]
Int32s = npt.NDArray[np.int32]
Bools = npt.NDArray[np.bool_]


class CityLike(Protocol):
    """What the feeds need of ``model.City`` (the static tables, per ``schema.py``)."""

    persons: pa.Table
    enterprises: pa.Table
    schools: pa.Table
    classes: pa.Table
    care_homes: pa.Table
    places: pa.Table
    risk_areas: pa.Table


class DayLike(Protocol):
    """What the feeds need of ``model.Day``: the date and the per-day tables."""

    date: dt.date
    tables: dict[str, pa.Table]


@dataclass
class Rows:
    """One feed's rows for a day, before rendering."""

    values: dict[str, pa.Array]  # field key -> column
    person: Int32s  # whose record each row is (truth only, never written)
    t: Int64s  # the row's time in seconds (naive local), for time order; 0 for snapshots

    def __len__(self) -> int:
        return len(self.person)


def ts_array(secs: Int64s, valid: Bools | None = None) -> pa.Array:
    """Seconds -> ``timestamp[s]`` column (``valid`` False -> null)."""
    mask = None if valid is None or valid.all() else ~valid
    return pa.array(secs.astype("datetime64[s]"), type=pa.timestamp("s"), mask=mask)


def _col(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name)
    return one_chunk(column)


def _np(arr: pa.Array, fill: int = -1) -> npt.NDArray[np.int64]:
    return np.asarray(
        pc.fill_null(arr.cast(pa.int64()), fill).to_numpy(zero_copy_only=False), dtype=np.int64
    )


def city_stem(name: str) -> str:
    """ "武汉市" -> "武汉": how stations and airports are named after their city."""
    return name[:-1] if len(name) > 2 and name.endswith("市") else name


def _hash(values: npt.NDArray[np.integer], salt: int) -> npt.NDArray[np.uint64]:
    """A stable per-value pseudo-random number (splitmix64), so a card, plate or person keeps
    its traits (a bound phone, a vehicle type) across days without any state."""
    x = values.astype(np.uint64) + np.uint64((salt * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.asarray(x ^ (x >> np.uint64(31)), dtype=np.uint64)


def share(values: npt.NDArray[np.integer], salt: int, rate: float) -> Bools:
    """A stable subset of about ``rate`` of the values."""
    return np.asarray((_hash(values, salt) % np.uint64(10_000)) < int(rate * 10_000))


@dataclass
class Lookups:
    """The static tables, indexed for vectorised look-ups, and what carries over across days."""

    city: CityLike
    area_names: Mapping[str, str] = field(default_factory=dict)  # area code -> name
    street_of_community: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        persons = self.city.persons
        self.person_count = persons.num_rows
        self.p: dict[str, pa.Array] = {name: _col(persons, name) for name in persons.column_names}
        places = self.city.places
        self.place_name: dict[str, str] = dict(
            zip(_col(places, "place").to_pylist(), _col(places, "name").to_pylist(), strict=True)
        )
        self.place_code: dict[str, str] = {
            p: (c or p)
            for p, c in zip(
                _col(places, "place").to_pylist(),
                _col(places, "agency_code").to_pylist(),
                strict=True,
            )
        }
        # Carried across days: when each person fell ill (case reports give the onset date)
        # and how many doses each has had (vaccination records count them).
        self.onset_day = np.full(self.person_count, -1, dtype=np.int32)
        self.doses = np.zeros(self.person_count, dtype=np.int16)

    # --- persons -------------------------------------------------------------------------

    def person(self, name: str, idx: Int32s) -> pa.Array:
        """A persons column for the given person indices."""
        return pc.take(self.p[name], pa.array(idx, pa.int32()))

    def identity(self, idx: Int32s) -> tuple[pa.Array, pa.Array]:
        """(ID type, ID or passport number): 身份证 where the person has a resident ID."""
        ids = self.person("id_number", idx)
        passports = self.person("passport", idx)
        has_id = pc.fill_null(pc.greater(pc.utf8_length(ids), 0), False)
        number = pc.if_else(has_id, ids, passports)
        kind = pc.if_else(
            has_id,
            pa.scalar("身份证"),
            pc.if_else(pc.is_valid(passports), pa.scalar("护照"), pa.scalar(None, pa.string())),
        )
        return kind, number

    def resident_id(self, idx: Int32s) -> pa.Array:
        """Resident ID numbers (null for those without one)."""
        ids = self.person("id_number", idx)
        return pc.if_else(pc.fill_null(pc.greater(pc.utf8_length(ids), 0), False), ids, None)

    def age(self, idx: Int32s, on: dt.date) -> pa.Array:
        """Age in whole years on a date."""
        births, valid = seconds(self.person("birth_date", idx))
        y, m, d = civil(births // 86400)
        years = on.year - y - ((on.month * 100 + on.day) < (m * 100 + d))
        return pa.array(years, pa.int64(), mask=~valid)

    # --- places --------------------------------------------------------------------------

    def name_of(
        self, places: pa.Array, fallback: Callable[[str], str | None] | None = None
    ) -> pa.Array:
        """Places by name (the agency's own name for them)."""
        names = self.place_name
        fb = fallback or _strip_prefix
        return map_strings(places, lambda p: names.get(p) or fb(p))

    def code_of(self, places: pa.Array) -> pa.Array:
        """Places by the agency's code (licence number, LAC-CI, 卡口编号)."""
        codes = self.place_code
        return map_strings(places, lambda p: codes.get(p) or _strip_prefix(p))

    def street_name(self, codes: pa.Array) -> pa.Array:
        """Street (街道/乡镇) codes by name, with the district in front as riders see it."""
        names = self.area_names

        def full(code: str) -> str | None:
            street = names.get(code)
            district = names.get(code[:6])
            if street and district:
                return district + street
            return street or code

        return map_strings(codes, full)


def _strip_prefix(place: str) -> str:
    return place.split(":", 1)[1] if ":" in place else place


Builder = Callable[[Lookups, "DayLike", np.random.Generator], Rows | None]


def _select(table: pa.Table, column: str, *values: str) -> pa.Table:
    col = _col(table, column)
    return table.filter(pc.is_in(col, value_set=pa.array(list(values), pa.string())))


def _persons(table: pa.Table) -> Int32s:
    return np.asarray(_np(_col(table, "person")), dtype=np.int32)


def _times(table: pa.Table, name: str) -> Int64s:
    return seconds(_col(table, name))[0]


# --- travel: rail, air, coach, border ---------------------------------------------------------


def _far_and_home(
    lk: Lookups, trips: pa.Table, far: Callable[[str], str]
) -> tuple[pa.Array, pa.Array]:
    """(origin, destination) as an agency names them: the Zhengzhou end by the station's name,
    the far end by ``far`` of the city."""
    inbound = pc.equal(_col(trips, "direction"), "in")
    home = lk.name_of(_col(trips, "station"))
    origin = pc.if_else(inbound, map_strings(_col(trips, "origin"), far), home)
    destination = pc.if_else(inbound, home, map_strings(_col(trips, "destination"), far))
    return origin, destination


def rail_ticket(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """12306 real-name tickets of the day's rail journeys into and out of the city."""
    trips = _select(day.tables["travel"], "mode", "rail")
    who = _persons(trips)
    id_type, number = lk.identity(who)
    origin, destination = _far_and_home(lk, trips, city_stem)
    return Rows(
        {
            "name": lk.person("name", who),
            "id_type": id_type,
            "id_number": number,
            "phone": lk.person("phone", who),
            "vehicle": _col(trips, "number"),
            "origin": origin,
            "destination": destination,
            "depart": _col(trips, "depart"),
            "arrive": _col(trips, "arrive"),
            "carriage": _col(trips, "carriage").cast(pa.int64()),
            "seat": _col(trips, "seat"),
        },
        who,
        _times(trips, "depart"),
    )


def rail_gate(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Station gates: 进站 before a departure, 出站 after an arrival."""
    trips = _select(day.tables["travel"], "mode", "rail")
    who = _persons(trips)
    out = np.asarray(pc.equal(_col(trips, "direction"), "out").to_numpy(zero_copy_only=False))
    n = len(who)
    at = np.where(
        out,
        _times(trips, "depart") - rng.integers(10 * 60, 50 * 60, n),
        _times(trips, "arrive") + rng.integers(3 * 60, 20 * 60, n),
    )
    gate_no = rng.integers(1, 25, n)
    letters = choose(rng.integers(0, 2, n), ["A", "B"])
    gate = pc.if_else(
        pa.array(out),
        pc.binary_join_element_wise(letters, pc.cast(pa.array(gate_no), pa.string()), ""),
        pc.binary_join_element_wise("出站口", pc.cast(pa.array(gate_no % 4 + 1), pa.string()), ""),
    )
    return Rows(
        {
            "name": lk.person("name", who),
            "id_number": lk.resident_id(who),
            "place": lk.name_of(_col(trips, "station")),
            "gate": gate,
            "direction": _col(trips, "direction"),
            "start": ts_array(at),
        },
        who,
        at,
    )


def flight_manifest(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Airline passenger lists of the day's flights into and out of the city."""
    trips = _select(day.tables["travel"], "mode", "air")
    who = _persons(trips)
    id_type, _ = lk.identity(who)
    return Rows(
        {
            "name": lk.person("name", who),
            "id_type": id_type,
            "id_number": lk.resident_id(who),
            "passport": pc.if_else(pc.equal(id_type, "护照"), lk.person("passport", who), None),
            "phone": lk.person("phone", who),
            "vehicle": _col(trips, "number"),
            "origin": map_strings(_col(trips, "origin"), city_stem),
            "destination": map_strings(_col(trips, "destination"), city_stem),
            "depart": _col(trips, "depart"),
            "arrive": _col(trips, "arrive"),
            "seat": _col(trips, "seat"),
        },
        who,
        _times(trips, "depart"),
    )


def airport_security(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Security checks of departing passengers, an hour or two before the flight."""
    trips = _select(_select(day.tables["travel"], "mode", "air"), "direction", "out")
    who = _persons(trips)
    n = len(who)
    at = _times(trips, "depart") - rng.integers(40 * 60, 150 * 60, n)
    channel = pc.binary_join_element_wise("T2-", zero_pad(rng.integers(1, 31, n), 2), "")
    id_type, _ = lk.identity(who)
    return Rows(
        {
            "name": lk.person("name", who),
            "id_number": lk.resident_id(who),
            "passport": pc.if_else(pc.equal(id_type, "护照"), lk.person("passport", who), None),
            "vehicle": _col(trips, "number"),
            "start": ts_array(at),
            "gate": channel,
        },
        who,
        at,
    )


def coach_ticket(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Real-name coach tickets of the day's coach journeys."""
    trips = _select(day.tables["travel"], "mode", "coach")
    who = _persons(trips)
    origin, destination = _far_and_home(lk, trips, city_stem)
    return Rows(
        {
            "name": lk.person("name", who),
            "id_number": lk.resident_id(who),
            "phone": lk.person("phone", who),
            "vehicle": _col(trips, "number"),
            "origin": origin,
            "destination": destination,
            "depart": _col(trips, "depart"),
            "arrive": _col(trips, "arrive"),
            "seat": _col(trips, "seat"),
        },
        who,
        _times(trips, "depart"),
    )


def coach_station(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Coach station entries of departing passengers (arrivals pass no gate)."""
    trips = _select(_select(day.tables["travel"], "mode", "coach"), "direction", "out")
    who = _persons(trips)
    at = _times(trips, "depart") - rng.integers(10 * 60, 45 * 60, len(who))
    return Rows(
        {
            "name": lk.person("name", who),
            "id_number": lk.resident_id(who),
            "place": lk.name_of(_col(trips, "station")),
            "start": ts_array(at),
        },
        who,
        at,
    )


def _border(lk: Lookups, day: DayLike, direction: str) -> Rows | None:
    trips = _select(_select(day.tables["travel"], "mode", "overseas"), "direction", direction)
    who = _persons(trips)
    ids = lk.resident_id(who)
    country = _col(trips, "country")
    # Chinese citizens hold a resident ID; a foreigner's nationality is their home country.
    nationality = pc.if_else(pc.is_valid(ids), pa.scalar("中国"), country)
    inbound = direction == "in"
    values = {
        "name": lk.person("name", who),
        "sex": lk.person("sex", who),
        "birth_date": lk.person("birth_date", who),
        "nationality": nationality,
        "passport": lk.person("passport", who),
        "id_number": ids,
        "port": _col(trips, "port"),
        ("arrive" if inbound else "depart"): _col(trips, "arrive" if inbound else "depart"),
        "country": pc.if_else(
            pc.is_valid(country), country, _col(trips, "origin" if inbound else "destination")
        ),
        "vehicle": _col(trips, "number"),
    }
    return Rows(values, who, _times(trips, "arrive" if inbound else "depart"))


def border_entry(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Border inspection: entries at the ports by people bound for the city."""
    return _border(lk, day, "in")


def border_exit(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Border inspection: exits by the city's people."""
    return _border(lk, day, "out")


# --- telecom ----------------------------------------------------------------------------------


def telecom_roaming(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Phones of other cities attaching to the city's network for the first time."""
    t = day.tables["roaming"]
    who = _persons(t)
    return Rows(
        {
            "phone": _col(t, "phone"),
            "origin": _col(t, "home_city"),
            "arrive": _col(t, "ts"),
            "place": lk.code_of(_col(t, "cell")),
        },
        who,
        _times(t, "ts"),
    )


def _cell_part(lk: Lookups, cells: pa.Array, part: int) -> pa.Array:
    codes = lk.place_code

    def pick(cell: str) -> str:
        code = codes.get(cell) or _strip_prefix(cell)
        pieces = code.split("-", 1)
        return pieces[part] if len(pieces) == 2 else (code if part == 0 else "")

    return map_strings(cells, pick)


def telecom_cell(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Cell-tower presence intervals (LAC, CI) of every phone."""
    t = day.tables["cell"]
    cells = _col(t, "cell")
    return Rows(
        {
            "phone": _col(t, "phone"),
            "lac": _cell_part(lk, cells, 0),
            "ci": _cell_part(lk, cells, 1),
            "start": _col(t, "start"),
            "end": _col(t, "end"),
        },
        _persons(t),
        _times(t, "start"),
    )


def telecom_itinerary(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Answers to itinerary queries: the cities a phone visited in the last 14 days."""
    t = day.tables["itinerary"]
    return Rows(
        {"phone": _col(t, "phone"), "origin": _col(t, "cities"), "arrive": _col(t, "query_date")},
        _persons(t),
        _times(t, "query_date"),
    )


# --- health -----------------------------------------------------------------------------------

CLINICAL_TYPES = ("轻型", "普通型", "重型", "危重型")
DRUGS = (
    "布洛芬缓释胶囊",
    "对乙酰氨基酚片",
    "连花清瘟胶囊",
    "复方氨酚烷胺片",
    "阿莫西林胶囊",
    "止咳糖浆",
)
VACCINE = "新冠病毒灭活疫苗（Vero细胞）"
PRODUCTS = ("冷冻带鱼", "冷冻猪肉", "冷冻牛肉", "冷冻鸡翅", "冷冻虾仁", "三文鱼")
COUNTRIES = ("巴西", "阿根廷", "厄瓜多尔", "挪威", "新西兰", "俄罗斯", "德国")
TIPOFFS = (
    "反映该人员近期从外地返郑，未按要求报备",
    "反映该人员有发热症状，仍外出活动",
    "反映该人员居家隔离期间擅自外出",
    "反映该人员曾到过中高风险地区",
)


def _events(day: DayLike, *kinds: str) -> pa.Table:
    return _select(day.tables["health"], "event", *kinds)


def _day_serial(day: DayLike, prefix: str, n: int, width: int = 5) -> pa.Array:
    return zero_pad(np.arange(1, n + 1), width, f"{prefix}{day.date:%Y%m%d}")


def _or(values: pa.Array, fallback: pa.Array | pa.Scalar) -> pa.Array:
    """``values`` where present and non-empty, else ``fallback``."""
    ok = pc.fill_null(pc.greater(pc.utf8_length(values), 0), False)
    return pc.if_else(ok, values, fallback)


def _health_place(lk: Lookups, events: pa.Table, default: str) -> pa.Array:
    places = _col(events, "place")
    return pc.fill_null(lk.name_of(places), default)


def _date_of(secs: Int64s) -> pa.Array:
    return pa.array((secs // 86400).astype(np.int32), pa.date32())


def case_confirmed(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """The health commission's list of newly confirmed cases."""
    t = _events(day, "confirmed")
    who = _persons(t)
    at = _times(t, "ts")
    onset = lk.onset_day[who].astype(np.int64)
    # An onset is reported only once it has happened (a case found before symptoms has none).
    onset = np.where(onset > at // 86400, -1, onset)
    clinical = choose(rng.choice(4, len(who), p=[0.35, 0.5, 0.12, 0.03]), CLINICAL_TYPES)
    result = _col(t, "result")
    is_type = pc.is_in(result, value_set=pa.array(CLINICAL_TYPES))
    return Rows(
        {
            "detail": _or(_col(t, "detail"), _day_serial(day, "QZ", len(who), 4)),
            "name": lk.person("name", who),
            "sex": lk.person("sex", who),
            "age": lk.age(who, day.date),
            "id_number": lk.resident_id(who),
            "phone": lk.person("phone", who),
            "address": lk.person("address", who),
            "onset": pa.array(onset.astype(np.int32), pa.date32(), mask=onset < 0),
            "at": _date_of(at),
            "place": _health_place(lk, t, "郑州市第六人民医院"),
            "result": pc.if_else(pc.fill_null(is_type, False), result, clinical),
        },
        who,
        at,
    )


def case_asymptomatic(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Newly found asymptomatic infections."""
    t = _events(day, "asymptomatic")
    who = _persons(t)
    at = _times(t, "ts")
    return Rows(
        {
            # The model's detail is a remark here; the register numbers its own entries.
            "detail": _day_serial(day, "WZZ", len(who), 4),
            "name": lk.person("name", who),
            "id_number": lk.resident_id(who),
            "phone": lk.person("phone", who),
            "address": lk.person("address", who),
            "at": _date_of(at),
            "place": _health_place(lk, t, "郑州市疾病预防控制中心"),
        },
        who,
        at,
    )


def case_suspected(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Suspected cases reported by hospitals."""
    t = _events(day, "suspected")
    who = _persons(t)
    return Rows(
        {
            "name": lk.person("name", who),
            "id_number": lk.resident_id(who),
            "phone": lk.person("phone", who),
            "place": _health_place(lk, t, "郑州市第六人民医院"),
            "at": _col(t, "ts"),
        },
        who,
        _times(t, "ts"),
    )


def lab_test(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Nucleic-acid test results, reported hours after sampling."""
    t = _events(day, "test")
    who = _persons(t)
    at = _times(t, "ts")
    reported = at + rng.integers(4 * 3600, 30 * 3600, len(who))
    return Rows(
        {
            "detail": _day_serial(day, "S", len(who), 8),
            "name": lk.person("name", who),
            "id_number": lk.resident_id(who),
            "phone": lk.person("phone", who),
            "at": _col(t, "ts"),
            "place": _health_place(lk, t, "郑州市疾病预防控制中心"),
            "result": pc.fill_null(_col(t, "result"), "negative"),
            "reported": ts_array(reported),
        },
        who,
        at,
    )


def hospital_admission(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Admissions: a discharge time only once the patient has left (on the day: not yet)."""
    t = _events(day, "admission")
    who = _persons(t)
    return Rows(
        {
            "detail": _day_serial(day, "ZY", len(who), 5),
            "name": lk.person("name", who),
            "id_number": lk.resident_id(who),
            "phone": lk.person("phone", who),
            "place": _health_place(lk, t, "郑州市第六人民医院"),
            "at": _col(t, "ts"),
            "end": pa.nulls(len(who), pa.timestamp("s")),
            "result": _or(_col(t, "result"), pa.scalar("新型冠状病毒肺炎")),
        },
        who,
        _times(t, "ts"),
    )


def vaccination(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Vaccinations, with each person's dose count."""
    t = _events(day, "vaccination")
    who = _persons(t)
    # Dose number: doses before today, plus the order among today's own (rarely more than one).
    order = np.lexsort((_times(t, "ts"), who))
    sorted_who = who[order]
    first = np.ones(len(who), dtype=np.bool_)
    first[1:] = sorted_who[1:] != sorted_who[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(len(who)), 0))
    dose = np.empty(len(who), dtype=np.int64)
    dose[order] = lk.doses[sorted_who] + (np.arange(len(who)) - start) + 1
    np.add.at(lk.doses, who, 1)
    return Rows(
        {
            "name": lk.person("name", who),
            "id_number": lk.resident_id(who),
            "at": _col(t, "ts"),
            "result": _or(_col(t, "detail"), _or(_col(t, "result"), pa.scalar(VACCINE))),
            "dose": pa.array(dose),
            "place": _health_place(lk, t, "社区卫生服务中心"),
        },
        who,
        _times(t, "ts"),
    )


def coop_investigation(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Contacts pushed by other cities' epidemiological investigations (协查函)."""
    t = _events(day, "coop_contact")
    who = _persons(t)
    origin = _or(_col(t, "detail"), pa.scalar("外地"))
    # One letter per sending city and day.
    encoded = pc.dictionary_encode(origin)
    letter = zero_pad(
        np.asarray(encoded.indices.to_numpy(zero_copy_only=False)) + 1, 3, f"XC{day.date:%Y%m%d}-"
    )
    return Rows(
        {
            "detail": letter,
            "origin": origin,
            "name": lk.person("name", who),
            "id_number": lk.resident_id(who),
            "phone": lk.person("phone", who),
            "result": pc.fill_null(_col(t, "result"), "close"),
            "at": _col(t, "ts"),
            "place": lk.name_of(_col(t, "place")),
        },
        who,
        _times(t, "ts"),
    )


def _quantity(detail: pa.Array, rng: np.random.Generator) -> pa.Array:
    """Packs bought: the leading number of the model's detail ("2盒"), else 1 to 3."""
    found = pc.struct_field(pc.extract_regex(pc.fill_null(detail, ""), r"^(?P<n>\d+)|"), [0])
    counted = pc.cast(pc.if_else(pc.equal(found, ""), None, found), pa.int64())
    drawn = pa.array(rng.choice([1, 1, 1, 2, 2, 3], len(detail)).astype(np.int64))
    return pc.coalesce(counted, drawn)


def pharmacy_purchase(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Real-name purchases of fever and cough medicine."""
    t = _events(day, "pharmacy")
    who = _persons(t)
    places = _col(t, "place")
    drug = choose(rng.integers(0, len(DRUGS), len(who)), DRUGS)
    return Rows(
        {
            "place_name": lk.name_of(places),
            "place": lk.code_of(places),
            "name": lk.person("name", who),
            "id_number": lk.resident_id(who),
            "phone": lk.person("phone", who),
            "at": _col(t, "ts"),
            "result": _or(_col(t, "result"), drug),
            "quantity": _quantity(_col(t, "detail"), rng),
        },
        who,
        _times(t, "ts"),
    )


_COLD_DETAIL = r"^(?P<product>.+?)（(?P<country>[^）]+)）批次(?P<batch>\S+)$|"


def coldchain_goods(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Imported cold-chain batches and who handled them at the cold store.

    The model's detail reads "进口冻带鱼（印度）批次B20200110-1873": goods, country, batch.
    """
    t = _events(day, "coldchain")
    who = _persons(t)
    n = len(who)
    parts = pc.extract_regex(pc.fill_null(_col(t, "detail"), ""), _COLD_DETAIL)

    def part(name: str) -> pa.Array:
        value = pc.struct_field(parts, [["product", "country", "batch"].index(name)])
        return pc.if_else(pc.equal(value, ""), None, value)

    return Rows(
        {
            "detail": pc.coalesce(part("batch"), _day_serial(day, "LL", n, 6)),
            "product": pc.coalesce(
                part("product"), choose(rng.integers(0, len(PRODUCTS), n), PRODUCTS)
            ),
            "country": pc.coalesce(
                part("country"), choose(rng.integers(0, len(COUNTRIES), n), COUNTRIES)
            ),
            "place": lk.name_of(_col(t, "place")),
            "name": lk.person("name", who),
            "id_number": lk.resident_id(who),
            "phone": lk.person("phone", who),
            "start": _col(t, "ts"),
        },
        who,
        _times(t, "ts"),
    )


def hotline_tipoff(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """12345 hotline tip-offs about a person, called in by someone else."""
    t = _events(day, "tipoff")
    who = _persons(t)
    n = len(who)
    caller = rng.integers(0, max(lk.person_count, 1), n).astype(np.int32)
    return Rows(
        {
            "detail": _day_serial(day, "12345-", n, 5),
            "at": _col(t, "ts"),
            "caller_phone": lk.person("phone", caller),
            "name": lk.person("name", who),
            "phone": lk.person("phone", who),
            "address": lk.person("address", who),
            "result": _or(_col(t, "detail"), choose(rng.integers(0, len(TIPOFFS), n), TIPOFFS)),
        },
        who,
        _times(t, "ts"),
    )


# --- settings: rosters and the registry (snapshots) -----------------------------------------

GRADES = ("", "一年级", "二年级", "三年级", "四年级", "五年级", "六年级",
          "初一", "初二", "初三", "高一", "高二", "高三")  # fmt: skip


def student_roster(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Every school's class lists (students by school, grade, class)."""
    cls = _np(lk.p["school_class"])
    who = np.flatnonzero(cls >= 0).astype(np.int32)
    classes = lk.city.classes
    schools = lk.city.schools
    c = cls[who]
    school = _np(_col(classes, "school"))[c]
    grade = _np(_col(classes, "grade"))[c]
    class_no = _np(_col(classes, "class_no"))[c]
    order = np.lexsort((who, class_no, grade, school))
    who, school, grade, class_no = who[order], school[order], grade[order], class_no[order]
    school_idx = pa.array(school.astype(np.int32))
    return Rows(
        {
            "setting_name": pc.take(_col(schools, "name"), school_idx),
            "setting": pc.take(_col(schools, "school_code"), school_idx),
            "grade": choose(np.clip(grade, 0, 12), GRADES),
            "unit": pc.binary_join_element_wise(pc.cast(pa.array(class_no), pa.string()), "班", ""),
            "name": lk.person("name", who),
            "sex": lk.person("sex", who),
            "id_number": lk.resident_id(who),
            "phone": lk.person("phone", who),
            "address": lk.person("address", who),
        },
        who,
        np.zeros(len(who), np.int64),
    )


def staff_roster(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Every school's staff list."""
    school = _np(lk.p["school"])
    teacher = np.asarray(
        pc.fill_null(pc.equal(lk.p["occupation"], "teacher"), False).to_numpy(zero_copy_only=False)
    )
    who = np.flatnonzero((school >= 0) & teacher).astype(np.int32)
    s = school[who]
    order = np.lexsort((who, s))
    who, s = who[order], s[order]
    idx = pa.array(s.astype(np.int32))
    schools = lk.city.schools
    head = share(who, 11, 0.15)
    return Rows(
        {
            "setting_name": pc.take(_col(schools, "name"), idx),
            "setting": pc.take(_col(schools, "school_code"), idx),
            "name": lk.person("name", who),
            "id_number": lk.resident_id(who),
            "phone": lk.person("phone", who),
            "role": choose(head.astype(np.int8), ("教师", "班主任")),
        },
        who,
        np.zeros(len(who), np.int64),
    )


def elderly_care(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Residents and staff of the elderly-care institutions."""
    home = _np(lk.p["care_home"])
    who = np.flatnonzero(home >= 0).astype(np.int32)
    h = home[who]
    order = np.lexsort((who, h))
    who, h = who[order], h[order]
    resident = np.asarray(
        pc.fill_null(pc.equal(lk.person("occupation", who), "care_resident"), False).to_numpy(
            zero_copy_only=False
        )
    )
    # Moved in some time in the last eight years; a stable date per person.
    start_day = (day.date - dt.date(1970, 1, 1)).days
    since = start_day - 30 - (_hash(who, 12) % np.uint64(8 * 365)).astype(np.int64)
    return Rows(
        {
            "setting_name": pc.take(_col(lk.city.care_homes, "name"), pa.array(h.astype(np.int32))),
            "name": lk.person("name", who),
            "id_number": lk.resident_id(who),
            "role": choose(np.where(resident, 0, 1), ("resident", "staff")),
            "phone": lk.person("phone", who),
            "since": pa.array(since.astype(np.int32), pa.date32(), mask=~resident),
        },
        who,
        np.zeros(len(who), np.int64),
    )


ETHNICITIES = ("汉族", "回族", "满族", "蒙古族")


def household_registry(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """The police's household register (户籍) of the city's residents.

    The head of household is its oldest member; the others are related to the head by sex and
    generation (spouse within 15 years of age, children, grandchildren, parents).
    """
    household = _np(lk.p["household"])
    resident = np.asarray(pc.fill_null(lk.p["resident"], False).to_numpy(zero_copy_only=False))
    who = np.flatnonzero((household >= 0) & resident).astype(np.int32)
    hh = household[who]
    birth = seconds(lk.p["birth_date"])[0][who] // 86400
    order = np.lexsort((who, birth, hh))
    who, hh, birth = who[order], hh[order], birth[order]
    first = np.ones(len(who), dtype=np.bool_)
    first[1:] = hh[1:] != hh[:-1]
    head_pos = np.maximum.accumulate(np.where(first, np.arange(len(who)), 0))
    gap_years = (birth - birth[head_pos]) / 365.25
    male = np.asarray(
        pc.fill_null(pc.equal(lk.person("sex", who), "M"), False).to_numpy(zero_copy_only=False)
    )
    # 0 户主, 1 配偶, 2 子, 3 女, 4 孙子, 5 孙女, 6 兄弟姐妹(same sex as head)
    same_sex_as_head = male == male[head_pos]
    role = np.where(
        first,
        0,
        np.where(
            gap_years < 15,
            np.where(same_sex_as_head, 6, 1),
            np.where(gap_years < 40, np.where(male, 2, 3), np.where(male, 4, 5)),
        ),
    )
    ethnic = _hash(hh.astype(np.int64), 13) % np.uint64(1000)
    ethnicity = np.where(ethnic < 988, 0, np.where(ethnic < 996, 1, np.where(ethnic < 999, 2, 3)))
    community = lk.person("community_code", who)
    streets = lk.street_of_community
    names = lk.area_names

    def station(code: str) -> str | None:
        street = names.get(streets.get(code, ""), "")
        for suffix in ("街道办事处", "街道", "办事处", "镇", "乡"):
            if street.endswith(suffix) and len(street) > len(suffix):
                street = street[: -len(suffix)]
                break
        return f"{street}派出所" if street else None

    return Rows(
        {
            "setting": zero_pad(hh + 1, 9),
            "name": lk.person("name", who),
            "sex": lk.person("sex", who),
            "ethnicity": choose(ethnicity, ETHNICITIES),
            "birth_date": lk.person("birth_date", who),
            "id_number": lk.resident_id(who),
            "address": lk.person("address", who),
            "police_station": map_strings(community, station),
            "role": choose(role, ("户主", "配偶", "子", "女", "孙子", "孙女", "兄弟姐妹")),
        },
        who,
        np.zeros(len(who), np.int64),
    )


# --- public security and transport ------------------------------------------------------------


def hotel_checkin(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Hotel registrations (the police's 旅馆业治安管理系统)."""
    t = day.tables["hotel"]
    who = _persons(t)
    id_type, number = lk.identity(who)
    hotels = _col(t, "hotel")
    return Rows(
        {
            "place_name": lk.name_of(hotels),
            "place": lk.code_of(hotels),
            "name": lk.person("name", who),
            "id_type": id_type,
            "id_number": number,
            "start": _col(t, "checkin"),
            "end": _col(t, "checkout"),
            "unit": _col(t, "room"),
            "origin": _col(t, "from_city"),
        },
        who,
        _times(t, "checkin"),
    )


VEHICLE_TYPES = ("小型汽车", "大型汽车", "小型新能源汽车")
TOLL_TYPES = ("一型客车", "二型客车", "一型客车")


def _vehicle_type(owner: Int32s) -> Int64s:
    bucket = (_hash(owner, 14) % np.uint64(100)).astype(np.int64)
    return np.where(bucket < 88, 0, np.where(bucket < 93, 1, 2))


def vehicle_checkpoint(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Plates read at the city's checkpoints (卡口过车)."""
    t = day.tables["vehicle"]
    who = _persons(t)
    points = _col(t, "checkpoint")
    return Rows(
        {
            "plate": _col(t, "plate"),
            "place": lk.code_of(points),
            "place_name": lk.name_of(points),
            "start": _col(t, "ts"),
            "direction": _col(t, "direction"),
            "vehicle_type": choose(_vehicle_type(who), VEHICLE_TYPES),
        },
        who,
        _times(t, "ts"),
    )


def highway_toll(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Expressway trips: entry and exit toll stations and times.

    One end is the city's checkpoint (a toll station on the city's edge), the other the toll
    station the model names; whichever was passed first is the entry.
    """
    t = day.tables["vehicle"]
    t = t.filter(pc.is_valid(_col(t, "toll_entry")))
    who = _persons(t)
    here = lk.name_of(_col(t, "checkpoint"))
    there = _col(t, "toll_entry")
    here_t = _times(t, "ts")
    there_t = _times(t, "toll_entry_ts")
    there_first = there_t <= here_t
    mask = pa.array(there_first)
    return Rows(
        {
            "plate": _col(t, "plate"),
            "origin": pc.if_else(mask, there, here),
            "depart": ts_array(np.where(there_first, there_t, here_t)),
            "destination": pc.if_else(mask, here, there),
            "arrive": ts_array(np.where(there_first, here_t, there_t)),
            "vehicle_type": choose(_vehicle_type(who), TOLL_TYPES),
        },
        who,
        np.minimum(here_t, there_t),  # in order of entry, the file's first time
    )


def ride_hailing(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Ride-hailing and taxi orders."""
    t = day.tables["rides"]
    return Rows(
        {
            "detail": _col(t, "order_id"),
            "phone": _col(t, "phone"),
            "place": _col(t, "plate"),
            "start": _col(t, "start"),
            "end": _col(t, "end"),
            "origin": lk.street_name(_col(t, "from_street")),
            "destination": lk.street_name(_col(t, "to_street")),
        },
        _persons(t),
        _times(t, "start"),
    )


BIND_PHONE_SHARE = 0.3  # cards registered to a phone in the metro app


def transit_card(lk: Lookups, day: DayLike, rng: np.random.Generator) -> Rows | None:
    """Metro and bus card taps; about 30% of cards are bound to a phone."""
    t = day.tables["transit"]
    who = _persons(t)
    bound = share(who, 15, BIND_PHONE_SHARE)
    return Rows(
        {
            "card": _col(t, "card"),
            "phone": pc.if_else(pa.array(bound), lk.person("phone", who), None),
            "line": _col(t, "line"),
            "station": _col(t, "station"),
            "start": _col(t, "ts"),
            "direction": _col(t, "tap"),
        },
        who,
        _times(t, "ts"),
    )


BUILDERS: dict[str, Builder] = {
    "rail_ticket": rail_ticket,
    "rail_gate": rail_gate,
    "flight_manifest": flight_manifest,
    "airport_security": airport_security,
    "coach_ticket": coach_ticket,
    "coach_station": coach_station,
    "border_entry": border_entry,
    "border_exit": border_exit,
    "telecom_roaming": telecom_roaming,
    "telecom_cell": telecom_cell,
    "telecom_itinerary": telecom_itinerary,
    "case_confirmed": case_confirmed,
    "case_asymptomatic": case_asymptomatic,
    "case_suspected": case_suspected,
    "lab_test": lab_test,
    "hospital_admission": hospital_admission,
    "vaccination": vaccination,
    "coop_investigation": coop_investigation,
    "pharmacy_purchase": pharmacy_purchase,
    "coldchain_goods": coldchain_goods,
    "student_roster": student_roster,
    "staff_roster": staff_roster,
    "hotel_checkin": hotel_checkin,
    "household_registry": household_registry,
    "vehicle_checkpoint": vehicle_checkpoint,
    "highway_toll": highway_toll,
    "ride_hailing": ride_hailing,
    "transit_card": transit_card,
    "elderly_care": elderly_care,
    "hotline_tipoff": hotline_tipoff,
}


def note_health(lk: Lookups, day: DayLike) -> None:
    """Remember onset dates from the day's health events and infections (for case reports)."""
    sources = (("health", "person", "event", "ts"), ("infections", "infectee", None, "onset"))
    for table, person_col, event_col, time_col in sources:
        t = day.tables.get(table)
        if t is None or t.num_rows == 0:
            continue
        if event_col:
            t = _select(t, event_col, "onset")
        secs, valid = seconds(_col(t, time_col))
        who = np.asarray(_np(_col(t, person_col)), dtype=np.int32)[valid]
        days = (secs[valid] // 86400).astype(np.int32)
        known = lk.onset_day[who]
        lk.onset_day[who] = np.where(known < 0, days, np.minimum(known, days))
