"""The agency feed writers: shapes per the contract, formats that parse back, faults that match
the truth, and record owners that point at the right rows."""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from citybrain.kit.idcheck import is_valid_resident_id
from citybrain.simulate.config import FaultRates
from citybrain.simulate.feeds import writers
from citybrain.simulate.feeds.agencies import BUILDERS, Lookups
from citybrain.simulate.feeds.faults import SIMILAR, break_checksums, typo_names
from citybrain.simulate.feeds.pipeline import SNAPSHOT_EVERY_DAYS, FeedPipeline, time_ordered
from citybrain.simulate.feeds.render import format_seconds, format_times
from citybrain.simulate.feeds.shapes import SHAPES, SHAPES_BY_CATEGORY
from citybrain.simulate.persons import GIVEN_FEMALE, GIVEN_MALE, SURNAMES
from citybrain.simulate.run import geo_names, run_simulation
from citybrain.simulate.truth import TruthWriter
from tests.simulate.feed_reader import (
    columns_of,
    feed_files,
    load_sources,
    parse_record,
    parse_value,
    read_file,
)
from tests.simulate.feeds_fixtures import GEO, FakeDay, FakeModel, config, make_city, make_day

SOURCES = load_sources()
FILE_NAME = re.compile(r"^(?P<cat>[a-z_]+)_(?P<day>\d{8})(?P<supp>_supplement)?\.(csv|jsonl|xlsx)$")


# --- the contract ---------------------------------------------------------------------------


def test_every_agency_feed_has_a_shape_and_nothing_else() -> None:
    assert len(SOURCES) == 30
    assert {s.category for s in SHAPES} == set(SOURCES)


@pytest.mark.parametrize("category", sorted(SOURCES))
def test_shape_matches_sources_yaml(category: str) -> None:
    """Columns, order, types, formats and enum values as the contract has them.

    Matched by column, not by the data centre's field keys: the keys are the data centre's
    internal names, the columns are what the agency writes.
    """
    source = SOURCES[category]
    shape = SHAPES_BY_CATEGORY[category]
    assert shape.format == source["file"]["format"]
    assert shape.encoding == source["file"]["encoding"]
    assert [c.column for c in shape.columns] == columns_of(source)
    by_column = {c.column: c for c in shape.columns}
    primary: dict[str, dict[str, Any]] = {}
    for field in source["fields"].values():
        primary.setdefault(field["column"], field)
    for column, field in primary.items():
        col = by_column[column]
        assert col.type == field["type"], column
        if field["type"] in ("datetime", "date"):
            assert col.fmt in field["formats"], column
        if field["type"] == "enum":
            assert col.values is not None
            assert dict(col.values) == {str(k): v for k, v in field["values"].items()}, column
        else:
            assert col.values is None, column


def test_names_and_places_are_gbk_encodable() -> None:
    vocabulary = "".join(s for s, _ in SURNAMES) + GIVEN_MALE + GIVEN_FEMALE
    for char in vocabulary:
        assert char in SIMILAR, f"no look-alike for {char}"
    for key, value in SIMILAR.items():
        assert len(key) == 1 and len(value) == 1 and key != value
        (key + value).encode("gbk")
    city = make_city(300, 1, 1)
    for table in (city.places, city.schools, city.enterprises, city.care_homes):
        "".join(table.column("name").to_pylist()).encode("gbk")
    for area in GEO.areas:
        area.name.encode("gbk")
    for shape in SHAPES:
        ",".join(c.column for c in shape.columns).encode("gbk")


# --- formatting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt", ["%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y%m%d%H%M%S", "%Y-%m-%dT%H:%M:%S",
            "%Y%m%d%H%M", "%Y-%m-%d", "%Y%m%d", "%Y年%m月%d日 %H时%M分"],
)  # fmt: skip
def test_format_seconds_matches_strftime(fmt: str) -> None:
    rng = np.random.default_rng(5)
    secs = np.concatenate(
        [
            rng.integers(-2_000_000_000, 4_000_000_000, 2000),
            1579478400 + rng.integers(0, 86400, 500),
        ]
    ).astype(np.int64)
    got = format_seconds(secs, fmt).to_pylist()
    base = dt.datetime(1970, 1, 1)
    want = [(base + dt.timedelta(seconds=int(s))).strftime(fmt) for s in secs]
    assert got == want


def test_epochs_are_china_standard_time() -> None:
    local = pa.array([dt.datetime(2020, 1, 20, 8, 0, 0), None], pa.timestamp("s"))
    assert format_times(local, "epoch").to_pylist() == ["1579478400", None]  # 00:00 UTC
    assert format_times(local, "epoch_ms").to_pylist() == ["1579478400000", None]


