"""The outbreak: an agent-based SEIR model (易感-潜伏-感染-移出) on the day's co-presence, and the
health system's view of it.

Infection passes only in real contact settings: the household (highest), the workplace team,
the class, the care-home unit, the same train carriage, flight rows within two of each other,
the same coach, and venue visits overlapping at least 15 minutes; never through a cell tower.
Each exposure of a susceptible person to an infectious one infects with probability
``1 - exp(-beta * infectiousness * hours)``.

A case's course is drawn when infected: latent 2–6 days, infectious from about 2 days before
symptom onset, ~30% never have symptoms. The health system sees it through pharmacy purchases,
fever clinic visits, tests (at the clinic, for traced contacts, for arrivals from risk areas and
in mass testing of compounds and districts after cases appear), confirmations with case
numbers, asymptomatic detections, hospital admissions and discharges, plus contacts pushed by
other cities (协查), hotline tip-offs (12345) and cold-chain tracing. Detection isolates the case
(no more movement) and quarantines the household and traced contacts at home, which bends the
curve.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from citybrain.simulate.model_data import (
    COLD_GOODS,
    DRUGS,
    HOME_CITY,
    VACCINES,
    cities,
    listed_cities_on,
)
from citybrain.simulate.model_util import (
    DAY,
    F32,
    HOUR,
    I32,
    I64,
    IDX,
    MINUTE,
    NEVER,
    TESTING_FROM,
    B,
    DayContext,
    day_seconds,
    digits,
    expand_ranges,
    fixed_strings,
    integers,
    join,
    take,
    ts,
    uniform,
)
from citybrain.simulate.movement import Block
from citybrain.simulate.schema import EXPOSURES, HEALTH, INFECTIONS

# Transmission per hour of contact with a fully infectious person.
BETA = {
    "household": 0.012,
    "workplace": 0.003,
    "cold_store": 0.003,
    "class": 0.002,
    "care_home": 0.004,
    "venue": 0.005,
    "pharmacy": 0.005,
    "train": 0.002,
    "flight": 0.012,
    "coach": 0.003,
}
MIN_OVERLAP = {"venue": 15 * MINUTE, "pharmacy": 15 * MINUTE}
# Chance the epidemiological investigation (流调) finds a contact of a detected case.
TRACE = {
    "workplace": 0.8,
    "cold_store": 0.9,
    "class": 0.9,
    "care_home": 0.9,
    "train": 0.7,
    "flight": 0.8,
    "coach": 0.6,
    "venue": 0.1,
    "pharmacy": 0.05,
}
SETTINGS = tuple(BETA)
ASYMPTOMATIC_WEIGHT = 0.6
QUARANTINE = 14 * DAY
HISTORY_DAYS = 4
SENSITIVITY = 0.9
DISTRICT_THRESHOLDS = (2, 6, 20)  # detections in a district that start a district-wide round
ARRIVAL_TESTS_FROM = dt.date(2020, 1, 28)  # arrivals under observation tested from then on
COOP_FROM = dt.date(2020, 1, 22)  # other cities push contact lists from then on
CITY_THRESHOLD = 8  # detections in the city that start city-wide rounds (全员核酸), weekly


@dataclass
class Health:
    """Health events of a day, gathered as Arrow pieces."""

    parts: list[pa.Table] = field(default_factory=list)

    def add(
        self,
        person: I64,
        event: str,
        when: I64,
        place: pa.Array | None = None,
        result: pa.Array | str | None = None,
        detail: pa.Array | str | None = None,
    ) -> None:
        """Append rows of one event kind."""
        k = person.shape[0]
        if k == 0:
            return

        def column(value: pa.Array | str | None) -> pa.Array:
            if value is None:
                return pa.nulls(k, pa.string())
            if isinstance(value, str):
                return pa.array([value] * k, pa.string())
            return value

        self.parts.append(
            pa.table(
                {
                    "person": pa.array(person.astype(np.int32)),
                    "event": pa.array([event] * k, pa.string()),
                    "ts": ts(when),
                    "place": column(place),
                    "result": column(result),
                    "detail": column(detail),
                },
                schema=HEALTH,
            )
        )

    def table(self) -> pa.Table:
        """All rows, in the order added."""
        if not self.parts:
            return HEALTH.empty_table()
        return pa.concat_tables(self.parts)


@dataclass
class CityView:
    """What the outbreak needs to know about the city (filled by ``model``)."""

    n: int
    n_resident: int
    age: IDX
    household: IDX
    household_first: I64
    compound: IDX  # per person, -1 for visitors
    compound_first: I64  # per geo compound: first resident
    compound_community: I64  # per geo compound: community number
    used_compounds: I64
    district: IDX  # per person (visitors: their hotel's)
    compound_district: I64  # per geo compound
    test_site: I64  # per geo compound: place index
    hospital_place: I64  # per district
    clinic_place: I64  # per district
    pharmacy_of_street: list[I64]
    home_street: IDX
    place_ids: pa.Array
    cold_handlers: I64
    cold_store_of: IDX  # per person: cold store place index, -1
    trip_city: IDX
    arrival_ts: I64  # per person: arrival in the city during the run (NEVER)
    start: int  # seconds of the first day
    days: int
    import_person: I64
    import_time: I64
    import_city: I64


@dataclass
class OutbreakState:
    """Everyone's course and the health system's state; changed day by day."""

    inf_time: I64
    infector: I64
    inf_start: I64
    inf_end: I64
    onset: I64
    weight: F32
    clinic_time: I64
    pharmacy_time: I64
    detected: I64  # time of detection (NEVER: not detected)
    confirm_due: I64  # asymptomatic at detection, confirmed when symptoms come
    iso_from: I64
    discharge: I64
    quarantine_from: I64
    quarantine_to: I64
    test_day: I32
    tipoff_day: I32
    observe_day: I32
    coop_day: I32
    coop_secondary: B
    import_day: I32  # run day an imported infection arrives (-1)
    round_day: I64  # per geo compound: next mass-testing round
    round_day2: I64
    district_detected: I64
    cases: int = 0
    detections: int = 0
    last_detection_day: int = -1
    next_city_round: int = 0
    history: list[tuple[I64, I64, I64, int]] = field(default_factory=list)


def _natural_history(
    state: OutbreakState, person: I64, when: I64, age: I64, rng: np.random.Generator
) -> None:
    """Draw the course of infections of ``person`` at ``when``."""
    k = person.shape[0]
    latent = ((2.0 + 4.0 * uniform(rng, k)) * DAY).astype(np.int64)
    p_symptoms = np.where(age < 15, 0.5, np.where(age >= 65, 0.85, 0.7))
    symptomatic = uniform(rng, k) < p_symptoms
    inf_start = when + latent
    onset = inf_start + ((1.5 + uniform(rng, k)) * DAY).astype(np.int64)
    inf_end = np.where(symptomatic, onset, inf_start) + (
        (5.0 + 4.0 * uniform(rng, k)) * DAY
    ).astype(np.int64)
    state.inf_time[person] = when
    state.inf_start[person] = inf_start
    state.inf_end[person] = inf_end
    state.onset[person] = np.where(symptomatic, onset, NEVER)
    state.weight[person] = np.where(symptomatic, 1.0, ASYMPTOMATIC_WEIGHT)
    # Before the news of 20 January people waited longer before seeing a doctor.
    aware = day_seconds(TESTING_FROM)
    mean_delay = np.where(onset < aware, 5.0, 2.5)
    delay = np.maximum(0.2, rng.exponential(1.0, k) * mean_delay)
    goes = symptomatic & (uniform(rng, k) < np.where(age >= 65, 0.95, 0.85))
    state.clinic_time[person] = np.where(goes, onset + (delay * DAY).astype(np.int64), NEVER)
    buys = symptomatic & (uniform(rng, k) < 0.5)
    state.pharmacy_time[person] = np.where(
        buys, onset + ((0.1 + 0.8 * uniform(rng, k)) * DAY).astype(np.int64), NEVER
    )


def init_state(
    view: CityView,
    legs_day: I64,
    legs_person: I64,
    legs_inbound: B,
    legs_city: I64,
    rng: np.random.Generator,
) -> OutbreakState:
    """A fresh state: nobody infected yet, imports and travel-related events scheduled."""
    n = view.n
    n_compounds = view.compound_first.shape[0] - 1
    never = np.full(n, NEVER, dtype=np.int64)
    state = OutbreakState(
        inf_time=never.copy(),
        infector=np.full(n, -1, dtype=np.int64),
        inf_start=never.copy(),
        inf_end=never.copy(),
        onset=never.copy(),
        weight=np.zeros(n, dtype=np.float32),
        clinic_time=never.copy(),
        pharmacy_time=never.copy(),
        detected=never.copy(),
        confirm_due=never.copy(),
        iso_from=never.copy(),
        discharge=never.copy(),
        quarantine_from=never.copy(),
        quarantine_to=np.full(n, -NEVER, dtype=np.int64),
        test_day=np.full(n, -1, dtype=np.int32),
        tipoff_day=np.full(n, -1, dtype=np.int32),
        observe_day=np.full(n, -1, dtype=np.int32),
        coop_day=np.full(n, -1, dtype=np.int32),
        coop_secondary=np.zeros(n, dtype=bool),
        import_day=np.full(n, -1, dtype=np.int32),
        round_day=np.full(n_compounds, -1, dtype=np.int64),
        round_day2=np.full(n_compounds, -1, dtype=np.int64),
        district_detected=np.zeros(int(view.hospital_place.shape[0]), dtype=np.int64),
    )
    imp = view.import_person
    if imp.shape[0]:
        _natural_history(state, imp, view.import_time, view.age[imp], rng)
        state.import_day[imp] = (view.arrival_ts[imp] - view.start) // DAY
        # Nobody sees a doctor in Zhengzhou before arriving.
        arrive = view.arrival_ts[imp]
        state.clinic_time[imp] = np.where(
            state.clinic_time[imp] < NEVER,
            np.maximum(state.clinic_time[imp], arrive + 2 * HOUR),
            NEVER,
        )
        state.pharmacy_time[imp] = np.where(
            state.pharmacy_time[imp] < NEVER,
            np.maximum(state.pharmacy_time[imp], arrive + HOUR),
            NEVER,
        )
    # Arrivals from risk areas: tested the next day, contacts pushed by other cities, tip-offs.
    cty = cities()
    arrivals = np.flatnonzero(legs_inbound & (legs_city >= 0))
    a_person = legs_person[arrivals]
    a_day = legs_day[arrivals]
    a_city = legs_city[arrivals]
    start_date = dt.date(1970, 1, 1) + dt.timedelta(seconds=view.start)
    listed = np.array(
        [listed_cities_on(start_date + dt.timedelta(days=d)) for d in range(view.days)]
    ).reshape(view.days, len(cty.name))
    on_list = listed[np.minimum(a_day, view.days - 1), a_city]
    # Half the arrivals from a listed area register with their community and are put under
    # home observation (居家医学观察) the next day.
    observed = on_list & (uniform(rng, a_person.shape[0]) < 0.5)
    state.observe_day[a_person[observed]] = a_day[observed] + 1
    risky = cty.import_risk[a_city] >= 0.01
    infected = state.inf_time[a_person] < NEVER
    coop = risky & (uniform(rng, a_person.shape[0]) < np.where(infected, 0.25, 0.05))
    # Other cities pushed contact lists (协查) once the outbreak was public.
    public = (COOP_FROM - start_date).days
    state.coop_day[a_person[coop]] = np.maximum(
        a_day[coop] + 2 + integers(rng, 0, 5, int(coop.sum())), public
    )
    state.coop_secondary[a_person[coop]] = uniform(rng, int(coop.sum())) < 0.3
    resident = a_person < view.n_resident
    tip = on_list & resident & (uniform(rng, a_person.shape[0]) < 0.15)
    state.tipoff_day[a_person[tip]] = a_day[tip] + 1 + integers(rng, 0, 4, int(tip.sum()))
    return state


# --- the morning: what the health system does today ----------------------------------------


def _case_numbers(state: OutbreakState, k: int) -> pa.Array:
    numbers = np.arange(state.cases + 1, state.cases + k + 1)
    state.cases += k
    return join("郑州市2020-", fixed_strings(digits(numbers, 4)))


def _detect(
    state: OutbreakState,
    view: CityView,
    health: Health,
    person: I64,
    when: I64,
    day: int,
    rng: np.random.Generator,
) -> None:
    """Cases found at ``when``: confirmed if they have symptoms by then, else asymptomatic;
    admitted to hospital (isolated), household and traced contacts quarantined, their compound
    tested."""
    if person.shape[0] == 0:
        return
    person, first = np.unique(person, return_index=True)
    when = when[first]
    fresh = state.detected[person] == NEVER
    person, when = person[fresh], when[fresh]
    if person.shape[0] == 0:
        return
    order = np.lexsort((person, when))
    person, when = person[order], when[order]
    state.detected[person] = when
    state.iso_from[person] = np.minimum(state.iso_from[person], when)
    state.discharge[person] = when + ((14 + 10 * uniform(rng, person.shape[0])) * DAY).astype(
        np.int64
    )
    symptomatic = state.onset[person] <= when
    district = view.district[person]
    hospital = view.place_ids.take(pa.array(view.hospital_place[district]))
    conf = np.flatnonzero(symptomatic)
    asym = np.flatnonzero(~symptomatic)
    health.add(
        person[conf],
        "confirmed",
        when[conf],
        hospital.take(pa.array(conf)),
        "positive",
        _case_numbers(state, conf.shape[0]),
    )
    health.add(
        person[asym],
        "asymptomatic",
        when[asym],
        hospital.take(pa.array(asym)),
        "positive",
        "无症状感染者，集中隔离医学观察",
    )
    # Presymptomatic ones are confirmed when symptoms start (无症状转确诊).
    later = person[asym]
    state.confirm_due[later] = np.where(
        state.onset[later] < NEVER, state.onset[later] + 6 * HOUR, NEVER
    )
    health.add(person, "admission", when + 30 * MINUTE, hospital, None, "定点医院隔离治疗")
    _trace(state, view, person, when, day, rng)


def _quarantine(
    state: OutbreakState, person: I64, when: I64, day: int, *, test: bool = True
) -> None:
    """Home quarantine for 14 days from ``when`` (from the next day on for movement), with a
    test the next day unless ``test`` is false."""
    if person.shape[0] == 0:
        return
    free = state.detected[person] == NEVER
    person, when = person[free], when[free]
    state.quarantine_from[person] = np.minimum(state.quarantine_from[person], when)
    state.quarantine_to[person] = np.maximum(state.quarantine_to[person], when + QUARANTINE)
    if test:
        due = state.test_day[person]
        state.test_day[person] = np.where((due < 0) | (due > day + 1), day + 1, due)


def _trace(
    state: OutbreakState, view: CityView, person: I64, when: I64, day: int, rng: np.random.Generator
) -> None:
    """流调: household, traced contacts of the last days, and mass testing around the case."""
    hh = view.household[person]
    res = hh >= 0
    first = view.household_first[hh[res]]
    count = view.household_first[hh[res] + 1] - first
    owner, members = expand_ranges(first, count)
    _quarantine(state, members, when[res][owner], day)
    found: list[I64] = []
    found_when: list[I64] = []
    lookup = np.full(view.n, -1, dtype=np.int64)
    lookup[person] = np.arange(person.shape[0])
    for case, contact, setting, _ in state.history:
        hit = lookup[case] >= 0
        if not hit.any():
            continue
        p_trace = np.array([TRACE.get(s, 0.0) for s in SETTINGS])[setting[hit]]
        keep = uniform(rng, int(hit.sum())) < p_trace
        found.append(contact[hit][keep])
        found_when.append(when[lookup[case[hit][keep]]])
    if found:
        _quarantine(state, np.concatenate(found), np.concatenate(found_when) + 6 * HOUR, day)
    # Mass testing: the case's compound twice, its community, its district when cases pile up.
    state.detections += person.shape[0]
    state.last_detection_day = day
    comp = view.compound[person]
    comp = comp[comp >= 0]
    rd = state.round_day
    rd[comp] = np.where((rd[comp] < 0) | (rd[comp] > day + 1), day + 1, rd[comp])
    state.round_day2[comp] = day + 4
    used = view.used_compounds
    neighbours = used[np.isin(view.compound_community[used], view.compound_community[comp])]
    rd[neighbours] = np.where(
        (rd[neighbours] < 0) | (rd[neighbours] > day + 2), day + 2, rd[neighbours]
    )
    district = view.district[person]
    before = state.district_detected.copy()
    np.add.at(state.district_detected, district, 1)
    for threshold in DISTRICT_THRESHOLDS:
        crossed = np.flatnonzero((before < threshold) & (state.district_detected >= threshold))
        for d in crossed:
            members = view.used_compounds[view.compound_district[view.used_compounds] == d]
            when_day = day + 1 + members % 3
            rd[members] = np.where(
                (rd[members] < 0) | (rd[members] > when_day), when_day, rd[members]
            )


def morning(
    state: OutbreakState,
    view: CityView,
    ctx: DayContext,
    window: tuple[I64, I64],
    rng: np.random.Generator,
) -> tuple[Health, list[Block], pa.Table]:
    """The health system's day, before people move: imported infections arriving, clinic
    visits, pharmacy purchases, tests and their results, tip-offs, contacts pushed from other
    cities, vaccinations and discharges. Returns the health events, presence at clinics and
    pharmacies, and the imported infections."""
    health = Health()
    blocks: list[Block] = []
    d = ctx.index
    t0 = ctx.start
    t1 = t0 + DAY
    a, b = window
    here = b > a
    ids = view.place_ids
    n = view.n

    # Imported infections entering the city today.
    imp = np.flatnonzero(state.import_day == d)
    cty = cities()
    city_names = pa.array([HOME_CITY, *cty.name])
    city_of = view.trip_city
    imports = pa.table(
        {
            "infectee": pa.array(imp.astype(np.int32)),
            "infector": pa.array(np.full(imp.shape[0], -1, dtype=np.int32)),
            "setting": pa.array(["imported"] * imp.shape[0], pa.string()),
            "place": take(city_names, city_of[imp] + 1),
            "ts": ts(state.inf_time[imp]),
            "symptomatic": pa.array(state.onset[imp] < NEVER),
            "onset": ts(state.onset[imp], mask=state.onset[imp] >= NEVER),
        },
        schema=INFECTIONS,
    )

    available = here & (state.iso_from > t0) & (state.detected == NEVER)

    # Confirmations of earlier asymptomatic detections.
    due = np.flatnonzero((state.confirm_due >= t0) & (state.confirm_due < t1))
    if due.shape[0]:
        hospital = ids.take(pa.array(view.hospital_place[view.district[due]]))
        health.add(
            due,
            "confirmed",
            state.confirm_due[due],
            hospital,
            "positive",
            _case_numbers(state, due.shape[0]),
        )
        state.confirm_due[due] = NEVER

    # Discharges.
    out = np.flatnonzero((state.discharge >= t0) & (state.discharge < t1))
    health.add(
        out,
        "discharge",
        state.discharge[out],
        ids.take(pa.array(view.hospital_place[view.district[out]])),
        None,
        "治愈出院",
    )

    # Pharmacy purchases of fever and cough medicine: cases with symptoms and many colds.
    case_buy = np.flatnonzero(available & (state.pharmacy_time >= t0) & (state.pharmacy_time < t1))
    cold = np.flatnonzero(available & (view.age >= 16) & (uniform(rng, n) < 0.0008))
    buyers = np.concatenate([case_buy, cold[~np.isin(cold, case_buy)]])
    when = np.concatenate(
        [
            state.pharmacy_time[case_buy],
            t0
            + ((8 + 13 * uniform(rng, buyers.shape[0] - case_buy.shape[0])) * HOUR).astype(
                np.int64
            ),
        ]
    )
    when = np.clip(when, a[buyers] + 20 * MINUTE, b[buyers] - 20 * MINUTE)
    ok = when < np.minimum(b[buyers], state.iso_from[buyers])
    buyers, when = buyers[ok], when[ok]
    street = view.home_street[buyers]
    counts = np.array([x.shape[0] for x in view.pharmacy_of_street], dtype=np.int64)
    width = max(1, int(counts.max()) if counts.shape[0] else 1)
    table = np.full((counts.shape[0], width), -1, dtype=np.int64)
    for s, members in enumerate(view.pharmacy_of_street):
        table[s, : members.shape[0]] = members
    has = counts[street] > 0
    buyers, when, street = buyers[has], when[has], street[has]
    shop = table[street, integers(rng, 0, 1 << 30, buyers.shape[0]) % counts[street]]
    health.add(
        buyers, "pharmacy", when, ids.take(pa.array(shop)),
        take(pa.array(list(DRUGS)), integers(rng, 0, len(DRUGS), buyers.shape[0])),
        take(pa.array(["1盒", "1盒", "2盒"]), integers(rng, 0, 3, buyers.shape[0])),
    )  # fmt: skip
    blocks.append(Block("pharmacy", buyers, when, when + 8 * MINUTE, ids, shop, shop))

    # Fever clinics: cases whose visit is due, and people with flu.
    visit_due = (state.clinic_time >= t0) & (state.clinic_time < t1)
    late = visit_due & ~available & (state.detected == NEVER)
    # Away or busy: they go the next day instead.
    state.clinic_time[late] = state.clinic_time[late] + DAY
    cases = np.flatnonzero(visit_due & available)
    flu_rate = 0.00012 * (2.0 if ctx.response else 1.0)
    flu = np.flatnonzero(available & (state.inf_time == NEVER) & (uniform(rng, n) < flu_rate))
    visitors_ = np.concatenate([cases, flu])
    v_when = np.concatenate(
        [
            state.clinic_time[cases],
            t0 + ((7 + 15 * uniform(rng, flu.shape[0])) * HOUR).astype(np.int64),
        ]
    )
    v_when = np.clip(v_when, a[visitors_] + 20 * MINUTE, b[visitors_] - 2 * HOUR)
    ok = v_when >= a[visitors_]
    postpone = visitors_[~ok & (np.arange(visitors_.shape[0]) < cases.shape[0])]
    state.clinic_time[postpone] += DAY
    visitors_, v_when = visitors_[ok], v_when[ok]
    is_case = state.inf_time[visitors_] < v_when
    clinic = view.clinic_place[view.district[visitors_]]
    onset_date = np.where(
        is_case & (state.onset[visitors_] < NEVER),
        state.onset[visitors_],
        v_when - integers(rng, 0, 4, visitors_.shape[0]) * DAY,
    )
    onset_text = pa.array(
        (np.datetime64("1970-01-01") + (onset_date // DAY).astype("timedelta64[D]")).astype(str)
    )
    clinic_ids = ids.take(pa.array(clinic))
    health.add(visitors_, "onset", v_when, clinic_ids, None, join("发热，", onset_text, "起"))
    blocks.append(Block("clinic", visitors_, v_when, v_when + 90 * MINUTE, ids, clinic))
    listed = listed_cities_on(ctx.date)
    recent = (view.arrival_ts[visitors_] > v_when - QUARANTINE) & (view.trip_city[visitors_] >= 0)
    travel_risk = recent & listed[np.maximum(view.trip_city[visitors_], 0)]
    contact = state.quarantine_to[visitors_] > v_when
    ct = uniform(rng, visitors_.shape[0]) < np.where(is_case, 0.4, 0.05)
    suspect = travel_risk | contact | ct
    s_idx = np.flatnonzero(suspect)
    detail = pc_if(
        travel_risk[s_idx],
        join("流行病学史：", take(city_names, view.trip_city[visitors_[s_idx]] + 1)),
        pc_if(
            contact[s_idx],
            pa.array(["密切接触者"] * s_idx.shape[0], pa.string()),
            pa.array(["肺部CT异常"] * s_idx.shape[0], pa.string()),
        ),
    )
    health.add(
        visitors_[s_idx],
        "suspected",
        v_when[s_idx] + HOUR,
        clinic_ids.take(pa.array(s_idx)),
        None,
        detail,
    )
    positives: list[tuple[I64, I64]] = []
    if ctx.testing:
        t_test = v_when + 90 * MINUTE
        pos = _test_result(state, visitors_, t_test, rng)
        health.add(
            visitors_,
            "test",
            t_test,
            clinic_ids,
            take(pa.array(["negative", "positive"]), pos.astype(np.int64)),
            "核酸检测",
        )
        state.iso_from[visitors_[pos]] = np.minimum(state.iso_from[visitors_[pos]], t_test[pos])
        result_at = np.minimum(
            t_test[pos] + ((3 + 8 * uniform(rng, int(pos.sum()))) * HOUR).astype(np.int64),
            t1 - MINUTE,
        )
        positives.append((visitors_[pos], result_at))
        # A missed case comes back when it does not get better.
        again = visitors_[~pos & is_case]
        state.clinic_time[again] = v_when[~pos & is_case] + 2 * DAY
    else:
        again = visitors_[is_case]
        state.clinic_time[again] = v_when[is_case] + 3 * DAY
    state.clinic_time[visitors_[~is_case]] = np.where(
        state.clinic_time[visitors_[~is_case]] < t1, NEVER, state.clinic_time[visitors_[~is_case]]
    )
    visited_cases = visitors_[is_case]
    state.clinic_time[visited_cases] = np.where(
        state.clinic_time[visited_cases] < t1, NEVER, state.clinic_time[visited_cases]
    )

    # Hotline tip-offs (12345) about people back from risk areas, and a few false alarms.
    tip = np.flatnonzero((state.tipoff_day == d) & here)
    noise = np.flatnonzero(here & (np.arange(n) < view.n_resident) & (uniform(rng, n) < 0.00001))
    tip_when = t0 + ((8 + 13 * uniform(rng, tip.shape[0] + noise.shape[0])) * HOUR).astype(np.int64)
    tip_detail = pa.concat_arrays(
        [
            join(
                "邻居反映其近期从",
                take(city_names, view.trip_city[tip] + 1),
                "返郑，未按要求居家观察",
            ),
            pa.array(["邻居反映其疑似从外地返郑，未向社区登记"] * noise.shape[0], pa.string()),
        ]
    )
    health.add(np.concatenate([tip, noise]), "tipoff", tip_when, None, None, tip_detail)
    _quarantine(state, tip, tip_when[: tip.shape[0]] + 4 * HOUR, d)

    # Arrivals from risk areas under home observation; tested once kits were plentiful.
    observe = np.flatnonzero((state.observe_day == d) & here)
    _quarantine(
        state,
        observe,
        np.full(observe.shape[0], t0 + 10 * HOUR),
        d,
        test=ctx.date >= ARRIVAL_TESTS_FROM,
    )

    # Contact lists pushed by other cities (协查函).
    coop = np.flatnonzero((state.coop_day == d) & here)
    c_when = t0 + ((9 + 8 * uniform(rng, coop.shape[0])) * HOUR).astype(np.int64)
    health.add(
        coop, "coop_contact", c_when, None,
        take(pa.array(["close", "secondary"]), state.coop_secondary[coop].astype(np.int64)),
        take(city_names, view.trip_city[coop] + 1),
    )  # fmt: skip
    _quarantine(state, coop, c_when + 2 * HOUR, d)

    # City-wide rounds once cases spread, every week while new ones are found.
    if (
        state.detections >= CITY_THRESHOLD
        and d >= state.next_city_round
        and state.last_detection_day >= d - 7
    ):
        used = view.used_compounds
        when_day = d + 1 + used % 3
        rd = state.round_day
        rd[used] = np.where((rd[used] < d) | (rd[used] > when_day), when_day, rd[used])
        state.next_city_round = d + 7

    # Tests: traced contacts and arrivals due today, compounds in a mass-testing round, and
    # the cold-chain handlers every Monday.
    round_today = np.flatnonzero((state.round_day == d) | (state.round_day2 == d))
    first = view.compound_first[round_today]
    _, mass = expand_ranges(first, view.compound_first[round_today + 1] - first)
    scheduled = np.flatnonzero(state.test_day == d)
    handlers = view.cold_handlers if ctx.date.weekday() == 0 else view.cold_handlers[:0]
    tested = np.concatenate([mass, scheduled, handlers])
    site = np.concatenate(
        [
            view.test_site[view.compound[mass]],
            view.hospital_place[view.district[scheduled]],
            view.cold_store_of[handlers],
        ]
    )
    tested, first_i = np.unique(tested, return_index=True)
    site = site[first_i]
    t_when = t0 + ((8 + 9 * uniform(rng, tested.shape[0])) * HOUR).astype(np.int64)
    t_when = np.clip(t_when, a[tested] + 10 * MINUTE, b[tested] - 10 * MINUTE)
    ok = available[tested] & (t_when >= a[tested]) & (t_when < state.iso_from[tested])
    tested, site, t_when = tested[ok], site[ok], t_when[ok]
    pos = _test_result(state, tested, t_when, rng)
    health.add(
        tested, "test", t_when, ids.take(pa.array(site)),
        take(pa.array(["negative", "positive"]), pos.astype(np.int64)), "核酸检测",
    )  # fmt: skip
    result_at = np.minimum(
        t_when[pos] + ((4 + 8 * uniform(rng, int(pos.sum()))) * HOUR).astype(np.int64), t1 - MINUTE
    )
    positives.append((tested[pos], result_at))
    # The quarantined are tested again a week later while their quarantine lasts.
    state.test_day[scheduled] = -1
    again = tested[state.quarantine_to[tested] > t1 + 5 * DAY]
    state.test_day[again] = d + 6

    if positives:
        who = np.concatenate([p for p, _ in positives])
        when_ = np.concatenate([w for _, w in positives])
        _detect(state, view, health, who, when_, d, rng)

    # Vaccinations: a few a day (flu, pneumococcal, hepatitis B, rabies).
    vac = np.flatnonzero(available & (uniform(rng, n) < 0.00003))
    health.add(
        vac, "vaccination", t0 + ((8 + 9 * uniform(rng, vac.shape[0])) * HOUR).astype(np.int64),
        ids.take(pa.array(view.hospital_place[view.district[vac]])), None,
        take(pa.array(list(VACCINES)), integers(rng, 0, len(VACCINES), vac.shape[0])),
    )  # fmt: skip
    return health, blocks, imports


def pc_if(mask: B, yes: pa.Array, no: pa.Array) -> pa.Array:
    """Element-wise choice between two string arrays."""
    return pa.compute.if_else(pa.array(mask), yes, no)


def _test_result(state: OutbreakState, person: I64, when: I64, rng: np.random.Generator) -> B:
    """Positive when infected and shedding (from a day before infectiousness to ten days after
    it ends), with the test's sensitivity."""
    shedding = (
        (state.inf_time[person] < when)
        & (when >= state.inf_start[person] - DAY)
        & (when <= state.inf_end[person] + 10 * DAY)
    )
    return np.asarray(shedding & (uniform(rng, person.shape[0]) < SENSITIVITY), dtype=bool)


