"""How good identity linkage is, measured against the synthetic city's ground truth.

Only evaluation reads the truth (``truth/record_owner/<category>.parquet``: the feed file, the
line, the sheet and the person of every record the agencies sent). A lake record is matched to
its truth row by the ledger's file name and the line: ``record_id`` is the ledger id shifted
left 32 bits, or'ed with the line, and for workbooks the lake line is
``sheet_index * 1_048_576 + row``.

Pairwise figures: a pair of records is linked when both have one person key and true when both
belong to one person. Pairs are counted from the contingency table of (key, person) cells as
sums of n choose 2, never enumerated: precision = pairs linked and true / pairs linked, recall =
pairs linked and true / pairs true.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import select

from citybrain.analysis.linkage import OUTPUT
from citybrain.datahub.lake import LakePaths
from citybrain.datahub.models import IntakeFile
from citybrain.datahub.readers import SHEET_ROWS
from citybrain.kit.db import Database


def load_record_owners(
    con: duckdb.DuckDBPyConnection, database: Database, truth_dir: Path, table: str = "owner"
) -> None:
    """Create the temp table ``table`` (record_id, person_id, category): the true person of
    every lake record, matched by the ledger's file name and the line (workbook sheets apart:
    sheets are ordered as the truth lists their rows)."""
    with database.unit_of_work() as session:
        rows = session.execute(select(IntakeFile.id, IntakeFile.name, IntakeFile.category)).all()
    ledger = pa.table(
        {
            "ledger_id": pa.array([r[0] for r in rows], pa.int64()),
            "name": pa.array([r[1] for r in rows], pa.string()),
            "category": pa.array([r[2] for r in rows], pa.string()),
        }
    )
    owners = str(truth_dir / "record_owner" / "*.parquet")
    con.register("_ledger", ledger)
    try:
        con.execute(
            f"""
            CREATE TEMP TABLE {table} AS
            WITH t AS (
                SELECT file, line, sheet, person_id, filename, file_row_number
                FROM read_parquet('{owners}', filename = true, file_row_number = true)
            ), sheets AS (
                SELECT filename, file, sheet,
                       (row_number() OVER (PARTITION BY filename, file
                                           ORDER BY min(file_row_number)) - 1) AS sheet_index
                FROM t WHERE sheet IS NOT NULL GROUP BY filename, file, sheet
            )
            SELECT (l.ledger_id << 32)
                   | (t.line + coalesce(s.sheet_index, 0) * {SHEET_ROWS}) AS record_id,
                   t.person_id, l.category
            FROM t
            JOIN _ledger l ON l.name = t.file
            LEFT JOIN sheets s USING (filename, file, sheet)
            """  # noqa: S608 - our paths and table name
        )
    finally:
        con.unregister("_ledger")


def linkage_quality(
    paths: LakePaths, database: Database, truth_dir: Path, keys: Path | None = None
) -> dict[str, Any]:
    """Pairwise precision and recall of the person keys at ``keys`` (default: the linkage
    output under the data directory) against the truth in ``truth_dir``, with cluster figures
    and where the errors are.

    Returned: ``precision``, ``recall``, ``f1``; ``records`` (keyed), ``matched`` (keyed
    records found in the truth), ``persons`` (true persons among them), ``keys``;
    ``exact_persons`` (share of true persons whose records sit under one key holding nobody
    else's); ``split_by`` (records outside their person's main key, by category and rule) and
    ``merged_by`` (records in a key whose main person is someone else, by category and rule).

    Workbook sheets are ordered as the truth lists their rows (the simulator writes sheets in
    order); a workbook whose truth skips a whole sheet would shift the later sheets' lines.
    """
    keys = keys or paths.root / OUTPUT
    con = duckdb.connect()
    try:
        load_record_owners(con, database, truth_dir, "truth")
        con.execute(
            f"""
            CREATE TEMP TABLE joined AS
            SELECT k.record_id, k.person_key, k.rule, t.person_id, t.category
            FROM read_parquet('{keys}') k JOIN truth t USING (record_id)
            """  # noqa: S608 - our paths
        )
        ((records,),) = con.execute(
            f"SELECT count(*) FROM read_parquet('{keys}')"  # noqa: S608 - our path
        ).fetchall()
        ((linked_true, matched),) = con.execute(
            """
            SELECT sum(n * (n - 1) / 2)::DOUBLE, sum(n)::BIGINT FROM (
                SELECT count(*) AS n FROM joined GROUP BY person_key, person_id)
            """
        ).fetchall()
        ((linked, key_count),) = con.execute(
            "SELECT sum(n * (n - 1) / 2)::DOUBLE, count(*) FROM"
            " (SELECT count(*) AS n FROM joined GROUP BY person_key)"
        ).fetchall()
        ((true_pairs, person_count),) = con.execute(
            "SELECT sum(n * (n - 1) / 2)::DOUBLE, count(*) FROM"
            " (SELECT count(*) AS n FROM joined GROUP BY person_id)"
        ).fetchall()
        # A person is exact when all their records share one key and that key is theirs only.
        ((exact,),) = con.execute(
            """
            WITH per_person AS (
                SELECT person_id, count(DISTINCT person_key) AS keys, min(person_key) AS key
                FROM joined GROUP BY person_id),
            per_key AS (
                SELECT person_key, count(DISTINCT person_id) AS persons
                FROM joined GROUP BY person_key)
            SELECT count(*) FROM per_person p JOIN per_key k ON k.person_key = p.key
            WHERE p.keys = 1 AND k.persons = 1
            """
        ).fetchall()
        split_by = con.execute(
            """
            WITH main AS (
                SELECT person_id, arg_max(person_key, n) AS main_key FROM (
                    SELECT person_id, person_key, count(*) AS n FROM joined
                    GROUP BY person_id, person_key) GROUP BY person_id)
            SELECT category, rule, count(*) FROM joined j JOIN main m USING (person_id)
            WHERE j.person_key <> m.main_key GROUP BY category, rule ORDER BY 3 DESC
            """
        ).fetchall()
        merged_by = con.execute(
            """
            WITH main AS (
                SELECT person_key, arg_max(person_id, n) AS main_person FROM (
                    SELECT person_key, person_id, count(*) AS n FROM joined
                    GROUP BY person_key, person_id) GROUP BY person_key)
            SELECT category, rule, count(*) FROM joined j JOIN main m USING (person_key)
            WHERE j.person_id <> m.main_person GROUP BY category, rule ORDER BY 3 DESC
            """
        ).fetchall()
    finally:
        con.close()
    linked_true = float(linked_true or 0.0)
    precision = linked_true / linked if linked else 1.0
    recall = linked_true / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "records": int(records),
        "matched": int(matched or 0),
        "persons": int(person_count),
        "keys": int(key_count),
        "exact_persons": exact / person_count if person_count else 1.0,
        "split_by": [{"category": c, "rule": r, "records": int(n)} for c, r, n in split_by],
        "merged_by": [{"category": c, "rule": r, "records": int(n)} for c, r, n in merged_by],
    }
