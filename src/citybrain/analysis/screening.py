"""Key-person screening (重点人员摸排): who must be called on, and why, as of a given day.

The rules are data (``data/screening_rules.yaml``): each names the lake kind and source
categories it reads, the condition a record must meet within the window (14 days up to and
including the screening day) and the columns shown as evidence. The risk-area list is data too
(``data/risk_areas.csv`` by default; the command centre maintains it), so a newly listed city
needs no release.

People are screened by person key (``analysis/person_keys.parquet``, see ``linkage``), never by
raw identifiers: one row per (person key, rule) with the records that met the rule, and the
person's community and compound where the household registry knows them, so lists go out by
community and compound (``by_compound``).

Homes: the registry's address (decrypted from the linkage store in memory only) is matched to
the compound whose address is its longest prefix; the geography comes from the operational
database, or, when the database has not loaded it, from the generated dataset it would load.
The queries run on DuckDB by default or on Spark (``engine=SparkEngine()``): written once in
DuckDB's dialect, within the portable subset ``analysis.engine`` describes.
"""

from __future__ import annotations

import csv
import datetime as dt
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.analysis.engine import Connection, DuckDBEngine, Engine
from citybrain.analysis.linkage import OUTPUT
from citybrain.analysis.quality import load_record_owners
from citybrain.core.geo.models import Area, Compound
from citybrain.datahub.lake import KIND_COLUMNS, LakePaths
from citybrain.datahub.vault import Vault
from citybrain.kit.db import Database

DATA = Path(__file__).parent / "data"
RULES_PATH = DATA / "screening_rules.yaml"
RISK_AREAS_PATH = DATA / "risk_areas.csv"
CONDITIONS = frozenset({"risk_area", "any", "result_in", "mentions_risk_area"})
HOME_CATEGORY = "household_registry"
# A household larger than a car's seats is no family car's worth of passengers.
CO_TRAVELLER_MAX_MEMBERS = 9
OUTPUT_SCHEMA = pa.schema(
    [
        ("person_key", pa.int64()),
        ("rule", pa.string()),
        ("rule_zh", pa.string()),
        ("rule_en", pa.string()),
        ("records", pa.int64()),
        ("first_time", pa.timestamp("s")),
        ("last_time", pa.timestamp("s")),
        ("areas", pa.list_(pa.string())),
        ("places", pa.list_(pa.string())),
        ("categories", pa.list_(pa.string())),
        ("record_ids", pa.list_(pa.int64())),
        ("evidence", pa.list_(pa.string())),
        ("community_code", pa.string()),
        ("community_name", pa.string()),
        ("compound_code", pa.string()),
        ("compound_name", pa.string()),
    ]
)


@dataclass(frozen=True)
class RiskArea:
    """One listed area and the days it is listed (``end`` None: still listed)."""

    area: str
    level: str
    start: dt.date
    end: dt.date | None

    @property
    def stem(self) -> str:
        """The city part without its suffix (武汉市 -> 武汉, 深圳市南山区 -> 深圳): what station,
        toll-gate and city names in the feeds begin with."""
        if "市" in self.area:
            return self.area.split("市", 1)[0]
        return self.area.rstrip("省区县")

    def listed_on(self, day: dt.date) -> bool:
        """Whether the area is on the list on ``day``."""
        return self.start <= day and (self.end is None or day <= self.end)


@dataclass(frozen=True)
class Rule:
    """One screening rule as ``screening_rules.yaml`` states it."""

    id: str
    name_zh: str
    name_en: str
    kind: str
    categories: tuple[str, ...]
    time: tuple[str, ...]
    condition: str
    place: str
    evidence: tuple[str, ...] = ()
    separator: str | None = None
    values: tuple[str, ...] = ()
    undated: tuple[str, ...] = ()


@dataclass(frozen=True)
class CoTravellerRule:
    """Presumed car occupants (推定同车人员) of a car record that made a hit.

    A toll record names the car (its plate), never who sat in it, and no feed ties a plate to
    a person. But a phone that was away from the city comes back onto its cells when the car
    does: phones whose first presence after at least ``away_hours`` without any starts within
    ``return_minutes`` of the car's arrival were in a car arriving then, unless a journey of
    their own (``explained_by``: a ticket arriving within hours of it) explains it. Their
    households are listed too (children travel without phones), except members whose own
    phone was in the city in the ``stayed_home_hours`` before the arrival, and anyone another
    rule already lists for travel. Over-inclusion is the intended side: a call at the door
    clears it.
    """

    id: str
    name_zh: str
    name_en: str
    of_rule: str
    categories: tuple[str, ...]
    presence: tuple[str, ...]
    away_hours: int
    return_minutes: tuple[int, int]
    explained_by: tuple[str, ...]
    household: str
    stayed_home_hours: int


@dataclass(frozen=True)
class ScreeningRules:
    """The window, the rules and the co-traveller rules built on them."""

    window_days: int
    rules: tuple[Rule, ...] = field(default_factory=tuple)
    co_travellers: tuple[CoTravellerRule, ...] = field(default_factory=tuple)


