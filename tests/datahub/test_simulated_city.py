"""The acceptance path end to end, as a real process: simulate a city, take its feeds in,
check the reconciliation per file, the status board, byte-identical feeds for the same seed,
and that no raw identifier from the feeds reaches the lake."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from tests.conftest import DatabaseFactory
from tests.moved_clock import citybrain_command

pytestmark = pytest.mark.slow

PEOPLE = "20000"
DAYS = "30"


def run(env: dict[str, str], *args: str) -> dict[str, object]:
    result = subprocess.run(
        citybrain_command(*args),
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    last = result.stdout.strip().splitlines()[-1]
    loaded: dict[str, object] = json.loads(last)
    return loaded


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def city(
    database_factory: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, str], Path, dict[str, object]]:
    root = tmp_path_factory.mktemp("city")
    env = dict(os.environ)
    env.update(
        CITYBRAIN_DATA_DIR=str(root / "var"),
        CITYBRAIN_DATABASE_URL=database_factory.new_url(),
        CITYBRAIN_ENV="test",
        CITYBRAIN_LAKE_COMPRESSION="none",  # so a byte search of the lake means something
    )
    feeds = root / "var" / "feeds"
    run(env, "simulate", "--people", PEOPLE, "--days", DAYS, "--seed", "7", "--out", str(feeds),
        "--json")  # fmt: skip
    summary = run(env, "datahub", "ingest", str(feeds), "--json")
    return env, feeds, summary


def test_every_file_and_the_whole_run_reconcile(
    city: tuple[dict[str, str], Path, dict[str, object]],
) -> None:
    _, _, summary = city
    for key in ("files", "received", "accepted", "quarantined", "duplicate"):
        assert isinstance(summary[key], int)
    assert summary["received"] == (
        summary["accepted"] + summary["quarantined"] + summary["duplicate"]  # type: ignore[operator]
    )
    assert summary["quarantined"] > 0 and summary["duplicate"] > 0  # the default faults
    per_file = summary["per_file"]
    assert isinstance(per_file, list) and len(per_file) == summary["files"]
    for f in per_file:
        assert f["received"] == f["accepted"] + f["quarantined"] + f["duplicate"], f
    assert summary["rejected"] == 0


def test_the_lake_reconciles_with_the_ledger_counted_independently(
    city: tuple[dict[str, str], Path, dict[str, object]],
) -> None:
    env, _, summary = city
    report = run(env, "datahub", "reconcile", "--json")
    assert report["ok"] is True and report["mismatches"] == []
    assert report["accepted"] == summary["accepted"] == report["linkage_rows"]
    assert report["quarantine_rows"] == summary["quarantined"]


def test_status_lists_42_categories_and_every_agency_feed_has_records(
    city: tuple[dict[str, str], Path, dict[str, object]],
) -> None:
    env, _, _ = city
    status = run(env, "datahub", "status", "--json")
    categories = status["categories"]
    assert isinstance(categories, list) and len(categories) == 42
    feeds = [c for c in categories if c["origin"] == "agency_feed"]
    assert len(feeds) == 30
    empty = [c["code"] for c in feeds if c["records"] <= 0]
    assert empty == []


def test_no_raw_resident_id_or_phone_from_the_feeds_is_in_the_lake(
    city: tuple[dict[str, str], Path, dict[str, object]],
) -> None:
    env, feeds, _ = city
    samples: set[str] = set()
    for path in sorted((feeds / "rail_ticket").glob("*.csv"))[:3]:
        rows = list(csv.DictReader(io.StringIO(path.read_bytes().decode("gbk"))))
        samples |= {r["证件号码"] for r in rows[:40] if r["证件号码"]}
        samples |= {r["手机号"] for r in rows[:40] if r["手机号"]}
    for path in sorted((feeds / "telecom_cell").glob("*.csv"))[:2]:
        rows = list(csv.DictReader(io.StringIO(path.read_text("utf-8"))))
        samples |= {r["msisdn"] for r in rows[:40] if r["msisdn"]}
    assert len(samples) > 50
    lake = Path(env["CITYBRAIN_DATA_DIR"]) / "lake"
    parts = list(lake.rglob("*.parquet"))
    assert parts
    encoded = [s.encode() for s in samples]
    for part in parts:
        data = part.read_bytes()
        assert not any(value in data for value in encoded), part
    numbers = {int(s) for s in samples if s.isdigit()}
    con = duckdb.connect()  # its own: the module's default connection is shared with others
    for kind in ("presence", "travel", "health", "setting", "identity"):
        table = con.sql(
            f"SELECT * FROM read_parquet('{lake}/{kind}/**/*.parquet', hive_partitioning=true)"
        ).to_arrow_table()
        for name in table.column_names:
            column = table.column(name)
            if pa.types.is_integer(column.type):
                # A number column holds no identifier as text, but must not hold one as a
                # number either; a substring test would find phones inside 19-digit row hashes.
                assert not numbers & set(column.to_pylist()), (kind, name)
            elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                # Keyed-hash (binary) columns are covered by the byte scan above.
                text = "\n".join(v for v in column.to_pylist() if v is not None)
                assert not any(value in text for value in samples), (kind, name)


def test_the_same_seed_gives_byte_identical_feeds(
    city: tuple[dict[str, str], Path, dict[str, object]], tmp_path: Path
) -> None:
    env, feeds, _ = city
    again = tmp_path / "feeds"
    run(env, "simulate", "--people", PEOPLE, "--days", DAYS, "--seed", "7", "--out", str(again),
        "--truth-out", str(tmp_path / "truth"), "--json")  # fmt: skip
    assert tree_digest(again) == tree_digest(feeds)
