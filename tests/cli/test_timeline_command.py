"""``citybrain analysis timeline`` as an operator runs it, a real process against a real, migrated
database and a small simulated city taken in and linked: the table, the JSON, the lookup by
record id, the refusals, and the audit rows with their purpose."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from citybrain.analysis.linkage import link
from citybrain.analysis.timeline import ACTION, timeline
from citybrain.core.audit.models import AuditEntry
from citybrain.datahub.lake import LakePaths
from citybrain.datahub.service import Intake
from citybrain.kit.db import Database
from tests.cli.test_cli import run
from tests.conftest import DatabaseFactory

pytestmark = pytest.mark.slow


def test_timeline_of_a_person_as_a_table_as_json_and_refusals(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    from citybrain.simulate.config import SimulationConfig
    from citybrain.simulate.run import run_simulation
    from tests.simulate.conftest import geo_input

    env = dict(os.environ)
    env.update(
        CITYBRAIN_DATA_DIR=str(tmp_path / "var"),
        CITYBRAIN_DATABASE_URL=database_factory.new_url(),
        CITYBRAIN_ENV="test",
        COLUMNS="200",
    )
    run(env, "db", "upgrade")
    feeds = tmp_path / "feeds"
    run_simulation(SimulationConfig(people=800, days=3, seed=3), geo_input(), feeds, tmp_path / "t")
    database = Database(env["CITYBRAIN_DATABASE_URL"])
    paths = LakePaths(tmp_path / "var")
    Intake(paths).ingest_folder(database, feeds)
    keys = link(paths, database).path
    counts = pq.read_table(keys).group_by("person_key").aggregate([("record_id", "count")])
    busiest = counts.sort_by([("record_id_count", "descending"), ("person_key", "ascending")])
    person = busiest.column("person_key")[0].as_py()
    expected = timeline(paths, database, person).to_pylist()
    assert expected

    shown = run(env, "analysis", "timeline", str(person), "--purpose", "流调").stdout
    assert f"个人轨迹 trajectory · {person}" in shown
    assert f"{len(expected)} records" in shown
    assert str(expected[-1]["record_id"]) in shown

    record = expected[-1]["record_id"]
    day = expected[-1]["day"].isoformat()
    listed = json.loads(
        run(
            env,
            "analysis",
            "timeline",
            "--record",
            str(record),
            "--since",
            day,
            "--until",
            day,
            "--purpose",
            "密接排查",
            "--json",
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert listed["person_key"] == person and listed["record_id"] == record
    assert listed["rows"] == len(listed["timeline"]) > 0
    assert {r["day"] for r in listed["timeline"]} == {day}
    assert [r["record_id"] for r in listed["timeline"]] == [
        r["record_id"] for r in expected if r["day"].isoformat() == day
    ]

    unknown = run(env, "analysis", "timeline", "3", "--purpose", "流调", check=False)
    assert unknown.returncode == 1
    assert "no records are linked to person key 3" in " ".join(unknown.stderr.split())
    no_purpose = run(env, "analysis", "timeline", str(person), check=False)
    assert no_purpose.returncode == 1 and "purpose" in no_purpose.stderr

    with database.unit_of_work() as session:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.action == ACTION).order_by(AuditEntry.seq)
        ).all()
        trail = [(r.object_id, r.outcome, r.purpose, r.actor_role) for r in rows]
    database.dispose()
    assert trail == [
        (str(person), "ok", "流调", "operator"),
        (str(person), "ok", "密接排查", "operator"),
        ("3", "failed", "流调", "operator"),
    ]
