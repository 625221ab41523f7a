"""The synthetic city's model: the public API the feed writers build on.

``build_city`` draws the population, places and the whole run's travel once; ``simulate_days``
then yields one :class:`Day` at a time (bounded memory at any scale), each with every table of
``schema.DAY_TABLES``. Same config and geography give identical tables: every draw comes from
PCG64 generators seeded from ``config.seed`` and fixed stream keys, in a fixed order.

Place ids in the day tables: geo codes for venues, hospitals, clinics, pharmacies, schools,
stations, the airport, checkpoints and (as test sites) compound gates; ``cell:<lac>-<ci>``,
``hotel:H00012``, ``cold_store:L0003``, ``enterprise:E000123``, ``care_home:Y0012``,
``class:C00042``; all of these are in ``City.places``. Not in it: ``household:H00001234``
(a household, see ``persons.household``), and the vehicles of a journey, which are made per
day: ``train:G1234:2020-01-21:05`` (a carriage), ``flight:CZ3456:2020-01-21`` and
``coach:0812:2020-01-21``. Infections imported from elsewhere have setting ``imported`` and the
city they came from as place.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from citybrain.simulate.config import GeoInput, SimulationConfig
from citybrain.simulate.model_data import COUNTRIES, HOME_CITY, PORTS, cities, risk_areas_table
from citybrain.simulate.model_geo import Geo, build_geo
from citybrain.simulate.model_places import Places, build_places, home_cell
from citybrain.simulate.model_travel import (
    AIR,
    CAR,
    COACH,
    MODES,
    OVERSEAS,
    RAIL,
    TravelPlan,
    plan_travel,
)
from citybrain.simulate.model_util import (
    DAY,
    I64,
    MINUTE,
    NEVER,
    STREAM_MOVEMENT,
    STREAM_OUTBREAK,
    column,
    constant,
    day_context,
    day_seconds,
    digits,
    fixed_strings,
    int_strings,
    join,
    rng_for,
    take,
    ts,
    uniform,
)
from citybrain.simulate.movement import (
    A_COLD,
    Block,
    Static,
    build_static,
    day_movement,
    vehicle_table,
)
from citybrain.simulate.outbreak import CityView, afternoon, coldchain, init_state, morning
from citybrain.simulate.population import Population, build_population
from citybrain.simulate.schema import (
    DAY_TABLES,
    ITINERARY,
    PRESENCE,
    ROAMING,
    TRAVEL,
)

ITINERARY_SHARE = 0.35  # of recent travellers' phones queried on a day (通信行程卡)


@dataclass
class City:
    """The synthetic city: its people and places as Arrow tables, plus the model's arrays."""

    config: SimulationConfig
    persons: pa.Table
    enterprises: pa.Table
    schools: pa.Table
    classes: pa.Table
    care_homes: pa.Table
    places: pa.Table
    risk_areas: pa.Table
    _geo: Geo = field(repr=False)
    _pop: Population = field(repr=False)
    _places: Places = field(repr=False)
    _plan: TravelPlan = field(repr=False)
    _static: Static = field(repr=False)
    _view: CityView = field(repr=False)
    _place_street: np.ndarray = field(repr=False)


@dataclass
class Day:
    """One simulated day: a table for every key of ``schema.DAY_TABLES``."""

    date: dt.date
    tables: dict[str, pa.Table]


def build_city(config: SimulationConfig, geo: GeoInput) -> City:
    """Build the city for ``config`` on ``geo``: persons, households, workplaces, schools, care
    homes, places and the run's travel (建模: 人口、场所、出行计划)."""
    g = build_geo(geo)
    pop = build_population(config, g)
    places = build_places(g, pop, config.seed)
    plan = plan_travel(config, g, pop, places)
    static = build_static(g, pop, places, plan, config.seed)
    view = _view(config, g, pop, places, plan, static)
    return City(
        config=config,
        persons=pop.persons,
        enterprises=pop.enterprises,
        schools=pop.schools,
        classes=pop.classes,
        care_homes=pop.care_homes,
        places=places.table,
        risk_areas=risk_areas_table(),
        _geo=g,
        _pop=pop,
        _places=places,
        _plan=plan,
        _static=static,
        _view=view,
        _place_street=_street_index_of_places(places, g),
    )


