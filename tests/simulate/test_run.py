"""``run_simulation``: reproducible to the byte, truth kept apart, progress and summary."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from citybrain.kit.errors import InvalidInput
from citybrain.simulate.config import FaultRates, GeoInput, SimulationConfig
from citybrain.simulate.run import run_simulation
from tests.simulate.feed_reader import feed_files, load_sources, parse_record, read_file
from tests.simulate.feeds_fixtures import GEO, FakeModel, config

FAULTS = FaultRates(malformed=0.02)  # the defaults plus malformed rows: every fault kind


def tree_digest(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file under ``root`` by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    digests = []
    for name in ("a", "b"):
        run_simulation(config(days=3, faults=FAULTS), GEO, tmp_path / name / "feeds",
                       model=FakeModel())  # fmt: skip
        feeds = tree_digest(tmp_path / name / "feeds")
        # summary.json records how long the run took and where: the one file that differs.
        truth = tree_digest(tmp_path / name / "truth", skip=("summary.json",))
        digests.append((feeds, truth))
    assert digests[0] == digests[1]
    feeds, truth = digests[0]
    assert any(k.endswith(".xlsx") for k in feeds) and any(k.endswith(".csv") for k in feeds)
    assert "faults.json" in truth and "record_owner/telecom_cell.parquet" in truth

    run_simulation(config(days=3, seed=4, faults=FAULTS), GEO, tmp_path / "c" / "feeds",
                   model=FakeModel())  # fmt: skip
    other = tree_digest(tmp_path / "c" / "feeds")
    assert other != feeds


@pytest.mark.parametrize("inside", [".", "truth", "x/y/truth"])
def test_truth_inside_the_feeds_folder_is_refused(tmp_path: Path, inside: str) -> None:
    out = tmp_path / "feeds"
    with pytest.raises(InvalidInput) as err:
        run_simulation(config(days=1), GEO, out, out / inside, model=FakeModel())
    assert err.value.code == "truth_inside_out"
    assert "truth" in err.value.message_en
    assert not out.exists()  # refused before anything was written


def test_truth_goes_beside_the_feeds_by_default(tmp_path: Path) -> None:
    summary = run_simulation(config(days=1), GEO, tmp_path / "feeds", model=FakeModel())
    assert summary.truth == (tmp_path / "truth").resolve()
    assert (tmp_path / "truth" / "persons.parquet").exists()
    assert not any(p.suffix == ".parquet" for p in (tmp_path / "feeds").rglob("*"))
    for name in ("infections", "exposures", "travel", "risk_areas", "persons"):
        assert pq.read_table(tmp_path / "truth" / f"{name}.parquet").num_rows > 0, name


def test_summary_and_progress(tmp_path: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    summary = run_simulation(
        config(days=2),
        GEO,
        tmp_path / "feeds",
        tmp_path / "elsewhere" / "truth",
        progress=lambda stage, done, total: calls.append((stage, done, total)),
        model=FakeModel(),
    )
    assert calls[0] == ("城市建模", 0, 1) and calls[1] == ("城市建模", 1, 1)
    assert ("模拟第 1/2 天", 1, 2) in calls and ("模拟第 2/2 天", 2, 2) in calls
    assert calls[-1] == ("写入真值", 1, 1)
    files = [p for p in (tmp_path / "feeds").rglob("*") if p.is_file()]
    assert summary.files == len(files)
    assert summary.people == 1500 and summary.days == 2 and summary.people_days == 3000
    truth = tmp_path / "elsewhere" / "truth"
    owners = sum(pq.read_table(p).num_rows for p in (truth / "record_owner").glob("*.parquet"))
    assert summary.records == owners == sum(summary.records_by_category.values())
    as_dict = summary.as_dict()
    assert as_dict["records"] == summary.records and as_dict["truth"] == str(truth.resolve())
    saved = json.loads((truth / "summary.json").read_text(encoding="utf-8"))
    assert saved["records"] == summary.records and saved["seed"] == 3
    json.dumps(as_dict)  # plain values only


def test_a_used_folder_needs_overwrite(tmp_path: Path) -> None:
    run_simulation(config(days=2), GEO, tmp_path / "feeds", model=FakeModel())
    with pytest.raises(InvalidInput) as err:
        run_simulation(config(days=1), GEO, tmp_path / "feeds", model=FakeModel())
    assert err.value.code == "folder_not_empty"
    keep = tmp_path / "feeds" / "README.txt"
    keep.write_text("not ours", encoding="utf-8")
    run_simulation(config(days=1, seed=9), GEO, tmp_path / "feeds", model=FakeModel(),
                   overwrite=True)  # fmt: skip
    assert keep.exists()
    # The second day's files of the first run are gone.
    assert [p.name for p in (tmp_path / "feeds" / "lab_test").iterdir()] == [
        "lab_test_20200120.csv"
    ]


def test_the_real_model_end_to_end(tmp_path: Path, geo: GeoInput) -> None:
    """The model's own tables through every writer: every record parses or is marked, and a
    second run gives the same bytes."""
    cfg = SimulationConfig(people=4000, days=2, seed=11, faults=FaultRates(malformed=0.01))
    summary = run_simulation(cfg, geo, tmp_path / "feeds")
    assert summary.records > 10_000
    sources = load_sources()
    truth = tmp_path / "truth"
    checked = 0
    for path in feed_files(tmp_path / "feeds"):
        category = path.parent.name
        owners = {
            (o["sheet"], o["line"]): o["fault"] or ""
            for o in pq.read_table(truth / "record_owner" / f"{category}.parquet").to_pylist()
            if o["file"] == f"{category}/{path.name}"
        }
        _, records = read_file(path, sources[category])
        assert len(records) == len(owners), path.name
        for record in records:
            fault = owners[record.sheet, record.line]
            try:
                assert record.values is not None
                parse_record(sources[category], record.values)
            except (AssertionError, ValueError):
                assert "malformed" in fault, (path.name, record.line, record.text)
            checked += 1
    assert checked == summary.records
    # The same seed again: the same bytes, model included.
    run_simulation(cfg, geo, tmp_path / "again" / "feeds")
    assert tree_digest(tmp_path / "again" / "feeds") == tree_digest(tmp_path / "feeds")
