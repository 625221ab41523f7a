"""Retention: a file past its category's retention period leaves the lake, the linkage store
and the quarantine as a whole; its ledger row stays, marked, with its counts; reconciliation
still holds; a run cut short is finished by the next; the command prints what went."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from citybrain.analysis.linkage import OUTPUT, run_linkage
from citybrain.analysis.presence_index import sync_lake_index
from citybrain.analysis.tracing import _stale, forget_purged_records, link_for_tracing
from citybrain.core.audit.models import AuditEntry
from citybrain.core.audit.service import SYSTEM
from citybrain.core.events.models import OutboxEvent
from citybrain.core.jobs import EmbeddedWorker, get_queue, reset_queue
from citybrain.core.jobs.worker import TASK_MODULES, import_task_modules
from citybrain.datahub import lake
from citybrain.datahub.models import IntakeFile
from citybrain.datahub.reconcile import reconcile
from citybrain.datahub.retention import mark_expired_files, purge_expired
from citybrain.datahub.service import Intake
from citybrain.datahub.status import quarantined_rows
from citybrain.kit import clock
from citybrain.kit.db import Database, use_database
from citybrain.kit.settings import reset_settings
from tests.cli.test_cli import cli_env, run  # noqa: F401 - fixture
from tests.datahub.feeds import rail_rows, travellers, write_rail
from tests.datahub.test_intake import corrupt, lake_rows

OLD_DAY = dt.date(2020, 1, 21)
RECENT_DAY = dt.date(2020, 3, 20)
# Noon in the city on 2020-03-25: rail tickets are kept 60 days, so the newest day kept is
# 2020-01-25 (the old file's day is past it, the recent one's is not).
TODAY_NOON = dt.datetime(2020, 3, 25, 4, 0, tzinfo=dt.UTC)


def _two_rail_files(
    database: Database,
    feeds: Path,
    paths: lake.LakePaths,
    old_day: dt.date = OLD_DAY,
    recent_day: dt.date = RECENT_DAY,
) -> None:
    people = travellers(300)
    old_rows, expected = corrupt(rail_rows(people[:200], old_day), every=50)
    assert len(expected) == 4
    write_rail(feeds, old_day, old_rows)
    write_rail(feeds, recent_day, rail_rows(people[200:], recent_day))
    summary = Intake(paths).ingest_folder(database, feeds)
    assert summary.accepted == 196 + 100 and summary.quarantined == 4


def _ledger(database: Database) -> dict[dt.date | None, IntakeFile]:
    with database.unit_of_work() as session:
        rows = session.scalars(select(IntakeFile)).all()
        session.expunge_all()
    return {row.last_day: row for row in rows}


def test_a_file_past_its_retention_leaves_every_store_and_its_ledger_row_stays(
    fresh_database: Database, tmp_path: Path
) -> None:
    paths = lake.LakePaths(tmp_path / "var")
    _two_rail_files(fresh_database, tmp_path / "feeds", paths)
    old_id = _ledger(fresh_database)[OLD_DAY].file_id
    assert any(lake.file_id_of(p) == old_id for p in paths.all_parts())
    with fresh_database.unit_of_work() as session:
        assert reconcile(session, paths).ok

    with clock.frozen(TODAY_NOON):
        summary = purge_expired(fresh_database, paths)
    assert (summary.files, summary.accepted, summary.quarantined) == (1, 196, 4)
    assert summary.by_category == {"rail_ticket": 1}
    # Travel and presence in the lake, the linkage store and the quarantine: one part each.
    assert summary.parts_removed == 4
    assert not [p for p in paths.all_parts() if lake.file_id_of(p) == old_id]
    assert lake_rows(paths, "travel") == 100 and lake_rows(paths, "presence") == 100
    assert list(quarantined_rows(paths, category="rail_ticket")) == []

    ledger = _ledger(fresh_database)
    old, recent = ledger[OLD_DAY], ledger[RECENT_DAY]
    assert old.purged_at == TODAY_NOON and recent.purged_at is None
    assert (old.received, old.accepted, old.quarantined) == (200, 196, 4)
    with fresh_database.unit_of_work() as session:
        report = reconcile(session, paths)
        assert report.ok and report.purged_files == 1 and report.accepted == 296
        audit = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "datahub.retention_purge")
        ).one()
        assert audit.detail["files"] == 1 and audit.detail["accepted"] == 196
        event = session.scalars(
            select(OutboxEvent).where(OutboxEvent.topic == "datahub.files_purged")
        ).one()
        assert event.payload["by_category"] == {"rail_ticket": 1}

    # The next night finds nothing more; a month later the recent file goes too.
    with clock.frozen(TODAY_NOON + dt.timedelta(days=1)):
        again = purge_expired(fresh_database, paths)
    assert (again.files, again.parts_removed) == (0, 0)
    with clock.frozen(TODAY_NOON + dt.timedelta(days=60)):
        later = purge_expired(fresh_database, paths)
    assert later.files == 1 and lake_rows(paths, "travel") == 0
    # No empty folder is left for a reader's glob to find nothing in.
    assert not paths.kind_dir("travel").exists() and not paths.kind_dir("presence").exists()
    assert not [folder for folder in paths.linkage.rglob("*") if folder.is_dir()]
    assert "citybrain.datahub.tasks" in TASK_MODULES


def test_a_run_cut_short_after_its_commit_is_finished_by_the_next(
    fresh_database: Database, tmp_path: Path
) -> None:
    paths = lake.LakePaths(tmp_path / "var")
    _two_rail_files(fresh_database, tmp_path / "feeds", paths)
    # The ledger rows are marked and committed, then the process dies before deleting.
    with clock.frozen(TODAY_NOON), fresh_database.unit_of_work() as session:
        assert mark_expired_files(session).files == 1
    with fresh_database.unit_of_work() as session:
        report = reconcile(session, paths)
    assert not report.ok
    assert {(m.what, m.expected, m.found) for m in report.mismatches} == {
        ("lake:travel", 0, 196),
        ("lake:presence", 0, 196),
        ("linkage", 0, 196),
        ("quarantine", 0, 4),
    }
    with clock.frozen(TODAY_NOON):
        finished = purge_expired(fresh_database, paths)
    assert (finished.files, finished.parts_removed) == (0, 4)
    with fresh_database.unit_of_work() as session:
        assert reconcile(session, paths).ok


def test_the_old_days_of_a_file_spanning_several_leave_before_its_newest_day(
    fresh_database: Database, tmp_path: Path
) -> None:
    """A file delivered late with tickets of an old day and of a recent one: on the night the
    old day passes its retention, that day's partition of the file leaves the lake and the
    linkage store, the ledger counts what went, reconciliation holds; the rest goes with the
    file once its newest day passes too."""
    paths = lake.LakePaths(tmp_path / "var")
    people = travellers(120)
    feeds = tmp_path / "feeds"
    write_rail(
        feeds, RECENT_DAY, rail_rows(people[:70], OLD_DAY) + rail_rows(people[70:], RECENT_DAY)
    )
    assert Intake(paths).ingest_folder(fresh_database, feeds).accepted == 120
    (row,) = _ledger(fresh_database).values()
    assert (row.first_day, row.last_day) == (OLD_DAY, RECENT_DAY)

    with clock.frozen(TODAY_NOON):
        summary = purge_expired(fresh_database, paths)
    assert (summary.files, summary.trimmed_files, summary.trimmed_rows) == (0, 1, 70)
    # The old day's part in each of travel, presence and the linkage store.
    assert summary.parts_removed == 3
    assert lake_rows(paths, "travel") == 50 and lake_rows(paths, "presence") == 50
    left = {lake.day_of(p) for p in paths.all_parts() if lake.day_of(p) is not None}
    assert left == {RECENT_DAY}
    (row,) = _ledger(fresh_database).values()
    assert (row.purged_through, row.purged_rows, row.purged_at) == (OLD_DAY, 70, None)
    assert (row.received, row.accepted) == (120, 120)  # the history stays
    with fresh_database.unit_of_work() as session:
        report = reconcile(session, paths)
        assert report.ok, report.mismatches
        audit = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "datahub.retention_purge")
        ).one()
        assert audit.detail["trimmed_files"] == 1 and audit.detail["trimmed_rows"] == 70

    # The next night: nothing more; once the recent day passes, the rest with the file.
    with clock.frozen(TODAY_NOON + dt.timedelta(days=1)):
        again = purge_expired(fresh_database, paths)
    assert (again.files, again.trimmed_files, again.parts_removed) == (0, 0, 0)
    with clock.frozen(TODAY_NOON + dt.timedelta(days=60)):
        later = purge_expired(fresh_database, paths)
    assert (later.files, later.accepted) == (1, 50)
    assert not list(paths.all_parts())
    with fresh_database.unit_of_work() as session:
        assert reconcile(session, paths).ok


def test_a_days_purge_cut_short_after_its_commit_is_finished_by_the_next(
    fresh_database: Database, tmp_path: Path
) -> None:
    paths = lake.LakePaths(tmp_path / "var")
    people = travellers(120)
    feeds = tmp_path / "feeds"
    write_rail(
        feeds, RECENT_DAY, rail_rows(people[:70], OLD_DAY) + rail_rows(people[70:], RECENT_DAY)
    )
    Intake(paths).ingest_folder(fresh_database, feeds)
    with clock.frozen(TODAY_NOON), fresh_database.unit_of_work() as session:
        assert mark_expired_files(session, paths=paths).trimmed_rows == 70
    with fresh_database.unit_of_work() as session:
        report = reconcile(session, paths)
    assert {(m.what, m.expected, m.found) for m in report.mismatches} == {
        ("lake:travel", 50, 120),
        ("lake:presence", 50, 120),
        ("linkage", 50, 120),
    }
    with clock.frozen(TODAY_NOON):
        finished = purge_expired(fresh_database, paths)
    assert (finished.trimmed_files, finished.parts_removed) == (0, 3)
    with fresh_database.unit_of_work() as session:
        assert reconcile(session, paths).ok


def test_the_purge_command_prints_what_went(
    cli_env: dict[str, str],  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    people = travellers(300)
    feeds = tmp_path / "feeds"
    write_rail(feeds, OLD_DAY, rail_rows(people[:200], OLD_DAY))
    write_rail(feeds, RECENT_DAY, rail_rows(people[200:], RECENT_DAY))
    run(cli_env, "datahub", "ingest", str(feeds), "--json")
    # The command runs on the tests' clock (frozen here, ticking on in the process).
    with clock.frozen(TODAY_NOON):
        result = run(cli_env, "datahub", "purge", "--json")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["files"] == 1 and summary["accepted"] == 200
    # Travel and presence in the lake and the linkage store (nothing was quarantined).
    assert summary["parts_removed"] == 3
    reconciled = run(cli_env, "datahub", "reconcile", "--json")
    assert json.loads(reconciled.stdout.strip().splitlines()[-1])["purged_files"] == 1


def test_linkage_and_the_contact_index_forget_the_purged_records(
    fresh_database: Database, tmp_path: Path
) -> None:
    # Days counted back from today: the purge runs on the real clock, after the linkage.
    today = clock.today_local()
    old_day, recent_day = today - dt.timedelta(days=70), today - dt.timedelta(days=5)
    paths = lake.LakePaths(tmp_path / "var")
    _two_rail_files(fresh_database, tmp_path / "feeds", paths, old_day, recent_day)
    old_id = _ledger(fresh_database)[old_day].file_id
    purged_records = set(
        pq.read_table(
            next(p for p in paths.kind_dir("presence").rglob("*.parquet") if p.stem == old_id),
            columns=["record_id"],
        )
        .column("record_id")
        .to_pylist()
    )
    assert len(purged_records) == 196
    keys = paths.root / OUTPUT
    link_for_tracing(paths, fresh_database, SYSTEM)
    assert purged_records <= set(pq.read_table(keys).column("record_id").to_pylist())
    assert sync_lake_index(paths, keys=keys)["rows"] == 296

    assert not _stale(paths, fresh_database, keys)
    assert purge_expired(fresh_database, paths).files == 1
    # The next trace would link again too: the keys are older than the purge.
    assert _stale(paths, fresh_database, keys)
    linked = forget_purged_records(paths, fresh_database, SYSTEM)
    assert linked is not None and linked.records == 100
    assert not purged_records & set(pq.read_table(keys).column("record_id").to_pylist())
    # Nothing linkage keeps beside its output (its record cache) holds them either.
    for cached in keys.parent.rglob("*.parquet"):
        table = pq.read_table(cached)
        if "record_id" in table.column_names:
            assert not purged_records & set(table.column("record_id").to_pylist()), cached
    index = sync_lake_index(paths, keys=keys)
    assert index["action"] == "unchanged" and index["rows"] == 100


def test_forgetting_before_anything_was_linked_does_nothing(
    fresh_database: Database, tmp_path: Path
) -> None:
    assert forget_purged_records(lake.LakePaths(tmp_path / "var"), fresh_database, SYSTEM) is None


def test_a_purge_starts_the_job_that_forgets_its_records(
    fresh_database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The job finds the lake and the database the way a worker process does.
    monkeypatch.setenv("CITYBRAIN_DATA_DIR", str(tmp_path / "var"))
    reset_settings()
    paths = lake.LakePaths.default()
    _two_rail_files(fresh_database, tmp_path / "feeds", paths)
    keys = paths.root / OUTPUT
    run_linkage(paths, fresh_database, SYSTEM)
    assert pq.read_table(keys).num_rows == 296
    import_task_modules()
    reset_queue(f"sqlite:///{tmp_path / 'jobs.db'}")
    worker = EmbeddedWorker(workers=1, periodic=False)  # with the events dispatcher
    try:
        with use_database(fresh_database):
            worker.start()
            with clock.frozen(TODAY_NOON):
                purge_expired(fresh_database, paths)
            deadline = time.monotonic() + 60
            while pq.read_table(keys).num_rows != 100 and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        worker.stop()
        reset_queue()
        monkeypatch.delenv("CITYBRAIN_DATA_DIR")
        reset_settings()
    assert pq.read_table(keys).num_rows == 100


def test_the_purge_runs_every_night_at_a_quarter_to_four(tmp_path: Path) -> None:
    reset_queue(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        import_task_modules()
        queue = get_queue()
        name = "citybrain.datahub.tasks.purge_expired_lake_files"

        def due(at: dt.datetime) -> set[str]:
            return {queue._registry.task_to_string(type(t)) for t in queue.read_periodic(at)}

        # 03:45 in the city is 19:45 UTC the day before.
        assert name in due(dt.datetime(2024, 3, 1, 19, 45))
        assert name not in due(dt.datetime(2024, 3, 1, 3, 45))
    finally:
        reset_queue()
