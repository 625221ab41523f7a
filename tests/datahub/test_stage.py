"""Staging one file: the quarantine's raw rows as JSON, and taking rows back out of staged
parts when the committer finds them already in the lake."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from citybrain.datahub import lake, stage
from citybrain.datahub.catalog import get_source
from citybrain.datahub.readers import RawBatch
from tests.datahub.feeds import RAIL_HEADER, rail_rows, travellers

DAY = dt.date(2020, 1, 21)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(max_size=12), st.text(max_size=12)),
        min_size=1,
        max_size=8,
    )
)
def test_raw_rows_are_exactly_what_json_dumps_writes(rows: list[tuple[str, str]]) -> None:
    header = ("身份证号", 'od"d\\name')
    batch = RawBatch(
        {header[0]: pa.array([r[0] for r in rows]), header[1]: pa.array([r[1] for r in rows])},
        np.arange(2, len(rows) + 2),
        [],
        header,
    )
    raw = stage._raw_json(batch, np.arange(len(rows))).to_pylist()
    expected = [json.dumps(dict(zip(header, r, strict=True)), ensure_ascii=False) for r in rows]
    assert raw == expected


def test_rows_found_in_the_lake_leave_the_staged_parts_of_their_day_only(
    tmp_path: Path,
) -> None:
    source = get_source("rail_ticket")
    people = travellers(50)
    rows = [*rail_rows(people[:40], DAY), *rail_rows(people[40:], DAY - dt.timedelta(days=1))]
    data = ("\n".join([RAIL_HEADER, *rows]) + "\n").encode("gbk")
    paths = lake.LakePaths(tmp_path)
    stager = stage.Stager(paths)
    staged = stager.stage(data, "rail_ticket_20200121.csv", source, DAY, 7)
    assert staged.status == stage.STAGED and len(staged.lines) == 40 + 10
    days = sorted({relative.parent.name for _, relative in staged.parts})
    assert days == ["day=2020-01-20", "day=2020-01-21"]
    before = {relative: target.stat().st_mtime_ns for target, relative in staged.parts}
    # Two of yesterday's rows turn out to be in the lake already.
    yesterday_rows = np.flatnonzero(staged.day_number == (DAY - stage.EPOCH).days - 1)
    stager.drop_rows(staged, yesterday_rows[:2])
    assert len(staged.lines) == 48
    for target, relative in staged.parts:
        part = (
            stager.vault.read(target) if relative.parts[0] == "linkage" else pq.read_table(target)
        )
        if relative.parent.name == "day=2020-01-20":
            assert part.num_rows == 8
        else:  # today's parts were not touched
            assert target.stat().st_mtime_ns == before[relative] and part.num_rows == 40
    # All of yesterday's rows: its parts go without being read.
    stager.drop_rows(staged, np.flatnonzero(staged.day_number == (DAY - stage.EPOCH).days - 1))
    assert sorted({relative.parent.name for _, relative in staged.parts}) == ["day=2020-01-21"]
    assert all(target.exists() for target, _ in staged.parts)
    assert len(list(paths.staging.glob("*.parquet"))) == len(staged.parts)
    stager.close()


@given(st.lists(st.integers(min_value=-5, max_value=5), max_size=60))
def test_first_occurrences_are_those_of_a_sort(values: list[int]) -> None:
    array = np.array(values, dtype=np.int64)
    _, first = np.unique(array, return_index=True)
    assert stage.first_occurrences(array).tolist() == sorted(first.tolist())


def test_row_hashes_are_the_ones_already_in_lakes(tmp_path: Path) -> None:
    """Row hashes are kept in the lake and compared with later files': a DuckDB release that
    hashed differently would let every row of an old day in again as new. These values were
    written by DuckDB 2.0; if this fails, the lake's duplicates need a migration first."""
    stager = stage.Stager(lake.LakePaths(tmp_path))
    values = {
        "place": pa.array(["41001-41331", None]),
        "start_time": pa.array(
            [dt.datetime(2020, 1, 10, 6, 40), dt.datetime(2020, 1, 10, 7, 0)], pa.timestamp("s")
        ),
    }
    hashes = {"phone_hmac": pa.array([b"\x01" * 16, None], pa.binary(16))}
    days = pa.array([dt.datetime(2020, 1, 10)] * 2, pa.timestamp("s"))
    assert stager.row_hashes(values, hashes, days).tolist() == [
        6556639702463621278,
        4819338831324352518,
    ]
    stager.close()