def load_rules(path: Path | None = None) -> ScreeningRules:
    """Read and check the rules at ``path`` (default: the packaged ``screening_rules.yaml``)."""
    raw = yaml.safe_load((path or RULES_PATH).read_text(encoding="utf-8"))
    rules = []
    for item in raw["rules"]:
        rule = Rule(
            id=str(item["id"]),
            name_zh=str(item["name_zh"]),
            name_en=str(item["name_en"]),
            kind=str(item["kind"]),
            categories=tuple(item["categories"]),
            time=tuple(item["time"]),
            condition=str(item["condition"]),
            place=str(item["place"]),
            evidence=tuple(item.get("evidence", ())),
            separator=item.get("separator"),
            values=tuple(str(v) for v in item.get("values", ())),
            undated=tuple(item.get("undated", ())),
        )
        columns = {name for name, _ in KIND_COLUMNS.get(rule.kind, [])}
        if not columns:
            raise ValueError(f"screening rule {rule.id}: unknown kind {rule.kind!r}")
        unknown = {*rule.time, rule.place, *rule.evidence} - columns
        if unknown:
            raise ValueError(f"screening rule {rule.id}: {rule.kind} has no {sorted(unknown)}")
        if rule.condition not in CONDITIONS:
            raise ValueError(f"screening rule {rule.id}: unknown condition {rule.condition!r}")
        if not set(rule.undated) <= set(rule.categories):
            raise ValueError(f"screening rule {rule.id}: undated categories it does not read")
        if rule.condition == "result_in" and not rule.values:
            raise ValueError(f"screening rule {rule.id}: result_in needs values")
        rules.append(rule)
    co_travellers = []
    for item in raw.get("co_travellers", ()):
        co = CoTravellerRule(
            id=str(item["id"]),
            name_zh=str(item["name_zh"]),
            name_en=str(item["name_en"]),
            of_rule=str(item["of_rule"]),
            categories=tuple(item["categories"]),
            presence=tuple(item["presence"]),
            away_hours=int(item["away_hours"]),
            return_minutes=(int(item["return_minutes"][0]), int(item["return_minutes"][1])),
            explained_by=tuple(item.get("explained_by", ())),
            household=str(item["household"]),
            stayed_home_hours=int(item["stayed_home_hours"]),
        )
        of = next((r for r in rules if r.id == co.of_rule), None)
        if of is None or of.condition != "risk_area":
            raise ValueError(f"screening rule {co.id}: of_rule must be a risk_area rule")
        if not set(co.categories) <= set(of.categories) - set(of.undated):
            raise ValueError(f"screening rule {co.id}: categories its of_rule reads, dated")
        co_travellers.append(co)
    ids = [r.id for r in rules] + [c.id for c in co_travellers]
    if len(ids) != len(set(ids)):
        raise ValueError("screening rules: duplicate rule ids")
    return ScreeningRules(
        window_days=int(raw["window_days"]),
        rules=tuple(rules),
        co_travellers=tuple(co_travellers),
    )


def load_risk_areas(path: Path | None = None) -> list[RiskArea]:
    """The risk-area list at ``path`` (CSV with ``area,level,start,end``; lines starting with
    ``#`` are comments; default: the packaged ``risk_areas.csv``)."""
    text = (path or RISK_AREAS_PATH).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    areas = []
    for row in csv.DictReader(lines):
        end = (row.get("end") or "").strip()
        areas.append(
            RiskArea(
                area=row["area"].strip(),
                level=row["level"].strip(),
                start=dt.date.fromisoformat(row["start"].strip()),
                end=dt.date.fromisoformat(end) if end else None,
            )
        )
    return areas


def _risk_table(areas: Sequence[RiskArea]) -> pa.Table:
    # Listed days as day numbers from 1970-01-01, compared with a record's ``seen // 86400``.
    epoch = dt.date(1970, 1, 1)
    return pa.table(
        {
            "area": pa.array([a.area for a in areas], pa.string()),
            "stem": pa.array([a.stem for a in areas], pa.string()),
            "start_day": pa.array([(a.start - epoch).days for a in areas], pa.int64()),
            "end_day": pa.array(
                [(a.end - epoch).days if a.end else None for a in areas], pa.int64()
            ),
        }
    )


def _quote(value: str) -> str:
    """``value`` as a SQL string literal (sqlglot rewrites the escaping for Spark)."""
    return "'" + value.replace("'", "''") + "'"


def _timestamp(moment: dt.datetime) -> str:
    """A naive timestamp literal, compared as is with the lake's naive times."""
    return f"TIMESTAMP '{moment.isoformat(sep=' ')}'"


def _seconds(moment: dt.datetime) -> int:
    # Lake times are naive wall-clock times that both engines read as UTC; so here too.
    return int(moment.replace(tzinfo=dt.UTC).timestamp())


def _has_parts(paths: LakePaths, kind: str, categories: Iterable[str]) -> bool:
    """Whether any of ``categories`` of ``kind`` has parts (a city may lack a feed)."""
    return any(any((paths.kind_dir(kind) / f"category={c}").rglob("*.parquet")) for c in categories)


def _in(values: Iterable[str]) -> str:
    return ", ".join(_quote(v) for v in values)


