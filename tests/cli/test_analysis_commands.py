"""Collision analysis from the command line, as an operator runs it: a small synthetic city
simulated and taken in, then linkage, contacts, screening and the evaluation against its
truth, each a real process against a real, migrated database."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tests.cli.test_cli import cli_env, run  # noqa: F401 - fixture
from tests.conftest import DatabaseFactory
from tests.datahub.feeds import rail_rows, travellers, write_rail

pytestmark = pytest.mark.slow


def last_json(output: str) -> dict[str, object]:
    parsed: dict[str, object] = json.loads(output.strip().splitlines()[-1])
    return parsed


def test_link_contacts_screen_and_evaluate_on_a_small_city(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    import os

    env = dict(os.environ)
    env.update(
        CITYBRAIN_DATA_DIR=str(tmp_path / "var"),
        CITYBRAIN_DATABASE_URL=database_factory.new_url(),
        CITYBRAIN_ENV="test",
    )
    run(env, "db", "upgrade")
    feeds = tmp_path / "feeds"
    run(env, "simulate", "--people", "4000", "--days", "18", "--seed", "11", "--out", str(feeds))
    ingested = last_json(run(env, "datahub", "ingest", str(feeds), "--json").stdout)
    # The intake took case reports in, so it traced those cases' contacts.
    assert isinstance(ingested["traced_cases"], int) and ingested["traced_cases"] > 0

    linked = last_json(run(env, "analysis", "link", "--json").stdout)
    assert isinstance(linked["records"], int) and linked["records"] > 10_000
    assert isinstance(linked["persons"], int) and 3000 <= linked["persons"] < linked["records"]

    evaluation = last_json(
        run(env, "evaluate", "--truth", str(tmp_path / "truth"), "--json").stdout
    )
    linkage, contacts, screening = (
        evaluation["linkage"],
        evaluation["contacts"],
        evaluation["screening"],
    )
    assert isinstance(linkage, dict) and isinstance(contacts, dict) and isinstance(screening, dict)
    assert linkage["precision"] >= 0.99 and 0 < linkage["recall"] <= 1
    assert 0 <= contacts["recall_infectees"] <= 1 and 0 <= contacts["precision"] <= 1
    assert 0 <= screening["recall"] <= 1 and 0 <= screening["precision"] <= 1
    assert isinstance(evaluation["second_hop_share"], float)
    assert evaluation["second_hop_share"] < 0.02
    assert evaluation["cases_traced"] == ingested["traced_cases"]
    seconds = evaluation["seconds_case_to_contacts"]
    assert isinstance(seconds, float) and 0 < seconds < 60

    # A case the lake holds: its contacts with evidence, two hops.
    from citybrain.analysis.contacts import cases_in_lake
    from citybrain.datahub.lake import LakePaths
    from citybrain.kit.db import Database

    database = Database(env["CITYBRAIN_DATABASE_URL"])
    cases = cases_in_lake(LakePaths(tmp_path / "var"), database)
    database.dispose()
    assert cases, "the small city's outbreak reached the lake"
    case = str(cases[0][0])
    listed = last_json(
        run(env, "analysis", "contacts", "--case", case, "--hops", "2", "--json").stdout
    )
    rows = listed["contacts"]
    assert isinstance(rows, list) and rows
    assert all(r["case"] == int(case) and r["evidence"] and r["rule"] for r in rows)
    assert listed["close_contacts"] == len({r["contact"] for r in rows if r["hop"] == 1})

    screened = last_json(run(env, "analysis", "screen", "--json").stdout)
    lake_days = {p.name.removeprefix("day=") for p in (tmp_path / "var/lake").glob("*/*/day=*")}
    assert screened["as_of"] == max(lake_days)  # by default, the lake's last day
    groups = screened["by_compound"]
    assert isinstance(groups, list)
    assert sum(g["persons"] for g in groups) >= screened["persons"]


def test_a_linkage_by_hand_counts_as_tracing_s_own(
    cli_env: dict[str, str],  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    from citybrain.analysis.linkage import OUTPUT
    from citybrain.analysis.tracing import _stale
    from citybrain.datahub.lake import LakePaths
    from citybrain.kit.db import Database

    feeds = tmp_path / "feeds"
    day = dt.date(2020, 3, 20)
    write_rail(feeds, day, rail_rows(travellers(50), day))
    run(cli_env, "datahub", "ingest", str(feeds), "--no-trace", "--json")
    paths = LakePaths(Path(cli_env["CITYBRAIN_DATA_DIR"]))
    database = Database(cli_env["CITYBRAIN_DATABASE_URL"])
    try:
        assert _stale(paths, database, paths.root / OUTPUT)  # never linked
        linked = last_json(run(cli_env, "analysis", "link", "--json").stdout)
        assert linked["records"] == 50
        # The next trace finds the keys current: nothing came or went since.
        assert not _stale(paths, database, paths.root / OUTPUT)
    finally:
        database.dispose()
