"""Travel into and out of the city, planned for the whole run at build time: the Spring Festival
rush (春运) of residents going home and coming back, business trips, visitors arriving by rail,
air, coach or car and staying in hotels, a few trips abroad, and the travellers who bring the
virus back from the risk areas.

A journey's Zhengzhou end is a leg: arrivals (``in``) and departures (``out``), each with its
service (train, flight, coach number or the car's plate), carriage, row and seat.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from citybrain.simulate.config import SimulationConfig
from citybrain.simulate.model_data import AIRLINES, COUNTRIES, PORTS, cities
from citybrain.simulate.model_geo import Geo
from citybrain.simulate.model_places import Places
from citybrain.simulate.model_util import (
    DAY,
    HOUR,
    I32,
    I64,
    NEVER,
    STREAM_TRAVEL,
    B,
    day_seconds,
    integers,
    rng_for,
    uniform,
    weighted_choice,
)
from citybrain.simulate.population import OCC_WORKER, Population

MODES = ("rail", "air", "coach", "car", "overseas")
RAIL, AIR, COACH, CAR, OVERSEAS = range(5)
IMPORT_REFERENCE = dt.date(2020, 1, 20)
IMPORT_DOUBLING_DAYS = 6.0
_SEAT_LETTERS_RAIL = "ABCDF"
_SEAT_LETTERS_AIR = "ABCDEF"


@dataclass
class Legs:
    """One row per leg, sorted by (day, time, person)."""

    person: I64
    day: I64  # run day of the Zhengzhou end
    ts: I64  # arrival (in) or departure (out) at Zhengzhou
    depart: I64
    arrive: I64
    inbound: B
    mode: I64
    city: I64  # other city number; -1 abroad
    country: I64  # -1 unless abroad
    service: I64  # index into TravelPlan.service_names; -1 for cars (the plate is the number)
    carriage: I64  # -1 unless rail
    row: I64  # -1 unless air or coach
    seat: I64  # rail: row*8+letter; air: row*8+letter; coach: seat number
    station: I64  # place index of the Zhengzhou end (station, airport, checkpoint)
    port: I64  # index into PORTS, -1
    trip: I64  # legs of one journey out and back share it


@dataclass
class TravelPlan:
    """The whole run's travel and the resulting presence windows."""

    legs: Legs
    away_from: I64  # residents: departure time of their trip (NEVER: none)
    away_to: I64  # their return (NEVER: not within the run)
    present_from: I64  # visitors: arrival; residents: -NEVER
    present_to: I64  # visitors: departure; residents: NEVER
    trip_city: I32  # city visited (residents) or come from (visitors), -1
    trip_country: I32
    hotel: I32  # visitors: hotel number (index into Places.hotel); -1
    host: I32  # visitors staying with relatives: the host household; -1
    room: I32  # visitors: floor*100+room
    service_names: pa.StringArray
    import_person: I64  # travellers infected elsewhere
    import_time: I64
    import_city: I64


IMPORT_PLATEAU = dt.date(2020, 1, 28)  # after the lockdowns the spread elsewhere levelled off


def _growth(date: dt.date) -> float:
    days = (min(date, IMPORT_PLATEAU) - IMPORT_REFERENCE).days
    return float(2.0 ** (days / IMPORT_DOUBLING_DAYS))


def _services(rng: np.random.Generator) -> tuple[list[str], dict[tuple[int, int, int], list[int]]]:
    """Service numbers per (mode, city or country, inbound): a few trains, flights and coaches
    a day between Zhengzhou and each place, so travellers of a day share them."""
    cty = cities()
    names: list[str] = []
    pools: dict[tuple[int, int, int], list[int]] = {}
    used: set[str] = set()

    def new(label: str) -> int:
        while label in used:
            label = label[:-1] + str((int(label[-1]) + 1) % 10)
        used.add(label)
        names.append(label)
        return len(names) - 1

    for c in range(len(cty.name)):
        km = float(cty.distance_km[c])
        for inbound in (0, 1):
            rail = []
            for _ in range(3):
                kind = (
                    "K"
                    if rng.random() < (0.35 if km > 600 else 0.15)
                    else ("D" if rng.random() < 0.2 else "G")
                )
                number = int(rng.integers(1, 1500)) * 2 + inbound
                rail.append(new(f"{kind}{number}"))
            pools[RAIL, c, inbound] = rail
            if cty.airport[c]:
                airline = [AIRLINES[int(rng.integers(0, len(AIRLINES)))] for _ in range(2)]
                pools[AIR, c, inbound] = [
                    new(f"{airline[k]}{int(rng.integers(1000, 9999))}") for k in range(2)
                ]
            if km <= 700:
                pools[COACH, c, inbound] = [
                    new(f"{int(rng.integers(100, 9999)):04d}") for _ in range(2)
                ]
    for k in range(len(COUNTRIES)):
        for inbound in (0, 1):
            pools[OVERSEAS, k, inbound] = [
                new(f"{AIRLINES[int(rng.integers(0, 3))]}{int(rng.integers(1000, 9999))}")
            ]
    return names, pools


