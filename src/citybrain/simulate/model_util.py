"""Small vectorised helpers the city model shares: seeded generators, strings built from byte
matrices or dictionaries, timestamps, and the 2020 calendar (春运, 春节, 一级响应).

Everything here is deterministic: generators are PCG64 seeded from the run's seed and fixed
integer stream keys (never ``hash()``), and strings are assembled from numpy arrays in one go.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from citybrain.simulate.schema import TS

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
I8 = npt.NDArray[np.int8]
F32 = npt.NDArray[np.float32]
IDX = npt.NDArray[np.signedinteger[Any]]  # indexes of any width
U8 = npt.NDArray[np.uint8]

DAY = 86_400
HOUR = 3_600
MINUTE = 60
NEVER = np.iinfo(np.int64).max // 4  # a time after every simulated time, safe to add to

_EPOCH = dt.date(1970, 1, 1)

# Stream keys: each part of the model draws from its own generator so that a change in one
# part does not shift the draws of another.
STREAM_POPULATION = 1
STREAM_PLACES = 2
STREAM_TRAVEL = 3
STREAM_MOVEMENT = 4
STREAM_OUTBREAK = 5
STREAM_HABIT = 6
STREAM_EVENTS = 7


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A PCG64 generator for ``seed`` and integer stream ``keys``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed & 0xFFFFFFFF, *keys])))


def uniform(rng: np.random.Generator, size: int | tuple[int, ...]) -> F64:
    """Uniform draws in [0, 1) as a float64 array of ``size``."""
    return np.asarray(rng.random(size), dtype=np.float64)


def integers(rng: np.random.Generator, low: int, high: int, size: int | tuple[int, ...]) -> I64:
    """Integers in [low, high) as an int64 array of ``size``."""
    return np.asarray(rng.integers(low, high, size), dtype=np.int64)


def day_seconds(date: dt.date) -> int:
    """Seconds from 1970-01-01 00:00 to 00:00 of ``date`` (naive local wall time)."""
    return (date - _EPOCH).days * DAY


def digits(values: npt.NDArray[np.integer], width: int) -> U8:
    """ASCII digits of non-negative integers, zero-padded to ``width``: an (n, width) matrix."""
    v = values.astype(np.int64, copy=True)
    out = np.empty((v.shape[0], width), dtype=np.uint8)
    for col in range(width - 1, -1, -1):
        out[:, col] = (v % 10).astype(np.uint8) + 48
        v //= 10
    return out


def fixed_strings(matrix: U8) -> pa.StringArray:
    """An Arrow string array whose row i is the bytes of ``matrix[i]`` (UTF-8, fixed width)."""
    n, width = matrix.shape
    offsets = np.arange(0, n * width + 1, width, dtype=np.int32)
    data = np.ascontiguousarray(matrix)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data.tobytes()))


def utf8_row(text: str, n: int) -> U8:
    """``text`` as UTF-8 bytes repeated over ``n`` rows: a block for :func:`fixed_strings`."""
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    return np.broadcast_to(raw, (n, raw.shape[0]))


def numbered(prefix: str, values: npt.NDArray[np.integer], width: int) -> pa.StringArray:
    """``prefix`` followed by zero-padded numbers: ``numbered("P", [12], 8)`` → ``P00000012``."""
    n = values.shape[0]
    return fixed_strings(np.hstack([utf8_row(prefix, n), digits(values, width)]))


def column(table: pa.Table, name: str) -> pa.Array:
    """A column as one array, without copying when it already is one chunk."""
    col = table.column(name)
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


def take(strings: pa.Array, index: npt.NDArray[np.integer]) -> pa.Array:
    """``strings[index]`` with nulls where ``index`` is negative."""
    idx = np.asarray(index)
    mask = idx < 0
    if mask.any():
        return strings.take(pa.array(np.where(mask, 0, idx).astype(np.int64), mask=mask))
    return strings.take(pa.array(idx.astype(np.int64, copy=False)))


def join(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation of string arrays and literals (null if any part is null)."""
    return pc.binary_join_element_wise(*parts, "")