# --- the afternoon: who met whom, who caught it ---------------------------------------------


def _pairs(block: Block, infectious: B, min_overlap: int) -> tuple[I64, I64, I64, I64]:
    """Rows (case row, contact row, overlap start, overlap end) of co-presence in ``block``
    between an infectious person and anyone else of the same group."""
    empty = np.zeros(0, dtype=np.int64)
    group = block.group
    if group is None or block.person.shape[0] == 0:
        return empty, empty, empty, empty
    p = block.person
    case_rows = np.flatnonzero(infectious[p] & (group >= 0))
    if case_rows.shape[0] == 0:
        return empty, empty, empty, empty
    case_groups = np.unique(group[case_rows])
    cand = np.flatnonzero(np.isin(group, case_groups))
    order = cand[np.argsort(group[cand], kind="stable")]
    sorted_groups = group[order]
    lo = np.searchsorted(sorted_groups, group[case_rows], side="left")
    hi = np.searchsorted(sorted_groups, group[case_rows], side="right")
    owner, pos = expand_ranges(lo.astype(np.int64), (hi - lo).astype(np.int64))
    ca = case_rows[owner]
    co = order[pos]
    start = np.maximum(block.start[ca], block.start[co])
    end = np.minimum(block.end[ca], block.end[co])
    keep = (p[ca] != p[co]) & (end - start >= max(min_overlap, 1))
    if block.row is not None:
        keep &= np.abs(block.row[ca] - block.row[co]) <= 2
    return ca[keep], co[keep], start[keep], end[keep]


