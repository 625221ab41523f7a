"""The contact index against a brute-force overlap join on small random lakes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from citybrain.analysis.presence_index import PresenceIndex, build_index

HOUR = 3600
BASE = np.datetime64("2022-04-01T00:00:00", "s")


def random_lake(seed: int, rows: int = 4000, people: int = 300, places: int = 40) -> pa.Table:
    """Visits with skewed places and dwell times from a minute to several hours."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, places + 1)
    place = rng.choice(places, rows, p=weights / weights.sum())
    start = rng.integers(0, 3 * 24 * HOUR, rows)
    dwell = rng.choice([60, 600, 1800, HOUR, 3 * HOUR, 7 * HOUR], rows)
    return pa.table(
        {
            "person": pa.array(rng.integers(0, people, rows), pa.int64()),
            "place": pa.array(place.astype(np.int32)),
            "start_time": pa.array(BASE + start.astype("timedelta64[s]")),
            "end_time": pa.array(BASE + (start + dwell).astype("timedelta64[s]")),
        }
    )


def brute_force(
    table: pa.Table, cases: set[int], min_overlap: int = 0, cap: int | None = None
) -> set[int]:
    """Every pair of visits compared: the bucketed rule spelled out, no index, no join."""
    person = table.column("person").to_numpy()
    place = table.column("place").to_numpy()
    start = table.column("start_time").to_numpy().astype("int64")
    end = table.column("end_time").to_numpy().astype("int64")
    crowd: dict[tuple[int, int], int] = {}
    for p, s in zip(place, start, strict=True):
        crowd[(p, s // HOUR)] = crowd.get((p, s // HOUR), 0) + 1
    seeds = {(p, s, e) for q, p, s, e in zip(person, place, start, end, strict=True) if q in cases}
    found = set()
    for q, p, s, e in zip(person, place, start, end, strict=True):
        if q in cases or (cap is not None and crowd[(p, s // HOUR)] > cap):
            continue
        for sp, ss, se in seeds:
            overlap = min(e, se) - max(s, ss)
            probed = ss // HOUR - 1 <= s // HOUR <= se // HOUR
            if sp == p and probed and overlap > 0 and overlap >= min_overlap:
                found.add(int(q))
    return found


@pytest.fixture(params=[1, 2])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[pa.Table, PresenceIndex]:
    table = random_lake(request.param)
    build_index(table, tmp_path / "index")
    return table, PresenceIndex(tmp_path / "index")


@pytest.mark.parametrize("min_overlap", [0, 900])
def test_first_hop_equals_brute_force(
    lake: tuple[pa.Table, PresenceIndex], min_overlap: int
) -> None:
    table, index = lake
    cases = {3, 17, 40, 41, 250}
    hop = index.first_hop(sorted(cases), min_overlap_seconds=min_overlap)
    assert set(hop.contacts.tolist()) == brute_force(table, cases, min_overlap)
    assert hop.contacts.size > 0
    assert hop.rows_read < table.num_rows


def test_crowd_cap_removes_exactly_the_busy_place_hours(
    lake: tuple[pa.Table, PresenceIndex],
) -> None:
    table, index = lake
    cases = {5, 6, 7, 8, 9, 10}
    uncapped = index.first_hop(sorted(cases))
    capped = index.first_hop(sorted(cases), crowd_cap=4)
    assert capped.busy_place_hours > 0
    assert set(capped.contacts.tolist()) == brute_force(table, cases, cap=4)
    assert set(capped.contacts.tolist()) < set(uncapped.contacts.tolist())
    assert capped.rows_read + capped.busy_visits == uncapped.rows_read


def test_two_hops_exclude_the_cases_and_the_first_hop(
    lake: tuple[pa.Table, PresenceIndex],
) -> None:
    table, index = lake
    cases = {1, 2}
    first, second = index.two_hops(sorted(cases))
    hop1 = set(first.contacts.tolist())
    assert hop1 == brute_force(table, cases)
    hop2 = set(second.contacts.tolist())
    assert hop2 == brute_force(table, hop1) - cases
    assert not hop2 & (hop1 | cases)


def test_string_places_and_a_parquet_source(tmp_path: Path) -> None:
    table = random_lake(3, rows=500)
    named = table.set_column(
        1, "place", pa.array([f"P{p:03d}" for p in table.column("place").to_pylist()])
    )
    folder = tmp_path / "lake" / "day=01"
    folder.mkdir(parents=True)
    pq.write_table(named, folder / "part.parquet")
    meta = build_index(tmp_path / "lake", tmp_path / "index")
    assert meta["rows"] == 500 and meta["place_coded"]
    index = PresenceIndex(tmp_path / "index")
    hop = index.first_hop([1, 2, 3])
    assert set(hop.contacts.tolist()) == brute_force(table, {1, 2, 3})
    codes = np.unique(index.visits([1])[1])
    assert all(v.startswith("P") for v in index.place_values(codes).to_pylist())


def test_no_visits_no_contacts(lake: tuple[pa.Table, PresenceIndex]) -> None:
    _, index = lake
    hop = index.first_hop([10_000_000])
    assert hop.contacts.size == 0 and hop.seeds == 0 and hop.rows_read == 0
