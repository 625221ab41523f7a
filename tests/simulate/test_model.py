"""The synthetic city's model: determinism, valid identities, exact schemas, households in the
given geography, a proper infection tree with its exposures, isolation that stops movement, and
record volumes per person-day."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from citybrain.kit.idcheck import normalise_mobile, parse_resident_id
from citybrain.simulate import schema
from citybrain.simulate.config import GeoInput, SimulationConfig
from citybrain.simulate.model import City, Day, build_city, simulate_days

PEOPLE = 12_000
DAYS = 30
# Tables the agencies' feeds are made of (presence and the truth tables are not).
FEED_TABLES = (
    "cell",
    "transit",
    "vehicle",
    "rides",
    "travel",
    "roaming",
    "itinerary",
    "hotel",
    "health",
)


@pytest.fixture(scope="module")
def run(geo: GeoInput) -> tuple[City, list[Day]]:
    """One city of 12,000 people over 30 days from 2020-01-10 (春运, 春节, 一级响应)."""
    city = build_city(SimulationConfig(people=PEOPLE, days=DAYS, seed=7), geo)
    return city, list(simulate_days(city))


def _all(days: list[Day], name: str) -> pa.Table:
    return pa.concat_tables([d.tables[name] for d in days])


def test_same_seed_same_tables(geo: GeoInput) -> None:
    config = SimulationConfig(people=4000, days=6, seed=11, start=dt.date(2020, 1, 20))
    first, second = build_city(config, geo), build_city(config, geo)
    for name in (
        "persons",
        "enterprises",
        "schools",
        "classes",
        "care_homes",
        "places",
        "risk_areas",
    ):
        assert getattr(first, name).equals(getattr(second, name)), name
    for a, b in zip(simulate_days(first), simulate_days(second), strict=True):
        assert a.date == b.date
        for name in schema.DAY_TABLES:
            assert a.tables[name].equals(b.tables[name]), (a.date, name)
    # A second pass over the same city repeats itself too, and another seed differs.
    again = [d.tables["cell"] for d in simulate_days(first)]
    assert all(
        x.equals(d.tables["cell"]) for x, d in zip(again, simulate_days(second), strict=True)
    )
    other = build_city(
        SimulationConfig(people=4000, days=6, seed=12, start=dt.date(2020, 1, 20)), geo
    )
    assert not other.persons.equals(first.persons)


def test_static_tables_have_the_contract_schemas(run: tuple[City, list[Day]]) -> None:
    city, _ = run
    assert city.persons.schema.equals(schema.PERSONS)
    assert city.enterprises.schema.equals(schema.ENTERPRISES)
    assert city.schools.schema.equals(schema.SCHOOLS)
    assert city.classes.schema.equals(schema.CLASSES)
    assert city.care_homes.schema.equals(schema.CARE_HOMES)
    assert city.places.schema.equals(schema.PLACES)
    assert city.risk_areas.schema.equals(schema.RISK_AREAS)
    assert city.persons.num_rows == PEOPLE
    assert city.persons.column("person").to_pylist() == list(range(PEOPLE))
    assert pc.count_distinct(city.places.column("place")).as_py() == city.places.num_rows


def test_day_tables_have_the_contract_schemas(run: tuple[City, list[Day]]) -> None:
    city, days = run
    assert [d.date for d in days] == [city.config.start + dt.timedelta(days=i) for i in range(DAYS)]
    for day in days:
        assert set(day.tables) == set(schema.DAY_TABLES)
        for name, table_schema in schema.DAY_TABLES.items():
            assert day.tables[name].schema.equals(table_schema), (day.date, name)
        for name in ("presence", "cell", "rides"):
            t = day.tables[name]
            assert pc.all(pc.less(t.column("start"), t.column("end"))).as_py() in (True, None)
        settings = set(day.tables["presence"].column("setting").to_pylist())
        assert settings <= {
            "household", "workplace", "class", "school", "venue", "transit", "hotel", "train",
            "flight", "coach", "care_home", "hospital", "clinic", "pharmacy", "cold_store",
        }  # fmt: skip


def test_resident_ids_are_valid_and_match_sex_and_birth(run: tuple[City, list[Day]]) -> None:
    city, _ = run
    persons = city.persons.to_pylist()
    ids = [p["id_number"] for p in persons]
    assert len(set(ids)) == len(ids)
    outside = 0
    for p in persons:
        parsed = parse_resident_id(p["id_number"], today=dt.date(2020, 1, 10))
        assert parsed.sex == p["sex"]
        assert parsed.birth_date == p["birth_date"]
        if p["resident"] and not parsed.area_code.startswith("4101"):
            outside += 1
    residents = sum(p["resident"] for p in persons)
    assert 0.25 < outside / residents < 0.45  # ~35% born outside Zhengzhou


def test_names_phones_and_documents_look_real(run: tuple[City, list[Day]]) -> None:
    city, _ = run
    persons = city.persons.to_pylist()
    assert all(2 <= len(p["name"]) <= 4 for p in persons)
    surnames = Counter(p["name"][0] for p in persons)
    assert surnames.most_common(3)[0][0] in "王李张刘"
    for p in persons:
        assert normalise_mobile(p["phone"]) == p["phone"]
        if p["phone2"] is not None:
            assert normalise_mobile(p["phone2"]) == p["phone2"]
        if p["passport"] is not None:
            assert (
                len(p["passport"]) == 9 and p["passport"][0] == "E" and p["passport"][1:].isdigit()
            )
        if p["plate"] is not None and p["resident"]:
            assert p["plate"].startswith("豫A") and len(p["plate"]) == 7
        if p["transit_card"] is not None:
            assert len(p["transit_card"]) == 12 and p["transit_card"].isdigit()
    n = len(persons)
    second = sum(p["phone2"] is not None for p in persons) / n
    passports = sum(p["passport"] is not None for p in persons) / n
    assert 0.05 < second < 0.11
    assert 0.015 < passports < 0.05
    # Children share a parent's phone: some numbers belong to more than one person, all of
    # one household.
    by_phone: dict[str, set[int]] = {}
    for p in persons:
        by_phone.setdefault(p["phone"], set()).add(p["household"])
    shared = [h for h in by_phone.values() if len(h) >= 1]
    assert len(by_phone) < n
    assert all(len(h) == 1 for h in shared)
    adults = [p for p in persons if p["resident"] and p["birth_date"] <= dt.date(2002, 1, 10)]
    plates = sum(p["plate"] is not None for p in adults) / len(adults)
    cards = sum(p["transit_card"] is not None for p in adults) / len(adults)
    assert 0.15 < plates < 0.35
    assert 0.3 < cards < 0.55


def test_age_pyramid_is_plausible(run: tuple[City, list[Day]]) -> None:
    city, _ = run
    births = city.persons.column("birth_date").to_pylist()
    ages = np.array([(dt.date(2020, 1, 10) - b).days / 365.25 for b in births])
    assert 0.13 < (ages < 15).mean() < 0.24
    assert 0.12 < (ages >= 60).mean() < 0.24
    assert ages.max() < 100


def test_households_live_in_compounds_of_the_geography(
    run: tuple[City, list[Day]], geo: GeoInput
) -> None:
    city, _ = run
    compounds = {c.code: c for c in geo.compounds}
    persons = city.persons.to_pylist()
    residents = [p for p in persons if p["resident"]]
    visitors = [p for p in persons if not p["resident"]]
    assert 0.02 < len(visitors) / len(persons) < 0.04
    assert all(v["household"] == -1 and v["compound_code"] is None for v in visitors)
    assert all(v["home_city"] != "郑州市" for v in visitors)
    sizes = Counter(p["household"] for p in residents)
    assert set(sizes.values()) <= set(range(1, 7))
    by_household: dict[int, set[str]] = {}
    for p in residents:
        compound = compounds[p["compound_code"]]
        assert p["community_code"] == compound.community_code
        assert p["address"].startswith(compound.address.rstrip("0123456789号")), p["address"]
        by_household.setdefault(p["household"], set()).add(p["compound_code"])
    assert all(len(c) == 1 for c in by_household.values())
    # Spread over all 15 districts, each compound with a realistic number of households.
    used = Counter(next(iter(c)) for c in by_household.values())
    assert len({code[:6] for code in used}) == 15
    assert min(used.values()) >= 30


def test_workplaces_schools_and_care_homes(run: tuple[City, list[Day]]) -> None:
    city, _ = run
    persons = city.persons.to_pylist()
    workers = [p for p in persons if p["workplace"] >= 0]
    roster = Counter(p["workplace"] for p in workers)
    assert max(roster.values()) >= 20 * np.median(list(roster.values()))  # heavy-tailed
    codes = city.enterprises.column("credit_code").to_pylist()
    assert all(len(c) == 18 and c.startswith("91") for c in codes)
    assert len(set(codes)) == len(codes)
    # GB 32100 check character over the first 17, GB 11714 over the organisation code.
    chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    for code in codes[:500]:
        total = sum(chars.index(c) * pow(3, i, 31) for i, c in enumerate(code[:17]))
        assert code[17] == chars[(31 - total % 31) % 31]
        org = sum(int(c) * w for c, w in zip(code[8:16], (3, 7, 9, 10, 5, 8, 4, 2), strict=True))
        assert code[16] == {10: "X", 11: "0"}.get(11 - org % 11, str(11 - org % 11))
    students = [p for p in persons if p["school_class"] >= 0]
    grade = dict(
        zip(
            city.classes.column("school_class").to_pylist(),
            city.classes.column("grade").to_pylist(),
            strict=True,
        )
    )
    for p in students:
        age = (dt.date(2020, 1, 10) - p["birth_date"]).days // 365.25
        assert grade[p["school_class"]] == age - 5
        assert p["occupation"] == "student"
    sizes = Counter(p["school_class"] for p in students)
    assert 20 <= np.mean(list(sizes.values())) <= 48
    school_places = set(city.schools.column("place").to_pylist())
    assert all(code.startswith("V") for code in school_places)
    assert any(p["occupation"] == "teacher" and p["school"] >= 0 for p in persons)
    care = [p for p in persons if p["care_home"] >= 0]
    assert {p["occupation"] for p in care} == {"care_resident", "worker"}


def test_every_place_of_the_day_tables_is_known(run: tuple[City, list[Day]]) -> None:
    city, days = run
    known = set(city.places.column("place").to_pylist())
    for day in days[:10]:
        for name, column in (
            ("cell", "cell"),
            ("hotel", "hotel"),
            ("roaming", "cell"),
            ("vehicle", "checkpoint"),
            ("travel", "station"),
        ):
            assert set(day.tables[name].column(column).to_pylist()) <= known, name
        places = set(day.tables["presence"].column("place").to_pylist())
        dynamic = {
            p for p in places if p.split(":")[0] in ("household", "train", "flight", "coach")
        }
        assert places - dynamic <= known
        health_places = {
            p for p in day.tables["health"].column("place").to_pylist() if p is not None
        }
        assert health_places <= known
    kinds = Counter(city.places.column("kind").to_pylist())
    for kind in (
        "cell",
        "metro_station",
        "bus_stop",
        "hotel",
        "cold_store",
        "pharmacy",
        "checkpoint",
        "station",
        "airport",
        "enterprise",
        "school",
        "class",
    ):
        assert kinds[kind] > 0, kind
    cells = [p for p in city.places.to_pylist() if p["kind"] == "cell"]
    assert all(c["place"] == f"cell:{c['agency_code']}" for c in cells)
    pharmacy = [p for p in city.places.to_pylist() if p["kind"] == "pharmacy"]
    assert all(p["agency_code"].startswith("豫AA371") for p in pharmacy)


def test_infections_form_a_tree(run: tuple[City, list[Day]]) -> None:
    _, days = run
    infections = _all(days, "infections").to_pylist()
    infected_at = {}
    for row in infections:
        assert row["infectee"] not in infected_at, "infected twice"
        infected_at[row["infectee"]] = row["ts"]
    imports = [r for r in infections if r["infector"] == -1]
    local = [r for r in infections if r["infector"] != -1]
    assert all(r["setting"] == "imported" for r in imports)
    assert all(r["setting"] != "imported" for r in local)
    for r in local:
        assert r["infector"] in infected_at
        assert infected_at[r["infector"]] < r["ts"]
        assert r["setting"] in (
            "household",
            "workplace",
            "cold_store",
            "class",
            "care_home",
            "venue",
            "pharmacy",
            "train",
            "flight",
            "coach",
        )
    for r in infections:
        assert r["symptomatic"] == (r["onset"] is not None)
        if r["onset"] is not None:
            assert r["onset"] > r["ts"]
    # A handful of imports, tens to a few hundred infections in all.
    assert 2 <= len(imports) <= 40
    assert len(local) >= 1
    assert 5 <= len(infections) <= 600


def test_exposures_contain_every_transmission(run: tuple[City, list[Day]]) -> None:
    _, days = run
    pairs = set()
    for day in days:
        e = day.tables["exposures"]
        pairs.update(
            zip(e.column("case").to_pylist(), e.column("contact").to_pylist(), strict=True)
        )
        assert set(e.column("setting").to_pylist()) <= {
            "household",
            "workplace",
            "cold_store",
            "class",
            "care_home",
            "venue",
            "pharmacy",
            "train",
            "flight",
            "coach",
        }
        starts = e.column("start").to_pylist()
        ends = e.column("end").to_pylist()
        assert all(s < t for s, t in zip(starts, ends, strict=True))
    local = [r for r in _all(days, "infections").to_pylist() if r["infector"] != -1]
    assert local
    for r in local:
        assert (r["infector"], r["infectee"]) in pairs


def test_detection_isolates_and_stops_movement(run: tuple[City, list[Day]]) -> None:
    _, days = run
    health = _all(days, "health")
    events = Counter(health.column("event").to_pylist())
    for event in (
        "pharmacy",
        "onset",
        "test",
        "confirmed",
        "admission",
        "suspected",
        "tipoff",
        "coldchain",
        "vaccination",
    ):
        assert events[event] > 0, event
    rows = health.to_pylist()
    confirmed = {}
    for r in rows:
        if r["event"] in ("confirmed", "asymptomatic"):
            confirmed.setdefault(r["person"], r["ts"])
    assert confirmed
    numbers = [r["detail"] for r in rows if r["event"] == "confirmed"]
    assert all(n.startswith("郑州市2020-") for n in numbers)
    assert len(set(numbers)) == len(numbers)
    tests = [r for r in rows if r["event"] == "test"]
    assert {r["result"] for r in tests} == {"positive", "negative"}
    for r in rows:
        if r["event"] == "pharmacy":
            assert r["place"].startswith("V") and r["result"]
    for day in days:
        for name, column in (
            ("presence", "start"),
            ("transit", "ts"),
            ("rides", "start"),
            ("vehicle", "ts"),
            ("hotel", "checkin"),
        ):
            t = day.tables[name]
            for person, when, *rest in zip(
                t.column("person").to_pylist(), t.column(column).to_pylist(),
                *( [t.column("setting").to_pylist()] if name == "presence" else [] ), strict=True,
            ):  # fmt: skip
                if person in confirmed and when > confirmed[person]:
                    assert name == "presence" and rest[0] == "hospital", (name, person, when)
        travel = day.tables["travel"]
        for person, depart, direction in zip(
            travel.column("person").to_pylist(), travel.column("depart").to_pylist(),
            travel.column("direction").to_pylist(), strict=True,
        ):  # fmt: skip
            if direction == "out" and person in confirmed:
                assert depart < confirmed[person]


def test_travel_legs(run: tuple[City, list[Day]], geo: GeoInput) -> None:
    city, days = run
    travel = _all(days, "travel").to_pylist()
    modes = Counter(r["mode"] for r in travel)
    for mode in ("rail", "air", "coach", "car"):
        assert modes[mode] > 0, mode
    stations = {p.code for p in geo.places if p.kind in ("station", "airport", "checkpoint")}
    for r in travel:
        assert r["station"] in stations
        assert r["depart"] < r["arrive"]
        assert (r["origin"] == "郑州市") == (r["direction"] == "out")
        if r["mode"] == "rail":
            assert r["number"][0] in "GDK" and 1 <= r["carriage"] <= 16 and len(r["seat"]) == 3
        if r["mode"] == "air":
            assert r["number"][:2] in ("CZ", "MU", "HU", "CA", "3U", "ZH") and 1 <= r["row"] <= 45
        if r["mode"] == "overseas":
            assert r["port"] and r["country"]
    # Spring Festival: more residents leave than come back before the festival.
    before = [r for r in travel if r["depart"] < dt.datetime(2020, 1, 24)]
    out = sum(
        r["direction"] == "out" and r["person"] < city.persons.num_rows * 0.97 for r in before
    )
    back = sum(
        r["direction"] == "in" and r["person"] < city.persons.num_rows * 0.97 for r in before
    )
    assert out > back
    # Visitors arrive by roaming phones and stay in hotels.
    roaming = _all(days, "roaming")
    assert roaming.num_rows > 0
    assert set(roaming.column("home_city").to_pylist()) - {"郑州市"}
    hotel = _all(days, "hotel")
    assert hotel.num_rows > 0
    itinerary = _all(days, "itinerary").to_pylist()
    assert itinerary and all(r["cities"].endswith(",郑州市") for r in itinerary)


def test_volumes_per_person_day(run: tuple[City, list[Day]]) -> None:
    _, days = run
    person_days = PEOPLE * DAYS
    per = {
        name: sum(d.tables[name].num_rows for d in days) / person_days for name in schema.DAY_TABLES
    }
    assert 0.7 <= per["cell"] <= 2.0
    assert 0.1 <= per["transit"] <= 0.6
    assert 0.03 <= per["vehicle"] + per["rides"] <= 0.25
    assert 0.001 <= per["travel"] <= 0.05
    assert 0.005 <= per["health"] <= 0.3
    assert sum(per[name] for name in FEED_TABLES) >= 1.6
    # A working day before the festival is busier than one in the first-level response.
    ordinary = days[3].tables  # Monday 13 January
    response = days[17].tables  # Monday 27 January
    assert ordinary["transit"].num_rows > 3 * response["transit"].num_rows
    assert ordinary["cell"].num_rows > response["cell"].num_rows


def test_small_and_odd_configs(geo: GeoInput) -> None:
    city = build_city(SimulationConfig(people=500, days=2, seed=3, start=dt.date(2020, 3, 2)), geo)
    days = list(simulate_days(city))
    assert len(days) == 2 and city.persons.num_rows == 500
    assert all(d.tables["cell"].num_rows > 0 for d in days)
    none = build_city(SimulationConfig(people=500, days=0), geo)
    assert list(simulate_days(none)) == []
