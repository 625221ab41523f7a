"""Identity linkage (身份关联): one person key per real person across every source.

The lake holds each record's keyed hashes of the identifiers it carried (resident ID, passport,
phone, transit card, plate); the linkage store holds the names, birth dates, sexes and
addresses, decrypted here in memory only (the job's DuckDB connection may not spill to disk).
Linkage gives every accepted record a person key, the rule that placed it and the evidence it
was placed on, written as ``analysis/person_keys.parquet``.

Rules, strongest first (all but ``probabilistic`` deterministic):

``id`` / ``passport``
    A valid resident ID (intake quarantines wrong check characters) is one person, and so is a
    passport; a record carrying both ties them together (connected components).
``probabilistic``
    A record with a name but no ID or passport (a hotline tip, a clerk's register) joins the
    ID-person its name, birth date, sex, address and phone match best, when Splink's match
    probability is high and no other ID-person comes close (see ``linkage_probabilistic``).
``phone``
    Families share phones and people keep two, so a phone is never an identity of its own: a
    nameless record with a phone but no ID joins the ID-person whose records carry that phone
    only when exactly one ID-person does. Rosters whose phone is a guardian's (pupils, care
    homes) are no evidence of whose it is.
``phone_pair``
    The operator's own records of a line (cell stays) are its holder's. Two lines whose stays
    coincide are one holder's two phones: a line no ID was seen with joins its twin's person
    (never merging two ID-persons).
``phone_holder``
    A family phone's line (its operator records) is held by the one ID-person seen with the
    phone who is old enough to hold a line (12, the linkage store's birth dates), else by the one
    such person short of 76; every ID-person of the phone must have a known birth date.
``card`` / ``plate``
    A transit card or a plate joins the one person the records carrying it were already linked
    to; a card or plate seen with two people links nobody.
``card_trace``
    A card never seen next to a person (no tap carried a phone) joins the person whose phone
    lines left a cell 3-11 minutes before its tap-ins, in a cell the stop is seen next to, when
    that person explains at least 3 of its tap-ins and twice as many as the runner-up (see
    ``linkage_evidence``). Cards join persons, never persons each other.
``ride_holder`` / ``ride_other``
    A ride booked on a family phone is its line holder's when the line left a cell 2-11 minutes
    before the pickup, no stay of the line runs through the pickup, no other ride on the phone
    within half an hour could be the one, and none of the holder's cards tapped in within half
    an hour (they went by bus or metro). It is the phone's other ID-person's when the phone
    has exactly two and the line sat in one cell all through the 11 minutes before the pickup
    (the holder did not go). On the 20,000-person city the first is right 86% of the time (the
    line's holder and a family member often leave home together), the second 99.7%.
``phone_shared``, ``phone_alone``, ``card_alone``, ``plate_alone``, ``single``
    What no rule could place: an operator's records on a family phone or on a line no ID-person
    gave group by the line; a card or plate never seen next to a person groups by itself; a ride
    booked on a family number, or a record with no identifier, is a person alone.

Evidence, per output row (so an investigator can follow why two records are one person):
``via`` is the kind of identifier or evidence the record was placed through (``id``,
``passport``, ``phone``, ``line``, ``card``, ``plate``, ``name``), ``via_hash`` its keyed hash
as in the lake (for ``line``: the line that bore it out, the twin line or the line that left a
cell before the card's tap-ins or the ride),
``via_record`` a record of the same person the match went through (another record with the same
ID; the ID-person's first record with the phone; the twin line's stay; the stay the line left
before the tap-in or ride; the ID-person's record the name matched), ``support`` how many
events bore it out (stays shared by twin lines, tap-ins a line explained) and ``probability``
Splink's match probability for ``probabilistic`` placements.

Runs are incremental (see ``linkage_keys`` and ``linkage_evidence``): a re-run keeps the person
keys of the previous output and records merges and splits; it does nothing when no lake part
changed, and otherwise reads only the lake parts added since (the rest of the records' hashes
come from a cache) and recomputes the behavioural evidence only for the days they fell on.
Names are decrypted, and the rules and the probabilistic model run, over the whole lake each
time, so the partition is always the one a first run would give.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from citybrain.analysis import linkage_evidence, linkage_keys, linkage_probabilistic
from citybrain.analysis.linkage_evidence import LINE_SOURCES
from citybrain.core.audit.service import Actor, record
from citybrain.core.events.service import publish
from citybrain.datahub.lake import KIND_COLUMNS, LakePaths
from citybrain.datahub.vault import Vault
from citybrain.kit.db import Database

OUTPUT = Path("analysis", "person_keys.parquet")
TOPIC_LINKED = "analysis.persons_linked"
# Registers whose phone is a guardian's or relative's contact number, not the person's own: a
# pupil's roster gives a parent's phone. They say nothing about whose a phone is.
CONTACT_SOURCES = frozenset({"student_roster", "elderly_care"})
OUTPUT_SCHEMA = pa.schema(
    [
        ("record_id", pa.int64()),
        ("person_key", pa.int64()),
        ("rule", pa.string()),
        ("via", pa.string()),
        ("via_hash", pa.binary()),
        ("via_record", pa.int64()),
        ("support", pa.int64()),
        ("probability", pa.float64()),
    ]
)
# Bump when the output's meaning changes: the state of another version is not reused.
STATE_VERSION = 1
# Characters a clerk or a form adds to a name that do not make it another name: spaces, the
# middle dot of transliterated names in its several code points.
_NAME_NOISE = r"[\s·•‧・.\-]"


@dataclass
class LinkageSummary:
    """What one linkage run produced."""

    path: Path
    records: int
    persons: int
    rules: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    # Incremental runs: lake parts not read before, days whose evidence was computed or taken
    # from the cache, keys merged into others or split, and whether nothing had changed.
    new_parts: int = 0
    days_computed: int = 0
    days_cached: int = 0
    merges: int = 0
    splits: int = 0
    unchanged: bool = False

    def as_dict(self) -> dict[str, object]:
        """Plain figures for logs and the CLI."""
        return {
            "path": str(self.path),
            "records": self.records,
            "persons": self.persons,
            "rules": dict(self.rules),
            "seconds": round(self.seconds, 3),
            "new_parts": self.new_parts,
            "days_computed": self.days_computed,
            "days_cached": self.days_cached,
            "merges": self.merges,
            "splits": self.splits,
            "unchanged": self.unchanged,
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


_NAMED_SCHEMA = pa.schema(
    [
        ("record_id", pa.int64()),
        ("name", pa.string()),
        ("birth", pa.date32()),
        ("sex", pa.string()),
        ("address", pa.string()),
    ]
)


def _names(paths: LakePaths, vault: Vault) -> pa.Table:
    """``record_id``, normalised ``name``, ``birth``, ``sex`` and ``address`` of every record the
    linkage store names, decrypted in memory."""
    parts = sorted(paths.linkage.rglob("*.parquet")) if paths.linkage.exists() else []
    tables = []
    for part in parts:
        table = vault.read(part, columns=["record_id", "name", "birth_date", "sex", "address"])
        names = table.column("name")
        if names.null_count == table.num_rows:
            continue  # sources without names (telecom, ride hailing): nothing to carry
        named = table.filter(pc.is_valid(names))
        tables.append(
            pa.table(
                [
                    named.column("record_id"),
                    normalise_names(named.column("name").combine_chunks()),
                    named.column("birth_date").cast(pa.date32()),
                    named.column("sex").cast(pa.string()),
                    named.column("address").cast(pa.string()),
                ],
                schema=_NAMED_SCHEMA,
            )
        )
    return pa.concat_tables(tables) if tables else _NAMED_SCHEMA.empty_table()


def _anchor_components(con: duckdb.DuckDBPyConnection) -> None:
    """``anchor``: per resident ID and passport hash, the component it belongs to, and the
    first two records that carry it (``r1``, ``r2``: a record's evidence names the other)."""
    con.execute(
        """
        CREATE TEMP TABLE anchor_value AS
        SELECT kind, value, min(record_id, 2) AS firsts FROM (
            SELECT 'i' AS kind, id AS value, record_id FROM rec WHERE id IS NOT NULL
            UNION ALL
            SELECT 'p', pp, record_id FROM rec WHERE pp IS NOT NULL
        ) GROUP BY kind, value;
        CREATE TEMP TABLE anchor_node AS
        SELECT kind, value, firsts[1] AS r1, firsts[2] AS r2,
               (row_number() OVER (ORDER BY kind, value) - 1)::BIGINT AS node
        FROM anchor_value
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
        SELECT n.kind, n.value, l.anchor, n.r1, n.r2
        FROM anchor_node n JOIN anchor_label l USING (node)
        """
    )
    con.unregister("anchor_label")


# A line's holder is of an age to hold one (the operators sell no line to children under 12);
# beyond the second figure people more often share a relative's phone than hold their own.
_HOLDER_AGE = (12, 76)
# A card joins a person whose lines explain at least this many of its tap-ins, and at least this
# many times as many as the runner-up's. Chosen on the 20,000-person city (30 days), where cards
# so placed went to their true holder 3,366 times in 3,373 (2 and 1.5 let in more mistakes).
_TRACE_MIN_TAPS = 3
_TRACE_MARGIN = 2
# A ride is not its line holder's when another ride on the phone starts within this many
# minutes (one of the two is someone else's), or when the holder's card taps in within it.
_RIDE_APART = 30


def _ev(
    rule: str,
    via: str | None = None,
    hash_: str = "NULL",
    rec: str = "NULL",
    support: str = "NULL",
    probability: str = "NULL",
) -> str:
    """A SQL struct literal of a record's placement: the rule and its evidence."""
    via_sql = f"'{via}'" if via else "NULL"
    return (
        f"{{'rule': '{rule}', 'via': {via_sql}, 'hash': {hash_}::BLOB, 'rec': {rec}::BIGINT,"
        f" 'support': {support}::BIGINT, 'probability': {probability}::DOUBLE}}"
    )


_PLACE = f"""
-- 1. Resident ID, else passport: the record's anchor component; its evidence is another record
-- with the same ID (or passport).
CREATE TEMP TABLE placed AS
SELECT rec.*,
       coalesce(ai.anchor, ap.anchor) AS anchor,
       CASE WHEN ai.anchor IS NOT NULL THEN
                {
    _ev("id", "id", "rec.id", "CASE WHEN rec.record_id = ai.r1 THEN ai.r2 ELSE ai.r1 END")
}
            WHEN ap.anchor IS NOT NULL THEN
                {
    _ev(
        "passport",
        "passport",
        "rec.pp",
        "CASE WHEN rec.record_id = ap.r1 THEN ap.r2 ELSE ap.r1 END",
    )
}
       END AS ev
FROM rec
LEFT JOIN anchor ai ON ai.kind = 'i' AND ai.value = rec.id
LEFT JOIN anchor ap ON ap.kind = 'p' AND ap.value = rec.pp;

-- 2. Phones: which ID-persons the anchored records carrying them belong to.
CREATE TEMP TABLE phone_person AS
SELECT ph, anchor, min(record_id) AS rec
FROM placed WHERE ph IS NOT NULL AND anchor IS NOT NULL AND NOT contact GROUP BY ph, anchor;
CREATE TEMP TABLE phone_owner AS
SELECT ph, count(*) AS persons, min(anchor) AS anchor, arg_min(rec, anchor) AS rec
FROM phone_person GROUP BY ph;

-- The holder of a family phone: its one ID-person of an age to hold a line (children share a
-- parent's), else its one ID-person of that age short of old age; every ID-person of the phone
-- must have a known birth date, or nobody is chosen.
CREATE TEMP TABLE anchor_age AS
SELECT anchor,
       CASE WHEN count(DISTINCT birth) = 1
            THEN date_diff('day', min(birth), getvariable('reference_day')) / 365.25
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
CREATE TEMP TABLE holder AS
SELECT h.ph, h.anchor, pp.rec FROM line_holder h JOIN phone_person pp USING (ph, anchor);

-- What the probabilistic part compares (a guardian's phone on a roster is not the person's).
CREATE TEMP TABLE named AS
SELECT record_id, anchor, name, birth, sex, address,
       CASE WHEN contact THEN NULL ELSE hex(ph) END AS phone
FROM placed WHERE name IS NOT NULL;
"""  # noqa: S608 - only our constants are interpolated

_RESOLVE = f"""
CREATE TEMP TABLE phoned_first AS
SELECT p.record_id, p.ph, p.cd, p.pl, p.device,
       CASE
           WHEN p.anchor IS NOT NULL THEN 'a' || p.anchor
           WHEN m.anchor IS NOT NULL THEN 'a' || m.anchor
           WHEN p.ph IS NULL THEN NULL
           WHEN o.persons = 1 AND p.name IS NULL THEN 'a' || o.anchor
           -- A family phone, a phone no ID-person was seen with, or a relative's name on one
           -- person's phone names no one. The line's own records are its holder's; a card
           -- registered with a phone no ID-person gave is most likely the line holder's; a
           -- card on a family phone decides by itself; anything else (a ride booked on the
           -- family number) stays alone until the rides are looked at (step 5).
           WHEN p.device AND h.anchor IS NOT NULL THEN 'a' || h.anchor
           WHEN p.device THEN 'f' || hex(p.ph)
           WHEN o.persons IS NULL AND p.cd IS NOT NULL THEN 'f' || hex(p.ph)
           WHEN p.cd IS NOT NULL THEN NULL
           ELSE 'r' || p.record_id
       END AS key,
       CASE
           WHEN p.anchor IS NOT NULL THEN p.ev
           WHEN m.anchor IS NOT NULL THEN
               {_ev("probabilistic", "name", rec="m.via_record", probability="m.probability")}
           WHEN p.ph IS NULL THEN NULL
           WHEN o.persons = 1 AND p.name IS NULL THEN {_ev("phone", "phone", "p.ph", "o.rec")}
           WHEN p.device AND h.anchor IS NOT NULL THEN
               {_ev("phone_holder", "phone", "p.ph", "h.rec")}
           WHEN o.persons IS NULL THEN {_ev("phone_alone", "phone", "p.ph")}
           WHEN p.cd IS NOT NULL AND NOT p.device THEN NULL
           ELSE {_ev("phone_shared", "phone", "p.ph")}
       END AS ev
FROM placed p
LEFT JOIN phone_owner o USING (ph)
LEFT JOIN prob_choice m USING (record_id)
LEFT JOIN holder h USING (ph);

-- 2b. Two lines of one holder: phones whose cell stays coincide. A line no ID was seen with
-- joins its twin's person; two ID-persons are never merged this way. The evidence is the twin
-- line, one of its stays and the number of stays the two share.
CREATE TEMP TABLE line_key AS
SELECT ph, min(key) AS key FROM phoned_first WHERE device AND ph IS NOT NULL GROUP BY ph;
CREATE TEMP TABLE twin_map AS
SELECT DISTINCT ON (from_key) ka.key AS from_key, kb.key AS to_key, t.b AS via, t.rec, t.shared
FROM line_twin t
JOIN line_key ka ON ka.ph = t.a
JOIN line_key kb ON kb.ph = t.b
WHERE ka.key <> kb.key AND NOT (ka.key LIKE 'a%' AND kb.key LIKE 'a%')
  -- b's person is the one both lines go to: an ID-person's, else the smaller label.
  AND (kb.key LIKE 'a%' OR (ka.key NOT LIKE 'a%' AND kb.key < ka.key))
ORDER BY from_key, to_key;
CREATE TEMP TABLE phoned AS
SELECT p.* REPLACE (
           coalesce(m.to_key, p.key) AS key,
           CASE WHEN m.to_key IS NOT NULL
                THEN {_ev("phone_pair", "line", "m.via", "m.rec", "m.shared")}
                ELSE p.ev END AS ev)
FROM phoned_first p LEFT JOIN twin_map m ON m.from_key = p.key;

-- 3. Transit cards, then plates: the one person the records carrying one were linked to.
CREATE TEMP TABLE card_owner AS
SELECT cd, count(DISTINCT key) AS persons, min(key) AS key, min(record_id) AS rec
FROM phoned WHERE cd IS NOT NULL AND key IS NOT NULL GROUP BY cd;

-- 3a. A card never seen next to a person: the lines whose stays end just before its taps
-- (linkage_evidence), counted per person the line belongs to, when that person explains
-- enough of its taps and clearly more than any other.
CREATE TEMP TABLE trace_line_key AS
SELECT ph, min(key) AS key FROM phoned WHERE device AND ph IS NOT NULL GROUP BY ph;
CREATE TEMP TABLE trace_score AS
SELECT t.cd, k.key, count(DISTINCT t.record_id) AS hits, min(t.ph) AS ph, min(t.stay) AS stay
FROM card_trace t JOIN trace_line_key k USING (ph)
WHERE t.cd NOT IN (SELECT cd FROM card_owner)
GROUP BY t.cd, k.key;
CREATE TEMP TABLE trace_choice AS
SELECT cd, key, hits, ph, stay FROM (
    SELECT *,
           row_number() OVER (PARTITION BY cd ORDER BY hits DESC, key) AS rank,
           lead(hits) OVER (PARTITION BY cd ORDER BY hits DESC, key) AS runner
    FROM trace_score
)
WHERE rank = 1 AND hits >= {_TRACE_MIN_TAPS} AND hits >= {_TRACE_MARGIN} * coalesce(runner, 0);

CREATE TEMP TABLE carded AS
SELECT p.record_id, p.ph, p.pl,
       CASE WHEN p.key IS NOT NULL THEN p.key
            WHEN p.cd IS NULL THEN NULL
            WHEN o.persons = 1 THEN o.key
            WHEN tc.key IS NOT NULL THEN tc.key
            ELSE 'c' || hex(p.cd) END AS key,
       CASE WHEN p.key IS NOT NULL THEN p.ev
            WHEN p.cd IS NULL THEN p.ev
            WHEN o.persons = 1 THEN {_ev("card", "card", "p.cd", "o.rec")}
            WHEN tc.key IS NOT NULL THEN
                {_ev("card_trace", "line", "tc.ph", "tc.stay", "tc.hits")}
            ELSE {_ev("card_alone", "card", "p.cd")} END AS ev
FROM phoned p LEFT JOIN card_owner o USING (cd) LEFT JOIN trace_choice tc USING (cd);

CREATE TEMP TABLE plate_owner AS
SELECT pl, count(DISTINCT key) AS persons, min(key) AS key, min(record_id) AS rec
FROM carded WHERE pl IS NOT NULL AND key IS NOT NULL GROUP BY pl;
CREATE TEMP TABLE keyed_first AS
SELECT p.record_id, p.ph,
       CASE WHEN p.key IS NOT NULL THEN p.key
            WHEN p.pl IS NULL THEN 'r' || p.record_id
            WHEN o.persons = 1 THEN o.key
            ELSE 'v' || hex(p.pl) END AS key,
       CASE WHEN p.key IS NOT NULL THEN p.ev
            WHEN p.pl IS NULL THEN coalesce(p.ev, {_ev("single")})
            WHEN o.persons = 1 THEN {_ev("plate", "plate", "p.pl", "o.rec")}
            ELSE {_ev("plate_alone", "plate", "p.pl")} END AS ev
FROM carded p LEFT JOIN plate_owner o USING (pl);

-- 5. Rides booked on a family phone with a known line holder (linkage_evidence.rides): the
-- holder's when the line left a cell just before the pickup and nothing says otherwise; the
-- phone's other ID-person's when the line sat still and the phone has only two.
CREATE TEMP TABLE tap_key AS
SELECT k.key, r.tap_t AS t FROM rec r JOIN keyed_first k USING (record_id)
WHERE r.tap_t IS NOT NULL;
CREATE TEMP TABLE ride_case AS
SELECT r.record_id, r.ph, r.s, r.dep_stay, r.spans_start, r.sat, h.anchor AS holder,
       o.persons
FROM ride r
JOIN keyed_first k ON k.record_id = r.record_id AND k.key = 'r' || r.record_id
JOIN holder h ON h.ph = r.ph
JOIN phone_owner o ON o.ph = r.ph;
CREATE TEMP TABLE ride_choice AS
SELECT c.record_id, 'a' || c.holder AS key,
       {_ev("ride_holder", "line", "c.ph", "c.dep_stay")} AS ev
FROM ride_case c
WHERE c.dep_stay IS NOT NULL AND NOT c.spans_start
  AND NOT EXISTS (
      SELECT 1 FROM ride_case d
      WHERE d.ph = c.ph AND d.record_id <> c.record_id AND d.dep_stay IS NOT NULL
        AND d.s BETWEEN c.s - INTERVAL {_RIDE_APART} MINUTE AND c.s + INTERVAL {_RIDE_APART} MINUTE)
  AND NOT EXISTS (
      SELECT 1 FROM tap_key t
      WHERE t.key = 'a' || c.holder
        AND t.t BETWEEN c.s - INTERVAL {_RIDE_APART} MINUTE AND c.s + INTERVAL {_RIDE_APART} MINUTE)
UNION ALL
SELECT c.record_id, 'a' || pp.anchor,
       {_ev("ride_other", "phone", "c.ph", "pp.rec")}
FROM ride_case c JOIN phone_person pp ON pp.ph = c.ph AND pp.anchor <> c.holder
WHERE c.sat AND c.persons = 2;
CREATE TEMP TABLE keyed_lines AS
SELECT k.record_id, coalesce(c.key, k.key) AS key, coalesce(c.ev, k.ev) AS ev
FROM keyed_first k LEFT JOIN ride_choice c USING (record_id);
-- The operator's records each take their line's placement.
CREATE TEMP TABLE keyed AS
SELECT * FROM keyed_lines
UNION ALL
SELECT l.record_id, k.key, k.ev FROM line_rec l JOIN keyed_lines k ON k.record_id = l.rep
WHERE l.record_id <> l.rep;
CREATE TEMP TABLE resolved AS SELECT record_id, key FROM keyed;
"""  # noqa: S608 - only our constants are interpolated


def _part_stamps(paths: LakePaths) -> dict[str, list[int]]:
    """Every lake and linkage-store part by its path under the data directory, with its size and
    modification time: parts are written once, so a stamp that changed means a part rewritten."""
    stamps = {}
    for top in (paths.lake, paths.linkage):
        if top.exists():
            for part in top.rglob("*.parquet"):
                stat = part.stat()
                stamps[str(part.relative_to(paths.root))] = [stat.st_size, stat.st_mtime_ns]
    return stamps


def _days_of(parts: set[str]) -> set[dt.date]:
    """The days presence parts among ``parts`` fall on (their ``day=`` folder)."""
    days = set()
    for part in parts:
        pieces = Path(part).parts
        if len(pieces) >= 5 and pieces[0] == "lake" and pieces[1] == "presence":
            days.add(dt.date.fromisoformat(pieces[3].removeprefix("day=")))
    return days


@dataclass
class _State:
    """What the previous run read: the lake and linkage-store parts (path: size and
    modification time) and the batches of the record cache."""

    parts: dict[str, list[int]]
    records: list[str]


def _state_of(state_dir: Path) -> _State | None:
    """The previous run's state, if it is of this version."""
    path = state_dir / "state.json"
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        if state.get("version") != STATE_VERSION or state.get("evidence") != _evidence_stamp():
            return None
        return _State(
            parts={str(k): [int(x) for x in v] for k, v in state["parts"].items()},
            records=[str(b) for b in state["records"]],
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a state half written or of an older shape: start over


def _evidence_stamp() -> list[object]:
    """What the cached evidence was computed with: another version or window is recomputed."""
    return [
        linkage_evidence.VERSION,
        list(linkage_evidence.TRACE_WALK),
        linkage_evidence.RIDE_WAIT,
    ]


def _summary_of(target: Path, started: float) -> LinkageSummary:
    """The figures of an existing output (a run that found nothing new)."""
    table = pq.read_table(target, columns=["person_key", "rule"])
    counts = table.group_by("rule").aggregate([("rule", "count")])
    rules = dict(
        zip(
            counts.column("rule").to_pylist(),
            counts.column("rule_count").to_pylist(),
            strict=True,
        )
    )
    return LinkageSummary(
        path=target,
        records=table.num_rows,
        persons=len(pc.unique(table.column("person_key"))) if table.num_rows else 0,
        rules={str(k): int(v) for k, v in sorted(rules.items())},
        seconds=time.perf_counter() - started,
        unchanged=True,
    )


def link(
    paths: LakePaths, database: Database, out: Path | None = None, *, reuse: bool = True
) -> LinkageSummary:
    """Give every record in the lake a person key; write ``record_id``, ``person_key``,
    ``rule`` and the evidence (``OUTPUT_SCHEMA``) to ``out`` (default
    ``analysis/person_keys.parquet`` under the data directory).

    A previous output at ``out`` names the persons (see ``linkage_keys``); the run's state and
    evidence cache live beside it in ``.<name>.state``. When no lake part changed since, the
    output stands as it is; when parts were only added, the evidence of the days they fell on is
    recomputed and the rest read from the cache. ``reuse=False`` recomputes all evidence (the
    keys still follow the previous output). The partition of records into persons is the same
    as a run on an empty state would give.

    ``database`` is the platform's; linkage reads nothing from it yet (the lake and the linkage
    store are self-contained), but takes it so that recording runs needs no new signature.
    """
    del database  # see the docstring
    started = time.perf_counter()
    target = out or paths.root / OUTPUT
    state_dir = target.with_name(f".{target.stem}.state")
    stamps = _part_stamps(paths)
    state = _state_of(state_dir) if target.exists() else None
    before = state.parts if state is not None else {}
    if state is not None and before == stamps and reuse:
        return _summary_of(target, started)
    new = set(stamps) - set(before)
    only_added = state is not None and all(stamps.get(p) == s for p, s in before.items())
    fresh = _days_of(new) if reuse and only_added else None
    batches = state.records if fresh is not None and state is not None else []

    names = _names(paths, Vault())
    con = duckdb.connect()
    try:
        # Decrypted names live in this connection only: never spill them to a temp file.
        con.execute("SET temp_directory = ''")
        con.register("record_name", names)
        batches = _record_ids(
            con, paths, new if fresh is not None else None, state_dir / "records", batches
        )
        _records(con)
        del names
        con.unregister("record_name")
        _anchor_components(con)
        evidence = linkage_evidence.build(con, paths, state_dir / "evidence", fresh)
        con.execute(f"SET VARIABLE reference_day = DATE '{_reference_day(paths).isoformat()}'")
        con.execute(_PLACE)
        linkage_probabilistic.match(con)
        con.execute("DROP TABLE named")
        con.execute(_RESOLVE)
        previous = target if target.exists() else None
        merges, splits = linkage_keys.assign(con, previous)
        result = con.sql(
            """
            SELECT p.record_id, p.person_key, k.ev.rule AS rule, k.ev.via AS via,
                   k.ev.hash AS via_hash, k.ev.rec AS via_record, k.ev.support AS support,
                   k.ev.probability AS probability
            FROM person p JOIN keyed k USING (record_id) ORDER BY p.record_id
            """
        ).to_arrow_table()
        rules = dict(
            con.execute(
                "SELECT ev.rule, count(*) FROM keyed GROUP BY ev.rule ORDER BY ev.rule"
            ).fetchall()
        )
        table = result.cast(OUTPUT_SCHEMA)
        target.parent.mkdir(parents=True, exist_ok=True)
        aside = target.with_name(f".{target.name}.part")
        pq.write_table(table, aside, compression="zstd")
        linkage_keys.record_changes(con, target, dt.datetime.now(dt.UTC).replace(tzinfo=None))
        aside.replace(target)  # readers never see half a file
    finally:
        con.close()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "state.json").write_text(
        json.dumps(
            {
                "version": STATE_VERSION,
                "evidence": _evidence_stamp(),
                "records": batches,
                "parts": stamps,
            }
        )
    )
    persons = len(pc.unique(table.column("person_key"))) if table.num_rows else 0
    return LinkageSummary(
        path=target,
        records=table.num_rows,
        persons=persons,
        rules={str(k): int(v) for k, v in rules.items()},
        seconds=time.perf_counter() - started,
        new_parts=len(new),
        days_computed=evidence.computed_days,
        days_cached=evidence.cached_days,
        merges=merges,
        splits=splits,
    )


def _reference_day(paths: LakePaths) -> dt.date:
    """The day ages are counted to: the day after the operators' last day of stays (their
    files end at midnight), today if the lake has none."""
    days = linkage_evidence.presence_days(paths)
    lines = set().union(*(days.get(c, set()) for c in LINE_SOURCES))
    return max(lines) + dt.timedelta(days=1) if lines else dt.date.today()


_REC_COLUMNS = (
    "record_id BIGINT, id BLOB, pp BLOB, ph BLOB, cd BLOB, pl BLOB, device BOOLEAN,"
    " contact BOOLEAN, tap_t TIMESTAMP"
)
# An incremental run adds a batch of records to the cache; this many batches are compacted.
_MAX_BATCHES = 8


def _record_ids(
    con: duckdb.DuckDBPyConnection,
    paths: LakePaths,
    new: set[str] | None,
    cache: Path,
    batches: list[str],
) -> list[str]:
    """``rec_ids``: one row per lake record with its identifier hashes, whether it is an
    operator's (``device``) or a guardian's contact (``contact``) and its tap-in time if it is a
    card's.

    The rows are kept in ``cache`` (keyed hashes, as in the lake), as the ``batches`` files the
    state lists: with ``new`` (the lake parts added since), only those parts are read and make
    one more batch; with None every part is read and the cache starts over. Returns the batches
    the state is to list.
    """
    kept = [cache / b for b in batches]
    if new is not None and all(b.exists() for b in kept):
        files = sorted(f"'{paths.root / p}'" for p in new if Path(p).parts[0] == "lake")
    else:
        new, kept, files = None, [], [f"'{s}'" for s in _lake_sources(paths)]
    devices = ", ".join(f"'{c}'" for c in sorted(LINE_SOURCES))
    contacts = ", ".join(f"'{c}'" for c in sorted(CONTACT_SOURCES))
    con.execute(f"CREATE OR REPLACE TEMP TABLE rec_new ({_REC_COLUMNS})")
    if files:
        # A source of two kinds writes the same record in both (the same file's parts, which
        # arrive together): one row per record.
        con.execute(
            f"""
            INSERT INTO rec_new
            SELECT record_id, any_value(id_hmac), any_value(passport_hmac),
                   any_value(phone_hmac), any_value(card_hmac), any_value(plate_hmac),
                   bool_or(category IN ({devices})), bool_or(category IN ({contacts})),
                   any_value(start_time) FILTER (WHERE card_hmac IS NOT NULL AND direction = 'in')
            FROM read_parquet([{", ".join(files)}], union_by_name = true,
                              hive_partitioning = true)
            GROUP BY record_id
            """  # noqa: S608 - our lake paths and category codes
        )
    listed = ", ".join(f"'{b}'" for b in kept)
    cached = f"UNION ALL SELECT * FROM read_parquet([{listed}])" if kept else ""  # noqa: S608
    con.execute(f"CREATE OR REPLACE TEMP TABLE rec_ids AS SELECT * FROM rec_new {cached}")  # noqa: S608
    if new is None or len(kept) >= _MAX_BATCHES:
        if cache.exists():
            shutil.rmtree(cache)
        kept, source = [], "rec_ids"
    else:
        source = "rec_new"
    cache.mkdir(parents=True, exist_ok=True)
    batch = cache / f"{uuid.uuid4().hex}.parquet"
    con.execute(f"COPY {source} TO '{batch}' (FORMAT parquet, COMPRESSION zstd)")
    return [p.name for p in kept] + [batch.name]


def _records(con: duckdb.DuckDBPyConnection) -> None:
    """``rec``: ``rec_ids`` with the linkage store's name, birth date, sex and address, the
    operator's records of a line collapsed to the line's first (``line_rec``: record and the
    line's first record)."""
    con.execute(
        """
        CREATE TEMP TABLE rec_all AS
        SELECT r.*, n.name, n.birth, n.sex, n.address
        FROM rec_ids r LEFT JOIN record_name n USING (record_id);
        DROP TABLE rec_ids;
        -- An operator's records that carry nothing but the line are placed alike, by the line:
        -- the rules see one of them (the line's first record) and the rest follow it.
        CREATE TEMP TABLE line_rec AS
        SELECT record_id, min(record_id) OVER (PARTITION BY ph) AS rep FROM rec_all
        WHERE device AND ph IS NOT NULL AND id IS NULL AND pp IS NULL AND cd IS NULL
          AND pl IS NULL AND name IS NULL;
        CREATE TEMP TABLE rec AS
        SELECT * FROM rec_all
        ANTI JOIN (SELECT record_id FROM line_rec WHERE record_id <> rep) USING (record_id);
        DROP TABLE rec_all;
        """
    )


def run_linkage(paths: LakePaths, database: Database, actor: Actor) -> LinkageSummary:
    """Link the lake (incrementally, see ``link``) and record the run: an audit row (the job
    read the linkage store's personal data, decrypted in memory) and an outbox event for what
    waits on person keys."""
    summary = link(paths, database)
    counts = {
        "records": summary.records,
        "persons": summary.persons,
        "rules": summary.rules,
        "merges": summary.merges,
        "splits": summary.splits,
        "unchanged": summary.unchanged,
    }
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
