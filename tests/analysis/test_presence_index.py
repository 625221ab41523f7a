"""The contact index against plain DuckDB overlap joins on small random tables of stays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from citybrain.analysis import presence_index
from citybrain.analysis.presence_index import (
    LAKE_COLUMNS,
    Columns,
    PresenceIndex,
    add_delta,
    build_index,
    compact,
    open_index,
    relabel,
    sync_lake_index,
)
from citybrain.datahub.lake import LakePaths

HOUR = 3600
BASE = np.datetime64("2022-04-01T00:00:00", "s")
KINDS = np.array(["venue", "cell", "train"])
# The test tables use the lake's column names.
COLUMNS = LAKE_COLUMNS


def random_stays(
    seed: int, rows: int = 4000, people: int = 300, places: int = 40, first_record: int = 0
) -> pa.Table:
    """Stays with skewed places, dwell times from none to several hours, some rows missing a
    place, and carriage and row on train stays only (the lake's presence columns)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, places + 1)
    place = rng.choice(places, rows, p=weights / weights.sum())
    start = rng.integers(0, 3 * 24 * HOUR, rows)
    dwell = rng.choice([0, 60, 600, 1800, HOUR, 3 * HOUR, 7 * HOUR], rows)
    kind = KINDS[place % 3]
    train = kind == "train"
    return pa.table(
        {
            "record_id": pa.array(np.arange(first_record, first_record + rows), pa.int64()),
            "person_key": pa.array(rng.integers(0, people, rows) * 7 + 1_000, pa.int64()),
            "place": pa.array(
                [
                    None if r < 0.01 else f"P{p:03d}"
                    for p, r in zip(place, rng.random(rows), strict=True)
                ],
                pa.string(),
            ),
            "place_kind": pa.array(kind),
            "start_time": pa.array(BASE + start.astype("timedelta64[s]")),
            "end_time": pa.array(BASE + (start + dwell).astype("timedelta64[s]")),
            "carriage": pa.array(rng.integers(1, 17, rows), pa.int32(), mask=~train),
            "row": pa.array(rng.integers(1, 30, rows), pa.int32(), mask=~train),
        }
    )


def reference_contacts(
    table: pa.Table, cases: set[int], min_overlap: int = 0, cap: int | None = None
) -> set[int]:
    """The bucketed join spelled out in DuckDB: the cases' stays probe their hour buckets from
    one before the start to the one holding the end, then the exact overlap filter; the crowd
    of a place-hour is the stays (with a duration) starting in it."""
    con = duckdb.connect()
    con.register("stays", table)
    con.register("cases", pa.table({"person_key": pa.array(sorted(cases), pa.int64())}))
    rows = con.execute(
        """
        WITH t AS (SELECT person_key, place, epoch(start_time)::BIGINT AS s,
                          epoch(end_time)::BIGINT AS e FROM stays WHERE place IS NOT NULL),
        seeds AS (SELECT DISTINCT place, s, e FROM t WHERE person_key IN (SELECT * FROM cases)),
        probes AS (SELECT place, s, e, b FROM seeds, range(s // 3600 - 1, e // 3600 + 1) r(b)),
        crowd AS (SELECT place, s // 3600 AS b, count(*) AS n FROM t WHERE e > s GROUP BY ALL)
        SELECT DISTINCT t.person_key FROM t
        JOIN probes p ON p.place = t.place AND p.b = t.s // 3600
        JOIN crowd c ON c.place = t.place AND c.b = t.s // 3600
        WHERE least(t.e, p.e) - greatest(t.s, p.s) > 0
          AND least(t.e, p.e) - greatest(t.s, p.s) >= ?
          AND (? IS NULL OR c.n <= ?)
          AND t.person_key NOT IN (SELECT * FROM cases)
        """,
        [min_overlap, cap, cap],
    ).fetchall()
    return {int(r[0]) for r in rows}


def reference_rows(
    table: pa.Table, by: str, items: pa.Table, kinds: list[str] | None
) -> set[tuple[Any, ...]]:
    """Stays of the ``items`` (``by`` value, ws, we) overlapping their windows, as pres rows."""
    con = duckdb.connect()
    con.register("stays", table)
    con.register("items", items)
    kind = "AND t.place_kind IN (SELECT unnest(?))" if kinds else "AND ? IS NULL"
    rows = con.execute(
        f"""
        WITH t AS (SELECT record_id, person_key, place, place_kind,
                          epoch(start_time)::BIGINT AS s, epoch(end_time)::BIGINT AS e,
                          carriage, "row" FROM stays WHERE place IS NOT NULL)
        SELECT DISTINCT t.* FROM t JOIN items i ON i.{by} = t.{by}
        WHERE t.e > t.s AND t.s < i.we AND t.e > i.ws {kind}
        """,
        [kinds],
    ).fetchall()
    return set(rows)


def as_rows(table: pa.Table) -> set[tuple[Any, ...]]:
    assert table.column_names == [
        "record_id",
        "person_key",
        "place",
        "place_kind",
        "s",
        "e",
        "carriage",
        "row",
    ]
    rows = list(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))
    assert len(rows) == len(set(rows)), "a stay returned twice"
    return set(rows)