# Per-record tables: ``hit`` (the records that met a rule in the window), ``dated`` (dated
# journeys that passed a risk area's city, see ``_collect``) and ``co_keyed`` (co-travellers,
# already keyed by person). Times are epoch seconds (``seen``) until the end.
HIT_SCHEMA = pa.schema(
    [
        ("record_id", pa.int64()),
        ("rule", pa.string()),
        ("category", pa.string()),
        ("seen", pa.int64()),
        ("place", pa.string()),
        ("evidence", pa.string()),
        ("areas", pa.list_(pa.string())),
        ("stems", pa.list_(pa.string())),
        ("undated", pa.bool_()),
    ]
)
DATED_SCHEMA = pa.schema(
    [
        ("record_id", pa.int64()),
        ("seen", pa.int64()),
        ("stem", pa.string()),
        ("hit", pa.bool_()),
    ]
)
CO_SCHEMA = pa.schema([("person_key", pa.int64()), *HIT_SCHEMA])
HIT_COLUMNS = ", ".join(HIT_SCHEMA.names)


def _union(con: Connection, name: str, parts: list[str], schema: pa.Schema) -> None:
    """Table ``name``: the rows of tables ``parts``, or none, with ``schema``'s columns."""
    empty = f"{name}_none"
    con.register(empty, schema.empty_table())
    columns = ", ".join(schema.names)
    selects = [f"SELECT {columns} FROM {table}" for table in [empty, *parts]]  # noqa: S608 - ours
    con.create(name, " UNION ALL ".join(selects))


def _collect(
    con: Connection,
    paths: LakePaths,
    rule: Rule,
    n: int,
    start: dt.datetime,
    end: dt.datetime,
    lookback: dt.datetime,
) -> tuple[str | None, str | None]:
    """Tables ``hit_<n>``, the rule's records of the window [``start``, ``end``) that meet its
    condition, and, for a risk-area rule, ``dated_<n>``, its dated records (from ``lookback``
    on for a rule with undated categories) that pass a risk area's city: they can explain an
    undated record (see ``screen``). Returns their names (None for a table not made)."""
    if not _has_parts(paths, rule.kind, rule.categories):
        return None, None
    at = f"coalesce({', '.join(rule.time)})" if len(rule.time) > 1 else rule.time[0]
    shown = ", ".join(f"CAST({c} AS VARCHAR)" for c in rule.evidence)
    # The evidence line a field worker reads: source, time, then the rule's columns.
    evidence = f"concat_ws(' ', category, strftime({at}, '%Y-%m-%d %H:%M'), {shown})"
    # Only health records carry a result (the medicine bought); other kinds have none.
    result = "CAST(result AS VARCHAR)" if rule.kind == "health" else "CAST(NULL AS VARCHAR)"
    undated = f"category IN ({_in(rule.undated)})" if rule.undated else "false"
    since = lookback if rule.undated else start
    win = f"win_{n}"
    con.create(
        win,
        f"""
        SELECT record_id, category, epoch({at})::BIGINT AS seen,
               CAST({rule.place} AS VARCHAR) AS place, {evidence} AS evidence,
               {result} AS result, {at} >= {_timestamp(start)} AS in_window,
               {undated} AS undated
        FROM {rule.kind}
        WHERE category IN ({_in(rule.categories)})
          AND {at} >= {_timestamp(since)} AND {at} < {_timestamp(end)}
        """,  # noqa: S608 - the rule's checked column names, quoted values
    )
    # A risk area counts when listed on the record's day (day numbers from 1970-01-01).
    listed = (
        "r.start_day <= w.seen // 86400 AND (r.end_day IS NULL OR w.seen // 86400 <= r.end_day)"
    )
    dated = None
    if rule.condition == "risk_area":
        # Every stop of a route is checked.
        stop = "place"
        if rule.separator:
            stop = f"unnest(string_split(place, {_quote(rule.separator)}))"
        stops = f"stops_{n}"
        con.create(
            stops,
            f"""
            SELECT w.record_id, w.seen, w.in_window, w.undated, r.stem, r.area,
                   {listed} AS listed
            FROM (SELECT record_id, seen, in_window, undated, trim(stop) AS stop
                  FROM (SELECT record_id, seen, in_window, undated, {stop} AS stop
                        FROM {win}) s) w
            JOIN risk r ON starts_with(w.stop, r.stem)
            """,  # noqa: S608 - our table names, the rule's separator quoted
        )
        # Every dated journey through a risk area's city can explain another rule's undated
        # record, whichever rule reads it.
        dated = f"dated_{n}"
        con.create(
            dated,
            f"""
            SELECT record_id, seen, stem, bool_or(listed AND in_window) AS hit FROM {stops}
            WHERE NOT undated GROUP BY record_id, seen, stem
            """,  # noqa: S608 - our table names
        )
        matched = f"""
            SELECT record_id, list_sort(list_distinct(list(area))) AS areas,
                   list_sort(list_distinct(list(stem))) AS stems
            FROM {stops} WHERE listed AND in_window GROUP BY record_id
        """  # noqa: S608 - our table names
    elif rule.condition == "mentions_risk_area":
        matched = f"""
            SELECT w.record_id, list_sort(list_distinct(list(r.area))) AS areas,
                   CAST([] AS VARCHAR[]) AS stems
            FROM {win} w JOIN risk r ON contains(w.place, r.stem) AND {listed}
            GROUP BY w.record_id
        """  # noqa: S608 - our table names
    elif rule.condition == "result_in":
        matched = f"""
            SELECT record_id, CAST([] AS VARCHAR[]) AS areas, CAST([] AS VARCHAR[]) AS stems
            FROM {win} WHERE result IN ({_in(rule.values)})
        """  # noqa: S608 - values from the rules file, quoted
    else:
        matched = (
            "SELECT record_id, CAST([] AS VARCHAR[]) AS areas, CAST([] AS VARCHAR[]) AS stems"  # noqa: S608 - our table names
            f" FROM {win}"
        )
    hit = f"hit_{n}"
    con.create(
        hit,
        f"""
        SELECT w.record_id, {_quote(rule.id)} AS rule, w.category, w.seen, w.place,
               w.evidence, m.areas, m.stems, w.undated
        FROM {win} w JOIN ({matched}) m ON m.record_id = w.record_id
        WHERE w.in_window
        """,  # noqa: S608 - built above from checked parts
    )
    return hit, dated


