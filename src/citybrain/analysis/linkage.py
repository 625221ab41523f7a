"""Identity linkage (身份关联): one person key per real person across every source.

The lake holds each record's keyed hashes of the identifiers it carried (resident ID, passport,
phone, transit card, plate); the linkage store holds the names, decrypted here in memory only.
Linkage gives every accepted record a person key and the rule that placed it, written as
``analysis/person_keys.parquet`` (``record_id``, ``person_key``, ``rule``).

Deterministic rules, strongest first:

``id`` / ``passport``
    A valid resident ID (intake quarantines wrong check characters) is one person, and so is a
    passport; a record carrying both ties them together (connected components).
``phone`` / ``phone+name``
    Families share phones and people keep two, so a phone is never an identity of its own: a
    record with a phone but no ID joins the ID-person whose records carry that phone only when
    exactly one ID-person does (``phone``), or, on a family phone, when its name is that of
    exactly one of the family members seen with the phone, up to one mistyped character
    (``phone+name``). A name that contradicts the phone's only ID-person keeps the record apart.
    Rosters whose phone is a guardian's (pupils, care homes) are no evidence of whose it is.
``phone_pair``
    The operator's own records of a line (cell stays) are its holder's. Two lines whose stays
    coincide are one holder's two phones: a line no ID was seen with joins its twin's person
    (never merging two ID-persons).
``phone_holder`` / ``phone_trip``
    A family phone's line (its operator records) is held by the one ID-person seen with the
    phone who is old enough to hold a line (12, the linkage store's birth dates), else by the one
    such person short of 76; every ID-person of the phone must have a known birth date. A ride
    booked on that phone whose start comes 2-11 minutes after the line left a cell is the
    holder's trip (about four in five are; the other family members' rides stay alone).
``card`` / ``plate``
    A transit card or a plate joins the one person the records carrying it were already linked
    to; a card or plate seen with two people links nobody.
``card_trace``
    A card never seen next to a person (no tap carried a phone) joins the person whose phone
    lines left a cell 3-11 minutes before its tap-ins, in a cell the stop is seen next to (the
    stop-cell association and the walk are learnt from the phone-bound cards' taps against their
    lines' stays), when that person explains at least 3 of its tap-ins and twice as many as the
    runner-up. Cards join persons, never persons each other: two ID-persons are never merged.
``phone_shared``, ``phone_alone``, ``card_alone``, ``plate_alone``, ``single``
    What no rule could place: an operator's records on a family phone or on a line no ID-person
    gave group by the line; a card or plate never seen next to a person groups by itself; a ride
    booked on a family number, or a record with no identifier, is a person alone.

A person key is the smallest record id among the person's records: the same lake gives the same
keys on every run, whatever order the parts are read in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from citybrain.core.audit.service import Actor, record
from citybrain.core.events.service import publish
from citybrain.datahub.lake import KIND_COLUMNS, LakePaths
from citybrain.datahub.vault import Vault
from citybrain.kit.db import Database

OUTPUT = Path("analysis", "person_keys.parquet")
TOPIC_LINKED = "analysis.persons_linked"
# Sources whose phone is the line the operator serves, not a number someone quoted: all their
# records on one phone are that line's holder, even when a family gives the number as theirs.
LINE_SOURCES = frozenset({"telecom_cell", "telecom_itinerary", "telecom_roaming"})
# Registers whose phone is a guardian's or relative's contact number, not the person's own: a
# pupil's roster gives a parent's phone. They say nothing about whose a phone is.
CONTACT_SOURCES = frozenset({"student_roster", "elderly_care"})
OUTPUT_SCHEMA = pa.schema(
    [("record_id", pa.int64()), ("person_key", pa.int64()), ("rule", pa.string())]
)
# Characters a clerk or a form adds to a name that do not make it another name: spaces, the
# middle dot of transliterated names in its several code points.
_NAME_NOISE = r"[\s·•‧・.\-]"
# Names agreeing up to one substituted character are the same name: the commonest keying
# mistake is a look-alike or sound-alike character.
_NAME_EDITS = 1


@dataclass
class LinkageSummary:
    """What one linkage run produced."""

    path: Path
    records: int
    persons: int
    rules: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        """Plain figures for logs and the CLI."""
        return {
            "path": str(self.path),
            "records": self.records,
            "persons": self.persons,
            "rules": dict(self.rules),
            "seconds": round(self.seconds, 3),
        }


def components(
    size: int, left: npt.NDArray[np.int64], right: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """The connected components of a graph of ``size`` nodes and edges ``left[i]–right[i]``:
    per node, the smallest node of its component.

    Minimum-label propagation with pointer jumping, whole arrays at a time: a few passes even for
    long chains, and no Python loop over nodes or edges.
    """
    labels = np.arange(size, dtype=np.int64)
    if len(left) == 0:
        return labels
    while True:
        low = np.minimum(labels[left], labels[right])
        before = labels.copy()
        np.minimum.at(labels, left, low)
        np.minimum.at(labels, right, low)
        # Pointer jumping: follow labels to their own labels until they stop moving, so a chain
        # of n nodes settles in O(log n) passes instead of n.
        while True:
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped
        if np.array_equal(labels, before):
            return labels


def _lake_sources(paths: LakePaths) -> list[str]:
    """Globs of the lake kinds that hold any part."""
    return [
        paths.glob(kind)
        for kind in KIND_COLUMNS
        if paths.kind_dir(kind).exists() and any(paths.kind_dir(kind).rglob("*.parquet"))
    ]


def normalise_names(names: pa.Array) -> pa.Array:
    """Names as compared: compatibility-normalised (full-width letters become ASCII), without
    spaces or middle dots, upper-cased (pinyin and foreign names); empty names become null."""
    names = pc.utf8_normalize(names.cast(pa.string()), "NFKC")
    names = pc.utf8_upper(pc.replace_substring_regex(names, _NAME_NOISE, ""))
    empty = pc.fill_null(pc.equal(pc.utf8_length(names), 0), False)
    return pc.if_else(empty, pa.scalar(None, pa.string()), names)


def _names(paths: LakePaths, vault: Vault) -> pa.Table:
    """``record_id`` and normalised ``name`` of every record the linkage store names."""
    parts = sorted(paths.linkage.rglob("*.parquet")) if paths.linkage.exists() else []
    tables = []
    for part in parts:
        table = vault.read(part, columns=["record_id", "name", "birth_date"])
        names = table.column("name")
        if names.null_count == table.num_rows:
            continue  # sources without names (telecom, ride hailing): nothing to carry
        named = table.filter(pc.is_valid(names))
        tables.append(
            pa.table(
                {
                    "record_id": named.column("record_id"),
                    "name": normalise_names(named.column("name").combine_chunks()),
                    "birth": named.column("birth_date").cast(pa.date32()),
                }
            )
        )
    if not tables:
        return pa.table(
            {
                "record_id": pa.array([], pa.int64()),
                "name": pa.array([], pa.string()),
                "birth": pa.array([], pa.date32()),
            }
        )
    return pa.concat_tables(tables)


def _anchor_components(con: duckdb.DuckDBPyConnection) -> None:
    """``anchor``: per resident ID and passport hash, the component it belongs to."""
    con.execute(
        """
        CREATE TEMP TABLE anchor_node AS
        SELECT kind, value, (row_number() OVER (ORDER BY kind, value) - 1)::BIGINT AS node
        FROM (
            SELECT DISTINCT 'i' AS kind, id AS value FROM rec WHERE id IS NOT NULL
            UNION ALL
            SELECT DISTINCT 'p', pp FROM rec WHERE pp IS NOT NULL
        )
        """
    )
    ((size,),) = con.execute("SELECT count(*) FROM anchor_node").fetchall()
    edges = con.sql(
        """
        SELECT DISTINCT i.node AS l, p.node AS r
        FROM rec
        JOIN anchor_node i ON i.kind = 'i' AND i.value = rec.id
        JOIN anchor_node p ON p.kind = 'p' AND p.value = rec.pp
        """
    ).to_arrow_table()
    left = edges.column("l").to_numpy().astype(np.int64)
    right = edges.column("r").to_numpy().astype(np.int64)
    labels = components(int(size), left, right)
    con.register("anchor_label", pa.table({"node": np.arange(len(labels)), "anchor": labels}))
    con.execute(
        """
        CREATE TEMP TABLE anchor AS
        SELECT n.kind, n.value, l.anchor FROM anchor_node n JOIN anchor_label l USING (node)
        """
    )
    con.unregister("anchor_label")


# A line's holder is of an age to hold one (the operators sell no line to children under 12);
# beyond the second figure people more often share a relative's phone than hold their own.
_HOLDER_AGE = (12, 76)
# A car booked on a phone comes a few minutes after the booking: a trip that starts between this
# many minutes and the walk's longest after the line left a cell is the holder's.
_TRIP_WAIT = 2
# Card traces: a tap-in comes this many minutes after its holder's phone left the last cell
# (the walk to the stop), read off the phone-bound cards' taps against their lines' stays.
_TRACE_WALK = (3, 11)
# A card joins a person whose lines explain at least this many of its tap-ins, and at least this
# many times as many as the runner-up's. Chosen on the 20,000-person city (30 days), where cards
# so placed went to their true holder 3,366 times in 3,373 (2 and 1.5 let in more mistakes).
_TRACE_MIN_TAPS = 3
_TRACE_MARGIN = 2


_RESOLVE = f"""
-- 1. Resident ID, else passport: the record's anchor component.
CREATE TEMP TABLE placed AS
SELECT rec.*,
       coalesce(ai.anchor, ap.anchor) AS anchor,
       CASE WHEN ai.anchor IS NOT NULL THEN 'id' WHEN ap.anchor IS NOT NULL THEN 'passport' END
           AS rule