def afternoon(
    state: OutbreakState,
    view: CityView,
    ctx: DayContext,
    blocks: list[Block],
    rng: np.random.Generator,
) -> tuple[pa.Table, pa.Table]:
    """Exposures of the day and the infections they cause; draws the course of the new cases
    and keeps the exposures for contact tracing."""
    t0 = ctx.start
    t1 = t0 + DAY
    infectious = (state.inf_start < t1) & (state.inf_end > t0)
    e_parts: list[pa.Table] = []
    cand_contact: list[I64] = []
    cand_case: list[I64] = []
    cand_time: list[I64] = []
    cand_setting: list[I64] = []
    cand_place: list[pa.Array] = []
    hist_case: list[I64] = []
    hist_contact: list[I64] = []
    hist_setting: list[I64] = []
    for block in blocks:
        if block.setting not in BETA or block.group is None:
            continue
        ca, co, start, end = _pairs(block, infectious, MIN_OVERLAP.get(block.setting, MINUTE))
        if ca.shape[0] == 0:
            continue
        case = block.person[ca]
        contact = block.person[co]
        places = block.places.take(pa.array(block.place[ca]))
        e_parts.append(
            pa.table(
                {
                    "case": pa.array(case.astype(np.int32)),
                    "contact": pa.array(contact.astype(np.int32)),
                    "setting": pa.array([block.setting] * case.shape[0], pa.string()),
                    "place": places,
                    "start": ts(start),
                    "end": ts(end),
                },
                schema=EXPOSURES,
            )
        )
        code = SETTINGS.index(block.setting)
        hist_case.append(case)
        hist_contact.append(contact)
        hist_setting.append(np.full(case.shape[0], code, dtype=np.int64))
        hours = (end - start) / HOUR
        hazard = BETA[block.setting] * state.weight[case] * hours
        susceptible = (state.inf_time[contact] == NEVER) & (state.iso_from[contact] > start)
        hit = susceptible & (uniform(rng, case.shape[0]) < 1.0 - np.exp(-hazard))
        when = start + (uniform(rng, case.shape[0]) * (end - start)).astype(np.int64)
        # Not before the case became infectious.
        when = np.maximum(when, np.minimum(state.inf_start[case], end - 1))
        idx = np.flatnonzero(hit)
        cand_contact.append(contact[idx])
        cand_case.append(case[idx])
        cand_time.append(when[idx])
        cand_setting.append(np.full(idx.shape[0], code, dtype=np.int64))
        cand_place.append(places.take(pa.array(idx)))
    exposures = pa.concat_tables(e_parts) if e_parts else EXPOSURES.empty_table()
    if hist_case:
        state.history.append(
            (
                np.concatenate(hist_case),
                np.concatenate(hist_contact),
                np.concatenate(hist_setting),
                ctx.index,
            )
        )
    state.history = [h for h in state.history if h[3] > ctx.index - HISTORY_DAYS]
    if not cand_contact or sum(c.shape[0] for c in cand_contact) == 0:
        return exposures, INFECTIONS.empty_table()
    contact = np.concatenate(cand_contact)
    case = np.concatenate(cand_case)
    when = np.concatenate(cand_time)
    setting = np.concatenate(cand_setting)
    place = pa.concat_arrays(cand_place)
    # A person caught several times in a day caught it the first time.
    order = np.lexsort((case, when, contact))
    first = order[np.concatenate([[True], contact[order][1:] != contact[order][:-1]])]
    first = first[np.lexsort((contact[first], when[first]))]
    new = contact[first]
    _natural_history(state, new, when[first], view.age[new], rng)
    state.infector[new] = case[first]
    infections = pa.table(
        {
            "infectee": pa.array(new.astype(np.int32)),
            "infector": pa.array(case[first].astype(np.int32)),
            "setting": take(pa.array(list(SETTINGS)), setting[first]),
            "place": place.take(pa.array(first)),
            "ts": ts(when[first]),
            "symptomatic": pa.array(state.onset[new] < NEVER),
            "onset": ts(state.onset[new], mask=state.onset[new] >= NEVER),
        },
        schema=INFECTIONS,
    )
    return exposures, infections


def coldchain(
    view: CityView, ctx: DayContext, blocks: list[Block], health: Health, rng: np.random.Generator
) -> None:
    """Cold-chain tracing (进口冷链食品追溯): handlers at work scan the batches they handle."""
    for block in blocks:
        if block.setting != "cold_store" or block.person.shape[0] == 0:
            continue
        pick = np.flatnonzero(uniform(rng, block.person.shape[0]) < 0.35)
        k = pick.shape[0]
        when = block.start[pick] + (uniform(rng, k) * (block.end[pick] - block.start[pick])).astype(
            np.int64
        )
        ymd = int(ctx.date.strftime("%Y%m%d"))
        batch = join(
            take(pa.array(list(COLD_GOODS)), integers(rng, 0, len(COLD_GOODS), k)),
            "批次B",
            fixed_strings(digits(np.full(k, ymd), 8)),
            "-",
            fixed_strings(digits(integers(rng, 0, 10_000, k), 4)),
        )
        result = take(
            pa.array(["negative", "positive"]), (uniform(rng, k) < 0.002).astype(np.int64)
        )
        health.add(
            block.person[pick],
            "coldchain",
            when,
            block.places.take(pa.array(block.place[pick])),
            result,
            batch,
        )
