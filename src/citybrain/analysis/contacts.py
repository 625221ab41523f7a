"""Close contacts (密接) and secondary contacts (次密接) from co-presence in the lake.

A case's exposure window runs from ``window_days_before`` days before the case was found (the
earliest of its case reports and positive lab tests; the lake has no onset dates) to
``window_days_after`` days after it, when the case is isolated. Inside the window two kinds of
evidence put people together, as the rules in ``data/contact_rules.yaml`` say:

* rosters (lake kinds ``identity`` and ``setting``): the other members of the case's household,
  class, office or care home; classes and offices only when the window holds a weekday;
* presences: the same train carriage, flight rows, coach, ride, venue or cell, found by an
  equality join on (place, time bucket) that probes every bucket a visit covers, then the exact
  overlap filter; the case's visits are deduplicated first, and candidates are read only at the
  places the case visited.

Busy places are guarded: a place-hour with more distinct people than the rule's ``crowd_cap``
lists nobody, cell presence is weak evidence only, and the second hop starts only from strong
first-hop contacts and follows only rules marked ``second_hop``.

Everything is keyed by person keys (``analysis/person_keys.parquet``), never by identifiers.
The queries run on DuckDB by default or on Spark (``engine=SparkEngine()``): written once in
DuckDB's dialect, within the portable subset ``analysis.engine`` describes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import yaml

from citybrain.analysis.engine import Connection, DuckDBEngine, Engine
from citybrain.analysis.linkage import OUTPUT, link
from citybrain.analysis.presence_index import PresenceIndex
from citybrain.analysis.quality import load_record_owners
from citybrain.datahub.lake import LakePaths
from citybrain.kit.db import Database

RULES_FILE = Path(__file__).parent / "data" / "contact_rules.yaml"
CASE_CATEGORIES = ("case_confirmed", "case_asymptomatic")
POSITIVE_RESULTS = ("positive", "阳性")
# Truth settings the feeds can see: rosters (household registry, school and care-home lists)
# and tickets. Workplaces outside schools and venues have no roster or check-in feed in 2020,
# so infections there are found, if at all, only through weak cell evidence.
COVERED_SETTINGS = frozenset(
    {"household", "school", "class", "school_class", "care_home", "train", "flight", "coach"}
)

OUTPUT_SCHEMA = pa.schema(
    [
        ("case", pa.int64()),
        ("contact", pa.int64()),
        ("hop", pa.int8()),
        ("rule", pa.string()),
        ("rule_zh", pa.string()),
        ("strength", pa.string()),
        ("place", pa.string()),
        ("start", pa.timestamp("s")),
        ("end", pa.timestamp("s")),
        ("via", pa.int64()),
        ("evidence", pa.list_(pa.int64())),
    ]
)


@dataclass(frozen=True)
class ContactRule:
    """One co-presence rule (see ``data/contact_rules.yaml`` for the meaning of each field)."""

    name: str
    name_zh: str
    source: str
    kinds: tuple[str, ...]
    strength: str = "strong"
    second_hop: bool = False
    min_overlap_minutes: float = 0.0
    same: tuple[str, ...] = field(default_factory=tuple)
    rows_apart: int | None = None
    crowd_cap: int | None = None
    max_members: int | None = None
    working_days: bool = False
    closed: tuple[tuple[date, date], ...] = field(default_factory=tuple)
    bucket_minutes: int = 60


def load_rules(path: Path | None = None) -> list[ContactRule]:
    """The contact rules in ``path`` (default: the packaged ``contact_rules.yaml``)."""
    data = yaml.safe_load((path or RULES_FILE).read_text(encoding="utf-8"))
    rules: list[ContactRule] = []
    for raw in data["rules"]:
        values = dict(raw)
        values["kinds"] = tuple(values["kinds"])
        values["same"] = tuple(values.get("same", ()))
        values["closed"] = tuple((start, end) for start, end in values.get("closed", ()))
        rule = ContactRule(**values)
        if rule.source not in ("setting", "presence") or rule.strength not in ("strong", "weak"):
            raise ValueError(f"contact rule {rule.name}: bad source or strength")
        if set(rule.same) - {"carriage"}:
            raise ValueError(f"contact rule {rule.name}: only carriage may be compared")
        rules.append(rule)
    kinds = [(r.source, k) for r in rules for k in r.kinds]
    if len(kinds) != len(set(kinds)):
        # One kind, one rule: otherwise a pair would be listed twice under two names.
        raise ValueError("a place or setting kind appears in two contact rules")
    return rules


def _keys_path(paths: LakePaths, database: Database, keys: Path | None) -> Path:
    path = keys or paths.root / OUTPUT
    if not path.exists():
        link(paths, database, path)
    return path


def _connect(engine: Engine | None, keys: Path, paths: LakePaths) -> Connection:
    con = (engine or DuckDBEngine()).connect()
    try:
        con.parquet("key_file", keys)
        con.create("keys", "SELECT record_id, person_key FROM key_file")
        con.lake("health", paths, "health")
    except BaseException:
        con.close()
        raise
    return con


def _case_times(con: Connection) -> list[tuple[int, datetime]]:
    cats = ", ".join(f"'{c}'" for c in CASE_CATEGORIES)
    positive = ", ".join(f"'{r}'" for r in POSITIVE_RESULTS)
    table = con.fetch(
        f"""
        SELECT k.person_key, min(epoch(h.event_time))::BIGINT AS found_s
        FROM health h JOIN keys k ON k.record_id = h.record_id
        WHERE h.event_time IS NOT NULL
          AND (h.category IN ({cats}) OR (h.category = 'lab_test' AND h.result IN ({positive})))
        GROUP BY k.person_key HAVING bool_or(h.category IN ({cats}))
        ORDER BY found_s, k.person_key
        """  # noqa: S608 - constants
    )
    keys = table.column("person_key").to_pylist()
    times = table.column("found_s").to_pylist()
    return [(int(k), _from_epoch(t)) for k, t in zip(keys, times, strict=True)]


def cases_in_lake(
    paths: LakePaths,
    database: Database,
    keys: Path | None = None,
    *,
    engine: Engine | None = None,
) -> list[tuple[int, datetime]]:
    """Every person with a confirmed or asymptomatic case report in the lake, with the time the
    case was found: the earliest of its case reports and positive lab tests. Sorted by time.
    Runs on ``engine`` (default DuckDB)."""
    with _connect(engine, _keys_path(paths, database, keys), paths) as con:
        return _case_times(con)


def _rules_table(rules: list[ContactRule]) -> pa.Table:
    rows = [
        {
            "kind": kind,
            "source": r.source,
            "rule": r.name,
            "rule_zh": r.name_zh,
            "strength": r.strength,
            "second_hop": r.second_hop,
            "min_overlap_s": int(r.min_overlap_minutes * 60),
            "same_carriage": "carriage" in r.same,
            "rows_apart": r.rows_apart,
            "crowd_cap": r.crowd_cap,
            "max_members": r.max_members,
            "working_days": r.working_days,
            "bucket_s": max(1, r.bucket_minutes) * 60,
        }
        for r in rules
        for kind in r.kinds
    ]
    return pa.Table.from_pylist(
        rows,
        pa.schema(
            [
                ("kind", pa.string()),
                ("source", pa.string()),
                ("rule", pa.string()),
                ("rule_zh", pa.string()),
                ("strength", pa.string()),
                ("second_hop", pa.bool_()),
                ("min_overlap_s", pa.int64()),
                ("same_carriage", pa.bool_()),
                ("rows_apart", pa.int64()),
                ("crowd_cap", pa.int64()),
                ("max_members", pa.int64()),
                ("working_days", pa.bool_()),
                ("bucket_s", pa.int64()),
            ]
        ),
    )


def _open_days(rules: list[ContactRule], first: int, last: int) -> pa.Table:
    """The days (numbered from 1970-01-01) from ``first`` to ``last`` on which each
    working-days rule's setting met: weekdays outside the rule's closed spans. Made here, not
    in SQL, because weekday functions are not portable between the engines."""
    names: list[str] = []
    days: list[int] = []
    for rule in rules:
        if not rule.working_days:
            continue
        for day in range(first, last + 1):
            on = _EPOCH_DAY + timedelta(days=day)
            if on.weekday() < 5 and not any(a <= on <= b for a, b in rule.closed):
                names.append(rule.name)
                days.append(day)
    return pa.table({"rule": pa.array(names, pa.string()), "day": pa.array(days, pa.int64())})


def _load_evidence(con: Connection, paths: LakePaths, index: PresenceIndex | None) -> None:
    """Rosters and presences the rules use, keyed by person, as tables (presence from the
    contact index per hop instead, when there is one)."""
    con.lake("setting", paths, "setting")
    con.lake("identity", paths, "identity")
    if index is None:
        con.lake("presence", paths, "presence")
    # A class is a school's grade and unit: the student roster's setting is the school.
    con.create(
        "roster",
        """
        SELECT k.person_key, r.record_id, r.setting_kind AS kind,
               concat_ws('/', r.setting_kind, r.setting, r.grade, r.unit) AS grp
        FROM (SELECT record_id, setting_kind, setting, grade, unit FROM setting
              UNION ALL
              SELECT record_id, setting_kind, setting, CAST(NULL AS VARCHAR) AS grade,
                     CAST(NULL AS VARCHAR) AS unit
              FROM identity) r
        JOIN keys k ON k.record_id = r.record_id
        JOIN rules ru ON ru.kind = r.setting_kind AND ru.source = 'setting'
        WHERE r.setting IS NOT NULL
        """,
    )
    # Groups bigger than a household or a class could be are collective registrations: they
    # would make everyone in them a contact of everyone else.
    con.create(
        "groups",
        "SELECT grp, count(DISTINCT person_key) AS members FROM roster GROUP BY grp",
    )
    if index is None:
        _presence(con, "presence")


def _presence(con: Connection, source: str) -> None:
    """``pres``: the presence rows of ``source`` the presence rules use, keyed by person."""
    # Only stays with an end: a gate pass or a card tap says nothing about how long anyone
    # stayed, and a contact needs shared time.
    con.create(
        "pres",
        f"""
        SELECT p.record_id, k.person_key, p.place, p.place_kind,
               epoch(p.start_time)::BIGINT AS s, epoch(p.end_time)::BIGINT AS e,
               p.carriage, p."row"
        FROM {source} p JOIN keys k ON k.record_id = p.record_id
        JOIN rules ru ON ru.kind = p.place_kind AND ru.source = 'presence'
        WHERE p.place IS NOT NULL AND p.start_time IS NOT NULL AND p.end_time > p.start_time
        """,  # noqa: S608 - our table name
    )


def _indexed_presence(
    con: Connection, index: PresenceIndex, seeds: str, rules: list[ContactRule], hop: int
) -> None:
    """``pres`` from the contact index: only the seeds' stays in their windows and the stays at
    the places those visit, over the span of the visits there (what ``_find`` reads of it)."""
    kinds = [
        k for r in rules if r.source == "presence" and (hop == 1 or r.second_hop) for k in r.kinds
    ]
    wanted = con.fetch(f"SELECT person, ws, we FROM {seeds}")  # noqa: S608 - our table name
    stays = index.stays_of(
        wanted.column("person").to_numpy(),
        wanted.column("ws").to_numpy(),
        wanted.column("we").to_numpy(),
        kinds=kinds,
    )
    con.register("own_stays", stays)
    # The seeds' visits clipped to their windows, then each place's span, as _find takes them.
    spans = con.fetch(
        f"""
        SELECT p.place, min(greatest(p.s, sd.ws)) AS s, max(least(p.e, sd.we)) AS e
        FROM {seeds} sd JOIN own_stays p ON p.person_key = sd.person
         AND p.s < sd.we AND p.e > sd.ws
        GROUP BY p.place
        """  # noqa: S608 - our table name
    )
    around = index.at_places(
        spans.column("place"),
        spans.column("s").to_numpy(),
        spans.column("e").to_numpy(),
        kinds=kinds,
    )
    both = pa.concat_tables([stays, around.cast(stays.schema)])
    # A seed's own stay is also a stay at its place: keep each record once.
    _, first = np.unique(both.column("record_id").to_numpy(), return_index=True)
    con.register("indexed", both.take(first))
    con.create(
        "pres",
        """
        SELECT p.record_id, p.person_key, p.place, p.place_kind, p.s, p.e, p.carriage, p."row"
        FROM indexed p JOIN rules ru ON ru.kind = p.place_kind AND ru.source = 'presence'
        WHERE p.place IS NOT NULL AND p.e > p.s
        """,
    )


def _find(con: Connection, seeds: str, hop: int) -> None:
    """Contacts of the people in table ``seeds`` (case_key, person, ws, we, via) into ``found``.

    Times are epoch seconds throughout, turned into timestamps only at the end."""
    second = "AND ru.second_hop" if hop == 2 else ""
    # The days a window holds on which each working-days setting met; a window of whole weekend
    # or holiday lists no class or office contacts. A window covers the days from the one it
    # starts in to the one holding its last second.
    con.create(
        "open_windows",
        f"""
        SELECT DISTINCT w.ws, w.we, d.rule
        FROM (SELECT DISTINCT ws, we FROM {seeds}) w
        JOIN open_days d ON d.day >= w.ws // 86400 AND d.day <= (w.we - 1) // 86400
        """,  # noqa: S608 - our table name
    )
    # One row per record of the seed and record of the other member: ``found`` unites them.
    con.create(
        "roster_pairs",
        f"""
        SELECT sd.case_key, o.person_key AS contact, ru.rule, ru.rule_zh, ru.strength,
               r.grp AS place, sd.ws AS os, sd.we AS oe, sd.via,
               [r.record_id, o.record_id] AS evidence
        FROM {seeds} sd JOIN roster r ON r.person_key = sd.person
        JOIN rules ru ON ru.kind = r.kind AND ru.source = 'setting' {second}
        JOIN groups g ON g.grp = r.grp
        JOIN roster o ON o.grp = r.grp AND o.person_key <> sd.person
        LEFT JOIN open_windows w ON w.ws = sd.ws AND w.we = sd.we AND w.rule = ru.rule
        WHERE (ru.max_members IS NULL OR g.members <= ru.max_members)
          AND (NOT ru.working_days OR w.rule IS NOT NULL)
        """,  # noqa: S608 - our table name and constants
    )
    # The seeds' own stays inside their windows, each distinct visit once: household members
    # who are all cases share rides and carriages, and the join should not run for each.
    con.create(
        "seed_stays",
        f"""
        SELECT sd.case_key, sd.person, sd.via, p.record_id, p.place, p.place_kind,
               greatest(p.s, sd.ws) AS s, least(p.e, sd.we) AS e, p.carriage, p."row"
        FROM {seeds} sd JOIN pres p ON p.person_key = sd.person AND p.s < sd.we AND p.e > sd.ws
        JOIN rules ru ON ru.kind = p.place_kind AND ru.source = 'presence' {second}
        """,  # noqa: S608 - our table name and constants
    )
    con.create(
        "visits",
        """
        SELECT row_number() OVER (ORDER BY place, s, e, carriage, "row") AS visit,
               place, place_kind, s, e, carriage, "row"
        FROM (SELECT DISTINCT place, place_kind, s, e, carriage, "row" FROM seed_stays) d
        """,
    )
    # Every bucket a stay covers (a stay ends after it starts, so the series is never empty).
    con.create(
        "visit_buckets",
        """
        SELECT v.visit, v.place,
               unnest(generate_series(v.s // ru.bucket_s, v.e // ru.bucket_s)) AS b
        FROM visits v JOIN rules ru ON ru.kind = v.place_kind AND ru.source = 'presence'
        """,
    )
    # Candidates only at the places visited and inside the span of the visits there.
    con.create(
        "cand_buckets",
        """
        WITH span AS (SELECT place, min(s) AS s, max(e) AS e FROM visits GROUP BY place)
        SELECT p.record_id, p.person_key, p.place, p.s, p.e, p.carriage, p."row",
               unnest(generate_series(greatest(p.s, span.s) // ru.bucket_s,
                                      least(p.e, span.e) // ru.bucket_s)) AS b
        FROM pres p JOIN span ON span.place = p.place AND p.s < span.e AND p.e > span.s
        JOIN rules ru ON ru.kind = p.place_kind AND ru.source = 'presence'
        """,
    )
    con.create(
        "crowd",
        """
        SELECT place, b, count(DISTINCT person_key) AS people
        FROM cand_buckets GROUP BY place, b
        """,
    )
    con.create(
        "visit_pairs",
        """
        SELECT DISTINCT v.visit, c.record_id, c.person_key,
               greatest(v.s, c.s) AS os, least(v.e, c.e) AS oe
        FROM visit_buckets vb
        JOIN cand_buckets c ON c.place = vb.place AND c.b = vb.b
        JOIN crowd cr ON cr.place = vb.place AND cr.b = vb.b
        JOIN visits v ON v.visit = vb.visit
        JOIN rules ru ON ru.kind = v.place_kind AND ru.source = 'presence'
        WHERE least(v.e, c.e) - greatest(v.s, c.s) >= greatest(ru.min_overlap_s, 1)
          AND (NOT ru.same_carriage OR c.carriage = v.carriage)
          AND (ru.rows_apart IS NULL OR abs(c."row" - v."row") <= ru.rows_apart)
          AND (ru.crowd_cap IS NULL OR cr.people <= ru.crowd_cap)
        """,
    )
    con.create(
        "presence_pairs",
        """
        SELECT ss.case_key, vp.person_key AS contact, ru.rule, ru.rule_zh, ru.strength,
               ss.place, vp.os, vp.oe, ss.via, [ss.record_id, vp.record_id] AS evidence
        FROM seed_stays ss
        JOIN visits v ON v.place = ss.place AND v.s = ss.s AND v.e = ss.e
             AND v.carriage IS NOT DISTINCT FROM ss.carriage
             AND v."row" IS NOT DISTINCT FROM ss."row"
        JOIN visit_pairs vp ON vp.visit = v.visit
        JOIN rules ru ON ru.kind = ss.place_kind AND ru.source = 'presence'
        WHERE vp.person_key <> ss.person
        """,
    )
    columns = "case_key, contact, rule, rule_zh, strength, place, os, oe, via, evidence"
    con.create(
        "found",
        f"""
        SELECT case_key, contact, CAST({hop} AS TINYINT) AS hop, rule, rule_zh, strength, place,
               min(os) AS os, max(oe) AS oe, min(via) AS via,
               list_sort(list_distinct(flatten(list(evidence)))) AS evidence
        FROM (SELECT {columns} FROM roster_pairs UNION ALL SELECT {columns} FROM presence_pairs) p
        WHERE contact <> case_key
        GROUP BY case_key, contact, rule, rule_zh, strength, place
        """,  # noqa: S608 - constants
    )


def close_contacts(
    paths: LakePaths,
    database: Database,
    cases: list[int],
    *,
    hops: int = 1,
    window_days_before: int = 2,
    window_days_after: int = 1,
    since: datetime | None = None,
    keys: Path | None = None,
    rules: list[ContactRule] | None = None,
    engine: Engine | None = None,
    index: PresenceIndex | None = None,
) -> pa.Table:
    """Close contacts (hop 1) and, with ``hops=2``, secondary contacts (hop 2) of ``cases``
    (person keys).

    A case's window starts ``window_days_before`` days before it was found (its earliest case
    report or positive test in the lake; ``since`` for a case the lake has none for) and ends
    ``window_days_after`` days after. A secondary contact shares a second-hop rule with a strong
    close contact between that contact's first exposure and the end of the case's window.

    One row per case, contact, rule and place (columns as ``OUTPUT_SCHEMA``): ``hop``; ``rule``
    and ``rule_zh`` (its Chinese name); ``strength`` (``strong`` or ``weak``, weak being a lead
    only); ``place`` (a place, or ``kind/setting/...`` of a roster group); ``start`` and
    ``end`` of the shared time; ``via`` (for hop 2, the close contact linking them);
    ``evidence`` (the lake record ids of both sides). Sorted, so equal input gives equal output.
    The queries run on ``engine`` (default DuckDB; ``SparkEngine`` gives the same table).
    With ``index`` (``presence_index``, synced with the lake and these keys) presence is read
    from it, only the stays each hop needs, instead of scanning the lake: the same table.
    """
    if hops not in (1, 2):
        raise ValueError("hops must be 1 or 2")
    rules = rules if rules is not None else load_rules()
    with _connect(engine, _keys_path(paths, database, keys), paths) as con:
        found_at = dict(_case_times(con))
        wanted = sorted(set(cases))
        anchors: list[datetime] = []
        for case in wanted:
            anchor = found_at.get(case, since)
            if anchor is None:
                raise ValueError(f"no case report or positive test for person key {case}")
            anchors.append(anchor)
        before = timedelta(days=window_days_before)
        after = timedelta(days=window_days_after)
        starts = [_epoch(a - before) for a in anchors]
        ends = [_epoch(a + after) for a in anchors]
        con.register("rules", _rules_table(rules))
        # Second-hop windows lie inside the first hop's: one calendar serves both.
        first, last = (min(starts) // 86400, (max(ends) - 1) // 86400) if wanted else (0, -1)
        con.register("open_days", _open_days(rules, first, last))
        con.register(
            "seeds_1",
            pa.table(
                {
                    "case_key": pa.array(wanted, pa.int64()),
                    "person": pa.array(wanted, pa.int64()),
                    "ws": pa.array(starts, pa.int64()),
                    "we": pa.array(ends, pa.int64()),
                    "via": pa.array([None] * len(wanted), pa.int64()),
                }
            ),
        )
        _load_evidence(con, paths, index)
        if index is not None:
            _indexed_presence(con, index, "seeds_1", rules, 1)
        _find(con, "seeds_1", 1)
        con.create("result", "SELECT * FROM found")
        if hops == 2:
            # The second hop starts from strong close contacts only: a weak lead (a shared cell)
            # is not someone to trace further, or two hops would reach the whole city.
            con.create(
                "seeds_2",
                """
                SELECT f.case_key, f.contact AS person, min(f.os) AS ws, max(s.we) AS we,
                       f.contact AS via
                FROM result f JOIN seeds_1 s ON s.case_key = f.case_key
                JOIN rules ru ON ru.rule = f.rule
                WHERE f.strength = 'strong' AND ru.second_hop
                GROUP BY f.case_key, f.contact
                """,
            )
            if index is not None:
                _indexed_presence(con, index, "seeds_2", rules, 2)
            _find(con, "seeds_2", 2)
            con.create(
                "result_2",
                """
                SELECT * FROM result
                UNION ALL
                SELECT f.* FROM found f
                WHERE NOT EXISTS (SELECT 1 FROM seeds_1 s WHERE s.case_key = f.contact)
                  AND NOT EXISTS (SELECT 1 FROM result r
                                  WHERE r.case_key = f.case_key AND r.contact = f.contact)
                """,
            )
        table = con.fetch(
            f"""
            SELECT case_key AS "case", contact, hop, rule, rule_zh, strength, place,
                   os AS "start", oe AS "end", via, evidence
            FROM {"result_2" if hops == 2 else "result"}
            ORDER BY "case", hop, contact, rule, place, "start"
            """  # noqa: S608 - our table names
        )
    # Epoch seconds to the lake's naive wall-clock timestamps, the same on either engine.
    for name in ("start", "end"):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, table.column(name).cast(pa.timestamp("s")))
    return table.cast(OUTPUT_SCHEMA)


_EPOCH_DAY = date(1970, 1, 1)


def _epoch(moment: datetime) -> int:
    # Lake timestamps are naive wall-clock times, read by both engines as if UTC: so here too,
    # whatever the machine's time zone.
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return int(moment.replace(tzinfo=UTC).timestamp())


def _from_epoch(seconds: int) -> datetime:
    # The inverse of _epoch: a naive wall-clock time, as the lake holds them.
    return datetime(1970, 1, 1) + timedelta(seconds=seconds)


def contact_quality(
    paths: LakePaths,
    database: Database,
    truth_dir: Path,
    keys_path: Path | None = None,
    *,
    window_days_before: int = 2,
) -> dict[str, Any]:
    """Contact tracing of every case in the lake scored against the simulator's truth.

    Reads the truth Parquet files by path (never the simulator's code). Person keys map to the
    true person holding most of their records. Returned: ``cases`` (lake cases found in the
    truth); ``infectee_recall`` (true infectees of those cases, infected in a setting the feeds
    cover, a household counting only when the registry lists both people in it, listed at hop
    1), ``infectee_recall_covered_settings`` (visitors staying in households too) and
    ``infectee_recall_all`` (any setting), the first and last also ``_strong``
    (strong rules only); ``exposure_recall`` and ``precision`` (hop-1 pairs against the true
    exposures), also ``_strong``; ``second_hop_share_max`` / ``_mean`` (hop-2 contacts per case
    over the population); ``first_hop_mean``; ``seconds`` for hop 1 and for two hops.
    """
    keys = _keys_path(paths, database, keys_path)
    found = cases_in_lake(paths, database, keys)
    case_keys = [k for k, _ in found]
    started = time.perf_counter()
    close_contacts(paths, database, case_keys, keys=keys, window_days_before=window_days_before)
    seconds_one = time.perf_counter() - started
    started = time.perf_counter()
    table = close_contacts(
        paths, database, case_keys, hops=2, keys=keys, window_days_before=window_days_before
    )
    seconds_two = time.perf_counter() - started
    con = duckdb.connect()
    try:
        con.register("found", table)
        load_record_owners(con, database, truth_dir)
        con.execute(
            f"""
            CREATE TEMP TABLE who AS
            SELECT person_key, arg_max(person_id, n) AS person_id FROM (
                SELECT k.person_key, o.person_id, count(*) AS n
                FROM read_parquet('{keys}') k JOIN owner o USING (record_id) GROUP BY ALL)
            GROUP BY person_key
            """  # noqa: S608 - our path
        )
        con.register("case_keys", pa.table({"person_key": pa.array(case_keys, pa.int64())}))
        con.execute(
            "CREATE TEMP TABLE case_ids AS SELECT DISTINCT w.person_id FROM who w"
            " SEMI JOIN case_keys USING (person_key)"
        )
        con.execute(
            """
            CREATE TEMP TABLE listed AS
            SELECT DISTINCT c.person_id AS case_id, t.person_id AS contact_id, f.hop,
                   f.strength = 'strong' AS strong
            FROM found f JOIN who c ON c.person_key = f."case"
            JOIN who t ON t.person_key = f.contact
            """
        )
        covered = ", ".join(f"'{s}'" for s in sorted(COVERED_SETTINGS))

        def recall(condition: str, strong_only: bool) -> tuple[float, int]:
            strong = "AND l.strong" if strong_only else ""
            ((hit, total),) = con.execute(
                f"""
                SELECT count(*) FILTER (WHERE EXISTS (
                           SELECT 1 FROM listed l WHERE l.hop = 1 {strong}
                           AND l.case_id = i.infector_id AND l.contact_id = i.infectee_id)),
                       count(*)
                FROM read_parquet('{truth_dir / "infections.parquet"}') i
                WHERE i.infector_id IN (SELECT person_id FROM case_ids) {condition}
                """  # noqa: S608 - our paths and constants
            ).fetchall()
            return (hit / total if total else 1.0), int(total)

        def exposure(strong_only: bool) -> tuple[float, float]:
            strong = "AND l.strong" if strong_only else ""
            ((hit, total, good, listed),) = con.execute(
                f"""
                WITH e AS (SELECT DISTINCT case_id, contact_id
                           FROM read_parquet('{truth_dir / "exposures.parquet"}')
                           WHERE case_id IN (SELECT person_id FROM case_ids)),
                     l AS (SELECT DISTINCT case_id, contact_id FROM listed l
                           WHERE l.hop = 1 {strong})
                SELECT (SELECT count(*) FROM e SEMI JOIN l USING (case_id, contact_id)),
                       (SELECT count(*) FROM e),
                       (SELECT count(*) FROM l SEMI JOIN e USING (case_id, contact_id)),
                       (SELECT count(*) FROM l)
                """  # noqa: S608 - our paths
            ).fetchall()
            return (hit / total if total else 1.0), (good / listed if listed else 1.0)

        ((population,),) = con.execute(
            f"SELECT count(*) FROM read_parquet('{truth_dir / 'persons.parquet'}')"  # noqa: S608
        ).fetchall()
        per_case = con.execute(
            """
            SELECT count(DISTINCT contact) FILTER (WHERE hop = 2),
                   count(DISTINCT contact) FILTER (WHERE hop = 1)
            FROM found GROUP BY "case"
            """
        ).fetchall()
        persons = truth_dir / "persons.parquet"
        # A household the registry covers holds both people: a visitor staying with a family
        # (an imported case back from Wuhan at relatives') is in no roster of it.
        registered = (
            f"AND i.setting IN ({covered}) AND (i.setting <> 'household' OR EXISTS ("  # noqa: S608 - our path
            f"SELECT 1 FROM read_parquet('{persons}') a, read_parquet('{persons}') b"
            " WHERE a.person_id = i.infector_id AND b.person_id = i.infectee_id"
            " AND a.household = b.household AND a.household >= 0))"
        )
        covered_recall, covered_total = recall(registered, False)
        covered_strong, _ = recall(registered, True)
        setting_recall, setting_total = recall(f"AND i.setting IN ({covered})", False)
        all_recall, all_total = recall("", False)
        all_strong, _ = recall("", True)
        exp_recall, precision = exposure(False)
        exp_recall_strong, precision_strong = exposure(True)
    finally:
        con.close()
    second = [n2 / population for n2, _ in per_case] or [0.0]
    return {
        "cases": len(case_keys),
        "infectees_covered": covered_total,
        "infectee_recall": covered_recall,
        "infectee_recall_strong": covered_strong,
        "infectees_covered_settings": setting_total,
        "infectee_recall_covered_settings": setting_recall,
        "infectees_all": all_total,
        "infectee_recall_all": all_recall,
        "infectee_recall_all_strong": all_strong,
        "exposure_recall": exp_recall,
        "exposure_recall_strong": exp_recall_strong,
        "precision": precision,
        "precision_strong": precision_strong,
        "first_hop_mean": sum(n1 for _, n1 in per_case) / len(case_keys) if case_keys else 0.0,
        "second_hop_share_max": max(second),
        "second_hop_share_mean": sum(second) / len(case_keys) if case_keys else 0.0,
        "population": int(population),
        "rows": table.num_rows,
        "seconds_one_hop": seconds_one,
        "seconds_two_hops": seconds_two,
    }