def _co_travellers(
    con: Connection, paths: LakePaths, co: CoTravellerRule, n: int, start: dt.datetime
) -> str | None:
    """Table ``co_<n>``: the presumed occupants of ``co``, keyed by person (None: no cell
    presence to tell them by)."""
    if not _has_parts(paths, "presence", co.presence):
        return None
    early, late = co.return_minutes
    # Presence from far enough back that a phone away since before the window shows a gap.
    since = start - dt.timedelta(hours=co.away_hours + co.stayed_home_hours + 24)
    name = f"co_{n}"
    con.create(
        name,
        f"""
        WITH car AS (
            SELECT record_id, category, seen, place, evidence, areas, stems
            FROM hit WHERE rule = {_quote(co.of_rule)} AND category IN ({_in(co.categories)})
        ), cell AS (
            SELECT k.person_key, epoch(p.start_time)::BIGINT AS s,
                   epoch(coalesce(p.end_time, p.start_time))::BIGINT AS e
            FROM presence p JOIN keys k ON k.record_id = p.record_id
            WHERE p.category IN ({_in(co.presence)})
              AND p.start_time >= {_timestamp(since)} AND p.start_time IS NOT NULL
        ), gap AS (
            SELECT person_key, s,
                   max(e) OVER (PARTITION BY person_key ORDER BY s
                                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS last_seen
            FROM cell
        ), journey AS (
            SELECT k.person_key, epoch(t.arrive)::BIGINT AS arrive
            FROM travel t JOIN keys k ON k.record_id = t.record_id
            WHERE t.category IN ({_in(co.explained_by) or "NULL"})
              AND t.arrive >= {_timestamp(since)}
        ), back AS (
            -- A phone's first presence after an absence: it came (back) into the city, by car
            -- unless a ticket of its holder's arriving about then says otherwise.
            SELECT g.person_key, g.s AS back FROM gap g
            WHERE coalesce(g.last_seen, {_seconds(since)}) <= g.s - {co.away_hours * 3600}
              AND NOT EXISTS (
                SELECT 1 FROM journey j WHERE j.person_key = g.person_key
                AND j.arrive BETWEEN g.s - 3 * 3600 AND g.s + 3600)
        ), occupant AS (
            SELECT DISTINCT c.record_id, b.person_key FROM car c JOIN back b
              ON b.back >= c.seen + {early * 60} AND b.back <= c.seen + {late * 60}
        ), reg AS (
            SELECT DISTINCT k.person_key, r.setting
            FROM identity r JOIN keys k ON k.record_id = r.record_id
            WHERE r.category = {_quote(co.household)} AND r.setting IS NOT NULL
        ), households AS (
            -- A group bigger than a family is a collective registration, not one car's worth.
            SELECT setting FROM reg GROUP BY setting HAVING count(*) <= {CO_TRAVELLER_MAX_MEMBERS}
        ), family AS (
            SELECT DISTINCT o.record_id, m.person_key FROM occupant o
            JOIN reg h ON h.person_key = o.person_key
            JOIN households hh ON hh.setting = h.setting
            JOIN reg m ON m.setting = h.setting AND m.person_key <> o.person_key
        ), at_home AS (
            SELECT DISTINCT f.record_id, f.person_key FROM family f
            JOIN car c ON c.record_id = f.record_id JOIN cell p ON p.person_key = f.person_key
            WHERE p.s < c.seen AND p.e > c.seen - {co.stayed_home_hours * 3600}
        ), aboard AS (
            SELECT record_id, person_key, 'returned' AS why FROM occupant
            UNION ALL
            SELECT record_id, person_key, 'household' AS why FROM (
                SELECT record_id, person_key FROM family
                EXCEPT SELECT record_id, person_key FROM at_home
                EXCEPT SELECT record_id, person_key FROM occupant) x
        ), travelled AS (
            SELECT DISTINCT k.person_key FROM hit h JOIN keys k ON k.record_id = h.record_id
            WHERE h.rule = {_quote(co.of_rule)}
        )
        SELECT a.person_key, c.record_id, {_quote(co.id)} AS rule, c.category, c.seen, c.place,
               concat_ws(' ', CASE a.why WHEN 'returned' THEN {_quote(NOTE_RETURNED)}
                                         ELSE {_quote(NOTE_HOUSEHOLD)} END,
                         c.evidence) AS evidence,
               c.areas, c.stems, false AS undated
        FROM aboard a JOIN car c ON c.record_id = a.record_id
        WHERE a.person_key NOT IN (SELECT person_key FROM travelled)
        """,  # noqa: S608 - checked rule values, quoted, and numbers
    )
    return name


