"""Intake into the lake: exact reconciliation, quarantine with line and reason, duplicates,
idempotent re-ingest, pseudonymisation (no raw identifier in the lake), and recovery from a
process killed in the middle of a file."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from citybrain.core.audit.models import AuditEntry
from citybrain.core.events.models import OutboxEvent
from citybrain.datahub import lake
from citybrain.datahub.models import IntakeFile
from citybrain.datahub.service import Intake
from citybrain.datahub.status import category_status, quarantined_rows
from citybrain.datahub.vault import Vault
from citybrain.kit.db import Database
from citybrain.kit.settings import reset_settings
from tests.conftest import DatabaseFactory
from tests.datahub.feeds import (
    rail_rows,
    travellers,
    write_cases,
    write_flights,
    write_rail,
)
from tests.moved_clock import citybrain_command

DAY = dt.date(2020, 1, 21)


@pytest.fixture
def uncompressed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lake parts without compression, so a byte search means something."""
    monkeypatch.setenv("CITYBRAIN_LAKE_COMPRESSION", "none")
    reset_settings()
    yield
    monkeypatch.delenv("CITYBRAIN_LAKE_COMPRESSION")
    reset_settings()


def lake_rows(paths: lake.LakePaths, kind: str) -> int:
    if not paths.kind_dir(kind).exists():
        return 0
    return int(
        duckdb.connect()
        .execute(f"SELECT count(*) FROM read_parquet('{paths.glob(kind)}', hive_partitioning=true)")
        .fetchone()[0]  # type: ignore[index]
    )


def corrupt(rows: list[str], every: int) -> tuple[list[str], dict[int, str]]:
    """Break one row in ``every``: bad checksum, impossible time, cut-off line, in turn.
    Returns the rows and the expected reason per physical line (header is line 1)."""
    out, expected = [], {}
    for i, row in enumerate(rows):
        line = i + 2
        if i % every == every - 1:
            kind = (i // every) % 3
            cells = row.split(",")
            if kind == 0:
                last = cells[2][-1]
                cells[2] = cells[2][:-1] + ("0" if last != "0" else "1")
                expected[line] = "id_checksum"
            elif kind == 1:
                cells[7] = "20200121 0835"
                expected[line] = "bad_datetime"
            else:
                cells = cells[:5]
                expected[line] = "malformed_row"
            row = ",".join(cells)
        out.append(row)
    return out, expected


def test_a_feed_with_one_per_cent_bad_rows_keeps_every_good_row(
    fresh_database: Database, tmp_path: Path
) -> None:
    people = travellers(2000)
    clean = rail_rows(people, DAY)
    rows, expected = corrupt(clean, every=100)
    assert len(expected) == 20
    feeds = tmp_path / "feeds"
    write_rail(feeds, DAY, rows)
    paths = lake.LakePaths(tmp_path / "var")
    intake = Intake(paths)
    summary = intake.ingest_folder(fresh_database, feeds)
    assert summary.received == 2000
    assert summary.quarantined == 20
    assert summary.accepted == 1980
    assert summary.duplicate == 0
    assert summary.reconciles
    # Every bad row is in the quarantine with its line and reason, and the row as sent.
    found = {r.line: r for r in quarantined_rows(paths, category="rail_ticket")}
    assert {line: r.reason for line, r in found.items()} == expected
    assert found[101].column == "证件号码"
    assert people[99].name in found[101].raw
    # Each kind of the feed holds exactly the accepted rows.
    assert lake_rows(paths, "travel") == 1980
    assert lake_rows(paths, "presence") == 1980
    # Re-ingesting changes nothing.
    again = intake.ingest_folder(fresh_database, feeds)
    assert again.new_files == 0 and again.already_ingested == 1 and again.received == 0
    assert lake_rows(paths, "travel") == 1980
    with fresh_database.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(IntakeFile)) == 1
        ledger = session.scalars(select(IntakeFile)).one()
        assert (ledger.received, ledger.accepted, ledger.quarantined) == (2000, 1980, 20)
        assert ledger.reasons == {"bad_datetime": 7, "id_checksum": 7, "malformed_row": 6}
        audit = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "datahub.ingest")
        ).all()
        assert len(audit) == 1 and audit[0].detail["accepted"] == 1980
        events = session.scalars(
            select(OutboxEvent).where(OutboxEvent.topic == "datahub.file_ingested")
        ).all()
        assert len(events) == 1 and events[0].payload["file_id"] == ledger.file_id


