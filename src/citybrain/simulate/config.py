"""What a simulation run is asked for: scale, seed, period, fault rates, and the city's
geography handed in as plain data (the simulator imports no platform code)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

FULL_CITY_PEOPLE = 12_600_000
DEFAULT_START = dt.date(2020, 1, 10)  # ten days before the first cases were confirmed


@dataclass(frozen=True)
class FaultRates:
    """How often the agencies' files go wrong, as shares of rows (or of files for late ones).

    The defaults are what a data centre saw in practice: a few per cent of rows with a problem.
    """

    name_typo: float = 0.01  # a character of the name replaced by a similar one
    bad_checksum: float = 0.003  # resident ID with a wrong check digit
    missing_phone: float = 0.02  # phone left empty where the feed has one
    duplicate: float = 0.005  # the same row sent twice (same or later file)
    late_file: float = 0.05  # share of a day's rows held back and sent in a later file
    out_of_order: float = 0.3  # share of files whose rows are not in time order
    malformed: float = 0.0  # unparseable rows (bad dates, cut-off lines) — tests raise it

    @classmethod
    def none(cls) -> FaultRates:
        """No faults at all: clean feeds, for tests that need exact counts."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class SimulationConfig:
    """One simulation run."""

    people: int = 20_000
    days: int = 30
    seed: int = 7
    start: dt.date = DEFAULT_START
    faults: FaultRates = field(default_factory=FaultRates)


class AreaInput(NamedTuple):
    """An area of the hierarchy: city, district, street or community."""

    code: str
    level: str
    name: str
    parent_code: str | None


class CompoundInput(NamedTuple):
    """A compound (小区) with where it lies and how many households it has at full scale."""

    code: str
    community_code: str
    name: str
    address: str
    households_estimate: int
    lon: float | None
    lat: float | None


class PlaceInput(NamedTuple):
    """A place of the platform's geography: gate, checkpoint, station, airport or venue."""

    code: str
    kind: str
    subkind: str | None
    name: str
    area_code: str
    compound_code: str | None


@dataclass(frozen=True)
class GeoInput:
    """The platform's geography as plain rows, passed in by the command line."""

    areas: Sequence[AreaInput]
    compounds: Sequence[CompoundInput]
    places: Sequence[PlaceInput]
