"""Daily movement (日常活动): where everyone is on one day, and what the agencies record of it.

For each day, in whole arrays: who is in the city and free to move (not away, not isolated, not
under home quarantine); workers at their enterprise, students in class and teachers at school
on school days, care homes; one or two venue visits (markets, supermarkets, malls, restaurants,
pharmacies) chosen with a popularity weight so busy places are busy; the way there (metro and
bus taps, own car across checkpoints, ride-hailing); nights at home or in a hotel; and the
phones' cell-tower dwells. Presence comes out as blocks, one per setting, which the outbreak
model joins for co-presence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from citybrain.simulate.model_data import HOME_CITY, cities
from citybrain.simulate.model_geo import Geo
from citybrain.simulate.model_places import Places, home_cell
from citybrain.simulate.model_travel import TravelPlan
from citybrain.simulate.model_util import (
    DAY,
    F32,
    F64,
    HOUR,
    I8,
    I32,
    I64,
    IDX,
    MINUTE,
    NEVER,
    STREAM_HABIT,
    B,
    DayContext,
    column,
    digits,
    fixed_strings,
    integers,
    rng_for,
    take,
    ts,
    uniform,
)
from citybrain.simulate.population import (
    OCC_CARE,
    OCC_CHILD,
    OCC_NONE,
    OCC_RETIRED,
    OCC_STUDENT,
    OCC_TEACHER,
    OCC_WORKER,
    Population,
)
from citybrain.simulate.schema import CELL, HOTEL, RIDES, TRANSIT, VEHICLE

# Anchors: where a person spends the working day.
A_NONE, A_ENTERPRISE, A_COLD, A_CLASS, A_SCHOOL, A_CARE_STAFF, A_CARE_RESIDENT = range(7)
# Venue kinds and how they draw visitors: weight, opening window (hours), dwell (minutes).
VENUE_KINDS = {
    "market": (3.0, (6.0, 11.0), (20, 60)),
    "supermarket": (4.0, (9.0, 21.0), (15, 60)),
    "mall": (1.5, (10.0, 20.5), (60, 120)),
    "restaurant": (2.0, (11.0, 20.0), (40, 90)),
    "pharmacy": (0.8, (8.0, 21.0), (10, 20)),
}
# During the first-level response restaurants and malls mostly closed (堂食暂停).
RESPONSE_FACTOR = {"restaurant": 0.15, "mall": 0.3}


@dataclass
class Block:
    """Presence rows of one setting: ``place`` indexes ``places``; ``group`` is the contact
    group (rows of one group that overlap in time are co-present), None where no contact
    is modelled; ``row`` the seat row for the ±2-rows rule of flights."""

    setting: str
    person: IDX
    start: I64
    end: I64
    places: pa.Array
    place: IDX
    group: IDX | None = None
    row: IDX | None = None


@dataclass
class Static:
    """Per-person arrays movement needs every day, computed once per city."""

    anchor: I8
    anchor_place: I32  # index into Places.ids (enterprise, cold store, school) or class number
    anchor_group: I32  # team, class or care unit
    anchor_street: I32
    home_street: I32
    home_place: I32  # household number, or hotel place index for visitors
    home_cell: I32  # cell number (residents: their compound's; visitors: their hotel's)
    anchor_cell: I32
    commute: I32  # seconds one way
    leave: I32  # usual time of leaving home, seconds after midnight
    back: I32  # usual end of the working day
    transit_user: F32  # chance of taking the metro or bus when a card holder goes out
    venue_rate: F32  # venue visits per day on an ordinary day
    hotel_place: I32  # visitors: place index of the hotel
    checkpoint_of_district: list[I64]
    venue_cum: tuple[F64, F64]  # per street cumulative venue weights (normal, response)
    venue_first: I64  # (streets + 1) offsets into venue_order
    venue_order: I64  # geo venue numbers sorted by street
    venue_dwell: tuple[I64, I64]  # per geo venue: dwell bounds in minutes
    venue_open: tuple[F64, F64]  # per geo venue: opening window in hours
    street_weight: F64  # where people go across the city (busy streets draw more)
    district_county: B
    street_district: I64
    hospital_place: I64  # per district: place index of its hospital
    clinic_place: I64  # per district: place index of its fever clinic
    street_lonlat: F64
    street_codes: pa.Array
    household_street: I32
    household_district_first: I64  # households are ordered by district: first of each
    venue_is_pharmacy: B
    ride_driver_list: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def km(self, a: IDX, b: IDX) -> F64:
        """Rough distance in kilometres between the centres of streets ``a`` and ``b``."""
        d = self.street_lonlat[a] - self.street_lonlat[b]
        return np.asarray(np.hypot(d[..., 0] * 91.5, d[..., 1] * 111.0), dtype=np.float64)


def build_static(geo: Geo, pop: Population, places: Places, plan: TravelPlan, seed: int) -> Static:
    """The per-person arrays for ``pop``."""
    rng = rng_for(seed, STREAM_HABIT)
    n = pop.n
    occ = pop.occupation
    # int32 and int8 throughout: at 12.6 million people each int64 array is 100 MB.
    anchor = np.full(n, A_NONE, dtype=np.int8)
    place = np.full(n, -1, dtype=np.int32)
    group = np.full(n, -1, dtype=np.int32)
    a_street = np.full(n, -1, dtype=np.int32)
    ent = pop.workplace.copy()
    team = pop.team.copy()
    # Half the visitors of working age come on business (出差): they spend their working days
    # with a team of a local enterprise (not on its roster).
    visiting = np.flatnonzero(
        (np.arange(n) >= pop.n_resident) & (occ == OCC_WORKER) & (uniform(rng, n) < 0.5)
    )
    staff = np.flatnonzero(ent >= 0)
    if staff.shape[0] and visiting.shape[0]:
        colleague = staff[integers(rng, 0, staff.shape[0], visiting.shape[0])]
        ent[visiting] = ent[colleague]
        team[visiting] = team[colleague]
    has_ent = ent >= 0
    cold_of_ent = np.full(max(1, pop.enterprise_cold.shape[0]), -1, dtype=np.int64)
    cold_of_ent[places.cold_store_enterprise] = np.arange(places.cold_store_enterprise.shape[0])
    is_cold = has_ent & (cold_of_ent[np.maximum(ent, 0)] >= 0)
    anchor[has_ent] = A_ENTERPRISE
    anchor[is_cold] = A_COLD
    place[has_ent] = places.enterprise[ent[has_ent]]
    place[is_cold] = places.cold_store[cold_of_ent[ent[is_cold]]]
    group[has_ent] = team[has_ent]
    a_street[has_ent] = pop.enterprise_street[ent[has_ent]]
    student = (occ == OCC_STUDENT) & (pop.school_class >= 0)
    teacher = occ == OCC_TEACHER
    homeroom = teacher & (pop.school_class >= 0)
    anchor[student | homeroom] = A_CLASS
    cls = pop.school_class
    place[student | homeroom] = cls[student | homeroom]
    group[student | homeroom] = cls[student | homeroom]
    other_teacher = teacher & ~homeroom
    anchor[other_teacher] = A_SCHOOL
    school = pop.school
    place[other_teacher] = places.venue[pop.school_venue[school[other_teacher]]]
    a_street[student | teacher] = pop.school_street[school[student | teacher]]
    care = pop.care_home
    staff = (care >= 0) & (occ != OCC_CARE)
    resident = occ == OCC_CARE
    anchor[staff] = A_CARE_STAFF
    anchor[resident] = A_CARE_RESIDENT
    place[staff | resident] = places.care_home[care[staff | resident]]
    group[staff | resident] = pop.care_unit[staff | resident]
    a_street[staff | resident] = pop.care_home_street[care[staff | resident]]

    visitor = np.arange(n) >= pop.n_resident
    guest = visitor & (plan.hotel >= 0)
    hosted = visitor & (plan.host >= 0)
    compound = np.where(hosted, pop.household_compound[np.maximum(plan.host, 0)], pop.compound)
    home_street = np.where(
        guest,
        places.hotel_street[np.maximum(plan.hotel, 0)],
        np.where(hosted, geo.compound_street[np.maximum(compound, 0)], pop.street),
    ).astype(np.int32)
    home_place = np.where(
        guest, places.hotel[np.maximum(plan.hotel, 0)], np.where(hosted, plan.host, pop.household)
    )
    cell_home = home_cell(
        places, np.where(guest, plan.hotel, compound).astype(np.int64), home_street
    )
    del compound
    entity = np.where(place >= 0, place, 0).astype(np.int64)
    cell_anchor = np.where(
        a_street >= 0, home_cell(places, entity, np.maximum(a_street, 0).astype(np.int32)), -1
    )
    del entity
    km = np.where(a_street >= 0, geo.street_km(home_street, np.maximum(a_street, 0)), 0.0)
    commute = ((8 + 2.2 * np.minimum(km, 40) + uniform(rng, n) * 10) * MINUTE).astype(np.int64)
    leave = (
        np.where(
            anchor != A_NONE,
            6.6 * HOUR + uniform(rng, n) * 1.6 * HOUR,
            8 * HOUR + uniform(rng, n) * 2 * HOUR,
        )
    ).astype(np.int64)
    back = (17 * HOUR + uniform(rng, n) * 2 * HOUR).astype(np.int64)
    urban = ~geo.district_county[geo.street_district[np.maximum(home_street, 0)]]
    transit_user = np.where(pop.has_card, np.where(urban, 0.55, 0.3) + 0.3 * uniform(rng, n), 0.0)
    rate = np.select(
        [occ == OCC_RETIRED, occ == OCC_NONE, occ == OCC_CHILD, occ == OCC_WORKER,
         occ == OCC_STUDENT, occ == OCC_TEACHER, occ == OCC_CARE],
        [0.55, 0.5, 0.12, 0.28, 0.15, 0.2, 0.0],
        default=0.2,
    )  # fmt: skip
    rate = np.where(visitor, 1.1, rate)

    # Venues per street, with a popularity weight (lognormal) so some are busy.
    venue_kind = geo.venue_subkind
    street = geo.venue_street.astype(np.int64)
    kinds = np.array([k in VENUE_KINDS for k in venue_kind]) & (street >= 0)
    order = np.flatnonzero(kinds)
    order = order[np.argsort(street[order], kind="stable")]
    popularity = np.exp(rng.normal(0.0, 0.8, len(venue_kind)))
    w_normal = (
        np.array([VENUE_KINDS.get(k, (0.0, (0, 0), (0, 0)))[0] for k in venue_kind]) * popularity
    )
    w_resp = w_normal * np.array([RESPONSE_FACTOR.get(k, 1.0) for k in venue_kind])
    n_streets = len(geo.street_codes)
    first = np.searchsorted(street[order], np.arange(n_streets + 1)).astype(np.int64)
    dwell_lo = np.array(
        [VENUE_KINDS.get(k, (0, (0, 0), (10, 20)))[2][0] for k in venue_kind], dtype=np.int64
    )
    dwell_hi = np.array(
        [VENUE_KINDS.get(k, (0, (0, 0), (10, 20)))[2][1] for k in venue_kind], dtype=np.int64
    )
    open_lo = np.array([VENUE_KINDS.get(k, (0, (8.0, 20.0), (0, 0)))[1][0] for k in venue_kind])
    open_hi = np.array([VENUE_KINDS.get(k, (0, (8.0, 20.0), (0, 0)))[1][1] for k in venue_kind])
    street_weight = np.bincount(street[order], weights=w_normal[order], minlength=n_streets).astype(
        np.float64
    )
    street_weight *= np.where(geo.street_urban, 3.0, 1.0)
    hh_street = geo.compound_street[pop.household_compound]
    checkpoint_of_district = [
        places.checkpoint[np.flatnonzero(geo.checkpoint_district == d)]
        for d in range(len(geo.district_codes))
    ]
    # Compact types: these arrays are per person and live for the whole run.
    return Static(
        anchor=anchor.astype(np.int8),
        anchor_place=place.astype(np.int32),
        anchor_group=group.astype(np.int32),
        anchor_street=a_street.astype(np.int32),
        home_street=home_street.astype(np.int32),
        home_place=home_place.astype(np.int32),
        home_cell=cell_home.astype(np.int32),
        anchor_cell=cell_anchor.astype(np.int32),
        commute=commute.astype(np.int32),
        leave=leave.astype(np.int32),
        back=back.astype(np.int32),
        transit_user=transit_user.astype(np.float32),
        venue_rate=rate.astype(np.float32),
        hotel_place=np.where(guest, places.hotel[np.maximum(plan.hotel, 0)], -1).astype(np.int32),
        checkpoint_of_district=checkpoint_of_district,
        venue_cum=(np.cumsum(w_normal[order]), np.cumsum(w_resp[order])),
        venue_first=first,
        venue_order=order,
        venue_dwell=(dwell_lo, dwell_hi),
        venue_open=(open_lo, open_hi),
        street_weight=street_weight,
        district_county=geo.district_county,
        street_district=geo.street_district.astype(np.int64),
        hospital_place=places.venue[np.maximum(np.array(geo.hospital, dtype=np.int64), 0)],
        clinic_place=places.venue[np.maximum(np.array(geo.fever_clinic, dtype=np.int64), 0)],
        street_lonlat=geo.street_lonlat,
        street_codes=pa.array(geo.street_codes, pa.string()),
        household_street=hh_street.astype(np.int32),
        household_district_first=np.searchsorted(
            geo.street_district[hh_street], np.arange(len(geo.district_codes) + 1)
        ).astype(np.int64),
        venue_is_pharmacy=np.array([k == "pharmacy" for k in venue_kind], dtype=bool),
        ride_driver_list=np.flatnonzero(pop.ride_driver),
    )


@dataclass
class DayMovement:
    """One day's movement: presence blocks and the agency tables built from them."""

    blocks: list[Block]
    cell: pa.Table
    transit: pa.Table
    vehicle: pa.Table
    rides: pa.Table
    hotel: pa.Table