def test_duplicates_within_a_file_and_across_late_files_are_recognised(
    fresh_database: Database, tmp_path: Path
) -> None:
    people = travellers(300)
    rows = rail_rows(people, DAY)
    feeds = tmp_path / "feeds"
    write_rail(feeds, DAY, [*rows[:200], rows[0], rows[1]])
    # The agency sends a supplement two days later: 100 new rows and 50 it already sent.
    write_rail(feeds, DAY + dt.timedelta(days=2), rows[150:300], suffix="_supplement")
    paths = lake.LakePaths(tmp_path / "var")
    summary = Intake(paths).ingest_folder(fresh_database, feeds)
    first, supplement = summary.per_file
    assert (first.received, first.accepted, first.duplicate) == (202, 200, 2)
    assert (supplement.received, supplement.accepted, supplement.duplicate) == (150, 100, 50)
    assert supplement.late == 100  # rows of a day before the day before delivery
    assert lake_rows(paths, "travel") == 300


def test_duplicates_are_still_found_when_the_committer_forgets_what_it_published(
    fresh_database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from citybrain.datahub import service

    monkeypatch.setattr(service, "SEEN_LIMIT", 1)  # memory cleared at every file: days reread
    people = travellers(300)
    rows = rail_rows(people, DAY)
    feeds = tmp_path / "feeds"
    write_rail(feeds, DAY, [*rows[:200], rows[0], rows[1]])
    write_rail(feeds, DAY + dt.timedelta(days=2), rows[150:300], suffix="_supplement")
    paths = lake.LakePaths(tmp_path / "var")
    first, supplement = Intake(paths).ingest_folder(fresh_database, feeds).per_file
    assert (first.accepted, first.duplicate) == (200, 2)
    assert (supplement.accepted, supplement.duplicate) == (100, 50)
    assert lake_rows(paths, "travel") == 300


def test_rows_already_in_the_lake_from_an_earlier_run_are_duplicates(
    fresh_database: Database, tmp_path: Path
) -> None:
    people = travellers(300)
    rows = rail_rows(people, DAY)
    feeds = tmp_path / "feeds"
    write_rail(feeds, DAY, rows[:200])
    paths = lake.LakePaths(tmp_path / "var")
    intake = Intake(paths)
    intake.ingest_folder(fresh_database, feeds)
    # The supplement arrives after the first file is in the lake: the stager finds its 50
    # repeated rows there, before writing anything.
    write_rail(feeds, DAY + dt.timedelta(days=2), rows[150:300], suffix="_supplement")
    summary = intake.ingest_folder(fresh_database, feeds)
    assert (summary.new_files, summary.already_ingested) == (1, 1)
    (supplement,) = [r for r in summary.per_file if r.status == "ingested"]
    assert (supplement.received, supplement.accepted, supplement.duplicate) == (150, 100, 50)
    assert lake_rows(paths, "travel") == 300


def test_a_file_taken_in_after_a_folder_run_gets_the_next_ledger_id(
    fresh_database: Database, tmp_path: Path
) -> None:
    from citybrain.datahub.catalog import get_source

    people = travellers(60)
    feeds = tmp_path / "feeds"
    for offset in range(2):
        write_rail(
            feeds, DAY + dt.timedelta(days=offset), rail_rows(people[offset * 20 :][:20], DAY)
        )
    intake = Intake(lake.LakePaths(tmp_path / "var"))
    intake.ingest_folder(fresh_database, feeds)
    late = write_rail(tmp_path / "push", DAY, rail_rows(people[40:], DAY))
    # The run reserved its ledger ids up front; a later file (a push) must not collide.
    with fresh_database.unit_of_work() as session:
        result, row = intake.ingest_bytes(
            session, late.read_bytes(), late.name, get_source("rail_ticket"), delivered=DAY
        )
        assert row is not None and result.accepted == 20
    with fresh_database.unit_of_work() as session:
        ids = sorted(session.scalars(select(IntakeFile.id)))
    assert len(ids) == 3 and ids[-1] > ids[-2]
    assert lake_rows(intake.paths, "travel") == 60


def lake_content(paths: lake.LakePaths) -> dict[str, list[tuple[int, int]]]:
    """Every kind's (record id, row hash) pairs, and the linkage store's record ids."""
    out = {}
    for kind in lake.KIND_COLUMNS:
        if paths.kind_dir(kind).exists():
            out[kind] = (
                duckdb.connect()
                .execute(
                    f"SELECT record_id, row_hash FROM read_parquet('{paths.glob(kind)}') "
                    "ORDER BY record_id"
                )
                .fetchall()
            )
    vault = Vault()
    out["linkage"] = sorted(
        (record_id, 0)
        for part in paths.linkage.rglob("*.parquet")
        for record_id in vault.read(part, ["record_id"]).column(0).to_pylist()
    )
    return out


@pytest.mark.slow
def test_worker_processes_take_in_exactly_what_staging_here_does(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    from citybrain.simulate.config import SimulationConfig
    from citybrain.simulate.run import run_simulation
    from tests.simulate.conftest import geo_input

    feeds = tmp_path / "feeds"
    run_simulation(
        SimulationConfig(people=3000, days=6, seed=11), geo_input(), feeds, tmp_path / "truth"
    )
    outcomes = {}
    for workers in (0, 2):
        database = database_factory.new_database()
        paths = lake.LakePaths(tmp_path / f"var{workers}")
        summary = Intake(paths).ingest_folder(database, feeds, workers=workers)
        with database.unit_of_work() as session:
            ledger = sorted(
                (f.id, f.name, f.received, f.accepted, f.quarantined, f.duplicate, f.late)
                for f in session.scalars(select(IntakeFile))
            )
        database.dispose()
        assert summary.reconciles and summary.new_files == len(ledger) > 100
        outcomes[workers] = (summary.as_dict()["duplicate"], ledger, lake_content(paths))
    here, pooled = outcomes[0], outcomes[2]
    assert here[0] > 0  # the simulated agencies send rows twice, within and across files
    assert pooled == here


def test_json_lines_and_excel_feeds_reconcile(fresh_database: Database, tmp_path: Path) -> None:
    people = travellers(40)
    feeds = tmp_path / "feeds"
    write_flights(feeds, DAY, people, broken=4)
    write_cases(feeds, DAY, people[:5])
    paths = lake.LakePaths(tmp_path / "var")
    summary = Intake(paths).ingest_folder(fresh_database, feeds)
    by_category = {r.category: r for r in summary.per_file}
    flights = by_category["flight_manifest"]
    assert (flights.received, flights.accepted, flights.quarantined) == (40, 36, 4)
    assert flights.reasons == {"bad_json": 4}
    cases = by_category["case_confirmed"]
    assert (cases.received, cases.accepted) == (5, 5)
    rows = (
        duckdb.connect()
        .execute(
            f"SELECT event, event_time, detail FROM read_parquet('{paths.glob('health')}', "
            "hive_partitioning=true) ORDER BY detail"
        )
        .fetchall()
    )
    assert rows[0] == ("confirmed", dt.datetime(2020, 1, 21), "郑州市2020-0001")
    seats = (
        duckdb.connect()
        .execute(
            f"SELECT row, seat FROM read_parquet('{paths.glob('presence')}', "
            "hive_partitioning=true) WHERE place = 'CZ3401@2020-01-21' ORDER BY row, seat LIMIT 1"
        )
        .fetchone()
    )
    assert seats is not None and seats[0] >= 1


def test_no_raw_identifier_reaches_the_lake(
    fresh_database: Database, tmp_path: Path, uncompressed: None
) -> None:
    people = travellers(500)
    feeds = tmp_path / "feeds"
    write_rail(feeds, DAY, rail_rows(people, DAY))
    write_flights(feeds, DAY, people[:100])
    paths = lake.LakePaths(tmp_path / "var")
    summary = Intake(paths).ingest_folder(fresh_database, feeds)
    assert summary.accepted == 600
    sample = [p.id_number for p in people[::25]] + [p.phone for p in people[::25]]
    names = [p.name for p in people[::25]]
    lake_files = list(paths.lake.rglob("*.parquet"))
    assert lake_files
    for part in lake_files:
        data = part.read_bytes()
        for value in sample + names:
            assert value.encode() not in data, (part, value)
    # Nor in any value a query of the lake returns.
    for kind in ("travel", "presence"):
        text = str(
            duckdb.connect()
            .execute(f"SELECT * FROM read_parquet('{paths.glob(kind)}', hive_partitioning=true)")
            .fetchall()
        )
        assert not any(value in text for value in sample + names)
    # The linkage store has them, encrypted: not in its bytes, readable with the key only.
    linkage = list(paths.linkage.rglob("*.parquet"))
    for part in linkage:
        data = part.read_bytes()
        assert not any(value.encode() in data for value in sample)
        with pytest.raises(OSError):
            pq.read_table(part)
    decrypted = Vault().read(linkage[0]).to_pylist()
    assert {r["id_number"] for r in decrypted} <= {p.id_number for p in people}


def test_status_lists_every_category_with_its_records(
    fresh_database: Database, tmp_path: Path
) -> None:
    feeds = tmp_path / "feeds"
    write_rail(feeds, DAY, rail_rows(travellers(10), DAY))
    Intake(lake.LakePaths(tmp_path / "var")).ingest_folder(fresh_database, feeds)
    with fresh_database.unit_of_work() as session:
        board = {s.code: s for s in category_status(session)}
    assert len(board) == 42
    assert board["rail_ticket"].records == 10 and board["rail_ticket"].state == "ok"
    assert board["flight_manifest"].state == "no_data" and board["flight_manifest"].stale
    assert board["gate_scan"].state == "awaiting_app" and not board["gate_scan"].stale


def test_a_file_in_the_wrong_encoding_is_rejected_and_reported(
    fresh_database: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "feeds" / "telecom_roaming"
    folder.mkdir(parents=True)
    (folder / "telecom_roaming_20200121.csv").write_bytes(
        "msisdn,home_city,arrive_time,first_cell\n13800000000,武汉市,1579500000,x\n".encode("gbk")
    )
    (folder / "readme.txt").write_text("not a feed")
    summary = Intake(lake.LakePaths(tmp_path / "var")).ingest_folder(
        fresh_database, tmp_path / "feeds"
    )
    assert summary.rejected == 1
    assert summary.unrecognised == ["telecom_roaming/readme.txt"]
    assert "utf-8" in (summary.per_file[0].error or "")


@pytest.mark.slow
def test_killing_the_intake_mid_file_then_rerunning_loses_and_doubles_nothing(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    feeds = tmp_path / "feeds"
    people = travellers(3000)
    for offset in range(3):
        day = DAY + dt.timedelta(days=offset)
        rows, _ = corrupt(rail_rows(people[offset * 1000 : (offset + 1) * 1000], day), 50)
        write_rail(feeds, day, rows)
    env = dict(os.environ)
    env.update(
        CITYBRAIN_DATA_DIR=str(tmp_path / "var"),
        CITYBRAIN_DATABASE_URL=database_factory.new_url(),
        CITYBRAIN_ENV="test",
        CITYBRAIN_INTAKE_STALL_SECONDS="60",
    )
    command = citybrain_command("datahub", "ingest", str(feeds), "--json")
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    paths = lake.LakePaths(tmp_path / "var")
    deadline = time.monotonic() + 60
    # Wait until the first file's parts are published, then kill: its ledger row never commits.
    while time.monotonic() < deadline and not list(paths.lake.rglob("*.parquet")):
        time.sleep(0.05)
    assert list(paths.lake.rglob("*.parquet")), "intake never published a part"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert lake_rows(paths, "travel") > 0  # orphans of the killed file are there
    env["CITYBRAIN_INTAKE_STALL_SECONDS"] = "0"
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    import json

    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary["orphans_removed"] > 0
    assert summary["new_files"] == 3
    assert summary["received"] == 3000
    assert (
        summary["received"] == summary["accepted"] + summary["quarantined"] + summary["duplicate"]
    )
    assert summary["quarantined"] == 60
    assert lake_rows(paths, "travel") == summary["accepted"] == 2940
    third = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert json.loads(third.stdout.strip().splitlines()[-1])["new_files"] == 0
    assert lake_rows(paths, "travel") == 2940


def test_lake_pseudonyms_are_the_registry_blind_index_cut_to_128_bits() -> None:
    import pyarrow as pa

    from citybrain.datahub.pseudonym import Pseudonymiser
    from citybrain.kit.crypto import blind_index

    values = pa.array(["13800138000", None, "13800138001", "13800138000"])
    first = Pseudonymiser(remember=1)
    digests = first.column(values, "phone").to_pylist()
    again = first.column(values, "phone").to_pylist()  # from the cache (or recomputed)
    expected = bytes.fromhex(blind_index().digest("13800138000", "phone")[:32])
    assert digests == again
    assert digests[0] == digests[3] == expected and digests[1] is None and len(digests[2]) == 16


def test_reconciliation_counts_the_lake_independently_and_finds_what_is_missing_or_stray(
    fresh_database: Database, tmp_path: Path
) -> None:
    from citybrain.datahub.reconcile import reconcile

    people = travellers(300)
    rows, _ = corrupt(rail_rows(people, DAY), every=30)
    feeds = tmp_path / "feeds"
    write_rail(feeds, DAY, rows)
    write_flights(feeds, DAY, people[:50], broken=2)
    paths = lake.LakePaths(tmp_path / "var")
    summary = Intake(paths).ingest_folder(fresh_database, feeds)
    with fresh_database.unit_of_work() as session:
        report = reconcile(session, paths)
    assert report.ok, report.mismatches
    assert report.files == 2 and report.accepted == summary.accepted
    assert report.lake_rows["travel"] == summary.accepted  # rail and flights both travel
    assert report.linkage_rows == summary.accepted
    assert report.quarantine_rows == summary.quarantined == 12
    # A lost part and a stray one are both found.
    lost = next(paths.kind_dir("presence").rglob("*.parquet"))
    stray = lost.with_name("ffffffffffffffffffff.parquet")
    lost.rename(stray)
    with fresh_database.unit_of_work() as session:
        report = reconcile(session, paths)
    assert not report.ok
    assert report.orphan_files == 1
    assert {m.what for m in report.mismatches} == {"lake:presence"}