def _view(
    config: SimulationConfig,
    geo: Geo,
    pop: Population,
    places: Places,
    plan: TravelPlan,
    static: Static,
) -> CityView:
    n = pop.n
    visitor = np.arange(n) >= pop.n_resident
    district = np.where(
        visitor, geo.street_district[np.maximum(static.home_street, 0)], pop.district
    ).astype(np.int16)
    pharmacies = [
        i
        for i, kind in enumerate(geo.venue_subkind)
        if kind == "pharmacy" and geo.venue_street[i] >= 0
    ]
    by_street: list[list[int]] = [[] for _ in geo.street_codes]
    for i in pharmacies:
        by_street[int(geo.venue_street[i])].append(int(places.venue[i]))
    by_district: list[list[int]] = [[] for _ in geo.district_codes]
    for s, members in enumerate(by_street):
        by_district[int(geo.street_district[s])].extend(members)
    pharmacy_of_street = [
        np.array(members or by_district[int(geo.street_district[s])], dtype=np.int64)
        for s, members in enumerate(by_street)
    ]
    cold = static.anchor == A_COLD
    hosted = plan.host >= 0
    household = np.where(hosted, plan.host, pop.household).astype(np.int32)
    compound = np.where(
        hosted, pop.household_compound[np.maximum(plan.host, 0)], pop.compound
    ).astype(np.int32)
    arrival = np.where(visitor, plan.present_from, plan.away_to)
    arrival = np.where(arrival >= NEVER, NEVER, arrival)
    return CityView(
        n=n,
        n_resident=pop.n_resident,
        age=pop.age,
        household=household,
        household_first=pop.household_first,
        compound=compound,
        compound_community=np.unique(np.array(geo.compound_community), return_inverse=True)[
            1
        ].astype(np.int64),
        compound_first=pop.compound_first,
        used_compounds=pop.used_compounds,
        district=district,
        compound_district=geo.street_district[geo.compound_street].astype(np.int64),
        test_site=places.test_site,
        hospital_place=static.hospital_place,
        clinic_place=static.clinic_place,
        pharmacy_of_street=pharmacy_of_street,
        home_street=np.maximum(static.home_street, 0),
        place_ids=places.ids,
        cold_handlers=np.flatnonzero(cold),
        cold_store_of=np.where(cold, static.anchor_place, -1).astype(np.int32),
        trip_city=plan.trip_city,
        arrival_ts=arrival.astype(np.int64),
        start=day_seconds(config.start),
        days=max(1, config.days),
        import_person=plan.import_person,
        import_time=plan.import_time,
        import_city=plan.import_city,
    )


def _window(
    plan: TravelPlan, away_from: I64, away_to: I64, present_to: I64, t0: int
) -> tuple[I64, I64]:
    """Each person's time in the city on the day starting ``t0`` (a >= b: not here)."""
    t1 = t0 + DAY
    a = np.maximum(t0, plan.present_from)
    b = np.minimum(t1, present_to)
    gone = (away_from <= t0) & (away_to >= t1)
    b = np.where((away_from > t0) & (away_from < t1), np.minimum(b, away_from), b)
    a = np.where((away_to > t0) & (away_to < t1), np.maximum(a, away_to), a)
    b = np.where(gone, a, b)
    return a, b


def _seat_strings(mode: I64, seat: I64) -> pa.Array:
    """Seats: "05F" in trains, "23A" on planes, "12" on coaches."""
    k = mode.shape[0]
    row = seat // 8
    letter = seat % 8
    rail_letters = np.frombuffer(b"ABCDF", dtype=np.uint8)
    air_letters = np.frombuffer(b"ABCDEF", dtype=np.uint8)
    rail = fixed_strings(
        np.hstack([digits(np.maximum(row, 0), 2), rail_letters[np.clip(letter, 0, 4)][:, None]])
    )
    air = join(
        int_strings(np.maximum(row, 0)), fixed_strings(air_letters[np.clip(letter, 0, 5)][:, None])
    )
    coach = int_strings(np.maximum(seat, 0))
    out = pc.if_else(
        pa.array(mode == RAIL),
        rail,
        pc.if_else(pa.array((mode == AIR) | (mode == OVERSEAS)), air, coach),
    )
    return pc.if_else(pa.array(mode == CAR), pa.nulls(k, pa.string()), out)