FROM rec
LEFT JOIN anchor ai ON ai.kind = 'i' AND ai.value = rec.id
LEFT JOIN anchor ap ON ap.kind = 'p' AND ap.value = rec.pp;

-- 2. Phones: which ID-persons (with which names) the anchored records carrying them belong to.
CREATE TEMP TABLE phone_person AS
SELECT ph, anchor, list(DISTINCT name) FILTER (WHERE name IS NOT NULL) AS names
FROM placed WHERE ph IS NOT NULL AND anchor IS NOT NULL AND NOT contact GROUP BY ph, anchor;
CREATE TEMP TABLE phone_owner AS
SELECT ph, count(*) AS persons, min(anchor) AS anchor FROM phone_person GROUP BY ph;

-- A phone record's name against each ID-person of its phone: 2 same name, 1 one character
-- off (a typo), 0 another name, NULL nothing to compare.
CREATE TEMP TABLE phone_name AS
SELECT r.record_id, pp.anchor,
       max(CASE WHEN n = r.name THEN 2
                WHEN length(n) = length(r.name) AND levenshtein(n, r.name) <= {_NAME_EDITS}
                THEN 1 ELSE 0 END) AS agree
FROM placed r
JOIN phone_person pp USING (ph), unnest(pp.names) AS t(n)
WHERE r.anchor IS NULL AND r.name IS NOT NULL
GROUP BY r.record_id, pp.anchor;
-- Per record: the one ID-person whose name it bears best (exact beats a typo), if only one.
CREATE TEMP TABLE name_choice AS
SELECT record_id, min(anchor) AS anchor
FROM (
    SELECT record_id, anchor, agree FROM phone_name
    QUALIFY agree = max(agree) OVER (PARTITION BY record_id)
)
WHERE agree > 0
GROUP BY record_id
HAVING count(*) = 1;