def test_typos_change_one_character_and_checksums_break() -> None:
    rng = np.random.default_rng(2)
    names = pa.array(["王伟", "欧阳娜娜", "李", "张三丰"])
    typos = typo_names(names, 0.5, rng).to_pylist()
    for before, after in zip(names.to_pylist(), typos, strict=True):
        assert len(before) == len(after)
        assert sum(a != b for a, b in zip(before, after, strict=True)) == 1
    ids = pa.array(["11010519491231002X", "410105198001010017"])
    assert all(is_valid_resident_id(i) for i in ids.to_pylist())
    broken = break_checksums(ids, rng).to_pylist()
    for before, after in zip(ids.to_pylist(), broken, strict=True):
        assert before[:17] == after[:17] and before[17] != after[17]
        assert not is_valid_resident_id(after)


def test_every_builder_fills_every_field() -> None:
    city = make_city(600, 4, 1)
    names, street_of = geo_names(GEO)
    lk = Lookups(city, names, street_of)
    day = time_ordered(make_day(city, 0))
    for category, builder in BUILDERS.items():
        rows = builder(lk, day, np.random.default_rng(0))
        assert rows is not None and len(rows) > 0, category
        shape = SHAPES_BY_CATEGORY[category]
        for col in shape.columns:
            arr = rows.values.get(col.field)
            assert arr is not None, f"{category}.{col.field} missing"
            assert len(arr) == len(rows), f"{category}.{col.field} length"


# --- a clean run ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Eight days without faults: two roster snapshots, every feed, exact values."""
    root = tmp_path_factory.mktemp("clean")
    run_simulation(config(days=SNAPSHOT_EVERY_DAYS + 1), GEO, root / "feeds", model=FakeModel())
    return root / "feeds", root / "truth"


def _persons(truth: Path) -> dict[str, dict[str, Any]]:
    table = pq.read_table(truth / "persons.parquet")
    return {row["person_id"]: row for row in table.to_pylist()}


def _owners(truth: Path) -> dict[tuple[str, str | None, int], dict[str, Any]]:
    owners = {}
    for path in (truth / "record_owner").glob("*.parquet"):
        for row in pq.read_table(path).to_pylist():
            owners[row["file"], row["sheet"], row["line"]] = row
    return owners


def test_layout_and_every_record_parses(clean: tuple[Path, Path]) -> None:
    out, truth = clean
    files = feed_files(out)
    assert {p.parent.name for p in files} == set(SOURCES)  # every feed wrote something
    owners = _owners(truth)
    seen = 0
    for path in files:
        match = FILE_NAME.match(path.name)
        assert match and match["cat"] == path.parent.name, path
        assert not match["supp"], "no late files without faults"
        source = SOURCES[match["cat"]]
        assert path.suffix[1:] == source["file"]["format"]
        header, records = read_file(path, source)
        assert header == columns_of(source)
        assert records, f"{path.name} has no rows"
        rel = f"{path.parent.name}/{path.name}"
        for record in records:
            assert record.values is not None, f"{rel}:{record.line} unreadable"
            parse_record(source, record.values)  # raises on any bad value
            assert (rel, record.sheet, record.line) in owners
            seen += 1
    assert seen == len(owners)
    # Days are the model's days; rosters come on the first day and a week later.
    days = {FILE_NAME.match(p.name)["day"] for p in files}  # type: ignore[index]
    assert days == {f"{dt.date(2020, 1, 20) + dt.timedelta(days=i):%Y%m%d}" for i in range(8)}
    for roster in ("student_roster", "staff_roster", "elderly_care", "household_registry"):
        assert sorted(FILE_NAME.match(p.name)["day"] for p in (out / roster).iterdir()) == [  # type: ignore[index]
            "20200120",
            "20200127",
        ], roster


def test_files_are_in_time_order_without_faults(clean: tuple[Path, Path]) -> None:
    out, _ = clean
    for path in feed_files(out):
        source = SOURCES[path.parent.name]
        if source["file"].get("format") == "xlsx" and path.parent.name.endswith(("roster", "care")):
            continue  # rosters: no time order
        if path.parent.name == "household_registry":
            continue  # a snapshot
        first = _time_field(source)
        _, records = read_file(path, source)
        values = [parse_value(first, r.values[first["column"]]) for r in records if r.values]
        assert values == sorted(values), path.name


def _time_field(source: dict[str, Any]) -> dict[str, Any]:
    """The field a file is in time order by: the first date-time, else the required date."""
    fields = list(source["fields"].values())
    for field in fields:
        if field["type"] == "datetime":
            return field
    return next(f for f in fields if f["type"] == "date" and f.get("required"))