def _travel(
    city: City, sel: I64, date: dt.date
) -> tuple[pa.Table, list[Block], pa.Table, pa.Table]:
    """The day's legs as TRAVEL rows, presence on board, roaming phones and car crossings."""
    plan = city._plan
    legs = plan.legs
    pop = city._pop
    places = city._places
    cty = cities()
    k = sel.shape[0]
    person = legs.person[sel]
    mode = legs.mode[sel]
    inbound = legs.inbound[sel]
    service = legs.service[sel]
    plates = column(pop.persons, "plate")
    number = pc.if_else(
        pa.array(mode == CAR), take(plates, person), take(plan.service_names, service)
    )
    other = pc.if_else(
        pa.array(mode == OVERSEAS),
        take(pa.array(list(COUNTRIES)), legs.country[sel]),
        take(pa.array(list(cty.name)), legs.city[sel]),
    )
    home = pa.array([HOME_CITY] * k, pa.string())
    carriage = legs.carriage[sel]
    row = legs.row[sel]
    station_ids = places.ids.take(pa.array(legs.station[sel]))
    travel = pa.table(
        {
            "person": pa.array(person.astype(np.int32)),
            "mode": take(pa.array(list(MODES)), mode),
            "number": number,
            "carriage": pa.array(carriage.astype(np.int8), mask=carriage < 0),
            "row": pa.array(row.astype(np.int16), mask=row < 0),
            "seat": _seat_strings(mode, legs.seat[sel]),
            "origin": pc.if_else(pa.array(inbound), other, home),
            "destination": pc.if_else(pa.array(inbound), home, other),
            "depart": ts(legs.depart[sel]),
            "arrive": ts(legs.arrive[sel]),
            "direction": take(pa.array(["out", "in"]), inbound.astype(np.int64)),
            "station": station_ids,
            "port": take(pa.array(list(PORTS)), legs.port[sel]),
            "country": take(pa.array(list(COUNTRIES)), legs.country[sel]),
        },
        schema=TRAVEL,
    )
    # On board: a carriage, a flight (rows matter), a coach.
    blocks: list[Block] = []
    dep_day = legs.depart[sel] // DAY
    dep_date = pa.array(
        (np.datetime64("1970-01-01") + dep_day.astype("timedelta64[D]")).astype(str)
    )
    service_names = take(plan.service_names, np.maximum(service, 0))
    for m, setting, prefix in (
        (RAIL, "train", "train:"),
        (AIR, "flight", "flight:"),
        (OVERSEAS, "flight", "flight:"),
        (COACH, "coach", "coach:"),
    ):
        idx = np.flatnonzero(mode == m)
        if idx.shape[0] == 0:
            continue
        parts: list[pa.Array | str] = [
            prefix,
            service_names.take(pa.array(idx)),
            ":",
            dep_date.take(pa.array(idx)),
        ]
        if m == RAIL:
            parts += [":", fixed_strings(digits(carriage[idx], 2))]
        place_ids = join(*parts)
        group = (service[idx] * 100_000 + dep_day[idx]) * 32 + np.maximum(carriage[idx], 0)
        blocks.append(
            Block(
                setting, person[idx], legs.depart[sel][idx], legs.arrive[sel][idx], place_ids,
                np.arange(idx.shape[0], dtype=np.int64), group,
                row[idx] if m in (AIR, OVERSEAS) else None,
            )
        )  # fmt: skip
    # Phones of other cities announce themselves on arrival (漫入).
    arriving = np.flatnonzero(inbound & pop.phone_owner[person] & (pop.phone_city[person] >= 0))
    rp = person[arriving]
    station_street = city._place_street[legs.station[sel][arriving]]
    cells = home_cell(places, legs.station[sel][arriving], station_street)
    r_when = legs.ts[sel][arriving] + (5 + (rp % 25)) * MINUTE
    phones = column(pop.persons, "phone")
    roaming = pa.table(
        {
            "person": pa.array(rp.astype(np.int32)),
            "phone": take(phones, rp),
            "home_city": take(pa.array(list(cty.name)), pop.phone_city[rp].astype(np.int64)),
            "ts": ts(r_when),
            "cell": places.ids.take(pa.array(places.cell[cells])),
        },
        schema=ROAMING,
    )
    # Cars cross an expressway toll checkpoint; arrivals show where they entered the motorway.
    car = np.flatnonzero(mode == CAR)
    c_in = inbound[car]
    city_no = np.maximum(legs.city[sel][car], 0)
    toll = pc.if_else(
        pa.array(c_in), take(pa.array(list(cty.toll)), city_no), pa.nulls(car.shape[0], pa.string())
    )
    crossing = np.where(c_in, legs.ts[sel][car], legs.ts[sel][car] + 30 * MINUTE)
    vehicle = vehicle_table(
        pop,
        places.ids,
        person[car],
        legs.station[sel][car],
        crossing,
        c_in,
        toll,
        legs.depart[sel][car],
    )
    vehicle = vehicle.set_column(
        vehicle.schema.get_field_index("toll_entry_ts"),
        "toll_entry_ts",
        ts(legs.depart[sel][car], mask=~c_in),
    )
    return travel, blocks, roaming, vehicle


def _street_index_of_places(places: Places, geo: Geo) -> np.ndarray:
    """Per place: the index of its street (0 where it has none)."""
    codes = places.table.column("street_code").combine_chunks()
    found = pc.index_in(codes, value_set=pa.array(geo.street_codes))
    return np.asarray(found.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int32)


