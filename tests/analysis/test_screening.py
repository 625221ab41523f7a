"""Key-person screening on a small simulated city, scored against its ground truth."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

from citybrain.analysis.engine import DuckDBEngine, SparkEngine, unportable
from citybrain.analysis.linkage import link
from citybrain.analysis.screening import (
    OUTPUT_SCHEMA,
    RULES_PATH,
    RiskArea,
    by_compound,
    load_risk_areas,
    load_rules,
    resolve_compounds,
    screen,
    screening_quality,
)
from citybrain.datahub import lake
from citybrain.datahub.service import Intake
from citybrain.kit.db import Database
from tests.analysis.test_engine import spark  # noqa: F401 - the one Spark session fixture
from tests.conftest import DatabaseFactory

# The city runs from the 24th, when Wuhan, Xiaogan, Huanggang were listed and the others follow
# within days: the window holds both listed and unlisted arrivals.
START = dt.date(2020, 1, 24)
DAYS = 6
AS_OF = START + dt.timedelta(days=DAYS - 1)


@dataclass
class City:
    paths: lake.LakePaths
    database: Database
    truth: Path
    keys: Path
    table: pa.Table


@pytest.fixture(scope="module")
def city(
    database_factory: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[City]:
    from citybrain.simulate.config import SimulationConfig
    from citybrain.simulate.run import run_simulation
    from tests.simulate.conftest import geo_input

    root = tmp_path_factory.mktemp("screening")
    feeds = root / "feeds"
    run_simulation(
        SimulationConfig(people=3000, days=DAYS, seed=11, start=START),
        geo_input(),
        feeds,
        root / "truth",
    )
    database = database_factory.new_database()
    paths = lake.LakePaths(root / "var")
    Intake(paths).ingest_folder(database, feeds)
    keys = link(paths, database, root / "keys.parquet").path
    table = screen(paths, database, as_of=AS_OF, keys=keys)
    yield City(paths, database, root / "truth", keys, table)
    database.dispose()


def _travel(paths: lake.LakePaths) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(
        "CREATE VIEW travel AS SELECT * FROM read_parquet("
        f"'{paths.kind_dir('travel')}/*/*/*.parquet', hive_partitioning = true)"
    )
    return con


def test_rules_and_risk_areas_load_from_data() -> None:
    rules = load_rules()
    assert rules.window_days == 14
    ids = {r.id for r in rules.rules}
    assert {"risk_area_travel", "risk_area_roaming", "overseas_entry"} <= ids
    assert {"coop_contact", "fever_medicine"} <= ids
    areas = load_risk_areas()
    wuhan = next(a for a in areas if a.area == "武汉市")
    assert wuhan.stem == "武汉" and wuhan.end is None
    assert RiskArea("深圳市南山区", "medium", START, None).stem == "深圳"
    assert not wuhan.listed_on(dt.date(2020, 1, 19)) and wuhan.listed_on(dt.date(2020, 1, 20))


def test_a_risk_area_traveller_is_listed_with_evidence(city: City) -> None:
    table = city.table
    assert table.schema.equals(OUTPUT_SCHEMA)
    travel = table.filter(pa.compute.equal(table.column("rule"), "risk_area_travel"))
    assert travel.num_rows > 0
    window_start = dt.datetime.combine(AS_OF - dt.timedelta(days=13), dt.time())
    con = _travel(city.paths)
    for row in travel.to_pylist():
        assert row["areas"] and row["record_ids"] and len(row["evidence"]) == row["records"]
        assert window_start <= row["first_time"] <= row["last_time"]
        assert row["rule_zh"] and row["rule_en"]
        # Every record behind the row comes from (or passed) a listed area's city.
        ids = ", ".join(str(i) for i in row["record_ids"])
        origins = [
            o
            for (o,) in con.execute(
                f"SELECT origin FROM travel WHERE record_id IN ({ids})"
            ).fetchall()
        ]
        assert origins and all(any(a.split("市")[0] in o for a in row["areas"]) for o in origins)


def test_only_travel_from_unlisted_cities_is_not_listed(city: City) -> None:
    con = _travel(city.paths)
    con.execute(f"CREATE VIEW keys AS SELECT * FROM read_parquet('{city.keys}')")
    con.register("screened", city.table)
    # Persons whose every journey in the lake came from a city never on the list.
    unlisted = con.execute(
        """
        SELECT k.person_key FROM travel t JOIN keys k USING (record_id)
        GROUP BY k.person_key
        HAVING bool_and(NOT regexp_matches(t.origin,
            '武汉|孝感|黄冈|随州|荆州|襄阳|宜昌|温州|信阳|驻马店|南阳|深圳|广州'))
           AND bool_and(t.origin NOT LIKE '%郑州%')
        """
    ).fetchall()
    assert len(unlisted) >= 5
    listed = {
        k
        for (k,) in con.execute(
            "SELECT person_key FROM screened"
            " WHERE rule IN ('risk_area_travel', 'risk_area_roaming')"
        ).fetchall()
    }
    assert not listed & {k for (k,) in unlisted}


def test_the_risk_area_list_decides(city: City, tmp_path: Path) -> None:
    empty = tmp_path / "none.csv"
    empty.write_text("# nothing listed\narea,level,start,end\n", encoding="utf-8")
    none = screen(city.paths, city.database, as_of=AS_OF, risk_areas_path=empty, keys=city.keys)
    assert not {"risk_area_travel", "risk_area_roaming"} & set(none.column("rule").to_pylist())
    # Rules without a risk area do not depend on the list.
    others = city.table.filter(
        pa.compute.is_in(city.table.column("rule"), pa.array(["fever_medicine", "coop_contact"]))
    )
    assert none.filter(
        pa.compute.is_in(none.column("rule"), pa.array(["fever_medicine", "coop_contact"]))
    ).equals(others)
    xinxiang = tmp_path / "xinxiang.csv"
    xinxiang.write_text("area,level,start,end\n新乡市,medium,2020-01-01,\n", encoding="utf-8")
    listed = screen(
        city.paths, city.database, as_of=AS_OF, risk_areas_path=xinxiang, keys=city.keys
    )
    areas = {a for row in listed.column("areas").to_pylist() for a in row}
    assert areas == {"新乡市"}


def test_grouping_by_compound(city: City) -> None:
    table = city.table
    groups = by_compound(table)
    assert sum(groups.column("persons").to_pylist()) == len(
        {(r["compound_code"], r["person_key"]) for r in table.to_pylist()}
    )
    assert sum(groups.column("rows").to_pylist()) == table.num_rows
    placed = [g for g in groups.to_pylist() if g["compound_code"] is not None]
    assert placed and all(g["compound_name"] and g["community_name"] for g in placed)
    for group in placed[:20]:
        keys = {
            r["person_key"]
            for r in table.to_pylist()
            if r["compound_code"] == group["compound_code"]
        }
        assert set(group["person_keys"]) == keys
        assert group["compound_code"].startswith(group["community_code"])


def test_addresses_resolve_to_the_longest_compound_prefix() -> None:
    compounds = [
        ("C1", "M1", "甲院", "某街道花园路1号"),
        ("C2", "M1", "乙院", "某街道花园路1号"),  # two compounds, one address: community only
        ("C3", "M2", "丙院", "某街道花园路12号"),
        ("C4", "M3", "丁村", "某街道庙李村"),
    ]
    resolved = resolve_compounds(
        ["某街道花园路12号3号楼101", "某街道花园路1号2号楼", "某街道庙李村2号", "别处", None],
        compounds,
    )
    assert resolved["某街道花园路12号3号楼101"] == ("C3", "M2")
    assert resolved["某街道花园路1号2号楼"] == (None, "M1")
    assert resolved["某街道庙李村2号"] == ("C4", "M3")
    assert resolved["别处"] == (None, None)


def test_screening_is_deterministic(city: City) -> None:
    again = screen(city.paths, city.database, as_of=AS_OF, keys=city.keys)
    assert again.equals(city.table)


@pytest.mark.one_backend
def test_spark_gives_the_same_list(city: City, request: pytest.FixtureRequest) -> None:
    # Two engines, one query: the same statements, transpiled by sqlglot, on Spark.
    engine: SparkEngine = request.getfixturevalue("spark")
    assert {"risk_area_travel", "risk_area_roaming", "fever_medicine"} <= set(
        city.table.column("rule").to_pylist()
    )
    on_spark = screen(city.paths, city.database, as_of=AS_OF, keys=city.keys, engine=engine)
    assert on_spark.equals(city.table)


def test_every_screening_query_transpiles_to_spark(
    city: City, caplog: pytest.LogCaptureFixture
) -> None:
    trace: list[str] = []
    screen(city.paths, city.database, as_of=AS_OF, keys=city.keys, engine=DuckDBEngine(trace))
    assert len(trace) > 10
    with caplog.at_level(logging.WARNING, logger="sqlglot"):
        for sql in trace:
            assert unportable(sql) == [], sql
            sqlglot.transpile(sql, read="duckdb", write="spark", unsupported_level=ErrorLevel.RAISE)
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_recall_and_precision_against_the_truth(city: City) -> None:
    quality = screening_quality(city.paths, city.database, city.truth, city.keys, AS_OF)
    assert quality["travellers"] >= 5
    assert quality["recall"] >= 0.9
    assert quality["precision"] >= 0.9
    assert quality["compound_correct"] >= 0.99


def _part(paths: lake.LakePaths, kind: str, category: str, rows: list[dict[str, object]]) -> None:
    """Write ``rows`` as one lake part of ``kind``/``category`` (unnamed columns null)."""
    schema = lake.SCHEMAS[kind]
    by_day: dict[dt.date, list[dict[str, object]]] = {}
    for row in rows:
        moment = next(
            row[c] for c in ("start_time", "arrive", "event_time", "day") if row.get(c) is not None
        )
        day = moment.date() if isinstance(moment, dt.datetime) else moment
        by_day.setdefault(day, []).append(row)  # type: ignore[arg-type]
    for day, day_rows in by_day.items():
        folder = paths.kind_dir(kind) / f"category={category}" / f"day={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        columns = {
            name: pa.array([r.get(name) for r in day_rows], schema.field(name).type)
            for name in schema.names
        }
        pq.write_table(pa.table(columns, schema=schema), folder / "part.parquet")


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("spark", marks=pytest.mark.one_backend)])
def test_presumed_car_occupants(
    database: Database, tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    """A car from Wuhan arrives at 10:00; the driver's phone comes back at 10:03 after days
    away; their child has no phone; their spouse's phone stayed in the city; a neighbour's
    phone came back at 10:05 but off a train. Only the driver and the child are presumed
    aboard, with the toll record as evidence; a car from an unlisted city presumes no one.
    The same on both engines."""
    chosen = request.getfixturevalue("spark") if engine == "spark" else DuckDBEngine()
    paths = lake.LakePaths(tmp_path / "var")
    arrive = dt.datetime(2020, 1, 28, 10, 0)
    day0 = dt.datetime(2020, 1, 20, 8, 0)
    # Person keys 1..5: 1 the car (plate only), 2 driver, 3 child, 4 spouse, 5 neighbour.
    owners = {}

    def rid(key: int, n: int) -> int:
        record = key * 1000 + n
        owners[record] = key
        return record

    _part(
        paths,
        "travel",
        "highway_toll",
        [
            {"record_id": rid(1, 1), "origin": "武汉市", "arrive": arrive, "mode": "car"},
            {"record_id": rid(1, 2), "origin": "洛阳市", "arrive": arrive.replace(hour=16)},
        ],
    )
    _part(
        paths,
        "travel",
        "rail_ticket",
        [{"record_id": rid(5, 1), "origin": "北京市", "arrive": arrive.replace(minute=5)}],
    )
    cell = []
    for key, stays in {
        # The driver: in the city until the 24th, back with the car.
        2: [(day0, day0.replace(day=24)), (arrive.replace(minute=3), arrive.replace(hour=23))],
        # The spouse: in the city all along.
        4: [(day0, arrive.replace(hour=23))],
        # The neighbour: away, back off a train at 10:05.
        5: [(day0, day0.replace(day=22)), (arrive.replace(minute=5), arrive.replace(hour=23))],
        # Someone back at 16:02, when the car from Luoyang (unlisted) arrived.
        6: [(day0, day0.replace(day=22)), (arrive.replace(hour=16, minute=2), None)],
    }.items():
        for n, (start, end) in enumerate(stays):
            cell.append(
                {
                    "record_id": rid(key, 10 + n),
                    "place": f"cell-{key}",
                    "start_time": start,
                    "end_time": end,
                }
            )
    _part(paths, "presence", "telecom_cell", cell)
    _part(
        paths,
        "identity",
        "household_registry",
        [
            {
                "record_id": rid(k, 50),
                "setting_kind": "household",
                "setting": "hh-a",
                "day": dt.date(2020, 1, 20),
            }
            for k in (2, 3, 4)
        ]
        + [
            {
                "record_id": rid(5, 50),
                "setting_kind": "household",
                "setting": "hh-b",
                "day": dt.date(2020, 1, 20),
            }
        ],
    )
    keys = tmp_path / "keys.parquet"
    pq.write_table(
        pa.table(
            {
                "record_id": pa.array(list(owners), pa.int64()),
                "person_key": pa.array(list(owners.values()), pa.int64()),
                "rule": pa.array(["test"] * len(owners)),
            }
        ),
        keys,
    )
    table = screen(paths, database, as_of=dt.date(2020, 1, 29), keys=keys, engine=chosen)
    rows = {(r["person_key"], r["rule"]): r for r in table.to_pylist()}
    assert (1, "risk_area_travel") in rows
    occupants = {k for k, r in rows if r == "risk_area_car_occupant"}
    assert occupants == {2, 3}
    driver, child = rows[(2, "risk_area_car_occupant")], rows[(3, "risk_area_car_occupant")]
    assert driver["record_ids"] == child["record_ids"] == [1001]
    assert driver["areas"] == ["武汉市"]
    assert driver["evidence"][0].startswith("手机随车返郑")
    assert child["evidence"][0].startswith("同户推定同车")


def test_a_co_traveller_rule_must_follow_a_risk_area_rule(tmp_path: Path) -> None:
    text = RULES_PATH.read_text(encoding="utf-8")
    broken = tmp_path / "rules.yaml"
    broken.write_text(text.replace("of_rule: risk_area_travel", "of_rule: fever_medicine"), "utf-8")
    with pytest.raises(ValueError, match="of_rule must be a risk_area rule"):
        load_rules(broken)