NOTE_RETURNED = "手机随车返郑 phone came back with the car:"
NOTE_HOUSEHOLD = "同户推定同车 household presumed aboard:"


# A compound as (code, community code, name, address).
CompoundRow = tuple[str, str, str, str]


def _geography_of(session: Session) -> tuple[list[CompoundRow], dict[str, str]]:
    """Compounds (code, community code, name, address) and area names by code."""
    compounds = [
        (c, m, n, a)
        for c, m, n, a in session.execute(
            select(Compound.code, Compound.community_code, Compound.name, Compound.address)
        ).all()
    ]
    names = {code: name for code, name in session.execute(select(Area.code, Area.name))}
    if not compounds:
        # The database has not loaded the geography (a bare data directory): the generated
        # dataset is what ``geo load`` would have put there.
        from citybrain.core.geo.service import build_dataset

        data = build_dataset()
        compounds = [(c.code, c.community_code, c.name, c.address) for c in data.compounds]
        names = {a.code: a.name for a in data.areas}
    return compounds, names


def _geography(database: Database) -> tuple[list[CompoundRow], dict[str, str]]:
    """Compounds (code, community code, name, address) and area names by code."""
    with database.unit_of_work() as session:
        return _geography_of(session)


def resolve_compounds(
    addresses: Iterable[str | None], compounds: Sequence[CompoundRow]
) -> dict[str, tuple[str | None, str | None]]:
    """Address -> (compound code, community code): the compound whose address is the
    address's longest prefix. Two compounds with that same address leave the compound unknown
    (and the community too, unless they share it)."""
    by_address: dict[str, list[tuple[str, str]]] = {}
    for code, community, _name, address in compounds:
        by_address.setdefault(address, []).append((code, community))
    longest = max((len(a) for a in by_address), default=0)
    resolved: dict[str, tuple[str | None, str | None]] = {}
    for text in addresses:
        if text is None or text in resolved:
            continue
        hit: tuple[str | None, str | None] = (None, None)
        for size in range(min(len(text), longest), 0, -1):
            found = by_address.get(text[:size])
            if found is None:
                continue
            communities = {m for _c, m in found}
            if len(found) == 1:
                hit = found[0]
            elif len(communities) == 1:
                hit = (None, found[0][1])
            break
        resolved[text] = hit
    return resolved


def _homes(
    paths: LakePaths, compounds: Sequence[CompoundRow], only: Iterable[int] | None = None
) -> pa.Table:
    """``record_id``, ``compound_code``, ``community_code`` of household-registry records
    (``only``: of these record ids)."""
    folder = paths.linkage / f"category={HOME_CATEGORY}"
    parts = sorted(folder.rglob("*.parquet")) if folder.exists() else []
    empty = pa.table(
        {
            "record_id": pa.array([], pa.int64()),
            "compound_code": pa.array([], pa.string()),
            "community_code": pa.array([], pa.string()),
        }
    )
    if not parts:
        return empty
    vault = Vault()
    table = pa.concat_tables([vault.read(p, columns=["record_id", "address"]) for p in parts])
    if only is not None:
        wanted = pa.array(sorted(set(only)), pa.int64())
        table = table.filter(pc.is_in(table.column("record_id"), value_set=wanted))
    addresses = table.column("address").to_pylist()
    resolved = resolve_compounds(addresses, compounds)
    none: tuple[str | None, str | None] = (None, None)
    pairs = [resolved.get(a, none) if a is not None else none for a in addresses]
    return pa.table(
        {
            "record_id": table.column("record_id"),
            "compound_code": pa.array([p[0] for p in pairs], pa.string()),
            "community_code": pa.array([p[1] for p in pairs], pa.string()),
        }
    )


def homes_of_keys(
    paths: LakePaths, session: Session, keys: Path, person_keys: Iterable[int]
) -> dict[int, str]:
    """The home compound (住址 → 小区) of each of ``person_keys`` that the household registry
    places: the compound of their latest registry record whose address names one. Resolves
    only those people's addresses (the traced case and its contacts), not the registry's."""
    wanted = sorted({int(k) for k in person_keys})
    folder = paths.linkage / f"category={HOME_CATEGORY}"
    if not wanted or not keys.exists() or not folder.exists():
        return {}
    con = duckdb.connect()
    try:
        con.register("wanted", pa.table({"person_key": pa.array(wanted, pa.int64())}))
        owned = con.execute(
            "SELECT record_id, person_key FROM read_parquet(?) k "
            "WHERE person_key IN (SELECT person_key FROM wanted)",
            [str(keys)],
        ).fetchall()
    finally:
        con.close()
    owner = {int(r): int(k) for r, k in owned}
    if not owner:
        return {}
    compounds, _ = _geography_of(session)
    placed = _homes(paths, compounds, owner)
    homes: dict[int, str] = {}
    # Record ids grow with delivery (the ledger's id is their high half): the latest wins.
    for record_id, compound in sorted(
        zip(
            placed.column("record_id").to_pylist(),
            placed.column("compound_code").to_pylist(),
            strict=True,
        )
    ):
        if compound is not None:
            homes[owner[record_id]] = compound
    return homes