def _mode(rng: np.random.Generator, km: np.ndarray, airport: np.ndarray, plate: B) -> I64:
    """Mode by distance: coach and car for nearby cities, rail for most, air for far ones."""
    n = km.shape[0]
    u = uniform(rng, n)
    near = km <= 250
    mid = (km > 250) & (km <= 700)
    mode = np.full(n, RAIL, dtype=np.int64)
    mode[near & (u < 0.3)] = COACH
    mode[near & (u >= 0.3) & (u < 0.6) & plate] = CAR
    mode[mid & (u < 0.1)] = COACH
    mode[mid & (u >= 0.1) & (u < 0.22) & plate] = CAR
    mode[mid & (u >= 0.22) & (u < 0.3) & airport] = AIR
    mode[(km > 700) & (u < 0.5) & airport] = AIR
    return mode


def plan_travel(config: SimulationConfig, geo: Geo, pop: Population, places: Places) -> TravelPlan:
    """Plan every journey of the run."""
    rng = rng_for(config.seed, STREAM_TRAVEL)
    cty = cities()
    n_days = max(1, config.days)
    dates = [config.start + dt.timedelta(days=d) for d in range(n_days)]
    starts = np.array([day_seconds(d) for d in dates], dtype=np.int64)
    n = pop.n
    n_res = pop.n_resident
    service_names, pools = _services(rng)
    # Pools as dense arrays: (mode, city or country, inbound) -> a slice of ``pool_flat``.
    n_place = max(len(cty.name), len(COUNTRIES))
    pool_first = np.zeros((len(MODES), n_place, 2), dtype=np.int64)
    pool_count = np.zeros((len(MODES), n_place, 2), dtype=np.int64)
    flat: list[int] = []
    for (m, c, inbound), members in sorted(pools.items()):
        pool_first[m, c, inbound] = len(flat)
        pool_count[m, c, inbound] = len(members)
        flat.extend(members)
    pool_flat = np.array(flat, dtype=np.int64)
    service_hs = np.array([name[0] in "GD" for name in service_names])

    # Stations at the Zhengzhou end.
    def station_place(name_part: str, subkind: str) -> list[int]:
        out = [
            int(places.station[i])
            for i, p in enumerate(geo.stations)
            if (p.subkind == subkind or p.kind == subkind) and name_part in p.name
        ]
        return out or [
            int(places.station[i])
            for i, p in enumerate(geo.stations)
            if p.subkind == subkind or p.kind == subkind
        ]

    rail_main = station_place("郑州站", "railway") or [-1]
    rail_east = station_place("郑州东站", "railway") or rail_main
    rail_other = station_place("郑州", "railway") or rail_main
    coach_st = station_place("", "coach") or rail_main
    airport = station_place("", "airport") or rail_main
    toll_cp = [
        int(places.checkpoint[i])
        for i, p in enumerate(geo.checkpoints)
        if p.subkind == "highway_toll"
    ] or [int(x) for x in places.checkpoint[:1]]

    lockdown_day = np.array(
        [(ld - config.start).days if ld is not None else 10**6 for ld in cty.lockdown],
        dtype=np.int64,
    )
    listed_risk = cty.import_risk

    # --- residents: households going home for the festival, and individual trips ---------
    festival = np.array([max(0.0, 1.0 - abs((d - dt.date(2020, 1, 21)).days) / 8.0) for d in dates])
    response = np.array([d >= dt.date(2020, 1, 25) for d in dates])
    hh_first = pop.household_first
    n_hh = hh_first.shape[0] - 1
    head = hh_first[:-1]
    head_outside = pop.birth_city[head] >= 0
    go_home = uniform(rng, n_hh) < np.where(head_outside, 0.3, 0.05)
    trip_rows: list[tuple[I64, I64, I64, I64]] = []  # (members, city, out_day, back_day)
    if festival.sum() > 0 and n_hh:
        hh_go = np.flatnonzero(go_home)
        day = weighted_choice(rng, festival, hh_go.shape[0])
        city = np.where(
            head_outside[hh_go],
            pop.birth_city[head[hh_go]],
            weighted_choice(rng, cty.weight, hh_go.shape[0]),
        ).astype(np.int64)
        back_date_offset = (dt.date(2020, 1, 31) - config.start).days + integers(
            rng, 0, 13, hh_go.shape[0]
        )
        delayed = uniform(rng, hh_go.shape[0]) < 0.45
        back = np.where(delayed | (back_date_offset >= lockdown_day[city]), 10**6, back_date_offset)
        back = np.maximum(back, day + 1)
        sizes = hh_first[hh_go + 1] - hh_first[hh_go]
        members = np.repeat(hh_first[hh_go], sizes) + (
            np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        )
        trip_rows.append(
            (members, np.repeat(city, sizes), np.repeat(day, sizes), np.repeat(back, sizes))
        )
    # Individual trips: business and visits, fewer once the response starts.
    daily = np.where(response, 0.00015, 0.0009)
    total = float(daily.sum())
    travellers = np.flatnonzero(
        (np.arange(n) < n_res) & (pop.occupation == OCC_WORKER) & (uniform(rng, n) < total)
    )
    if travellers.shape[0]:
        day = weighted_choice(rng, daily, travellers.shape[0])
        city = weighted_choice(rng, cty.weight, travellers.shape[0])
        # Nobody leaves for a city that is locked down.
        ok = day < lockdown_day[city]
        travellers, day, city = travellers[ok], day[ok], city[ok]
        back = day + 1 + integers(rng, 0, 6, travellers.shape[0])
        back = np.where(back >= lockdown_day[city], 10**6, back)
        trip_rows.append((travellers, city, day, back))
    if trip_rows:
        r_person = np.concatenate([t[0] for t in trip_rows])
        r_city = np.concatenate([t[1] for t in trip_rows])
        r_out = np.concatenate([t[2] for t in trip_rows])
        r_back = np.concatenate([t[3] for t in trip_rows])
        # One trip per person: the first drawn wins.
        _, first = np.unique(r_person, return_index=True)
        r_person, r_city, r_out, r_back = (
            r_person[first],
            r_city[first],
            r_out[first],
            r_back[first],
        )
    else:
        r_person = r_city = r_out = r_back = np.zeros(0, dtype=np.int64)
    # Families travel together: same mode and service; one draw per (household, trip).
    r_hh = pop.household[r_person].astype(np.int64)
    group_key = np.where(r_hh >= 0, r_hh, -1 - r_person)
    _, group, group_inverse = np.unique(group_key, return_index=True, return_inverse=True)
    n_groups = group.shape[0]
    g_plate = np.zeros(n_groups, dtype=bool)
    np.logical_or.at(g_plate, group_inverse, pop.has_plate[r_person])
    g_city = r_city[group]
    g_mode = _mode(rng, cty.distance_km[g_city], cty.airport[g_city], g_plate)
    r_mode = g_mode[group_inverse]

    # Overseas trips by passport holders.
    holders = np.flatnonzero(
        (np.arange(n) < n_res)
        & ~np.isin(np.arange(n), r_person)
        & pop.persons.column("passport").is_valid().to_numpy(zero_copy_only=False)
    )
    abroad = holders[uniform(rng, holders.shape[0]) < 0.03]
    o_out = integers(rng, 0, max(1, n_days - 2), abroad.shape[0])
    o_back = o_out + 4 + integers(rng, 0, 11, abroad.shape[0])
    o_country = integers(rng, 0, len(COUNTRIES), abroad.shape[0])

    # --- visitors ------------------------------------------------------------------------
    visitors = np.arange(n_res, n, dtype=np.int64)
    v_city = pop.home_city[visitors].astype(np.int64)
    before = np.array(
        [1.6 if dt.date(2020, 1, 15) <= d < dt.date(2020, 1, 25) else 1.0 for d in dates]
    )
    v_day = np.zeros(visitors.shape[0], dtype=np.int64)
    for c in range(len(cty.name)):
        of_city = np.flatnonzero(v_city == c)
        if of_city.shape[0] == 0:
            continue
        w = before * np.where(response, 0.2, 1.0) * (np.arange(n_days) < lockdown_day[c])
        if w.sum() <= 0:
            w = np.ones(n_days)
        v_day[of_city] = weighted_choice(rng, w, of_city.shape[0])
    v_stay = 1 + np.minimum(rng.geometric(0.22, visitors.shape[0]) - 1, 13)
    # Those coming home for the festival (回家过年) stay with family until after it; from a city
    # locked down meanwhile they cannot go back at all.
    fest_from = (dt.date(2020, 1, 15) - config.start).days
    fest_to = (dt.date(2020, 1, 24) - config.start).days
    festive = (v_day >= fest_from) & (v_day <= fest_to) & (uniform(rng, visitors.shape[0]) < 0.5)
    after = (dt.date(2020, 1, 31) - config.start).days + integers(rng, 0, 11, visitors.shape[0])
    v_stay = np.where(festive, np.maximum(after - v_day, 1), v_stay)
    stuck = lockdown_day[v_city] <= v_day + v_stay
    v_stay = np.where(stuck, np.maximum(v_stay, n_days - v_day + 30), v_stay)
    v_mode = _mode(rng, cty.distance_km[v_city], cty.airport[v_city], pop.has_plate[visitors])

    # --- legs -----------------------------------------------------------------------------
    parts: dict[str, list[I64]] = {k: [] for k in Legs.__dataclass_fields__}

    def add_legs(
        person: I64,
        day: I64,
        inbound: bool,
        mode: I64,
        city: I64,
        country: I64,
        trip: I64,
        group_of: I64,
    ) -> tuple[I64, I64]:
        """Legs for ``person`` on run ``day``; travellers with the same ``group_of`` share the
        service and sit together. Returns (ts at Zhengzhou, depart/arrive at the other end)."""
        k = person.shape[0]
        if k == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        km = np.where(city >= 0, cty.distance_km[np.maximum(city, 0)], 2000.0)
        hours = np.select(
            [mode == RAIL, mode == AIR, mode == COACH, mode == CAR],
            [km / 200.0 + 0.4, 1.3 + km / 750.0, km / 65.0 + 0.5, km / 85.0],
            default=3.0 + km / 800.0,
        )
        # Group-level draws: one per group, then spread to members.
        g_keys, g_first, g_inv = np.unique(group_of, return_index=True, return_inverse=True)
        gk = g_keys.shape[0]
        g_time = uniform(rng, gk)
        g_pick = integers(rng, 0, 1 << 30, gk)
        g_carriage = 1 + integers(rng, 0, 16, gk)
        g_row = 1 + integers(rng, 0, 20, gk)
        g_arow = 1 + integers(rng, 0, 38, gk)
        g_seat = 1 + integers(rng, 0, 45, gk)
        member = np.arange(k) - g_first[g_inv]
        local = np.where(inbound, 7.0 + 16.0 * g_time[g_inv], 6.5 + 14.5 * g_time[g_inv])
        t_local = starts[np.minimum(day, n_days - 1)] + (local * HOUR).astype(np.int64)
        duration = (hours * HOUR).astype(np.int64)
        depart = np.where(inbound, t_local - duration, t_local)
        arrive = np.where(inbound, t_local, t_local + duration)
        place = np.where(mode == OVERSEAS, country, np.maximum(city, 0))
        first = pool_first[mode, place, int(inbound)]
        count = pool_count[mode, place, int(inbound)]
        # No flight or coach to that city: the train.
        missing = count == 0
        first = np.where(missing, pool_first[RAIL, place, int(inbound)], first)
        count = np.where(missing, pool_count[RAIL, place, int(inbound)], count)
        service = np.where(mode == CAR, -1, pool_flat[first + g_pick[g_inv] % np.maximum(count, 1)])
        carriage = np.where(mode == RAIL, g_carriage[g_inv], -1)
        row = np.select(
            [mode == AIR, mode == OVERSEAS, mode == COACH],
            [
                g_arow[g_inv] + member // 6,
                g_arow[g_inv] + member // 6,
                (g_seat[g_inv] + member - 1) // 4 + 1,
            ],
            default=-1,
        )
        seat = np.select(
            [mode == RAIL, (mode == AIR) | (mode == OVERSEAS), mode == COACH],
            [
                (g_row[g_inv] + member // 5) * 8 + member % 5,
                row * 8 + member % 6,
                g_seat[g_inv] + member,
            ],
            default=-1,
        )
        pick = g_pick[g_inv]
        east = np.array(rail_east)[pick % len(rail_east)]
        other = np.array(rail_other)[pick % len(rail_other)]
        high_speed = np.where(service >= 0, service_hs[np.maximum(service, 0)], False)
        rail_station = np.where(high_speed & (pick % 10 < 8), east, other)
        station = np.select(
            [mode == RAIL, (mode == AIR) | (mode == OVERSEAS), mode == COACH],
            [
                rail_station,
                np.array(airport)[pick % len(airport)],
                np.array(coach_st)[(np.maximum(city, 0) * 7 + pick % 2) % len(coach_st)],
            ],
            default=np.array(toll_cp)[(np.maximum(city, 0) * 5 + pick % 3) % len(toll_cp)],
        )
        port = np.where(mode == OVERSEAS, pick % len(PORTS), -1)
        values = {
            "person": person, "day": day, "ts": t_local, "depart": depart, "arrive": arrive,
            "inbound": np.full(k, inbound), "mode": mode, "city": city, "country": country,
            "service": service, "carriage": carriage, "row": row, "seat": seat,
            "station": station, "port": port, "trip": trip,
        }  # fmt: skip
        for key, value in values.items():
            parts[key].append(np.asarray(value))
        return t_local, np.where(inbound, depart, arrive)

    k_res = r_person.shape[0]
    trip_id = np.arange(k_res, dtype=np.int64)
    no_country = np.full(k_res, -1, dtype=np.int64)
    out_in_run = r_out < n_days
    sel = np.flatnonzero(out_in_run)
    out_ts, _ = add_legs(
        r_person[sel],
        r_out[sel],
        False,
        r_mode[sel],
        r_city[sel],
        no_country[sel],
        trip_id[sel],
        group_inverse[sel] * n_days + r_out[sel],
    )
    away_from = np.full(n, NEVER, dtype=np.int64)
    away_to = np.full(n, NEVER, dtype=np.int64)
    away_from[r_person[sel]] = out_ts
    back_sel = np.flatnonzero(out_in_run & (r_back < n_days))
    back_ts, _ = add_legs(
        r_person[back_sel],
        r_back[back_sel],
        True,
        r_mode[back_sel],
        r_city[back_sel],
        no_country[back_sel],
        trip_id[back_sel],
        group_inverse[back_sel] * n_days + r_back[back_sel],
    )
    away_to[r_person[back_sel]] = back_ts

    # Overseas: out and, if within the run, back.
    k_o = abroad.shape[0]
    o_trip = k_res + np.arange(k_o, dtype=np.int64)
    o_mode = np.full(k_o, OVERSEAS, dtype=np.int64)
    o_city = np.full(k_o, -1, dtype=np.int64)
    o_ts, _ = add_legs(abroad, o_out, False, o_mode, o_city, o_country, o_trip, o_trip)
    away_from[abroad] = o_ts
    ob = np.flatnonzero(o_back < n_days)
    ob_ts, _ = add_legs(
        abroad[ob], o_back[ob], True, o_mode[ob], o_city[ob], o_country[ob], o_trip[ob], o_trip[ob]
    )
    away_to[abroad[ob]] = ob_ts

    # Visitors: arrive, and leave if within the run.
    k_v = visitors.shape[0]
    v_trip = k_res + k_o + np.arange(k_v, dtype=np.int64)
    v_country = np.full(k_v, -1, dtype=np.int64)
    v_arrive_ts, v_left_home = add_legs(
        visitors, v_day, True, v_mode, v_city, v_country, v_trip, v_trip
    )
    present_from = np.full(n, -NEVER, dtype=np.int64)
    present_to = np.full(n, NEVER, dtype=np.int64)
    present_from[visitors] = v_arrive_ts
    v_leave_day = v_day + v_stay
    vl = np.flatnonzero(v_leave_day < n_days)
    vl_ts, _ = add_legs(
        visitors[vl],
        v_leave_day[vl],
        False,
        v_mode[vl],
        v_city[vl],
        v_country[vl],
        v_trip[vl],
        v_trip[vl],
    )
    present_to[visitors] = v_arrive_ts + v_stay * DAY  # planned, past the run if not left in it
    present_to[visitors[vl]] = vl_ts

    cat = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in parts.items()}
    order = np.lexsort((cat["person"], cat["ts"], cat["day"]))
    col = {k: np.asarray(v[order], dtype=np.int64) for k, v in cat.items() if k != "inbound"}
    legs = Legs(inbound=cat["inbound"][order].astype(bool), **col)

    trip_city = np.full(n, -1, dtype=np.int64)
    trip_city[r_person] = r_city
    trip_city[visitors] = v_city
    trip_country = np.full(n, -1, dtype=np.int64)
    trip_country[abroad] = o_country
    hotel = np.full(n, -1, dtype=np.int64)
    room = np.full(n, -1, dtype=np.int64)
    host = np.full(n, -1, dtype=np.int64)
    n_hotels = places.hotel.shape[0]
    # Visitors home for the festival mostly stay with relatives (走亲戚), others in hotels.
    n_hh_all = pop.household_first.shape[0] - 1
    hosted = (uniform(rng, k_v) < np.where(festive, 0.85, 0.15)) & (n_hh_all > 0)
    host[visitors[hosted]] = integers(rng, 0, max(1, n_hh_all), int(hosted.sum()))
    guests = visitors[~hosted]
    hotel[guests] = integers(rng, 0, n_hotels, guests.shape[0])
    room[guests] = (
        (2 + integers(rng, 0, 17, guests.shape[0])) * 100
        + 1
        + integers(rng, 0, 30, guests.shape[0])
    )

    # Imported infections: travellers back from (or visiting from) places where the virus
    # circulates, more likely the later they come before the lockdown.
    growth = np.array([_growth(d) for d in dates])
    back_person = r_person[back_sel]
    back_city = r_city[back_sel]
    back_day = r_back[back_sel]
    imp_parts: list[tuple[I64, I64, I64]] = []
    for person, city, day, arrival, left in (
        (back_person, back_city, back_day, back_ts, away_from[back_person]),
        (visitors, v_city, v_day, v_arrive_ts, v_left_home),
    ):
        if person.shape[0] == 0:
            continue
        eff_day = np.minimum(day, np.maximum(lockdown_day[city], 0))
        p = np.minimum(0.5, listed_risk[city] * growth[np.clip(eff_day, 0, n_days - 1)])
        hit = uniform(rng, person.shape[0]) < p
        lo = np.maximum(left, arrival - 6 * DAY)
        when = lo + (
            uniform(rng, person.shape[0]) * np.maximum(arrival - 5 * HOUR - lo, HOUR)
        ).astype(np.int64)
        imp_parts.append((person[hit], when[hit], city[hit]))
    if imp_parts:
        import_person = np.concatenate([x[0] for x in imp_parts])
        import_time = np.concatenate([x[1] for x in imp_parts])
        import_city = np.concatenate([x[2] for x in imp_parts])
    else:
        import_person = import_time = import_city = np.zeros(0, dtype=np.int64)

    return TravelPlan(
        legs=legs,
        away_from=away_from,
        away_to=away_to,
        present_from=present_from,
        present_to=present_to,
        trip_city=trip_city.astype(np.int32),
        trip_country=trip_country.astype(np.int32),
        hotel=hotel.astype(np.int32),
        room=room.astype(np.int32),
        host=host.astype(np.int32),
        service_names=pa.array(service_names, pa.string()),
        import_person=import_person,
        import_time=import_time,
        import_city=import_city,
    )
