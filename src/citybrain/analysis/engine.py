"""Two engines, one query: every analysis query is written once and runs on DuckDB (the default,
one machine) or on Spark (a cluster; PySpark local mode in tests).

Queries are written in DuckDB's dialect, restricted to a portable subset, and transpiled with
sqlglot for Spark. The subset is what both engines and sqlglot agree on; ``unportable`` lists
the constructs that look portable but are not, and the Spark engine refuses them:

* ``isodow``/``dayofweek``: sqlglot maps DuckDB's ISO weekday to an expression on Spark's
  ``dayofweek`` that is off (Sunday comes out as 2); compute weekdays from day numbers
  (``(day + 3) % 7`` is 0 on a Monday, day 0 being Thursday 1970-01-01) or in Python;
* ``range(a, b)``: DuckDB's end is exclusive, Spark's ``sequence`` inclusive; use
  ``generate_series(a, b)`` (inclusive in both) and only with ``a <= b``, since Spark's
  ``sequence`` counts down where DuckDB's list is empty;
* ``UNION ALL BY NAME`` (Spark cannot parse it) and ``GROUP BY ALL``: name the columns;
* ``make_timestamp``/``to_timestamp``: Spark's result is a zoned timestamp, DuckDB's a naive
  one; return epoch seconds and turn them into timestamps in Arrow;
* ordered aggregates (``list(x ORDER BY y)``): sqlglot drops the ORDER BY for Spark; sort a
  list of structs instead, ``list_transform(list_sort(list({'y': y, 'x': x})), lambda e: e.x)``.

Other dialect facts the subset relies on: ``epoch(ts)`` becomes ``unix_timestamp``, which
reads a naive lake timestamp in the session time zone, so Spark's session runs in UTC, as
DuckDB reads naive timestamps; ``//`` becomes ``DIV`` (both truncate); ``list()`` becomes
``collect_list`` (no order in either: sort what you collect); sqlglot spells DuckDB's default
``NULLS LAST`` out for Spark, quotes ``string_split``'s separator for Spark's regex ``split``,
turns ``strftime`` formats into ``date_format`` patterns, Python-style lambdas (DuckDB 1.3+)
into Spark's ``->`` and string escapes into Spark's. ``tests/analysis/test_engine.py`` checks
each of these on both engines.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

import duckdb
import pyarrow as pa

from citybrain.datahub.lake import SCHEMAS, LakePaths

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# The lake's partition columns (``<kind>/category=<code>/day=<YYYY-MM-DD>/``), as both
# engines infer them from the paths.
PARTITIONS = [("category", pa.string()), ("day", pa.date32())]


def lake_schema(kind: str) -> pa.Schema:
    """Columns of a lake kind as a query sees them: the kind's own and the partition columns."""
    schema = SCHEMAS[kind]
    for name, type_ in PARTITIONS:
        schema = schema.append(pa.field(name, type_))
    return schema


class UnportableSQL(ValueError):
    """A query uses a construct the engines or sqlglot disagree on (see the module docstring)."""


def unportable(sql: str) -> list[str]:
    """What in ``sql`` (DuckDB dialect) falls outside the portable subset: empty if nothing."""
    import sqlglot
    from sqlglot import expressions as exp

    found: list[str] = []
    for node in sqlglot.parse_one(sql, read="duckdb").walk():
        if isinstance(node, exp.DayOfWeekIso | exp.DayOfWeek):
            found.append("weekday functions: sqlglot maps them wrongly for Spark")
        elif isinstance(node, exp.GenerateSeries) and node.args.get("is_end_exclusive"):
            found.append("range(): end-exclusive in DuckDB, inclusive in Spark")
        elif isinstance(node, exp.SetOperation) and node.args.get("by_name"):
            found.append("UNION BY NAME: Spark cannot parse it")
        elif isinstance(node, exp.Group) and node.args.get("all"):
            found.append("GROUP BY ALL: name the columns")
        elif isinstance(node, exp.UnixToTime | exp.StrToTime | exp.TimestampFromParts):
            found.append("making timestamps: zoned in Spark, naive in DuckDB")
        elif isinstance(node, exp.Order) and isinstance(node.parent, exp.AggFunc):
            found.append("ordered aggregates: sqlglot drops the ORDER BY for Spark")
    return found


