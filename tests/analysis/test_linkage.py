"""Identity linkage on a small simulated city, scored against its ground truth."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from citybrain.analysis.linkage import components, link
from citybrain.analysis.quality import linkage_quality
from citybrain.datahub import lake
from citybrain.datahub.service import Intake
from citybrain.kit.db import Database
from tests.conftest import DatabaseFactory


@dataclass
class City:
    paths: lake.LakePaths
    database: Database
    truth: Path


@pytest.fixture(scope="module")
def city(
    database_factory: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[City]:
    from citybrain.simulate.config import SimulationConfig
    from citybrain.simulate.run import run_simulation
    from tests.simulate.conftest import geo_input

    root = tmp_path_factory.mktemp("linkage")
    feeds = root / "feeds"
    run_simulation(
        SimulationConfig(people=3000, days=6, seed=11), geo_input(), feeds, root / "truth"
    )
    database = database_factory.new_database()
    paths = lake.LakePaths(root / "var")
    Intake(paths).ingest_folder(database, feeds)
    yield City(paths, database, root / "truth")
    database.dispose()


def lake_records(paths: lake.LakePaths) -> set[int]:
    rows = (
        duckdb.connect()
        .execute(f"SELECT DISTINCT record_id FROM read_parquet('{paths.lake}/*/*/*/*.parquet')")
        .fetchall()
    )
    return {r for (r,) in rows}


def test_every_record_gets_exactly_one_key_and_the_same_one_each_run(
    city: City, tmp_path: Path
) -> None:
    summary = link(city.paths, city.database)
    again = link(city.paths, city.database, tmp_path / "again.parquet")
    first = pq.read_table(summary.path)
    second = pq.read_table(again.path)
    ids = first.column("record_id").to_pylist()
    assert len(ids) == len(set(ids)) == summary.records
    assert set(ids) == lake_records(city.paths)
    assert first.column("person_key").null_count == 0
    assert first.column("rule").null_count == 0
    assert first.equals(second)
    assert summary.persons == len(set(first.column("person_key").to_pylist()))


def test_a_family_phone_does_not_merge_two_resident_ids(city: City, tmp_path: Path) -> None:
    # Structural: no person key holds records of two resident IDs, although the city's families
    # give one phone for several ID-holders.
    out = tmp_path / "keys.parquet"
    link(city.paths, city.database, out)
    con = duckdb.connect()
    con.execute(
        "CREATE VIEW ids AS SELECT id_hmac, phone_hmac, record_id"
        f" FROM read_parquet('{city.paths.lake}/*/*/*/*.parquet')"
    )
    ((shared, merged),) = con.execute(
        f"""
        SELECT
            (SELECT count(*) FROM (SELECT phone_hmac FROM ids WHERE id_hmac IS NOT NULL
                                    AND phone_hmac IS NOT NULL
                                   GROUP BY 1 HAVING count(DISTINCT id_hmac) > 1)),
            (SELECT count(*) FROM (SELECT person_key FROM ids JOIN read_parquet('{out}')
                                   USING (record_id) WHERE id_hmac IS NOT NULL
                                   GROUP BY 1 HAVING count(DISTINCT id_hmac) > 1))
        """
    ).fetchall()
    assert shared > 0  # the city has family phones given by several ID-holders
    assert merged == 0  # yet no person key holds two resident IDs


def test_components_follow_chains_and_leave_loners_alone() -> None:
    left = np.array([5, 3, 1, 7], dtype=np.int64)
    right = np.array([4, 4, 3, 8], dtype=np.int64)
    labels = components(9, left, right)
    assert labels.tolist() == [0, 1, 2, 1, 1, 1, 6, 7, 7]


def test_precision_and_recall_against_the_truth(city: City, tmp_path: Path) -> None:
    out = tmp_path / "keys.parquet"
    link(city.paths, city.database, out)
    quality = linkage_quality(city.paths, city.database, city.truth, keys=out)
    assert quality["matched"] == quality["records"]  # every lake record found in the truth
    # 3,000 people over 6 days reach precision 0.997 and recall 0.82 (0.728
    # before card traces, line holders and phone trips) (the goals, 0.99
    # and 0.95, are for 20,000 people over 30 days, where the rules reach 0.9974 and 0.955).
    assert quality["precision"] >= 0.99
    assert quality["recall"] >= 0.80
    assert 0 < quality["exact_persons"] < 1


def test_traces_place_anonymous_cards_and_family_lines_with_their_holders(
    city: City, tmp_path: Path
) -> None:
    out = tmp_path / "keys.parquet"
    summary = link(city.paths, city.database, out)
    quality = linkage_quality(city.paths, city.database, city.truth, keys=out)
    for rule in ("card_trace", "phone_holder"):
        placed = summary.rules.get(rule, 0)
        assert placed > 0, rule
        wrong = sum(r["records"] for r in quality["merged_by"] if r["rule"] == rule)
        # Records a rule placed under a key whose main person is someone else: few.
        assert wrong < 0.05 * placed, (rule, wrong, placed)


def test_a_linkage_run_is_audited_and_announced(city: City) -> None:
    from sqlalchemy import select

    from citybrain.analysis.linkage import OUTPUT, TOPIC_LINKED, run_linkage
    from citybrain.core.audit.models import AuditEntry
    from citybrain.core.audit.service import Actor
    from citybrain.core.events.models import OutboxEvent

    summary = run_linkage(city.paths, city.database, Actor("cli:tester", "operator"))
    assert summary.path == city.paths.root / OUTPUT and summary.records > 0
    with city.database.unit_of_work() as session:
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "analysis.link"))
        (entry,) = audit.all()
        assert entry.actor == "cli:tester" and entry.detail["records"] == summary.records
        (event,) = session.scalars(select(OutboxEvent).where(OutboxEvent.topic == TOPIC_LINKED))
        assert event.payload["persons"] == summary.persons
