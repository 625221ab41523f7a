"""Tracing on arrival: a case file reaching the lake gets its contacts listed and announced
by the running worker (dispatcher -> handler -> job), within a minute, once."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from citybrain.analysis.contacts import cases_in_lake
from citybrain.analysis.linkage import OUTPUT
from citybrain.analysis.models import ContactTrace
from citybrain.analysis.tasks import TRIGGER_CATEGORIES
from citybrain.analysis.tracing import (
    CONTACTS_DIR,
    TOPIC_CONTACTS_LISTED,
    purge_contact_lists,
    trace_new_cases,
    trace_seconds,
)
from citybrain.core.audit.models import AuditEntry
from citybrain.core.audit.service import SYSTEM
from citybrain.core.events.models import OutboxEvent
from citybrain.core.jobs import EmbeddedWorker, get_queue, reset_queue
from citybrain.core.jobs.worker import import_task_modules
from citybrain.datahub import lake
from citybrain.datahub.service import Intake
from citybrain.kit import clock
from citybrain.kit.db import Database, use_database
from citybrain.kit.settings import reset_settings
from tests.conftest import DatabaseFactory


@dataclass
class City:
    root: Path
    paths: lake.LakePaths
    database: Database
    held_back: Path


@pytest.fixture(scope="module")
def city(
    database_factory: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[City]:
    """A small city whose case reports and lab tests are held back from the first intake."""
    from citybrain.simulate.config import SimulationConfig
    from citybrain.simulate.run import run_simulation
    from tests.simulate.conftest import geo_input

    root = tmp_path_factory.mktemp("tracing")
    feeds = root / "feeds"
    run_simulation(
        SimulationConfig(people=4000, days=18, seed=11), geo_input(), feeds, root / "truth"
    )
    held_back = root / "held_back"
    for category in TRIGGER_CATEGORIES:
        if (feeds / category).is_dir():
            shutil.move(feeds / category, held_back / category)
    database = database_factory.new_database()
    with pytest.MonkeyPatch.context() as patch:
        # The job finds the lake and the database the way a worker process does.
        patch.setenv("CITYBRAIN_DATA_DIR", str(root / "var"))
        reset_settings()
        paths = lake.LakePaths.default()
        Intake(paths).ingest_folder(database, feeds)
        with use_database(database):
            yield City(root, paths, database, held_back)
    reset_settings()
    database.dispose()


def _wait_for(condition: Any, timeout: float) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - started


def _traces(database: Database) -> list[ContactTrace]:
    with database.unit_of_work() as session:
        rows = list(session.scalars(select(ContactTrace).order_by(ContactTrace.case_key)))
        session.expunge_all()
    return rows


def test_a_case_file_arriving_gets_its_contacts_listed_within_a_minute(
    city: City, tmp_path: Path
) -> None:
    import_task_modules()
    reset_queue(f"sqlite:///{tmp_path / 'jobs.db'}")
    worker = EmbeddedWorker(workers=1, periodic=False)  # with the events dispatcher
    worker.start()
    try:
        # Files without cases start nothing: the queue stays empty.
        assert _traces(city.database) == []
        assert get_queue().pending_count() == 0
        Intake(city.paths).ingest_folder(city.database, city.held_back)
        waited = _wait_for(lambda: len(_traces(city.database)) > 0, timeout=60)
        # The job traces every case at once; wait for its last event to be committed.
        _wait_for(lambda: get_queue().pending_count() == 0, timeout=60)
    finally:
        worker.stop()
        reset_queue()
    assert waited < 60
    traces = _traces(city.database)
    keys = city.paths.root / OUTPUT
    cases = [k for k, _ in cases_in_lake(city.paths, city.database, keys)]
    assert cases and [t.case_key for t in traces] == sorted(cases)
    with city.database.unit_of_work() as session:
        events = {
            e.key: e.payload
            for e in session.scalars(
                select(OutboxEvent).where(OutboxEvent.topic == TOPIC_CONTACTS_LISTED)
            )
        }
        audited = set(
            session.scalars(
                select(AuditEntry.object_id).where(AuditEntry.action == "analysis.trace")
            )
        )
    assert set(events) == {str(t.case_key) for t in traces} == audited
    listed_any = 0
    for trace in traces:
        assert 0 < trace.seconds < 60
        assert trace.arrived_at <= trace.traced_at
        rows = pq.read_table(city.paths.root / trace.result_path)
        assert set(rows.column("case").to_pylist()) <= {trace.case_key}
        hop = rows.column("hop")
        close = len(pc.unique(rows.filter(pc.equal(hop, 1)).column("contact")))
        second = len(pc.unique(rows.filter(pc.equal(hop, 2)).column("contact")))
        assert (trace.close_contacts, trace.secondary_contacts) == (close, second)
        payload = events[str(trace.case_key)]
        assert payload["close_contacts"] == close and payload["secondary_contacts"] == second
        listed_any += close
    assert listed_any > 0
    assert sorted(trace_seconds(city.database)) == sorted(t.seconds for t in traces)
    # Once traced, a case is not traced again.
    assert trace_new_cases(city.paths, city.database, SYSTEM) == []


def test_two_traces_at_once_trace_each_case_once(city: City) -> None:
    """Two jobs (two case files, two worker threads) at the same moment: one traces, the
    other waits and then finds nothing left to trace."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import delete

    Intake(city.paths).ingest_folder(city.database, city.held_back)  # a no-op if taken in
    with city.database.unit_of_work() as session:
        session.execute(delete(ContactTrace))  # forget any earlier traces
    with ThreadPoolExecutor(2) as pool:
        runs = list(
            pool.map(lambda _: trace_new_cases(city.paths, city.database, SYSTEM), range(2))
        )
    traced = [r.case_key for run in runs for r in run]
    assert sorted(traced) == [t.case_key for t in _traces(city.database)]
    assert len(traced) == len(set(traced)) > 0
    assert sorted(len(run) == 0 for run in runs) == [False, True]


def test_contact_lists_past_their_retention_are_deleted_and_the_traces_stay(
    fresh_database: Database, tmp_path: Path
) -> None:
    paths = lake.LakePaths(tmp_path / "var")
    (paths.root / CONTACTS_DIR).mkdir(parents=True)
    now = clock.now()
    with fresh_database.unit_of_work() as session:
        for key, days in ((1, 61), (2, 59), (3, 90)):
            relative = str(CONTACTS_DIR / f"case_{key}.parquet")
            if key != 3:  # the third's list went in a run cut short after its audit row
                rows = pa.table({"case": [key], "contact": [key + 100]})
                pq.write_table(rows, paths.root / relative)
            traced = now - dt.timedelta(days=days)
            session.add(
                ContactTrace(
                    case_key=key,
                    found_at=traced,
                    arrived_at=traced,
                    traced_at=traced,
                    seconds=1.0,
                    close_contacts=1,
                    secondary_contacts=0,
                    result_path=relative,
                )
            )
    assert purge_contact_lists(paths, fresh_database, SYSTEM) == 1
    assert sorted(p.name for p in (paths.root / CONTACTS_DIR).iterdir()) == ["case_2.parquet"]
    assert [t.case_key for t in _traces(fresh_database)] == [1, 2, 3]
    with fresh_database.unit_of_work() as session:
        audit = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "analysis.contact_lists_purge")
        ).one()
        assert audit.detail["deleted"] == 1 and audit.detail["retention_days"] == 60
    # Nothing left to delete: no second audit row.
    assert purge_contact_lists(paths, fresh_database, SYSTEM) == 0
