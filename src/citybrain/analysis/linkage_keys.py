"""Person keys that stay put from one linkage run to the next.

A first run names each person by the smallest record id among their records. Later runs (new
files, or the same lake again) keep the names the previous output gave:

- a person whose records all had one key keeps it, and new records of theirs join it;
- when records under several earlier keys turn out to be one person, the person keeps the
  smallest of those keys and the others are recorded as merged into it;
- when an earlier key's records turn out to be two people (new evidence showed a phone to be a
  family's), the key stays with the part holding most of its records and the other part gets a
  new key, recorded as split from it;
- a person none of whose records had a key gets the smallest of their record ids that is no
  key in use (else its negation: a record id is never negative).

Every merge and split is appended to the changes table beside the output (``kind``,
``from_key``, ``to_key``, ``records``, ``at``), so an investigator following an old key finds
where its records went. The partition of records into persons is the linkage's alone: only
the names of the parts come from history.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

CHANGES_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        ("from_key", pa.int64()),
        ("to_key", pa.int64()),
        ("records", pa.int64()),
        ("at", pa.timestamp("s")),
    ]
)


def changes_path(target: Path) -> Path:
    """Where the merges and splits of the person keys at ``target`` are recorded."""
    return target.with_name(f"{target.stem}_changes.parquet")


def assign(con: duckdb.DuckDBPyConnection, previous: Path | None) -> tuple[int, int]:
    """Turn temp table ``resolved(record_id, key)`` (``key``: any label of the record's
    person) into ``person(record_id, person_key)``, keeping the names ``previous`` (an earlier
    output, if any) gave; and fill ``key_change`` with this run's merges and splits.

    Returns the numbers of merges and splits.
    """
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE grp AS
        SELECT record_id, key, min(record_id) OVER (PARTITION BY key) AS first FROM resolved;
        CREATE OR REPLACE TEMP TABLE key_change
            (kind VARCHAR, from_key BIGINT, to_key BIGINT, records BIGINT);
        """
    )
    if previous is None or not previous.exists():
        con.execute(
            "CREATE OR REPLACE TEMP TABLE person AS SELECT record_id, first AS person_key FROM grp"
        )
        return 0, 0
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE prev AS
        SELECT record_id, person_key AS old FROM read_parquet('{previous}');
        -- How many of each earlier key's records every group holds.
        CREATE OR REPLACE TEMP TABLE share AS
        SELECT g.key, g.first, p.old, count(*) AS n
        FROM grp g JOIN prev p USING (record_id) GROUP BY g.key, g.first, p.old;
        -- An earlier key goes to the group holding most of its records (ties: the group with
        -- the smallest record).
        CREATE OR REPLACE TEMP TABLE heir AS
        SELECT old, key FROM (
            SELECT old, key,
                   row_number() OVER (PARTITION BY old ORDER BY n DESC, first) AS rank
            FROM share
        ) WHERE rank = 1;
        CREATE OR REPLACE TEMP TABLE inherited AS
        SELECT key, min(old) AS person_key FROM heir GROUP BY key;
        -- Groups inheriting no key: the smallest record id, else its negation, not in use.
        CREATE OR REPLACE TEMP TABLE taken AS
        SELECT DISTINCT old AS k FROM prev;
        CREATE OR REPLACE TEMP TABLE orphan AS
        SELECT g.key, g.record_id FROM grp g ANTI JOIN inherited i USING (key);
        CREATE OR REPLACE TEMP TABLE minted AS
        SELECT key, min(c) AS person_key FROM (
            SELECT key, record_id AS c FROM orphan
            UNION ALL
            SELECT key, -record_id FROM orphan
        ) x ANTI JOIN taken t ON t.k = x.c
        GROUP BY key;
        CREATE OR REPLACE TEMP TABLE person AS
        SELECT g.record_id, coalesce(i.person_key, m.person_key) AS person_key
        FROM grp g LEFT JOIN inherited i USING (key) LEFT JOIN minted m USING (key);
        INSERT INTO key_change
        SELECT 'merge', h.old, i.person_key, s.n
        FROM heir h JOIN inherited i USING (key) JOIN share s USING (old, key)
        WHERE h.old <> i.person_key;
        INSERT INTO key_change
        SELECT 'split', s.old, coalesce(i.person_key, m.person_key), s.n
        FROM share s JOIN heir h USING (old)
        LEFT JOIN inherited i ON i.key = s.key LEFT JOIN minted m ON m.key = s.key
        WHERE s.key <> h.key;
        """  # noqa: S608 - our path
    )
    ((merges, splits),) = con.execute(
        "SELECT count(*) FILTER (WHERE kind = 'merge'), count(*) FILTER (WHERE kind = 'split')"
        " FROM key_change"
    ).fetchall()
    return int(merges), int(splits)


def record_changes(con: duckdb.DuckDBPyConnection, target: Path, at: dt.datetime) -> None:
    """Append this run's ``key_change`` rows to the changes table beside ``target`` (created
    empty on the first run, so readers always find it)."""
    path = changes_path(target)
    fresh = con.sql(
        "SELECT kind, from_key, to_key, records FROM key_change ORDER BY kind, from_key, to_key"
    ).to_arrow_table()
    fresh = fresh.append_column("at", pa.array([at] * fresh.num_rows, pa.timestamp("s")))
    table = fresh.cast(CHANGES_SCHEMA)
    if path.exists():
        table = pa.concat_tables([pq.read_table(path).cast(CHANGES_SCHEMA), table])
    aside = path.with_name(f".{path.name}.part")
    pq.write_table(table, aside, compression="zstd")
    aside.replace(path)