def test_record_owner_points_at_the_right_person(clean: tuple[Path, Path]) -> None:
    out, truth = clean
    persons = _persons(truth)
    owners = _owners(truth)
    checked = collections.Counter[str]()
    for path in feed_files(out):
        category = path.parent.name
        source = SOURCES[category]
        fields = source["fields"]
        _, records = read_file(path, source)
        for record in records:
            assert record.values is not None
            owner = owners[f"{category}/{path.name}", record.sheet, record.line]
            person = persons[owner["person_id"]]
            got = {k: record.values.get(f["column"], "") for k, f in fields.items()}
            if "name" in fields:
                assert got["name"] == person["name"], (path.name, record.line)
            if "id_number" in fields and got["id_number"]:
                assert got["id_number"] in (person["id_number"], person["passport"])
            if "passport" in fields and got["passport"]:
                assert got["passport"] == person["passport"]
            if "phone" in fields and got["phone"] and category != "hotline_tipoff":
                assert got["phone"] in (person["phone"], person["phone2"]), category
            if "plate" in fields:
                assert got["plate"] == person["plate"]
            if "card" in fields:
                assert got["card"] == person["transit_card"]
            checked[category] += 1
    assert set(checked) == set(SOURCES)


def test_encodings_are_what_the_contract_says(clean: tuple[Path, Path]) -> None:
    out, _ = clean
    for path in feed_files(out):
        source = SOURCES[path.parent.name]
        raw = path.read_bytes()
        if source["file"]["format"] == "xlsx":
            assert raw[:2] == b"PK"
            continue
        if source["file"]["encoding"] == "gbk":
            raw.decode("gbk")
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")  # the header alone is Chinese
        else:
            raw.decode("utf-8")


def test_identity_and_enum_columns_use_raw_values(clean: tuple[Path, Path]) -> None:
    out, _ = clean
    _, rail = read_file(next((out / "rail_ticket").iterdir()), SOURCES["rail_ticket"])
    assert {r.values["证件类型"] for r in rail if r.values} <= {"身份证", "护照"}
    gates = [r.values for p in (out / "rail_gate").iterdir()
             for r in read_file(p, SOURCES["rail_gate"])[1] if r.values]  # fmt: skip
    assert {g["进出站"] for g in gates} == {"进站", "出站"}
    taps = [r.values for p in (out / "transit_card").iterdir()
            for r in read_file(p, SOURCES["transit_card"])[1] if r.values]  # fmt: skip
    assert {t["tap_type"] for t in taps} == {"1", "2"}
    bound = sum(1 for t in taps if t["bind_phone"]) / len(taps)
    assert 0.1 < bound < 0.5  # about 30% of cards are bound to a phone
    itinerary = next((out / "telecom_itinerary").iterdir()).read_text(encoding="utf-8")
    assert re.search(r'"msisdn":1\d{10},', itinerary)  # a JSON number


def test_xlsx_zips_carry_the_simulated_day(clean: tuple[Path, Path]) -> None:
    out, _ = clean
    xlsx = [p for p in feed_files(out) if p.suffix == ".xlsx"]
    assert xlsx
    for path in xlsx:
        day = dt.datetime.strptime(FILE_NAME.match(path.name)["day"], "%Y%m%d")  # type: ignore[index]
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            assert names == sorted(names)
            assert {i.date_time for i in zf.infolist()} == {day.timetuple()[:6]}
            core = zf.read("docProps/core.xml").decode()
        stamp = day.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert core.count(stamp) == 2, core


# --- faults ---------------------------------------------------------------------------------