def epoch(hours: float) -> int:
    return int((BASE - np.datetime64("1970-01-01T00:00:00", "s")).astype(int) + hours * HOUR)


@pytest.fixture(scope="module", params=[1, 2])
def lake(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[pa.Table, PresenceIndex]:
    table = random_stays(request.param)
    folder = tmp_path_factory.mktemp("index")
    build_index(table, folder / "index", COLUMNS)
    return table, PresenceIndex(folder / "index")


@pytest.mark.parametrize("min_overlap", [0, 900])
def test_first_hop_equals_the_duckdb_join(
    lake: tuple[pa.Table, PresenceIndex], min_overlap: int
) -> None:
    table, index = lake
    keys = sorted(set(table.column("person_key").to_pylist()))
    cases = {keys[3], keys[17], keys[40], keys[41], keys[250]}
    hop = index.first_hop(sorted(cases), min_overlap_seconds=min_overlap)
    assert set(hop.contacts.tolist()) == reference_contacts(table, cases, min_overlap)
    assert hop.contacts.size > 0 and list(hop.contacts) == sorted(hop.contacts)
    assert hop.rows_read < table.num_rows


def test_a_stay_between_two_seeds_of_one_place_hour(tmp_path: Path) -> None:
    """Two disjoint stays of a case in one place-hour: a stay in the gap, or touching either,
    is no contact; one overlapping either is."""
    at = np.datetime64("2022-04-01T00:00:00", "s")

    def t(hhmm: str) -> np.datetime64:
        return at + np.timedelta64(int(hhmm[:2]) * 60 + int(hhmm[3:]), "m")

    stays = [
        (1, "10:00", "10:10"),
        (1, "10:40", "10:50"),
        (2, "10:15", "10:35"),  # in the gap
        (3, "10:45", "10:46"),  # inside the second
        (4, "10:05", "10:06"),  # inside the first
        (5, "10:10", "10:40"),  # touches both
        (6, "10:20", "11:20"),  # over the second
        (7, "09:30", "10:01"),  # from the hour before into the first
        (8, "10:50", "11:00"),  # touches the second's end
    ]
    table = pa.table(
        {
            "person_key": pa.array([s[0] for s in stays], pa.int64()),
            "place": ["A"] * len(stays),
            "start_time": pa.array([t(s[1]) for s in stays]),
            "end_time": pa.array([t(s[2]) for s in stays]),
        }
    )
    build_index(table, tmp_path / "index", Columns(person="person_key"))
    index = PresenceIndex(tmp_path / "index")
    assert index.first_hop([1]).contacts.tolist() == [3, 4, 6, 7]
    assert reference_contacts(table, {1}) == {3, 4, 6, 7}
    assert index.first_hop([1], min_overlap_seconds=60).contacts.tolist() == [3, 4, 6, 7]
    assert index.first_hop([1], min_overlap_seconds=120).contacts.tolist() == [6]


def test_crowd_cap_removes_exactly_the_busy_place_hours(
    lake: tuple[pa.Table, PresenceIndex],
) -> None:
    table, index = lake
    keys = sorted(set(table.column("person_key").to_pylist()))
    cases = set(keys[5:11])
    uncapped = index.first_hop(sorted(cases))
    capped = index.first_hop(sorted(cases), crowd_cap=4)
    assert capped.busy_place_hours > 0
    assert set(capped.contacts.tolist()) == reference_contacts(table, cases, cap=4)
    assert set(capped.contacts.tolist()) < set(uncapped.contacts.tolist())
    assert capped.rows_read + capped.busy_visits == uncapped.rows_read
    # A cap above every crowd changes nothing.
    assert np.array_equal(
        index.first_hop(sorted(cases), crowd_cap=10**6).contacts, uncapped.contacts
    )


def test_two_hops_exclude_the_cases_and_the_first_hop(
    lake: tuple[pa.Table, PresenceIndex],
) -> None:
    table, index = lake
    keys = sorted(set(table.column("person_key").to_pylist()))
    cases = {keys[1], keys[2]}
    first, second = index.two_hops(sorted(cases))
    hop1 = set(first.contacts.tolist())
    assert hop1 == reference_contacts(table, cases)
    hop2 = set(second.contacts.tolist())
    assert hop2 == reference_contacts(table, hop1) - cases
    assert not hop2 & (hop1 | cases)


def test_stays_of_equals_the_duckdb_overlap_join(lake: tuple[pa.Table, PresenceIndex]) -> None:
    table, index = lake
    keys = sorted(set(table.column("person_key").to_pylist()))
    people = [keys[0], keys[7], keys[7], keys[99], 5]  # one twice, one unknown
    ws = [epoch(0), epoch(10), epoch(40), epoch(30), epoch(0)]
    we = [epoch(24), epoch(20), epoch(50), epoch(31.5), epoch(99)]
    items = pa.table({"person_key": pa.array(people, pa.int64()), "ws": ws, "we": we})
    got = as_rows(index.stays_of(people, ws, we))
    assert got == reference_rows(table, "person_key", items, None)
    assert got and any(r[6] is not None for r in as_rows(index.stays_of(keys)))
    trains = as_rows(index.stays_of(people, ws, we, kinds=["train"]))
    assert trains == reference_rows(table, "person_key", items, ["train"])
    # One window for all, and none: every stay of theirs.
    unbounded = pa.table(
        {"person_key": pa.array(keys[:5], pa.int64()), "ws": [0] * 5, "we": [2**40] * 5}
    )
    assert as_rows(index.stays_of(keys[:5])) == reference_rows(table, "person_key", unbounded, None)
    assert as_rows(index.stays_of(keys[:5], 0, 2**40)) == as_rows(index.stays_of(keys[:5]))


def test_at_places_equals_the_duckdb_overlap_join(lake: tuple[pa.Table, PresenceIndex]) -> None:
    table, index = lake
    places = ["P000", "P001", "P007", "P007", "P039", "nowhere"]
    ws = [epoch(5), epoch(0), epoch(30), epoch(60), epoch(0), epoch(0)]
    we = [epoch(5.5), epoch(72), epoch(31), epoch(61), epoch(80), epoch(80)]
    items = pa.table({"place": places, "ws": ws, "we": we})
    got = index.at_places(places, ws, we)
    assert as_rows(got) == reference_rows(table, "place", items, None)
    assert got.num_rows > 0 and got.schema.field("place").type == pa.string()
    venues = index.at_places(places, ws, we, kinds=["venue", "cell"])
    assert as_rows(venues) == reference_rows(table, "place", items, ["venue", "cell"])
    assert index.at_places([]).num_rows == 0


def test_deltas_and_compaction_answer_as_one_build(tmp_path: Path) -> None:
    parts = [random_stays(10 + i, rows=1500, first_record=10_000 * i) for i in range(4)]
    whole = pa.concat_tables(parts)
    build_index(whole, tmp_path / "whole", COLUMNS)
    build_index(parts[0], tmp_path / "grown", COLUMNS)
    for part in parts[1:]:
        meta = add_delta(tmp_path / "grown", part, COLUMNS, compact=False)
    assert len(meta["segments"]) == 4 and meta["rows"] == PresenceIndex(tmp_path / "whole").rows
    whole_index = PresenceIndex(tmp_path / "whole")
    keys = sorted(set(whole.column("person_key").to_pylist()))

    def answers(index: PresenceIndex) -> tuple[Any, ...]:
        first, second = index.two_hops(keys[:3])
        capped = index.first_hop(keys[:20], crowd_cap=3, min_overlap_seconds=300)
        return (
            first.contacts.tolist(),
            second.contacts.tolist(),
            capped.contacts.tolist(),
            capped.busy_place_hours,
            as_rows(index.stays_of(keys[::5], epoch(10), epoch(40))),
            as_rows(index.at_places(["P001", "P020"], epoch(0), epoch(30))),
        )

    expected = answers(whole_index)
    assert answers(PresenceIndex(tmp_path / "grown")) == expected
    opened = PresenceIndex(tmp_path / "grown")
    meta = compact(tmp_path / "grown")
    assert len(meta["segments"]) == 1
    assert answers(PresenceIndex(tmp_path / "grown")) == expected
    assert answers(opened) == expected  # an index opened before keeps its generation
    # A delta past a quarter of the main segment merges by itself.
    build_index(parts[0], tmp_path / "auto", COLUMNS)
    meta = add_delta(tmp_path / "auto", pa.concat_tables(parts[1:]), COLUMNS)
    assert len(meta["segments"]) == 1
    assert answers(PresenceIndex(tmp_path / "auto")) == expected


def test_open_index_is_kept_until_the_index_changes(tmp_path: Path) -> None:
    """A worker's open index is reused while unchanged, reopened after a delta, and both
    snapshots answer for their own state."""
    parts = [random_stays(40 + i, rows=1200, first_record=10_000 * i) for i in range(2)]
    build_index(parts[0], tmp_path / "index", COLUMNS)
    first = open_index(tmp_path / "index")
    assert open_index(tmp_path / "index") is first
    rows_before = first.rows
    add_delta(tmp_path / "index", parts[1], COLUMNS, compact=False)
    second = open_index(tmp_path / "index")
    fresh = PresenceIndex(tmp_path / "index")
    assert second is not first and second.rows == fresh.rows > rows_before
    keys = sorted(set(pa.concat_tables(parts).column("person_key").to_pylist()))[:5]
    assert second.first_hop(keys).contacts.tolist() == fresh.first_hop(keys).contacts.tolist()
    assert first.rows == rows_before  # the snapshot held before the delta is unchanged


def test_small_partitions_and_a_tight_memory_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The external sort and the chunked reads give the same index in many small steps."""
    table = random_stays(5)
    build_index(table, tmp_path / "plain", COLUMNS)
    monkeypatch.setattr(presence_index, "PARTITION_ROWS", 300)
    monkeypatch.setattr(presence_index, "SCAN_BATCH", 700)
    monkeypatch.setattr(presence_index, "CANDIDATE_CHUNK", 100)
    monkeypatch.setattr(presence_index, "TAKE_ROWS", 37)
    build_index(table, tmp_path / "small", COLUMNS)
    keys = sorted(set(table.column("person_key").to_pylist()))
    plain, small = (
        PresenceIndex(tmp_path / "plain"),
        PresenceIndex(tmp_path / "small", resident_bytes=1),
    )
    assert as_rows(plain.stays_of(keys)) == as_rows(small.stays_of(keys))
    for segment in (plain.segments[0], small.segments[0]):
        rows = np.arange(segment.rows)
        place, (start, _) = segment.places_of(rows), segment.times(rows)
        key = (place << 32) | start
        assert np.all(np.diff(key) >= 0)  # sorted by (place, start)
        assert np.array_equal(segment.sample, key[:: presence_index.SAMPLE_ROWS])
        by_person = segment.person[segment.people_rows]
        assert np.all(np.diff(by_person.astype(np.int64)) >= 0)  # grouped by person
    for overlap in (0, 600):
        assert np.array_equal(
            plain.first_hop(keys[:30], min_overlap_seconds=overlap).contacts,
            small.first_hop(keys[:30], min_overlap_seconds=overlap).contacts,
        )


def test_an_empty_index_answers_nothing(tmp_path: Path) -> None:
    table = random_stays(3).slice(0, 0)
    meta = build_index(table, tmp_path / "index", COLUMNS)
    assert meta["rows"] == 0 and meta["segments"] == []
    index = PresenceIndex(tmp_path / "index")
    hop = index.first_hop([1, 2, 3])
    assert hop.contacts.size == 0 and hop.seeds == 0 and hop.rows_read == 0
    assert index.stays_of([1]).num_rows == 0 and index.at_places(["P001"]).num_rows == 0
    first, second = index.two_hops([1])
    assert first.contacts.size == 0 and second.contacts.size == 0
    # Stays added to the empty index make it answer.
    add_delta(tmp_path / "index", random_stays(3), COLUMNS)
    assert PresenceIndex(tmp_path / "index").stays_of([1_000]).num_rows > 0


def test_integer_places_and_epoch_seconds_from_parquet(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    start = epoch(0) + rng.integers(0, 48 * HOUR, 800)
    table = pa.table(
        {
            "who": pa.array(rng.integers(0, 50, 800), pa.int64()),
            "where": pa.array(rng.integers(0, 10, 800), pa.int32()),
            "since": pa.array(start),
            "until": pa.array(start + rng.integers(60, 4 * HOUR, 800)),
        }
    )
    folder = tmp_path / "lake" / "day=01"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "part.parquet")
    build_index(tmp_path / "lake", tmp_path / "index", Columns("who", "where", "since", "until"))
    index = PresenceIndex(tmp_path / "index")
    stays = index.stays_of([1, 2])
    assert stays.schema.field("place").type == pa.int64()
    assert stays.column("record_id").null_count == stays.num_rows
    named = table.rename_columns(["person_key", "place", "start_time", "end_time"])
    named = named.set_column(
        2, "start_time", pa.array((named.column("start_time").to_numpy()).astype("datetime64[s]"))
    )
    named = named.set_column(
        3, "end_time", pa.array((named.column("end_time").to_numpy()).astype("datetime64[s]"))
    )
    assert set(index.first_hop([1, 2, 3]).contacts.tolist()) == reference_contacts(named, {1, 2, 3})


def write_lake(paths: LakePaths, name: str, table: pa.Table) -> None:
    folder = paths.kind_dir("presence") / "category=telecom_cell" / "day=2022-04-01"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.drop_columns(["person_key"]), folder / f"{name}.parquet")


def write_keys(paths: LakePaths, tables: list[pa.Table]) -> None:
    keys = pa.concat_tables(t.select(["record_id", "person_key"]) for t in tables)
    path = paths.root / "analysis" / "person_keys.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(keys.sort_by("record_id"), path)


def test_sync_follows_the_lake_and_linkage(tmp_path: Path) -> None:
    paths = LakePaths(tmp_path / "data")
    first = random_stays(20, rows=2000)
    second = random_stays(21, rows=400, first_record=10_000)
    late = random_stays(22, rows=300, first_record=20_000)
    write_lake(paths, "f1", first)
    write_keys(paths, [first])
    summary = sync_lake_index(paths)
    assert summary["action"] == "built" and summary["parts_added"] == 1

    def check(tables: list[pa.Table]) -> None:
        whole = pa.concat_tables(tables)
        index = PresenceIndex(paths.root / "analysis" / "presence_index")
        keys = sorted(set(whole.column("person_key").to_pylist()))
        assert set(index.first_hop(keys[:4]).contacts.tolist()) == reference_contacts(
            whole, set(keys[:4])
        )
        items = pa.table(
            {"person_key": pa.array(keys[:9], pa.int64()), "ws": [0] * 9, "we": [2**40] * 9}
        )
        assert as_rows(index.stays_of(keys[:9])) == reference_rows(whole, "person_key", items, None)

    check([first])
    assert sync_lake_index(paths)["action"] == "unchanged"
    # A new part arrives; linkage has not run yet, so it waits.
    write_lake(paths, "f2", second)
    summary = sync_lake_index(paths)
    assert summary["parts_added"] == 0 and len(summary["parts_waiting"]) == 1
    write_keys(paths, [first, second])
    summary = sync_lake_index(paths)
    assert summary["action"] == "updated" and summary["parts_added"] == 1
    assert summary["segments"] == 2 and summary["relabelled"] == 0
    check([first, second])
    # Linkage merges two people: their stays move to the surviving key, without the lake.
    keys = first.column("person_key").to_numpy()
    merged = first.set_column(
        1, "person_key", pa.array(np.where(keys == keys[1], keys[0], keys), pa.int64())
    )
    write_keys(paths, [merged, second])
    summary = sync_lake_index(paths)
    assert summary["relabelled"] == int((keys == keys[1]).sum()) > 0
    check([merged, second])
    index = PresenceIndex(paths.root / "analysis" / "presence_index")
    left = index.stays_of([int(keys[1])]).column("record_id").to_pylist()
    assert all(r >= 10_000 for r in left)  # only its stays in the part linkage kept apart
    assert index.stays_of([int(keys[0])]).num_rows > int((keys == keys[1]).sum())
    # A re-ingested part rebuilds; a third part comes in with it.
    write_lake(paths, "f1", merged.slice(0, 1500))
    write_lake(paths, "f3", late)
    write_keys(paths, [merged, second, late])
    summary = sync_lake_index(paths)
    assert summary["action"] == "built" and summary["parts_added"] == 3
    check([merged.slice(0, 1500), second, late])


def test_relabel_needs_record_ids(tmp_path: Path) -> None:
    table = random_stays(6, rows=200)
    build_index(table, tmp_path / "index", Columns("person_key", "place"))
    with pytest.raises(ValueError, match="record ids"):
        relabel(tmp_path / "index", table.select(["record_id", "person_key"]))
    assert LAKE_COLUMNS.record_id == "record_id"