def _names_table(compounds: Sequence[CompoundRow], names: dict[str, str]) -> pa.Table:
    """``code`` and ``name`` of every area and compound."""
    codes = sorted(names)
    return pa.table(
        {
            "code": pa.array(codes + [c for c, _m, _n, _a in compounds], pa.string()),
            "name": pa.array(
                [names[c] for c in codes] + [n for _c, _m, n, _a in compounds], pa.string()
            ),
        }
    )


def screen(
    paths: LakePaths,
    database: Database,
    *,
    as_of: dt.date,
    risk_areas_path: Path | None = None,
    rules_path: Path | None = None,
    keys: Path | None = None,
    engine: Engine | None = None,
) -> pa.Table:
    """Screen the lake as of the end of ``as_of``: one row per (person key, rule) met within
    the rules' window, with the evidence and the person's home community and compound.

    ``risk_areas_path`` / ``rules_path``: the risk-area list and the rules (default: the
    packaged ones). ``keys``: the linkage output (default ``analysis/person_keys.parquet``
    under the data directory; run ``linkage.link`` first).

    Columns (``OUTPUT_SCHEMA``): ``person_key``, ``rule``, ``rule_zh``, ``rule_en``,
    ``records`` (how many records met the rule), ``first_time``, ``last_time``, ``areas``
    (risk areas matched, empty for rules without one), ``places`` (the rule's place column:
    origin or route, country, pharmacy...), ``categories``, ``record_ids`` and ``evidence``
    (one line per record, in time order), ``community_code``/``community_name`` and
    ``compound_code``/``compound_name`` (null when the household registry does not place the
    person). Rows are ordered by community, compound, person key and rule. The queries run on
    ``engine`` (default DuckDB; ``SparkEngine`` gives the same table).
    """
    rules = load_rules(rules_path)
    areas = load_risk_areas(risk_areas_path)
    keys = keys or paths.root / OUTPUT
    if not keys.exists():
        raise FileNotFoundError(f"{keys}: no person keys; run identity linkage first")
    end = dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time())
    start = end - dt.timedelta(days=rules.window_days)
    named: list[Rule | CoTravellerRule] = [*rules.rules, *rules.co_travellers]
    compounds, area_names = _geography(database)
    with (engine or DuckDBEngine()).connect() as con:
        con.register("risk", _risk_table(areas))
        con.register(
            "rule_names",
            pa.table(
                {
                    "rule": pa.array([r.id for r in named], pa.string()),
                    "rule_zh": pa.array([r.name_zh for r in named], pa.string()),
                    "rule_en": pa.array([r.name_en for r in named], pa.string()),
                }
            ),
        )
        con.parquet("key_file", keys)
        con.create("keys", "SELECT record_id, person_key FROM key_file")
        kinds = {r.kind for r in rules.rules} | {"identity"}
        if rules.co_travellers:
            kinds |= {"presence", "travel"}
        for kind in sorted(kinds):
            con.lake(kind, paths, kind)
        # Undated records speak of the window_days before them: dated journeys that far back
        # can explain them.
        lookback = start - dt.timedelta(days=rules.window_days)
        hits: list[str] = []
        dated: list[str] = []
        for n, rule in enumerate(rules.rules):
            hit, dated_n = _collect(con, paths, rule, n, start, end, lookback)
            hits += [hit] if hit else []
            dated += [dated_n] if dated_n else []
        _union(con, "hit", hits, HIT_SCHEMA)
        _union(con, "dated", dated, DATED_SCHEMA)
        co = [_co_travellers(con, paths, c, n, start) for n, c in enumerate(rules.co_travellers)]
        _union(con, "co_keyed", [c for c in co if c], CO_SCHEMA)
        con.register("homes", _homes(paths, compounds))
        con.register("names", _names_table(compounds, area_names))
        table = con.fetch(
            f"""
            WITH all_keyed AS (
                SELECT k.person_key, {", ".join("h." + c for c in HIT_SCHEMA.names)}
                FROM hit h JOIN keys k ON k.record_id = h.record_id
                UNION ALL
                SELECT person_key, {HIT_COLUMNS} FROM co_keyed
            ), dated_keyed AS (
                SELECT k.person_key, d.record_id, d.seen, d.stem, d.hit
                FROM dated d JOIN keys k ON k.record_id = d.record_id
            ), undated_stems AS (
                SELECT person_key, record_id, rule, seen, unnest(stems) AS stem
                FROM all_keyed WHERE undated
            ), stem_state AS (
                -- The person's dated journeys through the city in the days the undated
                -- record speaks of, and whether any of them is itself a hit.
                SELECT u.record_id, u.rule, u.stem, count(d.record_id) AS journeys,
                       coalesce(bool_or(d.hit), false) AS any_hit
                FROM undated_stems u LEFT JOIN dated_keyed d
                  ON d.person_key = u.person_key AND d.stem = u.stem
                 AND d.seen >= u.seen - {rules.window_days * 86400}
                 AND d.seen < u.seen + 86400
                GROUP BY u.record_id, u.rule, u.stem
            ), explained AS (
                -- Every city the undated record names was passed on a dated journey that
                -- is no hit (before the window, or before the city was listed).
                SELECT record_id, rule FROM stem_state GROUP BY record_id, rule
                HAVING bool_and(journeys > 0 AND NOT any_hit)
            ), keyed AS (
                SELECT a.* FROM all_keyed a
                WHERE NOT EXISTS (SELECT 1 FROM explained x
                                  WHERE x.record_id = a.record_id AND x.rule = a.rule)
            ), listed AS (
                -- Records and their evidence lines in time order: sorted as (time, record)
                -- pairs, since neither engine keeps the order rows are aggregated in.
                SELECT person_key, rule, count(*) AS records,
                       min(seen) AS first_time, max(seen) AS last_time,
                       list_sort(list_distinct(flatten(list(areas)))) AS areas,
                       list_sort(list_distinct(list(place))) AS places,
                       list_sort(list_distinct(list(category))) AS categories,
                       list_sort(list({{'seen': seen, 'record_id': record_id,
                                        'evidence': evidence}})) AS ordered
                FROM keyed GROUP BY person_key, rule
            ), home AS (
                -- The latest registry record that places the person; a placed record beats
                -- a later one whose address matched no compound.
                SELECT k.person_key,
                       arg_max(m.compound_code,
                               [(m.compound_code IS NOT NULL)::INT,
                                (m.community_code IS NOT NULL)::INT,
                                epoch(r.day)::BIGINT, r.record_id]) AS compound_code,
                       arg_max(m.community_code,
                               [(m.compound_code IS NOT NULL)::INT,
                                (m.community_code IS NOT NULL)::INT,
                                epoch(r.day)::BIGINT, r.record_id]) AS community_code
                FROM identity r
                JOIN homes m ON m.record_id = r.record_id
                JOIN keys k ON k.record_id = r.record_id
                WHERE r.category = {_quote(HOME_CATEGORY)}
                  AND k.person_key IN (SELECT person_key FROM listed)
                GROUP BY k.person_key
            )
            SELECT l.person_key, l.rule, n.rule_zh, n.rule_en, l.records,
                   l.first_time, l.last_time, l.areas, l.places, l.categories,
                   list_transform(l.ordered, lambda x: x.record_id) AS record_ids,
                   list_transform(l.ordered, lambda x: x.evidence) AS evidence,
                   h.community_code, cn.name AS community_name,
                   h.compound_code, pn.name AS compound_name
            FROM listed l
            JOIN rule_names n ON n.rule = l.rule
            LEFT JOIN home h ON h.person_key = l.person_key
            LEFT JOIN names cn ON cn.code = h.community_code
            LEFT JOIN names pn ON pn.code = h.compound_code
            ORDER BY h.community_code NULLS LAST, h.compound_code NULLS LAST,
                     l.person_key, l.rule
            """  # noqa: S608 - our table names and numbers
        )
    # Epoch seconds to the lake's naive wall-clock timestamps, the same on either engine.
    for name in ("first_time", "last_time"):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, table.column(name).cast(pa.timestamp("s")))
    return table.cast(OUTPUT_SCHEMA)


