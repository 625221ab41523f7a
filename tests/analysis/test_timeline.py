"""Trajectories on a small simulated city: every record of a person, in time order, with the
linkage rule that placed it; windows, lookups by record id, unknown people, and the audit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from citybrain.analysis.linkage import link
from citybrain.analysis.timeline import (
    ACTION,
    KIND_ORDER,
    OUTPUT_SCHEMA,
    PROJECTIONS,
    UnknownPerson,
    _parts,
    audited_read,
    person_of_record,
    timeline,
)
from citybrain.core.audit.models import AuditEntry
from citybrain.core.audit.service import Actor
from citybrain.datahub import lake
from citybrain.datahub.service import Intake
from citybrain.kit.db import Database
from citybrain.kit.errors import Conflict, InvalidInput
from tests.conftest import DatabaseFactory

OPERATOR = Actor("cli:test", "operator", None)


@dataclass
class City:
    paths: lake.LakePaths
    database: Database
    keys: Path
    # Every lake row: record_id, kind, category, day (the partition), person_key, rule.
    rows: list[dict[str, Any]]

    def of(self, person: int) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["person_key"] == person]


@pytest.fixture(scope="module")
def city(
    database_factory: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[City]:
    from citybrain.simulate.config import SimulationConfig
    from citybrain.simulate.run import run_simulation
    from tests.simulate.conftest import geo_input

    root = tmp_path_factory.mktemp("timeline")
    run_simulation(
        SimulationConfig(people=2000, days=4, seed=11), geo_input(), root / "feeds", root / "t"
    )
    database = database_factory.new_database()
    paths = lake.LakePaths(root / "var")
    Intake(paths).ingest_folder(database, root / "feeds")
    keys = link(paths, database).path
    # The lake read whole, independently of the code under test: the kind from the path.
    con = duckdb.connect()
    found = con.execute(
        f"""
        SELECT l.record_id, split_part(split_part(l.filename, '/lake/', 2), '/', 1) AS kind,
               l.category, l.day, k.person_key, k.rule
        FROM read_parquet('{paths.lake}/*/*/*/*.parquet', hive_partitioning = true,
                          filename = true, union_by_name = true) l
        JOIN read_parquet('{keys}') k USING (record_id)
        """
    )
    names = [d[0] for d in found.description or ()]
    rows = [dict(zip(names, values, strict=True)) for values in found.fetchall()]
    con.close()
    yield City(paths, database, keys, rows)
    database.dispose()


def _busiest(city: City) -> int:
    """The person with the most kinds of record, then the most records."""
    kinds: dict[int, set[str]] = {}
    counts: dict[int, int] = {}
    for row in city.rows:
        kinds.setdefault(row["person_key"], set()).add(row["kind"])
        counts[row["person_key"]] = counts.get(row["person_key"], 0) + 1
    return max(kinds, key=lambda p: (len(kinds[p]), counts[p], -p))


def _start(row: dict[str, Any]) -> dt.datetime:
    """Where a row sorts: its time, or for an untimed row the start of its day."""
    return row["time"] or dt.datetime.combine(row["day"], dt.time())


def test_every_lake_kind_has_a_line() -> None:
    assert set(PROJECTIONS) == set(lake.KIND_COLUMNS) == set(KIND_ORDER)


def test_a_person_s_every_record_in_time_order_with_its_linkage_rule(city: City) -> None:
    person = _busiest(city)
    expected = city.of(person)
    table = timeline(city.paths, city.database, person, keys=city.keys)
    assert table.schema.equals(OUTPUT_SCHEMA)
    rows = table.to_pylist()
    # One line per record: the record ids are exactly the person's keys, each once.
    ids = [r["record_id"] for r in rows]
    assert sorted(ids) == sorted({r["record_id"] for r in expected})
    assert len(ids) == len(set(ids))
    # Every kind the person has in the lake, and the rule linkage wrote for each record.
    seen = {kind for r in rows for kind in r["kind"].split("+")}
    assert seen == {r["kind"] for r in expected}
    assert len(seen) >= 3
    rule = {r["record_id"]: r["rule"] for r in expected}
    assert all(r["rule"] == rule[r["record_id"]] for r in rows)
    category = {r["record_id"]: r["category"] for r in expected}
    assert all(r["category"] == category[r["record_id"]] for r in rows)
    # Time order: by day, the untimed records first in their day, then by start.
    keys = [(r["day"], r["time"] is not None, _start(r)) for r in rows]
    assert keys == sorted(keys)
    for r in rows:
        if r["time"] is not None:
            assert r["day"] == r["time"].date()
            assert r["end"] is None or r["end"] >= r["time"]
        else:
            # Rosters and the registry carry no time: shown on the day of their part.
            parts = {e["day"] for e in expected if e["record_id"] == r["record_id"]}
            assert r["day"] in parts
            assert r["kind"] in ("setting", "identity")
        assert r["place"] or r["kind"] == "health"


@pytest.mark.parametrize("kind", KIND_ORDER)
def test_every_kind_reaches_the_timelines(city: City, kind: str) -> None:
    holders = sorted({r["person_key"] for r in city.rows if r["kind"] == kind})
    assert holders, f"the small city has {kind} records"
    person = holders[len(holders) // 2]
    rows = timeline(city.paths, city.database, person, keys=city.keys).to_pylist()
    theirs = {r["record_id"] for r in city.of(person) if r["kind"] == kind}
    listed = {r["record_id"] for r in rows if kind in r["kind"].split("+")}
    assert listed == theirs


def test_a_source_row_under_two_kinds_is_one_journey(city: City) -> None:
    travellers = {r["person_key"] for r in city.rows if r["category"] == "rail_ticket"}
    assert travellers, "the small city has rail travellers"
    person = min(travellers)
    rows = timeline(city.paths, city.database, person, keys=city.keys).to_pylist()
    tickets = [r for r in rows if r["category"] == "rail_ticket"]
    assert tickets
    for ticket in tickets:
        # Written to the lake as a journey and as a seat in the train: one line, the journey.
        assert ticket["kind"] == "travel+presence"
        assert " → " in ticket["place"]
        assert ticket["end"] is not None and ticket["end"] > ticket["time"]
        assert "车" in ticket["detail"]


def test_nothing_personal_leaves_the_lake(city: City) -> None:
    table = timeline(city.paths, city.database, _busiest(city), keys=city.keys)
    assert not set(table.column_names) & set(lake.IDENTIFIERS)
    assert not set(table.column_names) & set(lake.LINKAGE_ENCRYPTED)


def test_since_and_until_keep_what_overlaps_the_days(city: City) -> None:
    person = _busiest(city)
    everything = timeline(city.paths, city.database, person, keys=city.keys).to_pylist()
    days = sorted({r["day"] for r in everything})
    assert len(days) >= 3
    first, last = days[1], days[-2]
    window = timeline(
        city.paths, city.database, person, since=first, until=last, keys=city.keys
    ).to_pylist()
    low = dt.datetime.combine(first, dt.time())
    high = dt.datetime.combine(last + dt.timedelta(days=1), dt.time())

    def inside(r: dict[str, Any]) -> bool:
        if r["time"] is None:
            return bool(first <= r["day"] <= last)
        if r["end"] is None:
            return bool(low <= r["time"] < high)
        return bool(r["end"] > low and r["time"] < high)

    assert window == [r for r in everything if inside(r)]
    assert 0 < len(window) < len(everything)
    just = timeline(city.paths, city.database, person, since=first, until=first, keys=city.keys)
    assert just.num_rows > 0
    with pytest.raises(InvalidInput):
        timeline(city.paths, city.database, person, since=last, until=first, keys=city.keys)


def test_limit_keeps_the_first_rows(city: City) -> None:
    person = _busiest(city)
    everything = timeline(city.paths, city.database, person, keys=city.keys)
    first = timeline(city.paths, city.database, person, keys=city.keys, limit=5)
    assert first.equals(everything.slice(0, 5))


def test_only_the_person_s_files_are_read(city: City) -> None:
    person = _busiest(city)
    mine = {r["record_id"] >> 32 for r in city.of(person)}
    from citybrain.analysis.timeline import _ledger_files

    with city.database.unit_of_work() as session:
        files = _ledger_files(session, sorted(mine))
    assert len(files) == len(mine)
    parts = _parts(city.paths, files)
    opened = {p for kind in parts.values() for p in kind}
    everything = {str(p) for p in city.paths.lake.rglob("*.parquet")}
    assert opened <= everything
    assert len(opened) < len(everything)
    # ...and those parts hold every record of the person.
    held = set()
    for part in opened:
        held |= set(pq.read_table(part, columns=["record_id"]).column(0).to_pylist())
    assert {r["record_id"] for r in city.of(person)} <= held


def test_a_record_id_finds_its_holder(city: City) -> None:
    person = _busiest(city)
    record = max(r["record_id"] for r in city.of(person))
    assert person_of_record(city.paths, record, keys=city.keys) == person
    with pytest.raises(UnknownPerson):
        person_of_record(city.paths, 7, keys=city.keys)


def test_an_unknown_person_key_is_refused(city: City) -> None:
    keys = pq.read_table(city.keys, columns=["person_key"]).column(0).to_pylist()
    unknown = max(keys) + 1
    with pytest.raises(UnknownPerson) as raised:
        timeline(city.paths, city.database, unknown, keys=city.keys)
    assert raised.value.status_code == 404
    assert str(unknown) in raised.value.message("zh-CN")


def test_without_linkage_there_is_no_timeline(city: City, tmp_path: Path) -> None:
    with pytest.raises(Conflict) as raised:
        timeline(city.paths, city.database, 1, keys=tmp_path / "none.parquet")
    assert raised.value.code == "linkage_not_run"


def _audit_rows(database: Database) -> list[AuditEntry]:
    with database.unit_of_work() as session:
        return list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == ACTION).order_by(AuditEntry.seq)
            )
        )


def test_reads_are_audited_with_their_purpose_and_failures_too(city: City) -> None:
    person = _busiest(city)
    record = min(r["record_id"] for r in city.of(person) if r["record_id"] != person)
    before = len(_audit_rows(city.database))
    with city.database.unit_of_work() as session:
        read = audited_read(
            session, OPERATOR, city.paths, record_id=record, purpose=" 流调 ", keys=city.keys
        )
    assert read.person_key == person and read.table.num_rows == len(city.of(person))
    with pytest.raises(UnknownPerson), city.database.unit_of_work() as session:
        audited_read(session, OPERATOR, city.paths, person_key=3, purpose="流调", keys=city.keys)
    with pytest.raises(InvalidInput), city.database.unit_of_work() as session:
        audited_read(session, OPERATOR, city.paths, person_key=person, purpose=" ")
    rows = _audit_rows(city.database)[before:]
    assert [(r.object_id, r.outcome, r.purpose) for r in rows] == [
        (str(person), "ok", "流调"),
        ("3", "failed", "流调"),
    ]
    assert rows[0].detail["record_id"] == record
    assert rows[0].detail["rows"] == read.table.num_rows
    assert rows[1].detail["reason"] == "unknown_person"