def to_spark(sql: str) -> str:
    """``sql`` (DuckDB dialect, portable subset) in Spark's dialect.

    Raises ``UnportableSQL`` for a construct outside the subset, and sqlglot's
    ``UnsupportedError`` where sqlglot cannot express something in Spark."""
    import sqlglot
    from sqlglot.errors import ErrorLevel

    problems = unportable(sql)
    if problems:
        raise UnportableSQL("; ".join(sorted(set(problems))))
    (out,) = sqlglot.transpile(
        sql, read="duckdb", write="spark", unsupported_level=ErrorLevel.RAISE
    )
    return out


class Connection(ABC):
    """One query session: named tables and views, gone when it closes.

    ``create`` materialises a SELECT as a named table that later statements read; ``fetch``
    returns a SELECT as Arrow. Both take DuckDB-dialect SQL in the portable subset and, when the
    engine traces, append it to ``trace``."""

    def __init__(self, trace: list[str] | None) -> None:
        self.trace = trace

    @abstractmethod
    def parquet(self, name: str, path: Path) -> None:
        """A view ``name`` over one Parquet file."""

    @abstractmethod
    def _lake(self, name: str, directory: Path) -> None:
        """A view ``name`` over the hive-partitioned parts under ``directory``."""

    @abstractmethod
    def register(self, name: str, table: pa.Table) -> None:
        """An Arrow table as the table ``name``."""

    @abstractmethod
    def _create(self, name: str, sql: str) -> None: ...

    @abstractmethod
    def _fetch(self, sql: str) -> pa.Table: ...

    @abstractmethod
    def close(self) -> None:
        """Drops what this session made."""

    def lake(self, name: str, paths: LakePaths, kind: str) -> None:
        """A view ``name`` over all parts of a lake kind, with its partition columns; an empty
        table with the same columns when the kind has no parts yet."""
        directory = paths.kind_dir(kind)
        if directory.is_dir() and any(directory.rglob("*.parquet")):
            self._lake(name, directory)
        else:
            self.register(name, lake_schema(kind).empty_table())

    def create(self, name: str, sql: str) -> None:
        """The result of ``sql`` as the table ``name`` (replacing one of that name)."""
        if self.trace is not None:
            self.trace.append(sql)
        self._create(name, sql)

    def fetch(self, sql: str) -> pa.Table:
        """The result of ``sql`` as an Arrow table."""
        if self.trace is not None:
            self.trace.append(sql)
        return self._fetch(sql)

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


class Engine(Protocol):
    """Where analysis queries run: ``connect()`` opens a session of named tables."""

    name: str

    def connect(self) -> Connection:
        """A new session; close it (or use it as a context manager) when done."""
        ...


class DuckDBEngine:
    """DuckDB in this process: the default engine. ``trace`` collects every query run."""

    name = "duckdb"

    def __init__(self, trace: list[str] | None = None) -> None:
        self.trace = trace

    def connect(self) -> Connection:
        """A new in-memory DuckDB database."""
        return _DuckDBConnection(self.trace)


