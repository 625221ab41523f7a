"""Two engines, one query: the contact queries give identical tables on DuckDB and on Spark.

Spark runs in local mode (Java 17); without Java the Spark tests skip, except in CI."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import duckdb
import pyarrow as pa
import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

from citybrain.analysis.contacts import cases_in_lake, close_contacts, load_rules
from citybrain.analysis.engine import (
    DuckDBEngine,
    SparkEngine,
    UnportableSQL,
    java_available,
    stop_spark,
    to_spark,
    unportable,
)
from tests.analysis.test_contacts import City, build_city
from tests.conftest import DatabaseFactory

# A short-lived driver: the client compiler starts faster than the optimising one (measured
# 27 s against 43 s for the first two-hop run on two busy cores).
TEST_SPARK_CONFIG = {"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"}


@pytest.fixture(scope="module")
def city(
    database_factory: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[City]:
    built = build_city(database_factory, tmp_path_factory)
    yield built
    built.database.dispose()


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkEngine]:
    """The Spark engine; its session starts on first use and stops at the end of the tests
    (test_screening imports this fixture: one session serves both modules)."""
    if not java_available():
        if os.environ.get("CI") == "true":
            pytest.fail("Java 17 is required in CI for the Spark parity tests")
        pytest.skip("no Java: run scripts/system-deps.sh as root to install openjdk-17")
    pytest.importorskip("pyspark", reason="pyspark is a dev dependency: make setup")
    yield SparkEngine(config=TEST_SPARK_CONFIG)
    stop_spark()


def _rows(table: pa.Table) -> list[tuple[Any, ...]]:
    order = [(c, "ascending") for c in ("case", "hop", "contact", "rule", "place", "start")]
    return [
        tuple(tuple(v) if isinstance(v, list) else v for v in row.values())
        for row in table.sort_by(order).to_pylist()
    ]


def _assert_same(duck: pa.Table, spark: pa.Table) -> None:
    assert duck.schema == spark.schema
    left, right = _rows(duck), _rows(spark)
    only_duck, only_spark = set(left) - set(right), set(right) - set(left)
    assert not only_duck and not only_spark, (sorted(only_duck)[:5], sorted(only_spark)[:5])
    assert left == right


@pytest.mark.one_backend
def test_cases_and_contacts_are_identical_on_duckdb_and_spark(
    city: City, spark: SparkEngine
) -> None:
    duck_trace: list[str] = []
    spark_trace: list[str] = []
    duck_engine = DuckDBEngine(trace=duck_trace)
    spark_engine = SparkEngine(trace=spark_trace, config=spark.config)

    cases = cases_in_lake(city.paths, city.database, city.keys, engine=duck_engine)
    assert cases == city.anchors and len(cases) == 12
    assert cases_in_lake(city.paths, city.database, city.keys, engine=spark_engine) == cases

    # The default rules with the schools open: the default rules close them from 18 January
    # 2020, which would leave the working-day calendar untried. (The rules' closed spans only
    # shape an input table; the statements are the same with any rules.)
    rules = [replace(r, closed=()) for r in load_rules()]
    keys = [k for k, _ in cases]
    run = {"hops": 2, "keys": city.keys, "rules": rules}
    duck = close_contacts(city.paths, city.database, keys, engine=duck_engine, **run)
    other = close_contacts(city.paths, city.database, keys, engine=spark_engine, **run)
    assert {1, 2} == set(duck.column("hop").to_pylist())
    # Roster rules (with and without working days) and presence rules, capped and not.
    assert {"household", "class", "cell", "ride", "train_carriage"} <= set(
        duck.column("rule").to_pylist()
    )
    _assert_same(duck, other)
    # One query: the engines ran the same statements.
    assert duck_trace == spark_trace


def test_every_contact_query_transpiles_to_spark(
    city: City, caplog: pytest.LogCaptureFixture
) -> None:
    trace: list[str] = []
    engine = DuckDBEngine(trace=trace)
    cases = [k for k, _ in cases_in_lake(city.paths, city.database, city.keys, engine=engine)]
    close_contacts(city.paths, city.database, cases, hops=2, keys=city.keys, engine=engine)
    assert len(trace) > 20
    with caplog.at_level(logging.WARNING, logger="sqlglot"):
        for sql in trace:
            assert unportable(sql) == [], sql
            # Raises on anything sqlglot cannot say in Spark's dialect.
            (spark_sql,) = sqlglot.transpile(
                sql, read="duckdb", write="spark", unsupported_level=ErrorLevel.RAISE
            )
            assert spark_sql == to_spark(sql)
    assert not caplog.records, [r.getMessage() for r in caplog.records]


# What the portable subset relies on, with the answer both engines must give.
RELIED_ON = [
    # generate_series is inclusive in both (Spark's sequence), unlike range().
    ("SELECT generate_series(2, 5) AS v", [[2, 3, 4, 5]]),
    ("SELECT unnest(generate_series(1, 3)) AS v", [1, 2, 3]),
    # Integer division: DIV in Spark; both truncate.
    ("SELECT 1579428000 // 86400 AS v", [18280]),
    ("SELECT 7 // 2 AS v", [3]),
    # Epoch seconds of a naive timestamp read as UTC (Spark's session time zone).
    ("SELECT epoch(TIMESTAMP '2020-01-19 10:00:00')::BIGINT AS v", [1579428000]),
    ("SELECT concat_ws('/', 'school', NULL, '3') AS v", ["school/3"]),
    ("SELECT list_sort(list_distinct(flatten([[3, 1], [1, 2]]))) AS v", [[1, 2, 3]]),
    (
        "SELECT list_sort(list_distinct(flatten(list(e)))) AS v"
        " FROM (VALUES ([5, 4]), ([4, 6])) t(e)",
        [[4, 5, 6]],
    ),
    # NULLs sort last in DuckDB by default; sqlglot must say so to Spark.
    (
        "SELECT row_number() OVER (ORDER BY x) AS v FROM (VALUES (NULL), (1)) t(x) ORDER BY x",
        [1, 2],
    ),
    ("SELECT x AS v FROM (VALUES (NULL), (1)) t(x) ORDER BY x", [1, None]),
    ("SELECT NULL IS NOT DISTINCT FROM NULL AS v", [True]),
    ("SELECT 1 IS NOT DISTINCT FROM NULL AS v", [False]),
    ("SELECT bool_or(x > 1) AS v FROM (VALUES (1), (2)) t(x)", [True]),
    ("SELECT bool_and(x > 1) AS v FROM (VALUES (1), (2)) t(x)", [False]),
    ("SELECT CAST(2 AS TINYINT) AS v", [2]),
    # Screening: ordered lists as sorted structs, routes split, evidence lines, quoting.
    (
        "SELECT list_transform(list_sort(list({'s': s, 'id': id})), lambda x: x.id) AS v"
        " FROM (VALUES (2, 10), (1, 30), (1, 20)) t(s, id)",
        [[20, 30, 10]],
    ),
    ("SELECT unnest(string_split('武汉市,郑州市', ',')) AS v", ["武汉市", "郑州市"]),
    ("SELECT unnest(string_split('a.b|c', '|')) AS v", ["a.b", "c"]),
    (
        "SELECT strftime(TIMESTAMP '2020-01-20 09:05:07', '%Y-%m-%d %H:%M') AS v",
        ["2020-01-20 09:05"],
    ),
    ("SELECT CAST(TIMESTAMP '2020-01-20 09:05:07' AS VARCHAR) AS v", ["2020-01-20 09:05:07"]),
    ("SELECT 'it''s a\\b' AS v", ["it's a\\b"]),
    ("SELECT starts_with('武汉市', '武汉') AND contains('从武汉回来', '武汉') AS v", [True]),
    ("SELECT CAST([] AS VARCHAR[]) AS v", [[]]),
    ("SELECT epoch(DATE '2020-01-20')::BIGINT AS v", [1579478400]),
    (
        "SELECT arg_max(x, [a, b]) AS v"
        " FROM (VALUES ('p', 1, 2), ('q', 1, 3), ('r', 0, 9)) t(x, a, b)",
        ["q"],
    ),
    (
        "SELECT x AS v FROM (VALUES (1), (2), (3), (3)) t(x) EXCEPT SELECT 2 EXCEPT SELECT 4",
        [1, 3],
    ),
    (
        "SELECT max(x) OVER (ORDER BY x ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS v"
        " FROM (VALUES (1), (5), (3)) t(x) ORDER BY x",
        [None, 1, 3],
    ),
]


@pytest.mark.one_backend
def test_sqlglot_keeps_the_meaning_of_what_the_queries_rely_on(spark: SparkEngine) -> None:
    # If a sqlglot upgrade changes what one of these means on Spark, this names it.
    with spark.connect() as con:
        for sql, expected in RELIED_ON:
            assert duckdb.connect().sql(sql).to_arrow_table().column("v").to_pylist() == expected, (
                sql
            )
            got = con.fetch(sql).column("v").to_pylist()
            assert got == expected, f"sqlglot changed its meaning: {sql} -> {to_spark(sql)}"


@pytest.mark.parametrize(
    "sql",
    [
        # sqlglot turns DuckDB's ISO weekday into an expression that is 2 on a Sunday in Spark.
        "SELECT isodow(DATE '2020-01-19') AS v",
        "SELECT dayofweek(DATE '2020-01-19') AS v",
        # End-exclusive in DuckDB; Spark's sequence is inclusive.
        "SELECT range(1, 4) AS v",
        "SELECT unnest(range(1, 4)) AS v",
        # Spark cannot parse it.
        "SELECT 1 AS v UNION ALL BY NAME SELECT 2 AS v",
        "SELECT x, count(*) AS n FROM (VALUES (1)) t(x) GROUP BY ALL",
        # A zoned timestamp in Spark, a naive one in DuckDB.
        "SELECT make_timestamp(1579428000000000) AS v",
        "SELECT to_timestamp(1579428000) AS v",
        # sqlglot drops the ORDER BY of an ordered aggregate for Spark.
        "SELECT list(x ORDER BY x) AS v FROM (VALUES (2), (1)) t(x)",
    ],
)
def test_constructs_that_change_meaning_are_refused(sql: str) -> None:
    assert unportable(sql)
    with pytest.raises(UnportableSQL):
        to_spark(sql)


def test_descending_series_differ_so_the_queries_never_make_them() -> None:
    # Spark's sequence(3, 1) counts down where DuckDB's list is empty: every series in the
    # contact queries runs from a stay's start bucket to its end bucket, never backwards.
    assert duckdb.connect().sql("SELECT generate_series(3, 1) AS v").fetchall() == [([],)]
    assert to_spark("SELECT generate_series(3, 1) AS v") == "SELECT SEQUENCE(3, 1) AS v"