RATES = FaultRates(
    name_typo=0.08,
    bad_checksum=0.08,
    missing_phone=0.08,
    duplicate=0.05,
    late_file=0.1,
    out_of_order=0.5,
    malformed=0.04,
)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three days with every fault at a high rate."""
    root = tmp_path_factory.mktemp("faulty")
    run_simulation(config(days=3, faults=RATES), GEO, root / "feeds", model=FakeModel())
    return root / "feeds", root / "truth"


def test_fault_counts_match_the_truth(faulty: tuple[Path, Path]) -> None:
    out, truth = faulty
    report = json.loads((truth / "faults.json").read_text(encoding="utf-8"))
    assert report["rates"]["name_typo"] == RATES.name_typo
    totals = collections.Counter[str]()
    for category, entry in report["by_category"].items():
        counted = collections.Counter[str]()
        path = truth / "record_owner" / f"{category}.parquet"
        rows = pq.read_table(path).to_pylist() if path.exists() else []
        assert entry["records"] == len(rows)
        for row in rows:
            for label in (row["fault"] or "").split("+"):
                if label:
                    counted[label] += 1
        faults = dict(entry["faults"])
        assert faults.pop("out_of_order", 0) == len(entry["out_of_order_files"])
        assert faults == dict(counted), category
        totals.update(faults)
        totals["out_of_order"] += len(entry["out_of_order_files"])
        assert entry["files"] == len(list((out / category).iterdir()))
    for label in ("name_typo", "bad_checksum", "missing_phone", "duplicate", "late",
                  "malformed", "out_of_order"):  # fmt: skip
        assert totals[label] > 0, label
    # The rates are shares of rows: a name typo on about 8% of rows with a name.
    cell = report["by_category"]["telecom_cell"]
    assert 0.04 < cell["faults"]["missing_phone"] / cell["records"] < 0.12


def test_faulty_rows_are_what_the_truth_says(faulty: tuple[Path, Path]) -> None:
    out, truth = faulty
    persons = _persons(truth)
    owners = _owners(truth)
    lines_by_category: dict[str, collections.Counter[str]] = collections.defaultdict(
        collections.Counter
    )
    records_seen = []
    for path in feed_files(out):
        category = path.parent.name
        source = SOURCES[category]
        _, records = read_file(path, source)
        for record in records:
            lines_by_category[category][record.text] += 1
            records_seen.append((path, record))
    assert len(records_seen) == len(owners)
    checked = collections.Counter[str]()
    for path, record in records_seen:
        category = path.parent.name
        source = SOURCES[category]
        fields = source["fields"]
        owner = owners[f"{category}/{path.name}", record.sheet, record.line]
        labels = set((owner["fault"] or "").split("+")) - {""}
        person = persons[owner["person_id"]]
        assert ("late" in labels) == path.stem.endswith("_supplement"), (path.name, labels)
        if "duplicate" in labels:
            assert lines_by_category[category][record.text] >= 2
        if "malformed" in labels:
            with pytest.raises((ValueError, TypeError)):
                if record.values is None:
                    raise ValueError("unreadable line")
                parse_record(source, record.values)
            checked["malformed"] += 1
            continue
        assert record.values is not None, (path.name, record.line)
        parse_record(source, record.values)
        got = {k: record.values.get(f["column"], "") for k, f in fields.items()}
        if "name" in fields and got["name"]:
            if "name_typo" in labels:
                assert got["name"] != person["name"]
                assert len(got["name"]) == len(person["name"])
                checked["name_typo"] += 1
            else:
                assert got["name"] == person["name"]
        if "id_number" in fields and len(got["id_number"]) == 18:
            assert is_valid_resident_id(got["id_number"]) == ("bad_checksum" not in labels)
            checked["bad_checksum"] += "bad_checksum" in labels
        if "missing_phone" in labels:
            assert got["phone"] == ""
            checked["missing_phone"] += 1
    for label in ("malformed", "name_typo", "bad_checksum", "missing_phone"):
        assert checked[label] > 0, label


def test_out_of_order_files_are_out_of_order(tmp_path: Path) -> None:
    rates = FaultRates(**{**FaultRates.none().__dict__, "out_of_order": 0.6, "duplicate": 0.05})
    run_simulation(config(days=2, faults=rates), GEO, tmp_path / "feeds", model=FakeModel())
    report = json.loads((tmp_path / "truth" / "faults.json").read_text(encoding="utf-8"))
    listed = {f for e in report["by_category"].values() for f in e["out_of_order_files"]}
    assert listed
    for path in feed_files(tmp_path / "feeds"):
        category = path.parent.name
        if SHAPES_BY_CATEGORY[category].snapshot:
            continue
        source = SOURCES[category]
        first = _time_field(source)
        _, records = read_file(path, source)
        values = [parse_value(first, r.values[first["column"]]) for r in records if r.values]
        rel = f"{category}/{path.name}"
        assert (values != sorted(values)) == (rel in listed), rel


def test_large_xlsx_spills_into_more_sheets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writers, "XLSX_MAX_ROWS", 40)
    city = make_city(600, 4, 1)
    names, street_of = geo_names(GEO)
    truth = TruthWriter(tmp_path / "truth", city.persons)
    pipeline = FeedPipeline(
        Lookups(city, names, street_of),
        tmp_path / "feeds",
        seed=1,
        rates=FaultRates.none(),
        days=1,
        sink=truth,
        categories=("student_roster",),
    )
    pipeline.write_day(0, make_day(city, 0))
    truth.finish(city.persons, city.risk_areas, {}, {})
    path = tmp_path / "feeds" / "student_roster" / "student_roster_20200120.xlsx"
    _, records = read_file(path, SOURCES["student_roster"])
    assert len({r.sheet for r in records}) > 1
    owners = pq.read_table(tmp_path / "truth" / "record_owner" / "student_roster.parquet")
    got = sorted(
        zip(owners.column("sheet").to_pylist(), owners.column("line").to_pylist(), strict=True)
    )
    assert got == sorted((r.sheet, r.line) for r in records)
    persons = {p["person_id"]: p for p in city.persons.to_pylist()}
    by_place = {(r.sheet, r.line): r for r in records}
    for row in owners.to_pylist():
        record = by_place[row["sheet"], row["line"]]
        assert record.values is not None
        assert record.values["学生姓名"] == persons[row["person_id"]]["name"]
    assert max(r.line for r in records) <= 41


def test_person_ids_never_reach_the_feeds(clean: tuple[Path, Path]) -> None:
    out, truth = clean
    ids = pq.read_table(truth / "persons.parquet").column("person_id")
    sample = set(pc.unique(ids).to_pylist()[:50])
    for path in feed_files(out):
        if path.suffix == ".xlsx":
            continue
        text = path.read_bytes().decode(SOURCES[path.parent.name]["file"]["encoding"])
        assert not any(i in text for i in sample), path.name


def test_vaccination_doses_count_across_days() -> None:
    city = make_city(50, 1, 1)
    lk = Lookups(city)
    times = [dt.datetime(2020, 1, 20, h) for h in (9, 8, 7, 6)]
    health = pa.table(
        {
            "person": pa.array([3, 5, 3, 7], pa.int32()),
            "event": ["vaccination"] * 4,
            "ts": pa.array(times, pa.timestamp("s")),
            "place": pa.nulls(4, pa.string()),
            "result": pa.nulls(4, pa.string()),
            "detail": pa.nulls(4, pa.string()),
        }
    )
    day = FakeDay(dt.date(2020, 1, 20), {"health": health})
    rng = np.random.default_rng(0)
    first = BUILDERS["vaccination"](lk, day, rng)
    second = BUILDERS["vaccination"](lk, day, rng)
    assert first is not None and second is not None
    assert first.values["dose"].to_pylist() == [2, 1, 1, 1]  # person 3: 07:00 then 09:00
    assert second.values["dose"].to_pylist() == [4, 2, 3, 2]


def test_model_details_land_in_their_columns(clean: tuple[Path, Path]) -> None:
    out, _ = clean

    def rows(category: str) -> list[dict[str, str]]:
        return [
            r.values
            for p in sorted((out / category).iterdir())
            for r in read_file(p, SOURCES[category])[1]
            if r.values
        ]

    cold = rows("coldchain_goods")
    assert {(r["product"], r["origin_country"], r["batch_no"]) for r in cold} == {
        ("进口冻带鱼", "印度", "B20200120-0042")
    }
    assert {r["数量"] for r in rows("pharmacy_purchase")} == {"2"}
    assert all(re.fullmatch(r"S\d{16}", r["sample_id"]) for r in rows("lab_test"))
    assert all(re.fullmatch(r"WZZ\d{12}", r["编号"]) for r in rows("case_asymptomatic"))
    assert {r["病例编号"] for r in rows("case_confirmed")} == {"郑州市2020-0001"}
    assert {r["疫苗名称"] for r in rows("vaccination")} == {"流感疫苗"}
    assert {r["入院诊断"] for r in rows("hospital_admission")} == {"新型冠状病毒肺炎"}


def test_truth_ids_for_any_numbering(tmp_path: Path) -> None:
    city = make_city(60, 2, 1)
    ids = [f"X-{i * 7}" for i in range(city.persons.num_rows)]
    persons = city.persons.set_column(
        city.persons.schema.get_field_index("person_id"), "person_id", pa.array(ids)
    )
    truth = TruthWriter(tmp_path, persons)
    written = writers.Written(np.array([2, 3, 4], np.int32), None, None, 0)
    bits = np.array([0, 1, 16 | 2], np.uint8)
    truth.add_records("lab_test", "lab_test/x.csv", written, np.array([5, 0, 59], np.int32), bits)
    truth.finish(persons, city.risk_areas, {}, {})
    table = pq.read_table(tmp_path / "record_owner" / "lab_test.parquet")
    assert table.column("person_id").to_pylist() == ["X-35", "X-0", "X-413"]
    assert table.column("fault").to_pylist() == [None, "name_typo", "bad_checksum+duplicate"]
    assert table.column("line").to_pylist() == [2, 3, 4]