def int_strings(values: npt.NDArray[np.integer]) -> pa.Array:
    """Integers as decimal strings without padding."""
    return pc.cast(pa.array(values.astype(np.int64, copy=False)), pa.string())


def ts(values: npt.NDArray[np.integer], mask: B | None = None) -> pa.Array:
    """Seconds since the epoch as ``timestamp[s]`` (null where ``mask``)."""
    return pa.array(values.astype(np.int64, copy=False), type=TS, mask=mask)


def nulls(n: int, type_: pa.DataType) -> pa.Array:
    """An all-null array."""
    return pa.nulls(n, type=type_)


def constant(value: str, n: int) -> pa.Array:
    """A string array with ``value`` in every row (dictionary-decoded: cheap)."""
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, dtype=np.int32)), pa.array([value])
    ).cast(pa.string())


def weighted_choice(rng: np.random.Generator, weights: Sequence[float] | F64, n: int) -> I64:
    """``n`` indices drawn with the given relative weights (inverse-CDF on one uniform each)."""
    w = np.asarray(weights, dtype=np.float64)
    cum = np.cumsum(w)
    pick = np.searchsorted(cum, uniform(rng, n) * cum[-1], side="right")
    return np.asarray(np.minimum(pick, w.shape[0] - 1), dtype=np.int64)


def group_starts(keys: npt.NDArray[np.integer], groups: int) -> I64:
    """Start offsets (length ``groups + 1``) of each group in an array sorted by ``keys``."""
    return np.searchsorted(keys, np.arange(groups + 1), side="left").astype(np.int64)


