"""The synthetic population (合成人口): households in compounds, persons with names, resident IDs,
phones, passports, plates and transit cards; workplaces with rosters, schools with classes and
teachers, elderly-care institutions (养老院); and the visitors who arrive during the run.

Everything is drawn with numpy in whole arrays (no loop per person): one household template
per household gives each member a role (户主, spouse, child, grandparent), ages follow from the
head's, names share the family surname, and the ID number (GB 11643) is assembled as bytes with
its check character computed on all rows at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from citybrain.simulate.config import SimulationConfig
from citybrain.simulate.model_data import (
    COMPANY_SUFFIXES,
    HOME_CITY,
    INDUSTRIES,
    WORDS,
    cities,
)
from citybrain.simulate.model_geo import Geo, street_root
from citybrain.simulate.model_util import (
    I32,
    I64,
    IDX,
    STREAM_POPULATION,
    B,
    dedupe,
    digits,
    fixed_strings,
    int_strings,
    integers,
    join,
    numbered,
    rng_for,
    take,
    uniform,
    weighted_choice,
)
from citybrain.simulate.persons import (
    GIVEN_FEMALE,
    GIVEN_MALE,
    MOBILE_PREFIXES,
    SURNAMES,
    ZHENGZHOU_AREAS,
)
from citybrain.simulate.schema import CARE_HOMES, CLASSES, ENTERPRISES, PERSONS, SCHOOLS

VISITOR_SHARE = 0.03
MIN_PEOPLE = 20
OCCUPATIONS = ("none", "worker", "student", "teacher", "retired", "child", "care_resident")
OCC_NONE, OCC_WORKER, OCC_STUDENT, OCC_TEACHER, OCC_RETIRED, OCC_CHILD, OCC_CARE = range(7)

# Household sizes 1..6 (2020 census, urban Henan, rounded): mean about 2.7.
HOUSEHOLD_SIZE_P = np.array([0.22, 0.29, 0.23, 0.14, 0.08, 0.04])
MEAN_HOUSEHOLD = float((np.arange(1, 7) * HOUSEHOLD_SIZE_P).sum())
MIN_COMPOUND_HOUSEHOLDS = 30
TARGET_COMPOUND_HOUSEHOLDS = 60
TEAM_SIZE = 25  # co-workers one shares a room or a line with
CLASS_SIZE = 45
CARE_UNIT = 20

# Roles in a household: 户主, spouse, child, grandparent, other adult (a flatmate or sibling).
R_HEAD, R_SPOUSE, R_CHILD, R_GRAND, R_OTHER = range(5)
# Household templates: (size, weight within size, roles, head age kind).
# Head age kinds: 0 single mix, 1 young adult, 2 parent, 3 older adult, 4 elderly.
_TEMPLATES: tuple[tuple[int, float, tuple[int, ...], int], ...] = (
    (1, 1.0, (R_HEAD,), 0),
    (2, 0.25, (R_HEAD, R_SPOUSE), 1),
    (2, 0.32, (R_HEAD, R_SPOUSE), 4),
    (2, 0.22, (R_HEAD, R_CHILD), 2),
    (2, 0.13, (R_HEAD, R_OTHER), 1),
    (3, 0.80, (R_HEAD, R_SPOUSE, R_CHILD), 2),
    (3, 0.12, (R_HEAD, R_SPOUSE, R_GRAND), 1),
    (3, 0.08, (R_HEAD, R_CHILD, R_CHILD), 2),
    (4, 0.55, (R_HEAD, R_SPOUSE, R_CHILD, R_CHILD), 2),
    (4, 0.45, (R_HEAD, R_SPOUSE, R_CHILD, R_GRAND), 2),
    (5, 0.60, (R_HEAD, R_SPOUSE, R_CHILD, R_GRAND, R_GRAND), 2),
    (5, 0.40, (R_HEAD, R_SPOUSE, R_CHILD, R_CHILD, R_GRAND), 2),
    (6, 1.00, (R_HEAD, R_SPOUSE, R_CHILD, R_CHILD, R_GRAND, R_GRAND), 2),
)
_ROLE_TABLE = np.full((len(_TEMPLATES), 6), -1, dtype=np.int8)
for _t, (_size, _w, _roles, _kind) in enumerate(_TEMPLATES):
    _ROLE_TABLE[_t, : len(_roles)] = _roles
_TEMPLATE_SIZE = np.array([t[0] for t in _TEMPLATES])
_TEMPLATE_KIND = np.array([t[3] for t in _TEMPLATES])

_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_ID_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)
_PLATE_CHARS = np.frombuffer(b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ", dtype=np.uint8)
_CREDIT_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_WEIGHTS = np.array(
    [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28], dtype=np.int64
)
_ORG_WEIGHTS = np.array([3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
DATES = npt.NDArray[np.datetime64]


@dataclass
class Population:
    """Persons and their settings, as Arrow tables for the feeds and numpy arrays for the model.

    Persons are ordered residents first (by compound, household, role), then visitors; so a
    compound's residents are the contiguous rows ``compound_first[c] : compound_first[c + 1]``.
    """

    persons: pa.Table
    enterprises: pa.Table
    schools: pa.Table
    classes: pa.Table
    care_homes: pa.Table
    n: int
    n_resident: int
    age: I32
    male: B
    household: I32
    compound: I32  # index into geo compounds, -1 for visitors
    street: I32  # home street (visitors: -1 until they check in)
    district: I32
    occupation: I32
    workplace: I32
    team: I32  # global workplace team (co-workers), -1
    school: I32
    school_class: I32  # students: their class; homeroom teachers (班主任): theirs
    care_home: I32
    care_unit: I32  # global care-home unit, -1
    phone_owner: B  # carries a phone of their own (children share a parent's)
    has_phone2: B
    has_plate: B
    has_card: B
    phone_city: I32  # city number the phone is registered in, -1 for Zhengzhou
    birth_city: I32  # city number of the birthplace, -1 for Zhengzhou
    home_city: I32  # visitors: city number; residents -1
    ride_driver: B
    household_compound: I32
    household_first: I64  # first person of each household (length households + 1)
    compound_first: I64  # first person of each geo compound (length compounds + 1)
    household_place: pa.StringArray
    used_compounds: I64
    enterprise_street: I32
    enterprise_cold: B
    school_venue: I64  # geo venue number of each school
    school_street: I32
    class_school: I32
    class_place: pa.StringArray
    care_home_street: I32
    taxi_plates: pa.StringArray


# --- households -----------------------------------------------------------------------------


def choose_compounds(geo: Geo, households: int, rng: np.random.Generator) -> tuple[I64, I64]:
    """Which compounds are lived in and how many households each holds.

    At full scale all compounds, in proportion to their estimated households. At small scale a
    deterministic subset spread over every district (quotas by the districts' sizes) so each
    compound used has a realistic number of households, at least ``MIN_COMPOUND_HOUSEHOLDS``.
    """
    est = geo.compound_households.astype(np.float64)
    n_all = est.shape[0]
    wanted = min(n_all, max(len(geo.district_codes), households // TARGET_COMPOUND_HOUSEHOLDS))
    if wanted >= n_all:
        chosen = np.arange(n_all, dtype=np.int64)
    else:
        district = geo.street_district[geo.compound_street]
        totals = np.bincount(district, weights=est, minlength=len(geo.district_codes))
        present = totals > 0
        raw = wanted * totals / totals.sum()
        quota = np.maximum(np.floor(raw).astype(np.int64), present.astype(np.int64))
        # Largest remainders fill up to the wanted number.
        short = wanted - int(quota.sum())
        if short > 0:
            order = np.lexsort((np.arange(raw.shape[0]), -(raw - np.floor(raw))))
            quota[order[:short]] += 1
        picks = []
        for d in range(len(geo.district_codes)):
            members = np.flatnonzero(district == d)
            q = int(min(quota[d], members.shape[0]))
            if q <= 0:
                continue
            p = est[members] / est[members].sum()
            picks.append(np.sort(rng.choice(members, size=q, replace=False, p=p)))
        chosen = np.sort(np.concatenate(picks)).astype(np.int64)
    m = chosen.shape[0]
    base = min(MIN_COMPOUND_HOUSEHOLDS, households // max(m, 1))
    rest = households - base * m
    counts = base + rng.multinomial(rest, est[chosen] / est[chosen].sum())
    keep = counts > 0
    return chosen[keep], counts[keep].astype(np.int64)


def household_sizes(n_people: int, households: int, rng: np.random.Generator) -> I64:
    """``households`` sizes in 1..6 drawn from the census shares, adjusted to sum to
    ``n_people`` (adding to or taking from random households)."""
    sizes = (weighted_choice(rng, HOUSEHOLD_SIZE_P, households) + 1).astype(np.int64)
    for _ in range(200):
        diff = n_people - int(sizes.sum())
        if diff == 0:
            return sizes
        if diff > 0:
            open_ = np.flatnonzero(sizes < 6)
            pick = rng.choice(open_, size=min(diff, open_.shape[0]), replace=False)
            sizes[pick] += 1
        else:
            open_ = np.flatnonzero(sizes > 1)
            pick = rng.choice(open_, size=min(-diff, open_.shape[0]), replace=False)
            sizes[pick] -= 1
    raise RuntimeError("household sizes did not converge")


# --- identity -------------------------------------------------------------------------------


def birth_dates(start: np.datetime64, age: I32, rng: np.random.Generator) -> DATES:
    """Birth dates so that the age on ``start`` is ``age`` (uniform day within the year)."""
    offset = np.floor(age.astype(np.float64) * 365.2425).astype(np.int64)
    within = integers(rng, 0, 365, age.shape[0])
    return start - (offset + within + 1).astype("timedelta64[D]")


def id_numbers(area: I64, birth: DATES, male: B, rng: np.random.Generator) -> pa.StringArray:
    """Valid GB 11643 numbers: area code, birth date, sequence (odd for men), check character.
    Distinct for all rows."""
    n = area.shape[0]
    days = (birth - np.datetime64("1900-01-01")).astype(np.int64)
    seq = integers(rng, 0, 500, n) * 2 + male.astype(np.int64)

    def redraw(bad: I64) -> I64:
        return (
            area[bad] * 10**9
            + days[bad] * 10**3
            + integers(rng, 0, 500, bad.shape[0]) * 2
            + male[bad].astype(np.int64)
        )

    key = dedupe(area * 10**9 + days * 10**3 + seq, redraw)
    seq = key % 1000
    years = birth.astype("datetime64[Y]").astype(np.int64) + 1970
    months = birth.astype("datetime64[M]").astype(np.int64) % 12 + 1
    dom = (birth - birth.astype("datetime64[M]")).astype(np.int64) + 1
    body = np.hstack(
        [digits(area, 6), digits(years, 4), digits(months, 2), digits(dom, 2), digits(seq, 3)]
    )
    # Column by column: a (n, 17) int64 product would cost 136 bytes a person.
    total = np.zeros(n, dtype=np.int64)
    for col in range(17):
        total += (body[:, col].astype(np.int64) - 48) * int(_ID_WEIGHTS[col])
    check = _ID_CHECK[total % 11][:, None]
    return fixed_strings(np.hstack([body, check]))


def phone_numbers(n: int, rng: np.random.Generator, taken: I64 | None = None) -> I64:
    """``n`` distinct mobile numbers (as integers) on real prefixes, none in ``taken``."""
    prefixes = np.array([int(p) for p in MOBILE_PREFIXES], dtype=np.int64)

    def draw(k: int) -> I64:
        return prefixes[integers(rng, 0, prefixes.shape[0], k)] * 10**8 + integers(rng, 0, 10**8, k)

    return dedupe(draw(n), lambda bad: draw(bad.shape[0]), taken)


def names(male: B, surname: I64, two_char: B, rng: np.random.Generator) -> pa.Array:
    """Surname plus one or two given-name characters from the sex's pool."""
    n = male.shape[0]
    surnames = pa.array([s for s, _ in SURNAMES])
    pool_m = pa.array(list(GIVEN_MALE))
    pool_f = pa.array(list(GIVEN_FEMALE))
    first = integers(rng, 0, 1 << 30, n)
    second = integers(rng, 0, 1 << 30, n)
    # One pool of male then female characters; the index picks within the person's half.
    pool = pa.concat_arrays([pool_m, pool_f, pa.array([""])])
    n_m, n_f = len(GIVEN_MALE), len(GIVEN_FEMALE)
    g1 = np.where(male, first % n_m, n_m + first % n_f)
    g2 = np.where(male, second % n_m, n_m + second % n_f)
    g2 = np.where(two_char, g2, n_m + n_f)
    return join(take(surnames, surname), take(pool, g1), take(pool, g2))


def plates(
    prefix: pa.Array, n: int, rng: np.random.Generator, taken: I64 | None = None
) -> tuple[pa.Array, I64]:
    """Licence plates: the city's prefix (e.g. 豫A) and five characters, mostly digits."""
    base = _PLATE_CHARS.shape[0]

    def draw(k: int) -> I64:
        chars = integers(rng, 0, 10, (k, 5))
        letter = uniform(rng, (k, 5)) < np.array([0.45, 0.08, 0.08, 0.08, 0.1])
        chars = np.where(letter, 10 + integers(rng, 0, base - 10, (k, 5)), chars)
        return np.asarray((chars * base ** np.arange(4, -1, -1)).sum(axis=1), dtype=np.int64)

    codes = dedupe(draw(n), lambda bad: draw(bad.shape[0]), taken)
    chars = np.stack([(codes // base**i) % base for i in range(4, -1, -1)], axis=1)
    tail = fixed_strings(_PLATE_CHARS[chars])
    return join(prefix, tail), codes


def credit_codes(district_codes: list[str], district: I32, rng: np.random.Generator) -> pa.Array:
    """统一社会信用代码 (GB 32100): 9 (工商) 1 (企业), the district's code, an organisation code
    with its GB 11714 check character, and the final check character; all valid, distinct."""
    n = district.shape[0]
    body = dedupe(
        integers(rng, 10**7, 10**8, n), lambda bad: integers(rng, 10**7, 10**8, bad.shape[0])
    )
    org = digits(body, 8).astype(np.int64) - 48
    c9 = 11 - (org * _ORG_WEIGHTS).sum(axis=1) % 11
    # 10 is written X, 11 is written 0.
    org_check = np.where(c9 == 10, 33, np.where(c9 == 11, 0, c9))  # index into _CREDIT_CHARS
    area = np.array([int(c) for c in district_codes], dtype=np.int64)[district]
    values = np.hstack(
        [
            np.tile(np.array([9, 1], dtype=np.int64), (n, 1)),
            digits(area, 6).astype(np.int64) - 48,
            org,
            org_check[:, None],
        ]
    )
    # _CREDIT_CHARS has no I, O, S, V, Z: X is its 28th character.
    values = np.where(values == 33, _CREDIT_CHARS.index("X"), values)
    check = (31 - (values * _CREDIT_WEIGHTS).sum(axis=1) % 31) % 31
    chars = np.frombuffer(_CREDIT_CHARS.encode(), dtype=np.uint8)
    return fixed_strings(chars[np.hstack([values, check[:, None]])])


# --- the build ------------------------------------------------------------------------------


def _uniform_int(rng: np.random.Generator, low: I64, high: I64) -> I64:
    """One integer in [low, high] per row (inclusive bounds given per row)."""
    return (low + np.floor(uniform(rng, low.shape[0]) * (high - low + 1))).astype(np.int64)


def _head_ages(kind: I64, rng: np.random.Generator) -> I64:
    n = kind.shape[0]
    low = np.select(
        [kind == 1, kind == 2, kind == 3, kind == 4], [23, 26, 36, 58], default=22
    ).astype(np.int64)
    high = np.select(
        [kind == 1, kind == 2, kind == 3, kind == 4], [36, 52, 59, 86], default=35
    ).astype(np.int64)
    ages = _uniform_int(rng, low, high)
    # A single person (kind 0) is young, middle-aged or old.
    mix = uniform(rng, n)
    single = kind == 0
    ages = np.where(single & (mix >= 0.45) & (mix < 0.72), 36 + integers(rng, 0, 24, n), ages)
    return np.where(single & (mix >= 0.72), 60 + integers(rng, 0, 31, n), ages)


def _schools(geo: Geo) -> tuple[I64, B]:
    venues = np.array(
        [i for i, kind in enumerate(geo.venue_subkind) if kind == "school"], dtype=np.int64
    )
    primary = np.array([geo.venues[i].name.endswith("小学") for i in venues], dtype=bool)
    return venues, primary


def _assign_schools(
    geo: Geo, school_venue: I64, primary: B, street: I32, grade: I64, spread: IDX
) -> I64:
    """A school for each student (grade 1..6 a 小学, 7..12 a 中学).

    With enough students for every school (large runs) a child goes to the school of its own
    street, else one of its district's, else the nearest. In small runs only as many schools
    open as give classes of about ``CLASS_SIZE`` in every grade, spread over the districts by
    their pupils, and children go to one in their district or the nearest one.
    """
    n_streets = len(geo.street_codes)
    school_street = np.maximum(geo.venue_street[school_venue], 0)
    school_district = geo.street_district[school_street]
    pick = np.full(grade.shape[0], -1, dtype=np.int64)
    for level_primary in (True, False):
        wants = np.flatnonzero((grade <= 6) if level_primary else (grade >= 7))
        if wants.shape[0] == 0:
            continue
        level = np.flatnonzero(primary == level_primary)
        if level.shape[0] == 0:
            level = np.arange(school_venue.shape[0])
        needed = math.ceil(wants.shape[0] / (6 * CLASS_SIZE))
        pupils_by_street = np.bincount(street[wants], minlength=n_streets)
        reduced = needed < 0.7 * level.shape[0]
        if reduced:
            pupils_by_district = np.bincount(
                geo.street_district[street[wants]], minlength=len(geo.district_codes)
            )
            raw = needed * pupils_by_district / pupils_by_district.sum()
            quota = np.floor(raw).astype(np.int64)
            short = needed - int(quota.sum())
            order = np.lexsort((np.arange(raw.shape[0]), -(raw - quota)))
            quota[order[:short]] += 1
            chosen_parts = []
            for d in np.flatnonzero(quota):
                members = level[school_district[level] == d]
                # The schools in the streets where most pupils live open first.
                rank = np.lexsort((members, -pupils_by_street[school_street[members]]))
                chosen_parts.append(members[rank[: quota[d]]])
            level = np.sort(np.concatenate(chosen_parts)) if chosen_parts else level
            if level.shape[0] == 0:
                level = np.flatnonzero(primary == level_primary)[:needed]
        options: list[I64] = []
        for st in range(n_streets):
            here = level[school_street[level] == st] if not reduced else level[:0]
            if here.shape[0] == 0:
                here = level[school_district[level] == geo.street_district[st]]
            if here.shape[0] == 0:
                km = geo.street_km(np.full(level.shape[0], st), school_street[level])
                here = level[[int(np.argmin(km))]]
            options.append(here)
        width = max(len(o) for o in options)
        table = np.full((n_streets, width), -1, dtype=np.int64)
        counts = np.zeros(n_streets, dtype=np.int64)
        for st, here in enumerate(options):
            table[st, : here.shape[0]] = here
            counts[st] = here.shape[0]
        home = street[wants]
        pick[wants] = table[home, spread[wants] % counts[home]]
    return pick


def build_population(config: SimulationConfig, geo: Geo) -> Population:
    """Draw the whole population for ``config`` on ``geo``."""
    rng = rng_for(config.seed, STREAM_POPULATION)
    cty = cities()
    if config.people < MIN_PEOPLE:
        raise ValueError(f"a city needs at least {MIN_PEOPLE} people, not {config.people}")
    n_total = config.people
    n_vis = round(n_total * VISITOR_SHARE)
    n_res = n_total - n_vis
    start = np.datetime64(config.start, "D")

    # Households in compounds, members by template.
    used, per_compound = choose_compounds(geo, max(1, round(n_res / MEAN_HOUSEHOLD)), rng)
    n_hh = int(per_compound.sum())
    sizes = household_sizes(n_res, n_hh, rng)
    hh_compound = np.repeat(used, per_compound).astype(np.int32)
    template = np.zeros(n_hh, dtype=np.int64)
    for size in range(1, 7):
        members = np.flatnonzero(sizes == size)
        options = np.flatnonzero(size == _TEMPLATE_SIZE)
        weights = np.array([_TEMPLATES[t][1] for t in options])
        template[members] = options[weighted_choice(rng, weights, members.shape[0])]
    hh_first = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    # Temporaries are deleted as soon as they are used: at 12.6 million people every
    # person-length array costs 50-100 MB.
    p_hh = np.repeat(np.arange(n_hh, dtype=np.int32), sizes)
    pos = (np.arange(n_res, dtype=np.int64) - hh_first[p_hh]).astype(np.int8)
    role = _ROLE_TABLE[template[p_hh], pos]
    del pos
    head_age = _head_ages(_TEMPLATE_KIND[template], rng)[p_hh]
    u = uniform(rng, n_res)
    age = np.select(
        [role == R_HEAD, role == R_SPOUSE, role == R_CHILD, role == R_GRAND],
        [
            head_age,
            np.maximum(20, head_age + integers(rng, -4, 5, n_res)),
            np.floor(u * np.clip(head_age - 21, 1, 30)),
            np.minimum(98, head_age + integers(rng, 24, 35, n_res)),
        ],
        default=20 + integers(rng, 0, 16, n_res),
    ).astype(np.int16)
    del u
    has_spouse = np.zeros(n_hh, dtype=bool)
    two = sizes >= 2
    has_spouse[two] = role[hh_first[:-1][two] + 1] == R_SPOUSE
    head_male = uniform(rng, n_hh) < np.where(has_spouse, 0.8, 0.5)
    grand_rank = np.zeros(n_res, dtype=np.int64)
    grand = role == R_GRAND
    # The first grandparent of a pair is the grandfather, the second the grandmother.
    prev_grand = np.zeros(n_res, dtype=bool)
    prev_grand[1:] = grand[:-1] & (p_hh[1:] == p_hh[:-1])
    grand_rank[grand & prev_grand] = 1
    n_grand = np.bincount(p_hh[grand], minlength=n_hh)[p_hh]
    male = np.select(
        [role == R_HEAD, role == R_SPOUSE, grand & (n_grand == 2)],
        [head_male[p_hh], ~head_male[p_hh], grand_rank == 0],
        default=uniform(rng, n_res) < np.where(grand, 0.4, 0.515),
    ).astype(bool)
    del grand_rank, prev_grand, n_grand

    # Names: children and grandfathers carry the father's surname.
    surname_p = np.array([w for _, w in SURNAMES])
    surname = weighted_choice(rng, surname_p, n_res)
    father = hh_first[:-1] + np.where(head_male | ~has_spouse, 0, 1)
    family = surname[father][p_hh]
    surname = np.where((role == R_CHILD) | (grand & male), family, surname).astype(np.int16)
    del family, head_age, role, grand
    two_char = uniform(rng, n_res) < np.where(age < 30, 0.85, np.where(age >= 60, 0.55, 0.7))

    street = geo.compound_street[hh_compound][p_hh].astype(np.int32)
    district = geo.street_district[street].astype(np.int32)
    county = geo.district_county[district]

    # Birthplaces: ~35% born outside Zhengzhou, fewer among children.
    outside = uniform(rng, n_res) < np.where(age < 18, 0.08, 0.42)
    city_w = cty.weight * np.where(np.array(cty.province) == "河南", 3.0, 1.0)
    birth_city = np.where(outside, weighted_choice(rng, city_w, n_res), -1).astype(np.int32)
    zz_areas = np.array([int(a) for a in ZHENGZHOU_AREAS], dtype=np.int64)
    host = {"410171": "410104", "410172": "410102", "410173": "410184"}
    own_area = np.array([int(host.get(code, code)) for code in geo.district_codes], dtype=np.int64)[
        district
    ]
    born_home = np.isin(own_area, zz_areas) & (uniform(rng, n_res) < 0.7)
    zz_pick = zz_areas[integers(rng, 0, zz_areas.shape[0], n_res)]
    city_area = np.array([int(a) for a in cty.id_area], dtype=np.int64)
    area = np.where(
        outside, city_area[np.maximum(birth_city, 0)], np.where(born_home, own_area, zz_pick)
    )
    del outside, own_area, born_home, zz_pick

    # Occupations.
    occ = np.full(n_res, OCC_NONE, dtype=np.int32)
    r = uniform(rng, n_res)
    occ[age < 6] = OCC_CHILD
    occ[(age >= 6) & (age <= 17)] = OCC_STUDENT
    young = (age >= 18) & (age <= 22)
    occ[young & (r < 0.45)] = OCC_STUDENT  # 大学生, at home for the winter
    occ[young & (r >= 0.45) & (r < 0.85)] = OCC_WORKER
    prime = (age >= 23) & (age <= 59)
    occ[prime & (r < np.where(male, 0.88, 0.76))] = OCC_WORKER
    late = (age >= 60) & (age <= 64)
    occ[late] = np.where(r[late] < 0.25, OCC_WORKER, OCC_RETIRED)
    occ[age >= 65] = OCC_RETIRED
    occ[(age >= 75) & (uniform(rng, n_res) < 0.04)] = OCC_CARE
    del r, young, prime, late

    # Schools and classes: grade = age - 5 for ages 6..17.
    school_venue, school_primary = _schools(geo)
    n_schools = school_venue.shape[0]
    school = np.full(n_res, -1, dtype=np.int64)
    school_class = np.full(n_res, -1, dtype=np.int64)
    k12 = np.flatnonzero((occ == OCC_STUDENT) & (age <= 17))
    class_school = np.zeros(0, dtype=np.int64)
    class_grade = np.zeros(0, dtype=np.int64)
    class_no = np.zeros(0, dtype=np.int64)
    if n_schools and k12.shape[0]:
        grade = age[k12] - 5
        school[k12] = _assign_schools(
            geo, school_venue, school_primary, street[k12], grade, p_hh[k12]
        )
        key = school[k12] * 13 + grade
        order = np.lexsort((uniform(rng, k12.shape[0]), key))
        skey = key[order]
        group_first = np.flatnonzero(np.concatenate([[True], skey[1:] != skey[:-1]]))
        group_size = np.diff(np.concatenate([group_first, [skey.shape[0]]]))
        group_of = np.repeat(np.arange(group_first.shape[0]), group_size)
        rank = np.arange(skey.shape[0]) - group_first[group_of]
        n_cls = np.ceil(group_size / CLASS_SIZE).astype(np.int64)
        no = rank % n_cls[group_of] + 1
        ckey = skey * 64 + no
        uniq, inverse = np.unique(ckey, return_inverse=True)
        school_class[k12[order]] = inverse
        class_school = uniq // 64 // 13
        class_grade = uniq // 64 % 13
        class_no = uniq % 64
    n_classes = class_school.shape[0]

    # Teachers (1.3 per class, the first per class its 班主任) and care-home staff come from
    # the workers of the district; the rest work in enterprises.
    worker_pool = (occ == OCC_WORKER) & (age >= 24) & (age <= 58)
    taken = np.zeros(n_res, dtype=bool)
    school_classes = np.bincount(class_school, minlength=n_schools)
    school_street = geo.venue_street[school_venue].astype(np.int32)
    school_district = geo.street_district[np.maximum(school_street, 0)]
    pool_order = rng.permutation(n_res)
    spare = pool_order[worker_pool[pool_order]]
    by_district = spare[np.argsort(district[spare], kind="stable")]
    cuts = np.searchsorted(district[by_district], np.arange(len(geo.district_codes) + 1))
    pool_by_district = [by_district[cuts[d] : cuts[d + 1]] for d in range(len(geo.district_codes))]
    pool_next = [0] * len(pool_by_district)
    spare_next = 0

    def draw_staff(d: int, k: int) -> I64:
        nonlocal spare_next
        members = pool_by_district[d]
        got: list[I64] = []
        while k > 0 and pool_next[d] < members.shape[0]:
            cand = members[pool_next[d] : pool_next[d] + k]
            pool_next[d] += cand.shape[0]
            cand = cand[~taken[cand]]
            taken[cand] = True
            got.append(cand)
            k -= cand.shape[0]
        while k > 0 and spare_next < spare.shape[0]:
            cand = spare[spare_next : spare_next + k]
            spare_next += cand.shape[0]
            cand = cand[~taken[cand]]
            taken[cand] = True
            got.append(cand)
            k -= cand.shape[0]
        return np.concatenate(got) if got else np.zeros(0, dtype=np.int64)

    class_first = np.searchsorted(class_school, np.arange(n_schools + 1))
    for s in range(n_schools):
        if school_classes[s] == 0:
            continue
        staff = draw_staff(int(school_district[s]), 2 * int(school_classes[s]))
        occ[staff] = OCC_TEACHER
        school[staff] = s
        homeroom = staff[: school_classes[s]]
        school_class[homeroom] = np.arange(class_first[s], class_first[s] + homeroom.shape[0])

    care_home = np.full(n_res, -1, dtype=np.int64)
    care_unit = np.full(n_res, -1, dtype=np.int64)
    home_street_list: list[int] = []
    home_names: list[str] = []
    unit_total = 0
    residents_care = np.flatnonzero(occ == OCC_CARE)
    for d in range(len(geo.district_codes)):
        members = residents_care[district[residents_care] == d]
        if members.shape[0] == 0:
            continue
        members = members[rng.permutation(members.shape[0])]
        n_homes = math.ceil(members.shape[0] / 60)
        lived = np.unique(street[district == d])
        for h in range(n_homes):
            chunk = members[h::n_homes]
            home = len(home_street_list)
            st = int(lived[int(rng.integers(0, lived.shape[0]))])
            home_street_list.append(st)
            word = WORDS[int(rng.integers(0, len(WORDS)))]
            kind = "养老院" if geo.street_urban[st] else "敬老院"
            home_names.append(f"{street_root(geo.street_names[st])}{word}{kind}")
            care_home[chunk] = home
            units = math.ceil(chunk.shape[0] / CARE_UNIT)
            care_unit[chunk] = unit_total + np.arange(chunk.shape[0]) % units
            staff = draw_staff(d, math.ceil(chunk.shape[0] / 4))
            care_home[staff] = home
            care_unit[staff] = unit_total + np.arange(staff.shape[0]) % units
            unit_total += units

    # Enterprises: 60% work in their home district, the rest where the jobs are.
    workers = np.flatnonzero((occ == OCC_WORKER) & (care_home < 0))
    n_w = workers.shape[0]
    d_households = np.bincount(
        geo.street_district[geo.compound_street],
        weights=geo.compound_households,
        minlength=len(geo.district_codes),
    )
    job_factor = np.where(
        np.isin(np.array(geo.district_codes), ["410171", "410172", "410173"]),
        1.8,
        np.where(geo.district_county, 0.7, 1.2),
    )
    job_w = (d_households * job_factor).astype(np.float64)
    target = np.where(uniform(rng, n_w) < 0.6, district[workers], weighted_choice(rng, job_w, n_w))
    cap = int(min(50_000, max(60, n_w // 30)))
    ent_size_parts: list[I64] = []
    ent_street_parts: list[I64] = []
    ent_district_parts: list[I64] = []
    workplace = np.full(n_res, -1, dtype=np.int64)
    team = np.full(n_res, -1, dtype=np.int64)
    n_ent = 0
    n_team = 0
    for d in range(len(geo.district_codes)):
        members = workers[target == d]
        w_d = members.shape[0]
        if w_d == 0:
            continue
        members = members[rng.permutation(w_d)]
        drawn: list[I64] = []
        total = 0
        while total < w_d:
            batch = np.minimum(
                cap, np.floor(2 * (1 + rng.pareto(1.1, max(16, w_d // 10)))).astype(np.int64)
            )
            drawn.append(batch)
            total += int(batch.sum())
        sizes_d = np.concatenate(drawn)
        cum = np.cumsum(sizes_d)
        last = int(np.searchsorted(cum, w_d))
        sizes_d = sizes_d[: last + 1].copy()
        sizes_d[-1] -= int(cum[last]) - w_d
        streets_d = np.flatnonzero(geo.street_district == d)
        sw = np.where(geo.street_urban[streets_d], 3.0, 1.0)
        ent_street_parts.append(streets_d[weighted_choice(rng, sw, sizes_d.shape[0])])
        ent_size_parts.append(sizes_d)
        ent_district_parts.append(np.full(sizes_d.shape[0], d, dtype=np.int64))
        ent_ids = n_ent + np.repeat(np.arange(sizes_d.shape[0]), sizes_d)
        slot = np.arange(w_d) - np.repeat(np.cumsum(sizes_d) - sizes_d, sizes_d)
        team_first = n_team + np.cumsum(np.ceil(sizes_d / TEAM_SIZE).astype(np.int64))
        team_first -= np.ceil(sizes_d / TEAM_SIZE).astype(np.int64)
        workplace[members] = ent_ids
        team[members] = team_first[ent_ids - n_ent] + slot // TEAM_SIZE
        n_ent += sizes_d.shape[0]
        n_team = int(team_first[-1] + math.ceil(sizes_d[-1] / TEAM_SIZE))
    ent_size = np.concatenate(ent_size_parts) if ent_size_parts else np.zeros(0, np.int64)
    ent_street = np.concatenate(ent_street_parts) if ent_street_parts else np.zeros(0, np.int64)
    ent_district = (
        np.concatenate(ent_district_parts) if ent_district_parts else np.zeros(0, np.int64)
    )
    ent_cold = np.zeros(n_ent, dtype=bool)
    if n_ent:
        k_cold = min(n_ent, max(2, round(n_w / 40_000)))
        mid = np.flatnonzero((ent_size >= 8) & (ent_size <= 400))
        pool = mid if mid.shape[0] >= k_cold else np.arange(n_ent)
        ent_cold[rng.choice(pool, size=k_cold, replace=False)] = True

    # Visitors: from the other cities, by their traffic with Zhengzhou.
    v_city = weighted_choice(rng, cty.weight, n_vis).astype(np.int32)
    v_age = (18 + np.floor(rng.beta(2.0, 3.0, n_vis) * 52)).astype(np.int64)
    v_male = uniform(rng, n_vis) < 0.6
    v_surname = weighted_choice(rng, surname_p, n_vis)
    v_two = uniform(rng, n_vis) < 0.75
    v_area = city_area[v_city]

    # All persons: residents then visitors.
    n = n_res + n_vis
    age_all = np.concatenate([age, v_age]).astype(np.int32)
    male_all = np.concatenate([male, v_male])
    resident = np.arange(n) < n_res
    birth = birth_dates(start, age_all, rng)
    ids = id_numbers(np.concatenate([area, v_area]), birth, male_all, rng)
    name = names(
        male_all, np.concatenate([surname, v_surname]), np.concatenate([two_char, v_two]), rng
    )
    occ_all = np.concatenate(
        [occ, np.where(v_age <= 60, OCC_WORKER, OCC_NONE).astype(np.int32)]
    ).astype(np.int32)
    home_city = np.concatenate([np.full(n_res, -1, np.int32), v_city]).astype(np.int32)

    # Phones: own from 12 (most old people too); the rest share the household's first phone.
    own = (age_all >= 12) & (uniform(rng, n) < np.where(age_all >= 76, 0.7, 0.97))
    own[~resident] = True
    owner_pos = np.where(own[:n_res], np.arange(n_res), n_res)
    first_owner = np.minimum.reduceat(owner_pos, hh_first[:-1]) if n_res else owner_pos
    lonely = first_owner >= n_res
    own[hh_first[:-1][lonely]] = True
    first_owner = np.where(lonely, hh_first[:-1], first_owner)
    phone_src = np.where(
        own, np.arange(n), np.concatenate([first_owner[p_hh], np.zeros(n_vis, np.int64)])
    )
    owners = np.flatnonzero(own)
    numbers = np.zeros(n, dtype=np.int64)
    numbers[owners] = phone_numbers(owners.shape[0], rng)
    numbers = numbers[phone_src]
    phone2 = own & (age_all >= 20) & (age_all <= 60) & (uniform(rng, n) < 0.13)
    second = np.flatnonzero(phone2)
    numbers2 = np.zeros(n, dtype=np.int64)
    numbers2[second] = phone_numbers(second.shape[0], rng, taken=numbers[owners])
    phone_str = fixed_strings(digits(numbers, 11))
    second_index = np.full(n, -1, dtype=np.int64)
    second_index[second] = np.arange(second.shape[0])
    phone2_str = take(fixed_strings(digits(numbers2[second], 11)), second_index)
    del numbers, numbers2, phone_src, second_index
    birth_city_all = np.concatenate([birth_city, v_city]).astype(np.int32)
    phone_city = np.where(
        resident,
        np.where(
            (birth_city_all >= 0) & (age_all >= 18) & (uniform(rng, n) < 0.2), birth_city_all, -1
        ),
        home_city,
    ).astype(np.int32)

    # Passports, plates, transit cards.
    adult_res = resident & (age_all >= 18) & (age_all <= 70)
    has_passport = (adult_res & (uniform(rng, n) < 0.04)) | (~resident & (uniform(rng, n) < 0.03))
    pp = np.flatnonzero(has_passport)
    pp_num = dedupe(
        integers(rng, 10**7, 10**8, pp.shape[0]),
        lambda bad: integers(rng, 10**7, 10**8, bad.shape[0]),
    )
    passport_all = np.full(n, -1, dtype=np.int64)
    passport_all[pp] = np.arange(pp.shape[0])
    passport = take(numbered("E", pp_num, 8), passport_all)

    county_all = np.concatenate([county, np.zeros(n_vis, dtype=bool)])
    driver_age = (age_all >= 22) & (age_all <= 70)
    has_plate = resident & driver_age & (uniform(rng, n) < np.where(county_all, 0.3, 0.22))
    # Visitors from within a day's drive come by car more often.
    v_drive = np.concatenate([np.zeros(n_res, bool), cty.distance_km[v_city] <= 700])
    has_plate |= ~resident & driver_age & (uniform(rng, n) < np.where(v_drive, 0.18, 0.0))
    plate_owner = np.flatnonzero(has_plate)
    plate_prefix = pa.array(["豫A", *cty.plate])
    prefix_idx = np.where(resident, 0, home_city + 1)[plate_owner]
    plate_strings, _ = plates(take(plate_prefix, prefix_idx), plate_owner.shape[0], rng)
    plate_index = np.full(n, -1, dtype=np.int64)
    plate_index[plate_owner] = np.arange(plate_owner.shape[0])
    plate = take(plate_strings, plate_index)
    taxi_n = int(min(40_000, max(20, n_res // 400)))
    taxi_codes = rng.choice(40_000, size=taxi_n, replace=False)
    taxi_letter = np.frombuffer(b"TUVW", dtype=np.uint8)[taxi_codes // 10_000]
    taxi_plates = join(
        "豫A", fixed_strings(np.hstack([taxi_letter[:, None], digits(taxi_codes % 10_000, 4)]))
    )
    occ_for_driver = occ_all
    drive_w = np.where(occ_for_driver == OCC_NONE, 5.0, 1.0) * (
        resident & has_plate & (age_all >= 23) & (age_all <= 59)
    )
    n_drivers = min(int(np.count_nonzero(drive_w)), max(5, n_res // 600))
    ride_driver = np.zeros(n, dtype=bool)
    if n_drivers:
        cand = np.flatnonzero(drive_w > 0)
        ride_driver[
            rng.choice(cand, size=n_drivers, replace=False, p=drive_w[cand] / drive_w[cand].sum())
        ] = True

    has_card = (
        resident
        & (age_all >= 16)
        & (age_all <= 75)
        & (uniform(rng, n) < np.where(county_all, 0.3, 0.6))
    )
    cards = np.flatnonzero(has_card)
    card_num = dedupe(
        integers(rng, 10**11, 10**12, cards.shape[0]),
        lambda bad: integers(rng, 10**11, 10**12, bad.shape[0]),
    )
    card_index = np.full(n, -1, dtype=np.int64)
    card_index[cards] = np.arange(cards.shape[0])
    card = take(fixed_strings(digits(card_num, 12)), card_index)

    # Addresses: building, unit and room in towns; house numbers in villages.
    rank_in_compound = np.arange(n_hh) - np.repeat(
        np.cumsum(per_compound) - per_compound, per_compound
    )
    hh_per = np.repeat(per_compound, per_compound)
    comp_floors = np.array([6, 11, 18, 26, 33])[
        weighted_choice(rng, [3, 2, 3, 2, 1], len(geo.compound_codes))
    ]
    comp_units = 2 + (uniform(rng, len(geo.compound_codes)) < 0.4)
    floors = comp_floors[hh_compound]
    units = comp_units[hh_compound]
    n_slots = np.ceil(hh_per / 0.85)
    slot = np.floor((rank_in_compound + uniform(rng, n_hh)) * n_slots / hh_per).astype(np.int64)
    per_building = units * floors * 2
    building = slot // per_building + 1
    rem = slot % per_building
    unit = rem // (floors * 2) + 1
    room = ((rem % (floors * 2)) // 2 + 1) * 100 + rem % 2 + 1
    comp_addr = pa.array(geo.compound_address)
    comp_base = pa.array(geo.compound_village_base)
    urban_addr = join(
        take(comp_addr, hh_compound),
        int_strings(building),
        "号楼",
        int_strings(unit),
        "单元",
        int_strings(room),
    )
    rural_addr = join(take(comp_base, hh_compound), int_strings(slot + 1), "号")
    hh_address = pc.if_else(pa.array(geo.compound_rural[hh_compound]), rural_addr, urban_addr)
    del urban_addr, rural_addr, building, unit, room, slot, rem, floors, units

    compound_all = np.concatenate([hh_compound[p_hh], np.full(n_vis, -1)]).astype(np.int64)
    comp_codes = pa.array(geo.compound_codes)
    comm_codes = pa.array(geo.compound_community)
    hh_index = np.concatenate([p_hh, np.full(n_vis, -1)])
    city_names = pa.array([HOME_CITY, *cty.name])

    workplace_all = np.concatenate([workplace, np.full(n_vis, -1)]).astype(np.int32)
    school_all = np.concatenate([school, np.full(n_vis, -1)]).astype(np.int32)
    class_all = np.concatenate([school_class, np.full(n_vis, -1)]).astype(np.int32)
    class_public = np.where(occ_all == OCC_STUDENT, class_all, -1).astype(np.int32)
    care_all = np.concatenate([care_home, np.full(n_vis, -1)]).astype(np.int32)

    persons = pa.table(
        {
            "person": pa.array(np.arange(n, dtype=np.int32)),
            "person_id": numbered("P", np.arange(n), 8),
            "name": name,
            "sex": take(pa.array(["F", "M"]), male_all.astype(np.int64)),
            "birth_date": pa.array(birth.astype("datetime64[D]"), type=pa.date32()),
            "id_number": ids,
            "phone": phone_str,
            "phone2": phone2_str,
            "passport": passport,
            "household": pa.array(hh_index.astype(np.int32)),
            "compound_code": take(comp_codes, compound_all),
            "community_code": take(comm_codes, compound_all),
            "address": take(hh_address, hh_index),
            "resident": pa.array(resident),
            "home_city": take(city_names, home_city.astype(np.int64) + 1),
            "occupation": take(pa.array(list(OCCUPATIONS)), occ_all),
            "workplace": pa.array(workplace_all),
            "school_class": pa.array(class_public),
            "school": pa.array(school_all),
            "care_home": pa.array(care_all),
            "plate": plate,
            "transit_card": card,
        },
        schema=PERSONS,
    )
    del hh_address, name, ids, phone_str, phone2_str, passport, plate, card, birth

    # Enterprises, schools, classes and care homes.
    ent_index = np.arange(n_ent)
    prefix = take(pa.array(["郑州", "河南", "郑州市"]), integers(rng, 0, 3, n_ent))
    word = take(pa.array(list(WORDS)), integers(rng, 0, len(WORDS), n_ent))
    industry = take(pa.array(list(INDUSTRIES)), integers(rng, 0, len(INDUSTRIES), n_ent))
    industry = pc.if_else(pa.array(ent_cold), pa.scalar("冷链物流"), industry)
    suffix = take(
        pa.array(list(COMPANY_SUFFIXES)),
        np.where(ent_size >= 500, 2, integers(rng, 0, 2, n_ent)),
    )
    street_codes = pa.array(geo.street_codes)
    enterprises = pa.table(
        {
            "enterprise": pa.array(ent_index.astype(np.int32)),
            "credit_code": credit_codes(geo.district_codes, ent_district.astype(np.int32), rng),
            "name": join(prefix, word, industry, suffix),
            "street_code": take(street_codes, ent_street),
            "place": numbered("enterprise:E", ent_index, 6),
        },
        schema=ENTERPRISES,
    )
    school_codes = [
        f"41{geo.district_codes[int(school_district[s])][2:6]}{s:04d}" for s in range(n_schools)
    ]
    schools = pa.table(
        {
            "school": pa.array(np.arange(n_schools, dtype=np.int32)),
            "name": pa.array([geo.venues[int(v)].name for v in school_venue]),
            "school_code": pa.array(school_codes, type=pa.string()),
            "street_code": take(street_codes, school_street),
            "place": pa.array([geo.venues[int(v)].code for v in school_venue], type=pa.string()),
        },
        schema=SCHOOLS,
    )
    class_place = numbered("class:C", np.arange(n_classes), 5)
    classes = pa.table(
        {
            "school_class": pa.array(np.arange(n_classes, dtype=np.int32)),
            "school": pa.array(class_school.astype(np.int32)),
            "grade": pa.array(class_grade.astype(np.int8)),
            "class_no": pa.array(class_no.astype(np.int8)),
            "place": class_place,
        },
        schema=CLASSES,
    )
    n_homes = len(home_street_list)
    care_street = np.array(home_street_list, dtype=np.int32)
    care_homes = pa.table(
        {
            "care_home": pa.array(np.arange(n_homes, dtype=np.int32)),
            "name": pa.array(home_names, type=pa.string()),
            "street_code": take(street_codes, care_street),
            "place": numbered("care_home:Y", np.arange(n_homes), 4),
        },
        schema=CARE_HOMES,
    )

    street_all = np.concatenate([street, np.full(n_vis, -1)]).astype(np.int32)
    district_all = np.concatenate([district, np.full(n_vis, -1)]).astype(np.int32)
    compound_first = np.searchsorted(
        compound_all[:n_res], np.arange(len(geo.compound_codes) + 1)
    ).astype(np.int64)
    return Population(
        persons=persons,
        enterprises=enterprises,
        schools=schools,
        classes=classes,
        care_homes=care_homes,
        n=n,
        n_resident=n_res,
        age=age_all,
        male=male_all,
        household=hh_index.astype(np.int32),
        compound=compound_all.astype(np.int32),
        street=street_all,
        district=district_all,
        occupation=occ_all,
        workplace=workplace_all,
        team=np.concatenate([team, np.full(n_vis, -1)]).astype(np.int32),
        school=school_all,
        school_class=class_all,
        care_home=care_all,
        care_unit=np.concatenate([care_unit, np.full(n_vis, -1)]).astype(np.int32),
        phone_owner=own,
        has_phone2=phone2,
        has_plate=has_plate,
        has_card=has_card,
        phone_city=phone_city,
        birth_city=birth_city_all,
        home_city=home_city,
        ride_driver=ride_driver,
        household_compound=hh_compound,
        household_first=hh_first,
        compound_first=compound_first,
        household_place=numbered("household:H", np.arange(n_hh), 8),
        used_compounds=used,
        enterprise_street=ent_street.astype(np.int32),
        enterprise_cold=ent_cold,
        school_venue=school_venue,
        school_street=school_street,
        class_school=class_school.astype(np.int32),
        class_place=class_place,
        care_home_street=care_street,
        taxi_plates=taxi_plates,
    )