def by_compound(table: pa.Table) -> pa.Table:
    """The screening list grouped for dispatch: one row per (community, compound) with the
    number of persons and of (person, rule) rows, the rules met and the person keys. Persons
    the registry does not place form the rows with null codes, listed last."""
    con = duckdb.connect()
    try:
        con.register("screened", table)
        return con.sql(
            """
            SELECT community_code, any_value(community_name) AS community_name,
                   compound_code, any_value(compound_name) AS compound_name,
                   count(DISTINCT person_key) AS persons, count(*) AS rows,
                   list_sort(list_distinct(list(rule))) AS rules,
                   list_sort(list_distinct(list(person_key))) AS person_keys
            FROM screened GROUP BY community_code, compound_code
            ORDER BY community_code NULLS LAST, compound_code NULLS LAST
            """
        ).to_arrow_table()
    finally:
        con.close()


# --- evaluation against the synthetic city's ground truth ------------------------------------

TRAVEL_RULES = ("risk_area_travel", "risk_area_roaming", "risk_area_car_occupant")


def screening_quality(
    paths: LakePaths,
    database: Database,
    truth_dir: Path,
    keys: Path,
    as_of: dt.date,
    *,
    risk_areas_path: Path | None = None,
    window_days: int = 14,
) -> dict[str, Any]:
    """Screen as of ``as_of`` and score the risk-area rules against the truth in
    ``truth_dir`` (read by path: ``travel.parquet``, ``risk_areas.parquet``,
    ``record_owner/*.parquet``).

    True risk-area travellers: persons with a truth journey into the city (direction ``in``)
    arriving within the window whose origin city was listed on the arrival day (a city counts
    when the list names it or a district of it). Each person key is the person most of its
    records belong to. ``recall``: true travellers with a key listed by a risk-area rule;
    ``precision``: keys listed by a risk-area rule whose person is a true traveller;
    ``recall_any_rule``: travellers listed by any rule. Also ``seconds`` (the screening run),
    ``rows``, ``keys``, ``travellers``, ``by_rule`` (keys per rule), ``placed`` (share of
    listed keys with a compound) and ``compound_correct`` (share of placed keys whose compound
    is the person's true one), ``missed`` (a sample of missed travellers' journeys).
    """
    started = time.perf_counter()
    table = screen(paths, database, as_of=as_of, risk_areas_path=risk_areas_path, keys=keys)
    seconds = time.perf_counter() - started
    end = as_of
    begin = as_of - dt.timedelta(days=window_days - 1)
    con = duckdb.connect()
    try:
        con.register("screened", table)
        load_record_owners(con, database, truth_dir)
        con.execute(
            f"""
            CREATE TEMP TABLE key_person AS
            SELECT person_key, arg_max(person_id, n) AS person_id FROM (
                SELECT k.person_key, o.person_id, count(*) AS n
                FROM read_parquet('{keys}') k JOIN owner o USING (record_id)
                WHERE k.person_key IN (SELECT person_key FROM screened)
                GROUP BY ALL)
            GROUP BY person_key
            """  # noqa: S608 - our paths
        )
        con.execute(
            f"""
            CREATE TEMP TABLE journeys AS
            SELECT t.person_id, t.mode, t.origin, t.arrive
            FROM read_parquet('{truth_dir / "travel.parquet"}') t
            WHERE t.direction = 'in'
              AND CAST(t.arrive AS DATE) BETWEEN DATE '{begin}' AND DATE '{end}'
              AND EXISTS (
                SELECT 1 FROM read_parquet('{truth_dir / "risk_areas.parquet"}') r
                WHERE starts_with(r.area, t.origin) AND r.start <= CAST(t.arrive AS DATE)
                  AND (r."end" IS NULL OR CAST(t.arrive AS DATE) <= r."end"))
            """  # noqa: S608 - our paths and dates
        )
        rules = ", ".join(f"'{r}'" for r in TRAVEL_RULES)
        ((travellers, found, found_any),) = con.execute(
            f"""
            WITH truth AS (SELECT DISTINCT person_id FROM journeys),
            hit AS (SELECT DISTINCT kp.person_id FROM screened s
                    JOIN key_person kp USING (person_key) WHERE s.rule IN ({rules})),
            hit_any AS (SELECT DISTINCT kp.person_id FROM screened s
                        JOIN key_person kp USING (person_key))
            SELECT (SELECT count(*) FROM truth),
                   (SELECT count(*) FROM truth JOIN hit USING (person_id)),
                   (SELECT count(*) FROM truth JOIN hit_any USING (person_id))
            """  # noqa: S608 - rule ids are constants
        ).fetchall()
        ((listed_keys, right_keys),) = con.execute(
            f"""
            WITH listed AS (SELECT DISTINCT person_key FROM screened WHERE rule IN ({rules}))
            SELECT count(*), count(*) FILTER (
                WHERE kp.person_id IN (SELECT person_id FROM journeys))
            FROM listed LEFT JOIN key_person kp USING (person_key)
            """  # noqa: S608 - rule ids are constants
        ).fetchall()
        by_rule = dict(
            con.execute(
                "SELECT rule, count(DISTINCT person_key) FROM screened GROUP BY rule ORDER BY rule"
            ).fetchall()
        )
        persons = str(truth_dir / "persons.parquet")
        ((keys_listed, placed, correct),) = con.execute(
            f"""
            WITH k AS (SELECT person_key, any_value(compound_code) AS compound_code
                       FROM screened GROUP BY person_key)
            SELECT count(*), count(k.compound_code),
                   count(*) FILTER (WHERE k.compound_code = p.compound_code)
            FROM k LEFT JOIN key_person kp USING (person_key)
            LEFT JOIN read_parquet('{persons}') p USING (person_id)
            """  # noqa: S608 - our paths
        ).fetchall()
        missed = con.execute(
            f"""
            SELECT j.person_id, j.mode, j.origin, CAST(j.arrive AS VARCHAR) FROM journeys j
            WHERE j.person_id NOT IN (
                SELECT kp.person_id FROM screened s JOIN key_person kp USING (person_key)
                WHERE s.rule IN ({rules}))
            ORDER BY j.person_id, j.arrive LIMIT 20
            """  # noqa: S608 - rule ids are constants
        ).fetchall()
    finally:
        con.close()
    return {
        "as_of": as_of.isoformat(),
        "seconds": seconds,
        "rows": table.num_rows,
        "keys": int(keys_listed),
        "travellers": int(travellers),
        "recall": found / travellers if travellers else 1.0,
        "precision": right_keys / listed_keys if listed_keys else 1.0,
        "recall_any_rule": found_any / travellers if travellers else 1.0,
        "listed_travel_keys": int(listed_keys),
        "by_rule": {str(k): int(v) for k, v in by_rule.items()},
        "placed": placed / keys_listed if keys_listed else 1.0,
        "compound_correct": correct / placed if placed else 1.0,
        "missed": [list(m) for m in missed],
    }