def _presence(blocks: list[Block]) -> pa.Table:
    parts = []
    for block in blocks:
        k = block.person.shape[0]
        if k == 0:
            continue
        parts.append(
            pa.table(
                {
                    "person": pa.array(block.person.astype(np.int32)),
                    "place": block.places.take(pa.array(block.place)),
                    "setting": constant(block.setting, k),
                    "start": ts(block.start),
                    "end": ts(block.end),
                },
                schema=PRESENCE,
            )
        )
    return pa.concat_tables(parts) if parts else PRESENCE.empty_table()


def simulate_days(city: City) -> Iterator[Day]:
    """Yield ``config.days`` days from ``config.start``, in order (逐日模拟). Each call starts the
    outbreak afresh, so two runs over one city give the same days."""
    config = city.config
    pop = city._pop
    plan = city._plan
    view = city._view
    legs = plan.legs
    n = pop.n
    n_days = max(0, config.days)
    state = init_state(
        view,
        legs.day,
        legs.person,
        legs.inbound,
        legs.city,
        rng_for(config.seed, STREAM_OUTBREAK, 0),
    )
    away_from = plan.away_from.copy()
    away_to = plan.away_to.copy()
    present_to = plan.present_to.copy()
    n_trips = int(legs.trip.max()) + 1 if legs.trip.shape[0] else 0
    cancelled = np.zeros(n_trips, dtype=bool)
    day_first = np.searchsorted(legs.day, np.arange(n_days + 1))
    cty = cities()
    city_names = pa.array([HOME_CITY, *cty.name])
    for d in range(n_days):
        date = config.start + dt.timedelta(days=d)
        ctx = day_context(date, d)
        t0 = ctx.start
        rng_move = rng_for(config.seed, STREAM_MOVEMENT, d)
        rng_out = rng_for(config.seed, STREAM_OUTBREAK, d + 1)
        # Legs of today; the isolated and quarantined do not leave.
        sel = np.arange(day_first[d], day_first[d + 1])
        sel = sel[~cancelled[legs.trip[sel]]]
        out = sel[~legs.inbound[sel]]
        p_out = legs.person[out]
        held = (state.iso_from[p_out] <= legs.ts[out]) | (
            (state.quarantine_from[p_out] <= legs.ts[out])
            & (state.quarantine_to[p_out] > legs.ts[out])
        )
        if held.any():
            stuck = p_out[held]
            cancelled[legs.trip[out[held]]] = True
            resident = stuck < pop.n_resident
            away_from[stuck[resident]] = NEVER
            away_to[stuck[resident]] = NEVER
            present_to[stuck[~resident]] = NEVER
            sel = sel[~cancelled[legs.trip[sel]]]
        window = _window(plan, away_from, away_to, present_to, t0)
        health, health_blocks, imports = morning(state, view, ctx, window, rng_out)
        quarantined = (state.quarantine_from < t0) & (state.quarantine_to > t0)
        moved = day_movement(
            city._static, pop, city._places, plan, ctx, window, quarantined, state.iso_from,
            rng_move,
        )  # fmt: skip
        travel, travel_blocks, roaming, car_vehicle = _travel(city, sel, date)
        blocks = moved.blocks + health_blocks + travel_blocks
        exposures, infections = afternoon(state, view, ctx, blocks, rng_out)
        coldchain(view, ctx, blocks, health, rng_out)
        # 14-day itineraries of phones back from a journey (通信行程卡).
        a, b = window
        arrival = np.where(np.arange(n) >= pop.n_resident, plan.present_from, away_to)
        recent = (b > a) & (arrival > t0 - 14 * DAY) & (arrival < t0 + DAY) & pop.phone_owner
        recent &= plan.trip_city >= 0
        asked = np.flatnonzero(recent & (uniform(rng_move, n) < ITINERARY_SHARE))
        phones = column(pop.persons, "phone")
        itinerary = pa.table(
            {
                "person": pa.array(asked.astype(np.int32)),
                "phone": take(phones, asked),
                "cities": join(take(city_names, plan.trip_city[asked] + 1), ",", HOME_CITY),
                "query_date": pa.array([date] * asked.shape[0], pa.date32()),
            },
            schema=ITINERARY,
        )
        infections_all = pa.concat_tables([imports, infections])
        tables = {
            "presence": _presence(blocks),
            "cell": moved.cell,
            "transit": moved.transit,
            "vehicle": pa.concat_tables([moved.vehicle, car_vehicle]),
            "rides": moved.rides,
            "travel": travel,
            "roaming": roaming,
            "itinerary": itinerary,
            "hotel": moved.hotel,
            "health": health.table(),
            "infections": infections_all,
            "exposures": exposures,
        }
        for key, schema in DAY_TABLES.items():
            if not tables[key].schema.equals(schema):
                tables[key] = tables[key].cast(schema)
        yield Day(date=date, tables=tables)