def _pick_venues(static: Static, street: I64, response: bool, rng: np.random.Generator) -> I64:
    """A venue (geo venue number) in each given street, by popularity; -1 if it has none."""
    cum = static.venue_cum[1] if response else static.venue_cum[0]
    first = static.venue_first[street]
    last = static.venue_first[street + 1]
    base = np.where(first > 0, cum[np.maximum(first - 1, 0)], 0.0)
    top = np.where(last > 0, cum[np.maximum(last - 1, 0)], 0.0)
    u = base + uniform(rng, street.shape[0]) * (top - base)
    pos = np.searchsorted(cum, u, side="right")
    pos = np.minimum(np.maximum(pos, first), np.maximum(last - 1, 0))
    return np.where(
        last > first, static.venue_order[np.minimum(pos, static.venue_order.shape[0] - 1)], -1
    )


def _clip(start: I64, end: I64, a: I64, b: I64) -> tuple[I64, I64, B]:
    s = np.maximum(start, a)
    e = np.minimum(end, b)
    return s, e, e > s


def day_movement(
    static: Static,
    pop: Population,
    places: Places,
    plan: TravelPlan,
    ctx: DayContext,
    window: tuple[I64, I64],
    quarantined: B,
    iso_from: I64,
    rng: np.random.Generator,
) -> DayMovement:
    """Everyone's day ``ctx``. ``window`` is each person's time in the city today (a ≥ b: not
    here); ``quarantined`` persons stay home; from ``iso_from`` a person is in hospital."""
    n = pop.n
    t0 = ctx.start
    t1 = t0 + DAY
    a, b = window
    b = np.minimum(b, np.maximum(iso_from, a))
    here = b > a
    isolated = iso_from < t1
    free = here & ~quarantined & (b - a >= 2 * HOUR)
    occ = pop.occupation
    anchor = static.anchor

    # --- the working day ---------------------------------------------------------------
    u = uniform(rng, n)
    jitter = integers(rng, -15, 16, n) * MINUTE
    leave = t0 + static.leave + jitter
    works = free & (
        ((anchor == A_ENTERPRISE) | (anchor == A_COLD)) & (u < ctx.attendance)
        | (anchor == A_CARE_STAFF) & (u < 0.92)
        | ((anchor == A_CLASS) | (anchor == A_SCHOOL)) & ctx.school_open
    )
    arrive = leave + static.commute
    depart = t0 + static.back + integers(rng, -20, 31, n) * MINUTE
    school_day = (anchor == A_CLASS) | (anchor == A_SCHOOL)
    secondary = np.zeros(n, dtype=bool)
    secondary[occ == OCC_STUDENT] = pop.age[occ == OCC_STUDENT] >= 12
    arrive = np.where(school_day, t0 + 7 * HOUR + 40 * MINUTE + jitter // 3, arrive)
    depart = np.where(
        school_day,
        t0 + np.where(secondary, 17 * HOUR + 30 * MINUTE, 16 * HOUR + 30 * MINUTE),
        depart,
    )
    depart = np.where(anchor == A_CARE_STAFF, t0 + 18 * HOUR + jitter, depart)
    arrive, depart, ok = _clip(arrive, depart, a, b)
    works &= ok
    leave = np.where(works, arrive - static.commute, leave)
    back_home = np.where(works, depart + static.commute, NEVER)

    blocks: list[Block] = []
    ids = places.ids
    for kind, setting in (
        (A_ENTERPRISE, "workplace"),
        (A_COLD, "cold_store"),
        (A_CARE_STAFF, "care_home"),
    ):
        who = np.flatnonzero(works & (anchor == kind))
        blocks.append(
            Block(
                setting,
                who,
                arrive[who],
                depart[who],
                ids,
                static.anchor_place[who],
                static.anchor_group[who],
            )
        )
    who = np.flatnonzero(works & (anchor == A_CLASS))
    blocks.append(
        Block(
            "class",
            who,
            arrive[who],
            depart[who],
            pop.class_place,
            static.anchor_place[who],
            static.anchor_group[who],
        )
    )
    who = np.flatnonzero(works & (anchor == A_SCHOOL))
    blocks.append(Block("school", who, arrive[who], depart[who], ids, static.anchor_place[who]))
    care_res = np.flatnonzero(here & (anchor == A_CARE_RESIDENT))
    blocks.append(
        Block(
            "care_home",
            care_res,
            a[care_res],
            b[care_res],
            ids,
            static.anchor_place[care_res],
            static.anchor_group[care_res],
        )
    )

    # --- family visits (走亲戚): a household spends some hours at relatives' ----------------
    n_hh = static.household_street.shape[0]
    hh = pop.household.astype(np.int64)
    visit_hh = uniform(rng, n_hh) < ctx.family_visits
    hh_district = static.street_district[static.household_street]
    d_first = static.household_district_first[hh_district]
    d_count = static.household_district_first[hh_district + 1] - d_first
    host_hh = d_first + (uniform(rng, n_hh) * d_count).astype(np.int64)
    eve = ctx.family_visits >= 0.3
    v_begin = t0 + np.where(eve, 17 * HOUR, 10 * HOUR) + integers(rng, 0, 240, n_hh) * MINUTE
    v_finish = v_begin + integers(rng, 180, 300, n_hh) * MINUTE
    visiting = (
        free & (hh >= 0) & ~works & (anchor != A_CARE_RESIDENT)
        & visit_hh[np.maximum(hh, 0)] & (host_hh[np.maximum(hh, 0)] != hh)
    )  # fmt: skip
    fv = np.flatnonzero(visiting)
    fv_hh = hh[fv]
    fv_start, fv_end, fv_ok = _clip(v_begin[fv_hh], v_finish[fv_hh], a[fv], b[fv])
    fv, fv_hh, fv_start, fv_end = fv[fv_ok], fv_hh[fv_ok], fv_start[fv_ok], fv_end[fv_ok]
    visiting[:] = False
    visiting[fv] = True
    fv_host = host_hh[fv_hh]
    fv_street = static.household_street[fv_host].astype(np.int64)

    # --- venues ------------------------------------------------------------------------
    rate = static.venue_rate * ctx.venue_factor
    k = np.minimum(
        rng.poisson(np.where(free & (anchor != A_CARE_RESIDENT) & ~visiting, rate, 0.0)), 2
    )
    goers = np.flatnonzero(k > 0)
    visitor = np.arange(n) >= pop.n_resident
    r = uniform(rng, goers.shape[0])
    home_st = static.home_street[goers]
    anchor_st = np.where(works[goers], static.anchor_street[goers], home_st)
    far = np.minimum(
        np.searchsorted(
            np.cumsum(static.street_weight),
            uniform(rng, goers.shape[0]) * static.street_weight.sum(),
        ),
        static.street_weight.shape[0] - 1,
    )
    # On days off people go further: to the malls and markets across the city.
    near = 0.7 if ctx.workday else 0.5
    street = np.where(r < near, home_st, np.where(r < near + 0.15, anchor_st, far))
    street = np.where(visitor[goers] & (r >= 0.5), far, street)
    v1 = _pick_venues(static, street, ctx.response, rng)
    v2 = _pick_venues(static, street, ctx.response, rng)
    has2 = k[goers] >= 2
    ok1 = v1 >= 0
    goers, street, v1, v2, has2 = goers[ok1], street[ok1], v1[ok1], v2[ok1], has2[ok1]
    home_st = static.home_street[goers]
    lo, hi = static.venue_open
    open_start = t0 + (
        (lo[v1] + uniform(rng, goers.shape[0]) * (hi[v1] - lo[v1] - 0.5)) * HOUR
    ).astype(np.int64)
    travel = ((10 + 2.0 * np.minimum(static.km(home_st, street), 30)) * MINUTE).astype(np.int64)
    # Commuters shop on the way home.
    after_work = works[goers]
    s1 = np.where(after_work, depart[goers] + travel // 2, open_start)
    d_lo, d_hi = static.venue_dwell
    e1 = (
        s1
        + (d_lo[v1] + uniform(rng, goers.shape[0]) * (d_hi[v1] - d_lo[v1])).astype(np.int64)
        * MINUTE
    )
    s2 = e1 + 10 * MINUTE
    e2 = (
        s2
        + (
            d_lo[np.maximum(v2, 0)]
            + uniform(rng, goers.shape[0]) * (d_hi[np.maximum(v2, 0)] - d_lo[np.maximum(v2, 0)])
        ).astype(np.int64)
        * MINUTE
    )
    has2 &= v2 >= 0
    ga, gb = a[goers], b[goers]
    s1, e1, ok1 = _clip(s1, e1, ga, gb)
    s2, e2, ok2 = _clip(s2, e2, ga, gb)
    ok2 &= has2
    last_end = np.where(ok2, e2, np.where(ok1, e1, 0))
    first_start = np.where(ok1, s1, np.where(ok2, s2, NEVER))
    went = ok1 | ok2
    g_out = goers[went]
    leave = leave.copy()
    # Non-commuters leave home for the shops; everyone comes home after the last one.
    leave[g_out] = np.where(works[g_out], leave[g_out], first_start[went] - travel[went])
    back_home[g_out] = last_end[went] + travel[went]
    went_out = works.copy()
    went_out[g_out] = True
    fv_travel = (
        (10 + 2.0 * np.minimum(static.km(static.home_street[fv], fv_street), 30)) * MINUTE
    ).astype(np.int64)
    leave[fv] = fv_start - fv_travel
    back_home[fv] = fv_end + fv_travel
    went_out[fv] = True
    blocks.append(Block("household", fv, fv_start, fv_end, pop.household_place, fv_host, fv_host))
    venue_person = np.concatenate([goers[ok1], goers[ok2]])
    venue_no = np.concatenate([v1[ok1], v2[ok2]])
    venue_start = np.concatenate([s1[ok1], s2[ok2]])
    venue_end = np.concatenate([e1[ok1], e2[ok2]])
    v_place = places.venue[venue_no]
    pharmacy = static.venue_is_pharmacy[venue_no]
    for setting, sel in (("venue", ~pharmacy), ("pharmacy", pharmacy)):
        blocks.append(
            Block(
                setting,
                venue_person[sel],
                venue_start[sel],
                venue_end[sel],
                ids,
                v_place[sel],
                v_place[sel],
            )
        )

    # --- home and hotel ------------------------------------------------------------------
    at_home = here & (anchor != A_CARE_RESIDENT)
    leave = np.where(went_out, np.maximum(leave, a), b)
    back_home = np.where(went_out, np.minimum(np.maximum(back_home, leave), b), b)
    # Residents spending a night in a hotel (出差, a night out): a few a day.
    res_hotel = np.flatnonzero(
        free & ~visitor & (pop.age >= 20) & (uniform(rng, n) < 0.0004) & (b >= t1 - HOUR)
    )
    checkin = t0 + 21 * HOUR + integers(rng, 0, 120, res_hotel.shape[0]) * MINUTE
    res_hotel_no = integers(rng, 0, places.hotel.shape[0], res_hotel.shape[0])
    evening_end = b.copy()
    evening_end[res_hotel] = np.maximum(checkin, back_home[res_hotel])
    morning = np.flatnonzero(at_home & went_out & (leave > a))
    evening = np.flatnonzero(at_home & went_out & (evening_end > back_home))
    stay = np.flatnonzero(at_home & ~went_out & (b > a))
    stay = stay[~np.isin(stay, res_hotel)]
    seg_person = np.concatenate([morning, evening, stay])
    seg_start = np.concatenate([a[morning], back_home[evening], a[stay]])
    seg_end = np.concatenate([leave[morning], evening_end[evening], evening_end[stay]])
    seg_ok = seg_end > seg_start
    seg_person, seg_start, seg_end = seg_person[seg_ok], seg_start[seg_ok], seg_end[seg_ok]
    is_vis = static.hotel_place[seg_person] >= 0
    res_rows = ~is_vis
    blocks.append(
        Block(
            "household",
            seg_person[res_rows],
            seg_start[res_rows],
            seg_end[res_rows],
            pop.household_place,
            static.home_place[seg_person[res_rows]],
            static.home_place[seg_person[res_rows]].astype(np.int64),
        )
    )
    hotel_person = np.concatenate([seg_person[is_vis], res_hotel])
    hotel_start = np.concatenate([seg_start[is_vis], np.maximum(checkin, back_home[res_hotel])])
    hotel_end = np.concatenate([seg_end[is_vis], b[res_hotel]])
    hotel_place = np.concatenate(
        [static.home_place[seg_person[is_vis]], places.hotel[res_hotel_no]]
    )
    keep = hotel_end > hotel_start
    blocks.append(
        Block(
            "hotel", hotel_person[keep], hotel_start[keep], hotel_end[keep], ids, hotel_place[keep]
        )
    )

    # Hospital: the isolated, from their isolation.
    in_hosp = np.flatnonzero(isolated & (iso_from < t1))
    h_start = np.maximum(iso_from[in_hosp], t0)
    h_district = np.where(
        pop.district[in_hosp] >= 0,
        pop.district[in_hosp],
        static.street_district[np.maximum(static.home_street[in_hosp], 0)],
    ).astype(np.int64)
    h_place = static.hospital_place[h_district]
    blocks.append(Block("hospital", in_hosp, h_start, np.full(in_hosp.shape[0], t1), ids, h_place))

    # --- trips across the city: transit, own car, ride-hailing --------------------------
    commuter = works & (static.anchor_street >= 0) & (static.anchor_street != static.home_street)
    c_idx = np.flatnonzero(commuter)
    venue_trip = went & ~works[goers] & (street != home_st)
    fv_far = fv_street != static.home_street[fv]
    v_idx = np.concatenate([goers[venue_trip], fv[fv_far]])
    v_dest = np.concatenate([street[venue_trip], fv_street[fv_far]])
    v_back = np.concatenate([last_end[venue_trip], fv_end[fv_far]])
    trip_person = np.concatenate([c_idx, c_idx, v_idx, v_idx])
    trip_from = np.concatenate(
        [
            static.home_street[c_idx],
            static.anchor_street[c_idx],
            static.home_street[v_idx],
            v_dest,
        ]
    )
    trip_to = np.concatenate(
        [
            static.anchor_street[c_idx],
            static.home_street[c_idx],
            v_dest,
            static.home_street[v_idx],
        ]
    )
    trip_time = np.concatenate([leave[c_idx], depart[c_idx], leave[v_idx], v_back])
    trip_commute = np.concatenate(
        [np.ones(2 * c_idx.shape[0], bool), np.zeros(2 * v_idx.shape[0], bool)]
    )
    # Mode per person and day: transit, car, ride or on foot/bike.
    m = uniform(rng, n)
    by_transit = pop.has_card & (m < static.transit_user * ctx.transit_factor)
    by_car = ~by_transit & pop.has_plate & ~visitor & (uniform(rng, n) < 0.8)
    tp = trip_person
    # Taxis and ride-hailing: some commuters, more of the shoppers and most visitors.
    ride_p = np.where(visitor[tp], 0.55, np.where(trip_commute, 0.12, 0.35)) * ctx.ride_factor
    by_ride_trip = ~by_transit[tp] & ~by_car[tp] & (uniform(rng, tp.shape[0]) < ride_p)
    transit_rows = _transit(
        static,
        places,
        pop,
        tp[by_transit[tp]],
        trip_from[by_transit[tp]],
        trip_to[by_transit[tp]],
        trip_time[by_transit[tp]],
        rng,
    )
    car = by_car[tp]
    vehicle_rows = _checkpoints(
        static, pop, places, tp[car], trip_from[car], trip_to[car], trip_time[car], rng
    )
    ride_sel = by_ride_trip
    rides = _rides(
        static,
        pop,
        ctx,
        free,
        tp[ride_sel],
        trip_from[ride_sel],
        trip_to[ride_sel],
        trip_time[ride_sel],
        rng,
    )

    # --- cells ---------------------------------------------------------------------------
    # The operators' day files hold each phone's dwells (驻留) of the day, cut at midnight: at
    # home, at work or school, in another street's cell where a trip went; in hospital.
    phone = pop.phone_owner & here
    out_there = np.zeros(n, dtype=bool)
    there_cell = np.full(n, -1, dtype=np.int64)
    there_from = np.zeros(n, dtype=np.int64)
    there_to = np.zeros(n, dtype=np.int64)
    w = np.flatnonzero(works)
    out_there[w] = True
    there_cell[w] = static.anchor_cell[w]
    there_from[w] = arrive[w]
    there_to[w] = depart[w]
    trip_out = np.flatnonzero(went & ~works[goers] & (street != home_st))
    tp_ = goers[trip_out]
    out_there[tp_] = True
    there_cell[tp_] = home_cell(places, tp_, street[trip_out].astype(np.int32))
    there_from[tp_] = first_start[trip_out]
    there_to[tp_] = last_end[trip_out]
    out_there[fv] = True
    there_cell[fv] = home_cell(places, fv_host, fv_street.astype(np.int32))
    there_from[fv] = fv_start
    there_to[fv] = fv_end
    # A long visit (half an hour or more) to a venue of the home street is a dwell of its own.
    long1 = ok1 & (e1 - s1 >= 30 * MINUTE)
    venue_cell = home_cell(places, places.venue[v1], street.astype(np.int32))
    own = long1 & ~works[goers] & (street == home_st)
    tp2 = goers[own]
    out_there[tp2] = True
    there_cell[tp2] = venue_cell[own]
    there_from[tp2] = s1[own]
    there_to[tp2] = e1[own]
    after = np.flatnonzero(long1 & works[goers] & phone[goers])
    mv = np.flatnonzero(phone & out_there & (there_cell >= 0))
    st = np.flatnonzero(phone & ~(out_there & (there_cell >= 0)))
    c_person = np.concatenate([mv, mv, mv, st])
    c_cell = np.concatenate(
        [static.home_cell[mv], there_cell[mv], static.home_cell[mv], static.home_cell[st]]
    )
    c_start = np.concatenate([a[mv], there_from[mv], back_home[mv], a[st]])
    c_end = np.concatenate([leave[mv], there_to[mv], b[mv], b[st]])
    c_person = np.concatenate([c_person, goers[after]])
    c_cell = np.concatenate([c_cell, venue_cell[after]])
    c_start = np.concatenate([c_start, s1[after]])
    c_end = np.concatenate([c_end, e1[after]])
    # Phones in hospital.
    hosp_phone = in_hosp[pop.phone_owner[in_hosp]]
    hosp_street = np.where(
        pop.street[hosp_phone] >= 0, pop.street[hosp_phone], static.home_street[hosp_phone]
    )
    c_person = np.concatenate([c_person, hosp_phone])
    c_cell = np.concatenate(
        [
            c_cell,
            home_cell(
                places,
                h_place[pop.phone_owner[in_hosp]],
                np.maximum(hosp_street, 0).astype(np.int32),
            ),
        ]
    )
    c_start = np.concatenate([c_start, np.maximum(iso_from[hosp_phone], t0)])
    c_end = np.concatenate([c_end, np.full(hosp_phone.shape[0], t1)])
    good = c_end - c_start >= 10 * MINUTE
    c_person, c_cell, c_start, c_end = c_person[good], c_cell[good], c_start[good], c_end[good]
    # Second phones go where their owners go.
    two = pop.has_phone2[c_person]
    phones = column(pop.persons, "phone")
    phones2 = column(pop.persons, "phone2")
    cell_ids = ids.take(pa.array(places.cell[np.concatenate([c_cell, c_cell[two]])]))
    cell = pa.table(
        {
            "person": pa.array(np.concatenate([c_person, c_person[two]]).astype(np.int32)),
            "phone": pa.concat_arrays([take(phones, c_person), take(phones2, c_person[two])]),
            "cell": cell_ids,
            "start": ts(np.concatenate([c_start, c_start[two]])),
            "end": ts(np.concatenate([c_end, c_end[two]])),
        },
        schema=CELL,
    )

    # --- hotels: check-ins today ------------------------------------------------------------
    arriving = np.flatnonzero(
        visitor & (plan.present_from >= t0) & (plan.present_from < t1) & (plan.hotel >= 0)
    )
    v_in = plan.present_from[arriving] + (40 + integers(rng, 0, 50, arriving.shape[0])) * MINUTE
    v_out = np.maximum(plan.present_to[arriving] - 2 * HOUR, v_in + HOUR)
    rooms = np.concatenate(
        [
            plan.room[arriving],
            (2 + integers(rng, 0, 17, res_hotel.shape[0])) * 100
            + 1
            + integers(rng, 0, 30, res_hotel.shape[0]),
        ]
    )
    city_names = pa.array([HOME_CITY, *cities().name])
    hotel = pa.table(
        {
            "person": pa.array(np.concatenate([arriving, res_hotel]).astype(np.int32)),
            "hotel": ids.take(
                pa.array(np.concatenate([static.hotel_place[arriving], places.hotel[res_hotel_no]]))
            ),
            "room": fixed_strings(digits(rooms, 4)),
            "checkin": ts(np.concatenate([v_in, np.maximum(checkin, back_home[res_hotel])])),
            "checkout": ts(
                np.concatenate([v_out, t1 + (8 + integers(rng, 0, 4, res_hotel.shape[0])) * HOUR])
            ),
            "from_city": take(
                city_names,
                np.concatenate(
                    [
                        pop.home_city[arriving].astype(np.int64) + 1,
                        np.zeros(res_hotel.shape[0], np.int64),
                    ]
                ),
            ),
        },
        schema=HOTEL,
    )
    return DayMovement(
        blocks=blocks,
        cell=cell,
        transit=transit_rows,
        vehicle=vehicle_rows,
        rides=rides,
        hotel=hotel,
    )


def _transit(
    static: Static,
    places: Places,
    pop: Population,
    person: I64,
    origin: I64,
    destination: I64,
    when: I64,
    rng: np.random.Generator,
) -> pa.Table:
    """Card taps for trips: metro in and out where both streets have a station, else one tap
    boarding the bus (flat fare, no tap out)."""
    k = person.shape[0]
    m_o = places.street_metro[origin]
    m_d = places.street_metro[destination]
    metro = (m_o >= 0) & (m_d >= 0) & (m_o != m_d)
    stop = places.street_bus[origin]
    bus = ~metro & (stop >= 0)
    t_in = when + integers(rng, 3, 11, k) * MINUTE
    ride = ((6 + 2.2 * np.minimum(static.km(origin, destination), 40)) * MINUTE).astype(np.int64)
    mi = np.flatnonzero(metro)
    bi = np.flatnonzero(bus)
    line = np.concatenate(
        [places.metro_line[m_o[mi]], places.metro_line[m_d[mi]], places.bus_line[stop[bi]]]
    ).astype(np.int64)
    names = pa.concat_arrays(
        [
            places.metro_names.take(pa.array(m_o[mi])),
            places.metro_names.take(pa.array(m_d[mi])),
            places.bus_names.take(pa.array(stop[bi])),
        ]
    )
    who = np.concatenate([person[mi], person[mi], person[bi]])
    when_all = np.concatenate([t_in[mi], t_in[mi] + ride[mi], t_in[bi]])
    tap = np.concatenate(
        [
            np.zeros(mi.shape[0], np.int64),
            np.ones(mi.shape[0], np.int64),
            np.zeros(bi.shape[0], np.int64),
        ]
    )
    cards = column(pop.persons, "transit_card")
    return pa.table(
        {
            "person": pa.array(who.astype(np.int32)),
            "card": take(cards, who),
            "line": take(places.line_names, line),
            "station": names,
            "ts": ts(when_all),
            "tap": take(pa.array(["in", "out"]), tap),
        },
        schema=TRANSIT,
    )


def _checkpoints(
    static: Static,
    pop: Population,
    places: Places,
    person: I64,
    origin: I64,
    destination: I64,
    when: I64,
    rng: np.random.Generator,
) -> pa.Table:
    """Checkpoint crossings of car trips between a county (县, 县级市) and the rest of the city:
    进城 (in) towards the centre, 出城 (out) away from it."""
    fd = static.street_district[origin]
    td = static.street_district[destination]
    county = static.district_county
    cross = (fd != td) & (county[fd] | county[td])
    side = np.where(county[fd], fd, td)
    counts = np.array([c.shape[0] for c in static.checkpoint_of_district], dtype=np.int64)
    width = max(1, int(counts.max()) if counts.shape[0] else 1)
    table = np.full((counts.shape[0], width), -1, dtype=np.int64)
    for d, members in enumerate(static.checkpoint_of_district):
        table[d, : members.shape[0]] = members
    cross &= counts[side] > 0
    sel = np.flatnonzero(cross)
    cp = table[side[sel], person[sel] % np.maximum(counts[side[sel]], 1)]
    inbound = county[fd[sel]] & ~county[td[sel]]
    t = when[sel] + integers(rng, 12, 40, sel.shape[0]) * MINUTE
    return vehicle_table(pop, places.ids, person[sel], cp, t, inbound, None, None)


def vehicle_table(
    pop: Population,
    place_ids: pa.Array,
    person: I64,
    checkpoint: I64,
    when: I64,
    inbound: B,
    toll: pa.Array | None,
    toll_ts: I64 | None,
) -> pa.Table:
    """VEHICLE rows; ``checkpoint`` are place indexes into ``place_ids``."""
    k = person.shape[0]
    plates = column(pop.persons, "plate")
    ids = place_ids
    return pa.table(
        {
            "person": pa.array(person.astype(np.int32)),
            "plate": take(plates, person),
            "checkpoint": ids.take(pa.array(checkpoint)),
            "ts": ts(when),
            "direction": take(pa.array(["out", "in"]), inbound.astype(np.int64)),
            "toll_entry": toll if toll is not None else pa.nulls(k, pa.string()),
            "toll_entry_ts": ts(toll_ts) if toll_ts is not None else pa.nulls(k, pa.timestamp("s")),
        },
        schema=VEHICLE,
    )


def _rides(
    static: Static,
    pop: Population,
    ctx: DayContext,
    free: B,
    person: I64,
    origin: I64,
    destination: I64,
    when: I64,
    rng: np.random.Generator,
) -> pa.Table:
    """Ride-hailing (网约车) and taxi orders: a platform driver who is free today, or a taxi."""
    k = person.shape[0]
    drivers = static.ride_driver_list
    available = drivers[free[drivers]] if drivers.shape[0] else drivers
    taxi = uniform(rng, k) < 0.4
    if available.shape[0] == 0:
        taxi[:] = True
    driver = np.where(
        taxi,
        -1,
        available[integers(rng, 0, max(1, available.shape[0]), k) % max(1, available.shape[0])]
        if available.shape[0]
        else -1,
    )
    driver = np.where(driver == person, -1, driver)
    taxi = driver < 0
    plates = column(pop.persons, "plate")
    taxi_plate = pop.taxi_plates.take(pa.array(integers(rng, 0, len(pop.taxi_plates), k)))
    plate = pa.compute.if_else(pa.array(taxi), taxi_plate, take(plates, np.maximum(driver, 0)))
    start = when + integers(rng, 2, 11, k) * MINUTE
    end = start + ((8 + 2.5 * np.minimum(static.km(origin, destination), 40)) * MINUTE).astype(
        np.int64
    )
    ymd = int(ctx.date.strftime("%Y%m%d"))
    order_no = fixed_strings(
        np.hstack(
            [
                np.broadcast_to(np.frombuffer(b"DD", np.uint8), (k, 2)),
                digits(np.full(k, ymd), 8),
                digits(np.arange(k), 8),
            ]
        )
    )
    phones = column(pop.persons, "phone")
    return pa.table(
        {
            "order_id": order_no,
            "person": pa.array(person.astype(np.int32)),
            "phone": take(phones, person),
            "driver": pa.array(driver.astype(np.int32)),
            "plate": plate,
            "start": ts(start),
            "end": ts(end),
            "from_street": take(static.street_codes, origin),
            "to_street": take(static.street_codes, destination),
        },
        schema=RIDES,
    )