class _DuckDBConnection(Connection):
    def __init__(self, trace: list[str] | None) -> None:
        super().__init__(trace)
        self.con = duckdb.connect()

    def parquet(self, name: str, path: Path) -> None:
        self.con.execute(
            f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM read_parquet('{path}')"  # noqa: S608 - our path
        )

    def _lake(self, name: str, directory: Path) -> None:
        parts = directory / "*" / "*" / "*.parquet"
        self.con.execute(
            f"CREATE OR REPLACE TEMP VIEW {name} AS"  # noqa: S608 - our path
            f" SELECT * FROM read_parquet('{parts}', hive_partitioning = true)"
        )

    def register(self, name: str, table: pa.Table) -> None:
        self.con.register(name, table)

    def _create(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")

    def _fetch(self, sql: str) -> pa.Table:
        return self.con.sql(sql).to_arrow_table()

    def close(self) -> None:
        self.con.close()


_spark_lock = threading.Lock()
_spark: SparkSession | None = None


def java_available() -> bool:
    """Whether Spark can start here: a ``java`` on PATH or a ``JAVA_HOME``."""
    return shutil.which("java") is not None or bool(os.environ.get("JAVA_HOME"))


def spark_session(config: Mapping[str, str] | None = None) -> SparkSession:
    """The process's Spark session, started on first use (``CITYBRAIN_SPARK_MASTER``, default
    ``local[2]``, with ``config`` added) and reused after; ``stop_spark`` ends it."""
    global _spark
    with _spark_lock:
        if _spark is None:
            if not java_available():
                raise RuntimeError("Spark needs Java 17 (scripts/system-deps.sh installs it)")
            from pyspark.sql import SparkSession

            master = os.environ.get("CITYBRAIN_SPARK_MASTER", "local[2]")
            builder = (
                SparkSession.builder.appName("citybrain")
                .master(master)
                # Lake timestamps are naive wall-clock times that DuckDB reads as UTC.
                .config("spark.sql.session.timeZone", "UTC")
                .config("spark.sql.parquet.inferTimestampNTZ.enabled", "true")
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.log.level", "ERROR")
                # Checkpointed tables keep their source's constraints, and a UNION of them then
                # fails in constraint propagation ("key not found: category#84", Spark 4.3).
                .config("spark.sql.constraintPropagation.enabled", "false")
            )
            if master.startswith("local"):
                # Small data on one machine: few shuffle partitions, no network lookups.
                builder = (
                    builder.config("spark.sql.shuffle.partitions", "2")
                    .config("spark.default.parallelism", "2")
                    .config("spark.driver.host", "127.0.0.1")
                    .config("spark.driver.bindAddress", "127.0.0.1")
                )
            for key, value in (config or {}).items():
                builder = builder.config(key, value)
            # py4j logs every connection it opens and closes at INFO, some at interpreter exit.
            logging.getLogger("py4j").setLevel(logging.WARNING)
            _spark = builder.getOrCreate()
        return _spark


def stop_spark() -> None:
    """Stops the process's Spark session, if one was started."""
    global _spark
    with _spark_lock:
        if _spark is not None:
            _spark.stop()
            _spark = None


class SparkEngine:
    """Spark through PySpark: queries are transpiled from DuckDB's dialect with sqlglot. The
    session is started on first use and shared by every engine in the process; each connection
    is a child session with its own temporary views."""

    name = "spark"

    def __init__(
        self, trace: list[str] | None = None, config: Mapping[str, str] | None = None
    ) -> None:
        self.trace = trace
        # Spark settings for the process's session, used only if this engine starts it.
        self.config = dict(config or {})

    def connect(self) -> Connection:
        """A new Spark session sharing the process's Spark context."""
        return _SparkConnection(spark_session(self.config).newSession(), self.trace)


class _SparkConnection(Connection):
    def __init__(self, spark: SparkSession, trace: list[str] | None) -> None:
        super().__init__(trace)
        self.spark = spark
        self.views: set[str] = set()

    def _view(self, name: str, frame: DataFrame) -> None:
        frame.createOrReplaceTempView(name)
        self.views.add(name)

    def parquet(self, name: str, path: Path) -> None:
        self._view(name, self.spark.read.parquet(str(path)))

    def _lake(self, name: str, directory: Path) -> None:
        # Spark discovers category= and day= from the paths below the kind's folder.
        self._view(name, self.spark.read.parquet(str(directory)))

    def register(self, name: str, table: pa.Table) -> None:
        self._view(name, self._materialise(self.spark.createDataFrame(table)))

    def _materialise(self, frame: DataFrame) -> DataFrame:
        # Computed now and cut from its lineage, like DuckDB's temp tables: each statement builds
        # on stored rows, and the plans Spark analyses stay small (persisting alone keeps every
        # ancestor's plan, and planning a chain of twenty statements takes minutes).
        return frame.localCheckpoint(eager=True)

    def _create(self, name: str, sql: str) -> None:
        self._view(name, self._materialise(self.spark.sql(to_spark(sql))))

    def _fetch(self, sql: str) -> pa.Table:
        frame = self.spark.sql(to_spark(sql))
        table: pa.Table = frame.toArrow()
        return table

    def close(self) -> None:
        # The checkpointed rows go when nothing refers to them: Spark's context cleaner frees
        # the blocks of unreachable datasets.
        for name in self.views:
            self.spark.catalog.dropTempView(name)
        self.views.clear()


def engine_named(name: str | None) -> Engine:
    """The engine called ``name`` (``duckdb``, the default, or ``spark``)."""
    if name in (None, "duckdb"):
        return DuckDBEngine()
    if name == "spark":
        return SparkEngine()
    raise ValueError(f"unknown engine {name!r}: duckdb or spark")