def expand_ranges(starts: I64, counts: I64) -> tuple[I64, I64]:
    """For ranges [start, start+count): (range number, position) of every element, in order."""
    total = int(counts.sum())
    owner = np.repeat(np.arange(counts.shape[0], dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    pos = np.arange(total, dtype=np.int64) - first[owner] + starts[owner]
    return owner, pos


def sorted_contains(sorted_values: npt.NDArray[np.integer], values: npt.NDArray[np.integer]) -> B:
    """Whether each of ``values`` is in the sorted array ``sorted_values``."""
    if sorted_values.shape[0] == 0:
        return np.zeros(values.shape[0], dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_values, values), sorted_values.shape[0] - 1)
    return np.asarray(sorted_values[pos] == values, dtype=bool)


def dedupe(keys: I64, redraw: Callable[[I64], I64], taken: I64 | None = None) -> I64:
    """Make ``keys`` distinct (and distinct from ``taken``): the later of equal keys are
    replaced by ``redraw(positions)`` until none repeat. One sort of the whole array, then
    rounds over the few replaced values only; never a loop per value."""
    out = keys.copy()
    order = np.argsort(out, kind="stable")
    sorted_keys = out[order]
    repeat = np.zeros(out.shape[0], dtype=bool)
    repeat[order[1:]] = sorted_keys[1:] == sorted_keys[:-1]
    if taken is not None and taken.shape[0]:
        repeat |= sorted_contains(np.sort(taken), out)
    bad = np.flatnonzero(repeat)
    parts = [out[~repeat]] if taken is None else [out[~repeat], taken]
    good = np.sort(np.concatenate(parts))
    for _ in range(100):
        if bad.shape[0] == 0:
            return out
        fresh = redraw(bad)
        clash = sorted_contains(good, fresh)
        inner = np.argsort(fresh, kind="stable")
        twin = np.zeros(fresh.shape[0], dtype=bool)
        twin[inner[1:]] = fresh[inner][1:] == fresh[inner][:-1]
        ok = ~clash & ~twin
        out[bad[ok]] = fresh[ok]
        good = np.insert(good, np.searchsorted(good, fresh[ok]), fresh[ok])
        good.sort(kind="stable")
        bad = bad[~ok]
    raise RuntimeError("could not draw distinct values")


# --- the calendar ---------------------------------------------------------------------------

SPRING_FESTIVAL = dt.date(2020, 1, 25)  # 春节 (Chinese New Year's Day, 2020)
FIRST_RESPONSE = dt.date(2020, 1, 25)  # 河南 一级响应, from the day of the festival
TESTING_FROM = dt.date(2020, 1, 20)  # nucleic-acid test kits at the fever clinics
WINTER_BREAK = (dt.date(2020, 1, 18), dt.date(2020, 2, 16))  # 寒假 of the schools
SCHOOLS_CLOSED_FROM = dt.date(2020, 1, 25)  # 延期开学: schools stayed closed after the break
HOLIDAY = (dt.date(2020, 1, 24), dt.date(2020, 2, 2))  # 春节假期 as extended
DELAYED_RETURN = (dt.date(2020, 2, 3), dt.date(2020, 2, 9))  # enterprises not before Feb 10
EXTRA_WORKDAYS = (dt.date(2020, 1, 19), dt.date(2020, 2, 1))  # 调休: Sunday/Saturday worked


@dataclass(frozen=True)
class DayContext:
    """How the city behaves on one date: who works, whether schools are open, how much people
    go out, travel and ride, and how quickly the sick see a doctor."""

    date: dt.date
    index: int
    start: int  # seconds of 00:00
    workday: bool
    attendance: float  # share of workers at their workplace
    school_open: bool
    venue_factor: float  # venue visits relative to an ordinary day
    transit_factor: float
    ride_factor: float
    response: bool  # first-level response in force (一级响应)
    testing: bool  # clinics test for the virus
    clinic_delay_days: float  # mean days from symptom onset to a fever clinic
    family_visits: float  # share of households visiting relatives (走亲戚, 年夜饭)


def day_context(date: dt.date, index: int) -> DayContext:
    """The calendar's rules for ``date`` (the run's ``index``-th day)."""
    weekend = date.weekday() >= 5 and date not in EXTRA_WORKDAYS
    holiday = HOLIDAY[0] <= date <= HOLIDAY[1]
    delayed = DELAYED_RETURN[0] <= date <= DELAYED_RETURN[1]
    response = date >= FIRST_RESPONSE
    if holiday:
        attendance = 0.2  # utilities, hospitals, supermarkets, police, factories keep working
    elif delayed:
        attendance = 0.35
    elif response and date > DELAYED_RETURN[1]:
        # Return to work (复工复产) in steps over the weeks after Feb 10.
        attendance = min(0.85, 0.4 + 0.025 * (date - DELAYED_RETURN[1]).days)
    else:
        attendance = 0.92
    if weekend:
        attendance *= 0.25
    # The week before the festival many leave early.
    if dt.date(2020, 1, 20) <= date < HOLIDAY[0]:
        attendance *= 0.9
    in_break = WINTER_BREAK[0] <= date <= WINTER_BREAK[1]
    school_open = not weekend and not in_break and not date >= SCHOOLS_CLOSED_FROM
    if date > dt.date(2020, 4, 30):
        school_open = not weekend and not in_break
    if response:
        # One member per household out for groceries, buses and metro thinned out.
        venue, transit, ride = 0.6, 0.5, 0.5
    elif holiday or date >= dt.date(2020, 1, 20):
        venue, transit, ride = 1.15, 0.8, 1.0  # shopping for the festival (年货)
    else:
        venue, transit, ride = 1.0, 1.0, 1.0
    if weekend and not response:
        venue *= 1.25
        transit *= 0.7
    # New Year's Eve dinner with the family, and visits in the first days of the year.
    if date == HOLIDAY[0]:
        family = 0.35
    elif HOLIDAY[0] < date <= HOLIDAY[0] + dt.timedelta(days=3):
        family = 0.12
    elif weekend or holiday:
        family = 0.03 if response else 0.05
    else:
        family = 0.01
    return DayContext(
        date=date,
        index=index,
        start=day_seconds(date),
        workday=not weekend and not holiday,
        attendance=attendance,
        school_open=school_open,
        venue_factor=venue,
        transit_factor=transit,
        ride_factor=ride,
        response=response,
        testing=date >= TESTING_FROM,
        clinic_delay_days=5.0 if date < dt.date(2020, 1, 20) else 2.5,
        family_visits=family,
    )