-- The holder of a family phone: its one ID-person of an age to hold a line (children share a
-- parent's), else its one ID-person of that age short of old age; every ID-person of the phone
-- must have a known birth date, or nobody is chosen.
CREATE TEMP TABLE anchor_age AS
SELECT anchor,
       CASE WHEN count(DISTINCT birth) = 1
            THEN date_diff('day', min(birth), (SELECT max(end_time) FROM stay)::DATE) / 365.25
       END AS age
FROM placed WHERE anchor IS NOT NULL AND birth IS NOT NULL GROUP BY anchor;
CREATE TEMP TABLE line_holder AS
SELECT ph,
       CASE WHEN count(*) FILTER (WHERE a.age >= {_HOLDER_AGE[0]}) = 1
            THEN min(pp.anchor) FILTER (WHERE a.age >= {_HOLDER_AGE[0]})
            ELSE min(pp.anchor)
                 FILTER (WHERE a.age >= {_HOLDER_AGE[0]} AND a.age < {_HOLDER_AGE[1]})
       END AS anchor
FROM phone_person pp JOIN phone_owner o USING (ph) LEFT JOIN anchor_age a ON a.anchor = pp.anchor
WHERE o.persons > 1
GROUP BY ph
HAVING count(a.age) = count(*)
   AND (count(*) FILTER (WHERE a.age >= {_HOLDER_AGE[0]}) = 1
        OR count(*) FILTER (WHERE a.age >= {_HOLDER_AGE[0]} AND a.age < {_HOLDER_AGE[1]}) = 1);

CREATE TEMP TABLE phoned_first AS
SELECT p.record_id, p.id, p.pp, p.ph, p.cd, p.pl, p.name, p.device,
       CASE
           WHEN p.anchor IS NOT NULL THEN 'a' || p.anchor
           WHEN p.ph IS NULL THEN NULL
           WHEN nc.anchor IS NOT NULL THEN 'a' || nc.anchor
           WHEN o.persons = 1 AND p.name IS NULL THEN 'a' || o.anchor
           -- A family phone, a phone no ID-person was seen with, or a relative's name on one
           -- person's phone names no one. The line's own records are its holder's; a card
           -- registered with a phone no ID-person gave is most likely the line holder's; a
           -- card on a family phone decides by itself; anything else (a ride booked on the
           -- family number) stays alone.
           WHEN p.device AND h.anchor IS NOT NULL THEN 'a' || h.anchor
           WHEN p.device THEN 'f' || hex(p.ph)
           WHEN o.persons IS NULL AND p.cd IS NOT NULL THEN 'f' || hex(p.ph)
           WHEN p.cd IS NOT NULL THEN NULL
           WHEN h.anchor IS NOT NULL AND pt.record_id IS NOT NULL THEN 'a' || h.anchor
           ELSE 'r' || p.record_id
       END AS key,
       CASE
           WHEN p.anchor IS NOT NULL THEN p.rule
           WHEN p.ph IS NULL THEN NULL
           WHEN nc.anchor IS NOT NULL THEN 'phone+name'
           WHEN o.persons = 1 AND p.name IS NULL THEN 'phone'
           WHEN p.device AND h.anchor IS NOT NULL THEN 'phone_holder'
           WHEN o.persons IS NULL THEN 'phone_alone'
           WHEN p.cd IS NOT NULL AND NOT p.device THEN NULL
           WHEN h.anchor IS NOT NULL AND pt.record_id IS NOT NULL THEN 'phone_trip'
           ELSE 'phone_shared'
       END AS rule
FROM placed p
LEFT JOIN phone_owner o USING (ph)
LEFT JOIN name_choice nc USING (record_id)
LEFT JOIN line_holder h USING (ph)
LEFT JOIN phone_trip pt USING (record_id);

-- 2b. Two lines of one holder: phones whose cell stays coincide (see _line_twins). A line no
-- ID was seen with joins its twin's person; two ID-persons are never merged this way.
CREATE TEMP TABLE line_key AS
SELECT ph, min(key) AS key FROM phoned_first WHERE device AND ph IS NOT NULL GROUP BY ph;
CREATE TEMP TABLE twin_map AS
SELECT DISTINCT
       CASE WHEN kb.key LIKE 'a%' OR (ka.key NOT LIKE 'a%' AND kb.key < ka.key)
            THEN ka.key ELSE kb.key END AS from_key,
       CASE WHEN kb.key LIKE 'a%' OR (ka.key NOT LIKE 'a%' AND kb.key < ka.key)
            THEN kb.key ELSE ka.key END AS to_key
FROM line_twin t
JOIN line_key ka ON ka.ph = t.a
JOIN line_key kb ON kb.ph = t.b
WHERE ka.key <> kb.key AND NOT (ka.key LIKE 'a%' AND kb.key LIKE 'a%');
CREATE TEMP TABLE phoned AS
SELECT p.* REPLACE (coalesce(m.to_key, p.key) AS key,
                    CASE WHEN m.to_key IS NOT NULL THEN 'phone_pair' ELSE p.rule END AS rule)
FROM phoned_first p LEFT JOIN twin_map m ON m.from_key = p.key;

-- 3. Transit cards, then plates: the one person the records carrying one were linked to.
CREATE TEMP TABLE card_owner AS
SELECT cd, count(DISTINCT key) AS persons, min(key) AS key
FROM phoned WHERE cd IS NOT NULL AND key IS NOT NULL GROUP BY cd;

-- 3a. A card never seen next to a person: the line whose stays end just before its taps (see
-- _card_traces), counted per person the line belongs to, when that person explains enough of
-- its taps and clearly more than any other.
CREATE TEMP TABLE trace_line_key AS
SELECT ph, min(key) AS key FROM phoned WHERE device AND ph IS NOT NULL GROUP BY ph;
CREATE TEMP TABLE trace_score AS
SELECT t.cd, k.key, count(DISTINCT t.record_id) AS hits
FROM card_trace t JOIN trace_line_key k USING (ph)
WHERE t.cd NOT IN (SELECT cd FROM card_owner)
GROUP BY t.cd, k.key;
CREATE TEMP TABLE trace_choice AS
SELECT cd, key FROM (
    SELECT cd, key, hits,
           row_number() OVER (PARTITION BY cd ORDER BY hits DESC, key) AS rank,
           lead(hits) OVER (PARTITION BY cd ORDER BY hits DESC, key) AS runner
    FROM trace_score
)
WHERE rank = 1 AND hits >= {_TRACE_MIN_TAPS} AND hits >= {_TRACE_MARGIN} * coalesce(runner, 0);

CREATE TEMP TABLE carded AS
SELECT p.record_id, p.pl,
       CASE WHEN p.key IS NOT NULL THEN p.key
            WHEN p.cd IS NULL THEN NULL
            WHEN o.persons = 1 THEN o.key
            WHEN tc.key IS NOT NULL THEN tc.key
            ELSE 'c' || hex(p.cd) END AS key,
       CASE WHEN p.key IS NOT NULL THEN p.rule
            WHEN p.cd IS NULL THEN NULL
            WHEN o.persons = 1 THEN 'card'
            WHEN tc.key IS NOT NULL THEN 'card_trace'
            ELSE 'card_alone' END AS rule
FROM phoned p LEFT JOIN card_owner o USING (cd) LEFT JOIN trace_choice tc USING (cd);

CREATE TEMP TABLE plate_owner AS
SELECT pl, count(DISTINCT key) AS persons, min(key) AS key
FROM carded WHERE pl IS NOT NULL AND key IS NOT NULL GROUP BY pl;
CREATE TEMP TABLE keyed AS
SELECT p.record_id,
       CASE WHEN p.key IS NOT NULL THEN p.key
            WHEN p.pl IS NULL THEN 'r' || p.record_id
            WHEN o.persons = 1 THEN o.key
            ELSE 'v' || hex(p.pl) END AS key,
       CASE WHEN p.key IS NOT NULL THEN p.rule
            WHEN p.pl IS NULL THEN 'single'
            WHEN o.persons = 1 THEN 'plate'
            ELSE 'plate_alone' END AS rule
FROM carded p LEFT JOIN plate_owner o USING (pl);
"""  # noqa: S608 - only our constants are interpolated


# Phones whose operator records (cell stays) coincide, to the second, in place, start and end, are
# two lines one person carries. Whole days in one cell (someone home all day) are left out: a
# family at home shares those. The thresholds were read off the 20,000-person city, where two
# lines of one holder share 95-100% of their stays and different people rarely above 90%.
_TWIN_MIN_STAYS = 5
_TWIN_SHARE = 0.95


def _line_twins(con: duckdb.DuckDBPyConnection, paths: LakePaths) -> None:
    """``line_twin(a, b)``: pairs of phones (both orders) whose stays coincide, each phone
    having exactly one such partner (a phone matching two others is ambiguous)."""
    folders = [
        paths.kind_dir("presence") / f"category={c}"
        for c in sorted(LINE_SOURCES)
        if (paths.kind_dir("presence") / f"category={c}").exists()
    ]
    if not folders:
        con.execute(
            "CREATE TEMP TABLE stay (ph BLOB, place VARCHAR, start_time TIMESTAMP,"
            " end_time TIMESTAMP); CREATE TEMP TABLE line_twin (a BLOB, b BLOB)"
        )
        return
    listed = ", ".join(f"'{f}/**/*.parquet'" for f in folders)
    con.execute(
        f"""
        CREATE TEMP TABLE stay AS
        SELECT DISTINCT phone_hmac AS ph, place, start_time, end_time
        FROM read_parquet([{listed}], union_by_name = true, hive_partitioning = false)
        WHERE phone_hmac IS NOT NULL AND place IS NOT NULL AND start_time IS NOT NULL
          AND NOT (start_time = date_trunc('day', start_time)
                   AND coalesce(end_time, start_time)
                       >= date_trunc('day', start_time) + INTERVAL 86399 SECOND);
        CREATE TEMP TABLE stays AS SELECT ph, count(*) AS n FROM stay GROUP BY ph;
        CREATE TEMP TABLE strong AS
        SELECT x.a, x.b FROM (
            SELECT s.ph AS a, t.ph AS b, count(*) AS shared
            FROM stay s JOIN stay t USING (place, start_time, end_time)
            WHERE s.ph <> t.ph GROUP BY ALL
        ) x
        JOIN stays sa ON sa.ph = x.a JOIN stays sb ON sb.ph = x.b
        WHERE x.shared >= {_TWIN_MIN_STAYS}
          AND x.shared >= {_TWIN_SHARE} * least(sa.n, sb.n);
        CREATE TEMP TABLE line_twin AS
        SELECT a, b FROM strong
        WHERE a IN (SELECT a FROM strong GROUP BY a HAVING count(*) = 1)
          AND b IN (SELECT a FROM strong GROUP BY a HAVING count(*) = 1);
        """  # noqa: S608 - our lake paths and constants
    )


def _card_traces(con: duckdb.DuckDBPyConnection, paths: LakePaths) -> None:
    """``card_trace(cd, record_id, ph)``: per tap-in of a card no tap of which carried a phone,
    the lines that left a cell the stop is seen next to a few minutes before it (after
    ``_line_twins``, whose ``stay`` it reads).

    Which cells a stop is next to is learnt from the cards bound to a phone: the cells their
    lines left within the walk before their tap-ins. No map is needed and the association
    follows the city's own data.
    """
    presence = paths.kind_dir("presence")
    if not presence.exists() or not any(presence.rglob("*.parquet")):
        con.execute(
            "CREATE TEMP TABLE card_trace (cd BLOB, record_id BIGINT, ph BLOB);"
            " CREATE TEMP TABLE phone_trip (record_id BIGINT)"
        )
        return
    low, high = _TRACE_WALK
    devices = ", ".join(f"'{c}'" for c in sorted(LINE_SOURCES))
    con.execute(
        f"""
        CREATE TEMP TABLE tap AS
        SELECT record_id, phone_hmac AS ph, card_hmac AS cd, place, start_time AS t
        FROM read_parquet('{paths.glob("presence")}', union_by_name = true,
                          hive_partitioning = true)
        WHERE card_hmac IS NOT NULL AND place IS NOT NULL AND start_time IS NOT NULL
          AND direction = 'in';
        -- Trips booked on a phone (ride hailing) that start within the walk after the line
        -- itself left a cell: the line's holder went.
        CREATE TEMP TABLE phone_trip AS
        SELECT DISTINCT b.record_id
        FROM read_parquet('{paths.glob("presence")}', union_by_name = true,
                          hive_partitioning = true) b
        JOIN stay s ON s.ph = b.phone_hmac
         AND s.end_time BETWEEN b.start_time - INTERVAL {high} MINUTE
                            AND b.start_time - INTERVAL {_TRIP_WAIT} MINUTE
        WHERE b.phone_hmac IS NOT NULL AND b.card_hmac IS NULL
          AND b.category NOT IN ({devices}) AND b.start_time IS NOT NULL;
        CREATE TEMP TABLE stop_cell AS
        SELECT DISTINCT t.place AS stop, s.place AS cell
        FROM tap t JOIN stay s ON s.ph = t.ph
         AND s.end_time BETWEEN t.t - INTERVAL {high} MINUTE AND t.t - INTERVAL {low} MINUTE
        WHERE t.ph IS NOT NULL;
        -- Equality on (cell, minute) rather than a range: one probe per minute of the walk.
        CREATE TEMP TABLE stay_left AS
        SELECT ph, place AS cell, end_time, (epoch(end_time) // 60)::BIGINT AS minute
        FROM stay WHERE place IN (SELECT cell FROM stop_cell);
        CREATE TEMP TABLE card_trace AS
        SELECT DISTINCT t.cd, t.record_id, s.ph
        FROM (
            SELECT tap.*, c.cell, (epoch(tap.t) // 60)::BIGINT - w AS minute
            FROM tap JOIN stop_cell c ON c.stop = tap.place, range({low}, {high} + 1) AS r(w)
            WHERE tap.cd NOT IN (SELECT cd FROM tap WHERE ph IS NOT NULL)
        ) t
        JOIN stay_left s USING (cell, minute)
        WHERE s.end_time BETWEEN t.t - INTERVAL {high} MINUTE AND t.t - INTERVAL {low} MINUTE;
        """  # noqa: S608 - our lake paths and constants
    )


def link(paths: LakePaths, database: Database, out: Path | None = None) -> LinkageSummary:
    """Give every record in the lake a person key; write ``record_id``, ``person_key``,
    ``rule`` to ``out`` (default ``analysis/person_keys.parquet`` under the data directory).

    ``database`` is the platform's; linkage reads nothing from it yet (the lake and the linkage
    store are self-contained), but takes it so that recording runs needs no new signature.
    """
    del database  # see the docstring
    started = time.perf_counter()
    target = out or paths.root / OUTPUT
    sources = _lake_sources(paths)
    names = _names(paths, Vault())
    con = duckdb.connect()
    try:
        con.register("record_name", names)
        if sources:
            listed = ", ".join(f"'{s}'" for s in sources)
            devices = ", ".join(f"'{c}'" for c in sorted(LINE_SOURCES))
            contacts = ", ".join(f"'{c}'" for c in sorted(CONTACT_SOURCES))
            # A source of two kinds writes the same record in both: one row per record.
            con.execute(
                f"""
                CREATE TEMP TABLE rec AS
                SELECT r.*, n.name, n.birth FROM (
                    SELECT record_id, any_value(id_hmac) AS id, any_value(passport_hmac) AS pp,
                           any_value(phone_hmac) AS ph, any_value(card_hmac) AS cd,
                           any_value(plate_hmac) AS pl,
                           bool_or(category IN ({devices})) AS device,
                           bool_or(category IN ({contacts})) AS contact
                    FROM read_parquet([{listed}], union_by_name = true, hive_partitioning = true)
                    GROUP BY record_id
                ) r LEFT JOIN record_name n USING (record_id)
                """  # noqa: S608 - our lake paths and category codes
            )
        else:
            con.execute(
                "CREATE TEMP TABLE rec (record_id BIGINT, id BLOB, pp BLOB, ph BLOB, cd BLOB,"
                " pl BLOB, device BOOLEAN, contact BOOLEAN, name VARCHAR, birth DATE)"
            )
        _anchor_components(con)
        _line_twins(con, paths)
        _card_traces(con, paths)
        con.execute(_RESOLVE)
        result = con.sql(
            """
            SELECT record_id, min(record_id) OVER (PARTITION BY key) AS person_key, rule
            FROM keyed ORDER BY record_id
            """
        ).to_arrow_table()
        rules = dict(
            con.execute("SELECT rule, count(*) FROM keyed GROUP BY rule ORDER BY rule").fetchall()
        )
    finally:
        con.close()
    table = result.cast(OUTPUT_SCHEMA)
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = target.with_name(f".{target.name}.part")
    pq.write_table(table, aside, compression="zstd")
    aside.replace(target)  # readers never see half a file
    persons = len(pc.unique(table.column("person_key"))) if table.num_rows else 0
    return LinkageSummary(
        path=target,
        records=table.num_rows,
        persons=persons,
        rules={str(k): int(v) for k, v in rules.items()},
        seconds=time.perf_counter() - started,
    )


def run_linkage(paths: LakePaths, database: Database, actor: Actor) -> LinkageSummary:
    """Link the whole lake and record the run: an audit row (the job read the linkage store's
    personal data, decrypted in memory) and an outbox event for what waits on person keys."""
    summary = link(paths, database)
    counts = {"records": summary.records, "persons": summary.persons, "rules": summary.rules}
    with database.unit_of_work() as session:
        record(
            session,
            actor,
            "analysis.link",
            object_type="person_keys",
            object_id=str(OUTPUT),
            purpose="identity linkage 身份关联",
            detail=counts,
        )
        publish(session, TOPIC_LINKED, counts)
    return summary
