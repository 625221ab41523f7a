"""The probabilistic part of identity linkage: records that carry a name but no valid resident ID
or passport, matched to the ID-persons with Splink (Fellegi-Sunter, DuckDB backend).

A hotline caller gives a name, a phone and an address; a clerk mistypes a character of a name.
No deterministic rule can say whose such a record is, but the comparison of its name, birth
date, sex, address and phone with each ID-person's can, weighted by how often each agreement
happens between records of one person (m) and of two different people (u):

- the model is trained on the named records the IDs already placed, which are labelled data:
  the prior and the m probabilities from the pairs of records of one ID-person, u from random
  pairs. (Expectation maximisation, Splink's unsupervised route, was tried first: agreement
  among one person's records is so nearly certain here that EM drove the m probability of a
  sex or compound disagreement to about 1e-306, which Splink rejects; the labels give the same
  model without the guesswork.)
- each record without an ID is compared with the ID-persons' profiles (per person and phone
  of theirs: the name, birth date, sex and address their records give most often) that share
  its phone, name, birth date, address, compound or its name but the last character (the
  commonest typo), and joins the ID-person it matches best when the match probability reaches
  ``PROBABILITY`` and no other ID-person comes within ``MARGIN`` of its match weight.

Names are compared character by character (DuckDB's edit distances count bytes, three to a
Chinese character): equal, one character different, or different. Addresses: equal, the same
compound (street and number), or different.

Everything runs on the linkage job's in-memory DuckDB connection: the decrypted names never
reach a file, and no Splink chart or model file is written.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    from splink import SettingsCreator

# Chosen on the 20,000-person city (seed 7, 33 such records) and checked on seed 8 (27): the
# right ID-person scored 0.9991 and more (match weight 10 and more), a wrong one at most 0.76 on
# seed 7; on seed 8 a sibling (a name one character apart, the same phone and address) reached
# 0.9991, 11 bits behind the right one. The margin, not the threshold, keeps such a pair apart:
# 5 bits is a 32-fold likelihood ratio.
PROBABILITY = 0.99
MARGIN = 5.0
# Training reads a deterministic sample of about this many ID-bearing named records: the
# parameters settle well below it, and training time stays flat as the city grows.
TRAIN_RECORDS = 20_000
# The m probability of a disagreement the training labels never show (see ``_settings``).
_UNSEEN = 0.001
# Candidates below this probability are not even returned (the runner-up is what matters).
_FLOOR = 0.01

_ONE_CHARACTER = (
    "length(name_l) = length(name_r) AND len(list_filter(range(length(name_l)),"
    " lambda i: substr(name_l, i + 1, 1) <> substr(name_r, i + 1, 1))) = 1"
)


def _most(column: str) -> str:
    """SQL aggregate: the value of ``column`` a group gives most often (ties: the smallest)."""
    return (
        f"list_sort(list_transform(map_entries(histogram({column})),"
        " lambda e: {'n': -(e.value::BIGINT), 'k': e.key}))[1].k"
    )


@dataclass
class MatchRun:
    """What one probabilistic pass did."""

    candidates: int
    matched: int
    seconds: float


def _settings() -> SettingsCreator:
    """The Splink model: comparisons and the blocking rules that propose candidates."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    # Levels the labels never show keep the m probability given here: one person's records
    # here never disagree on sex or birth date, nor give an entirely different name, and
    # Splink's default for an unseen level (1 in 20 to 40) would make a family member at the
    # same phone and address look likely. One in a thousand leaves room for real mistakes.
    rare = _UNSEEN
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="record_id",
        comparisons=[
            cl.CustomComparison(
                [
                    cll.NullLevel("name"),
                    cll.ExactMatchLevel("name", term_frequency_adjustments=True),
                    cll.CustomLevel(_ONE_CHARACTER, "one character different"),
                    cll.ElseLevel().configure(m_probability=rare),
                ],
                output_column_name="name",
            ),
            cl.ExactMatch("birth").configure(m_probabilities=[1 - rare, rare]),
            cl.ExactMatch("sex").configure(m_probabilities=[1 - rare, rare]),
            cl.CustomComparison(
                [
                    cll.NullLevel("address"),
                    cll.ExactMatchLevel("address"),
                    cll.ExactMatchLevel("compound"),
                    cll.ElseLevel(),
                ],
                output_column_name="address",
            ),
            # People keep two phones: a different number says little, Splink's default stands.
            cl.ExactMatch("phone"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("phone"),
            block_on("name"),
            block_on("birth"),
            block_on("address"),
            block_on("compound", "substr(name, 1, 1)"),
            block_on("substr(name, 1, length(name) - 1)"),
        ],
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )


def match(con: duckdb.DuckDBPyConnection) -> MatchRun:
    """Match the unanchored records of temp table ``named`` (``record_id``, ``anchor``: null
    when no ID placed it, ``name``, ``birth``, ``sex``, ``address``, ``phone``) to anchors;
    creates ``prob_choice(record_id, anchor, via_record, probability)``."""
    started = time.perf_counter()
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE prob_choice
            (record_id BIGINT, anchor BIGINT, via_record BIGINT, probability DOUBLE);
        CREATE OR REPLACE TEMP TABLE pm_named AS
        SELECT * REPLACE (nullif(address, '') AS address),
               nullif(regexp_extract(address, '^(.*?号)', 1), '') AS compound
        FROM named WHERE name IS NOT NULL;
        """
    )
    ((left, anchored),) = con.execute(
        "SELECT count(*) FILTER (WHERE anchor IS NULL), count(*) FILTER (WHERE anchor IS NOT"
        " NULL) FROM pm_named"
    ).fetchall()
    if not left or not anchored:
        return MatchRun(0, 0, time.perf_counter() - started)
    stride = max(1, math.ceil(anchored / TRAIN_RECORDS))
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE pm_train AS
        SELECT record_id, anchor, name, birth, sex, address, compound, phone FROM pm_named
        WHERE anchor IS NOT NULL AND hash(record_id) % {stride} = 0;
        -- Each ID-person as one profile per phone of theirs (or one without a phone): the
        -- name, birth date, sex and address their records give most often, so a record is
        -- compared with all of them at once; the evidence is the person's first record with
        -- that phone (or their first named record).
        CREATE OR REPLACE TEMP TABLE pm_person AS
        SELECT anchor, min(record_id) AS first,
               {_most("name")} AS name, {_most("birth")} AS birth, {_most("sex")} AS sex,
               {_most("address")} AS address, {_most("compound")} AS compound
        FROM pm_named WHERE anchor IS NOT NULL GROUP BY anchor;
        CREATE OR REPLACE TEMP TABLE pm_right AS
        SELECT coalesce(f.rec, p.first) AS record_id, p.name, p.birth, p.sex, p.address,
               p.compound, f.phone
        FROM pm_person p
        LEFT JOIN (SELECT anchor, phone, min(record_id) AS rec FROM pm_named
                   WHERE anchor IS NOT NULL AND phone IS NOT NULL GROUP BY anchor, phone) f
          USING (anchor);
        CREATE OR REPLACE TEMP TABLE pm_left AS
        SELECT record_id, name, birth, sex, address, compound, phone
        FROM pm_named WHERE anchor IS NULL;
        """  # noqa: S608 - our constant
    )
    from splink import DuckDBAPI, Linker, block_on

    db_api = DuckDBAPI(con)
    linker = Linker(
        db_api.register("pm_train"),
        _settings(),
        log_level=logging.ERROR,  # EM's progress lines; nothing of a person is logged
    )
    training = linker.training
    # The ID is a deterministic rule with no false match and, within the sample, no miss.
    training.estimate_probability_two_random_records_match([block_on("anchor")], recall=1.0)
    training.estimate_u_using_random_sampling(max_pairs=3e5, seed=1)
    training.estimate_m_from_label_column("anchor")
    predictions = linker.inference.predict_between(
        db_api.register("pm_left"),
        db_api.register("pm_right"),
        threshold_match_probability=_FLOOR,
        warning_mode="never",
    )
    scored = predictions.physical_name
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE pm_pairs AS
        SELECT p.record_id_l AS record_id, n.anchor, p.record_id_r AS via_record,
               p.match_weight AS weight, p.match_probability AS probability
        FROM {scored} p JOIN pm_named n ON n.record_id = p.record_id_r;
        -- Per record and ID-person its best comparison; the record joins the best ID-person
        -- when it is likely enough and clearly ahead of the next.
        INSERT INTO prob_choice
        SELECT record_id, anchor, via_record, round(probability, 6) FROM (
            SELECT *, row_number() OVER (PARTITION BY record_id ORDER BY weight DESC, anchor)
                          AS rank,
                   lead(weight) OVER (PARTITION BY record_id ORDER BY weight DESC, anchor)
                          AS runner
            FROM (
                -- The ID-person's best comparison (its first record among equals).
                SELECT DISTINCT ON (record_id, anchor) record_id, anchor, via_record, weight,
                       probability
                FROM pm_pairs ORDER BY record_id, anchor, weight DESC, via_record
            )
        )
        WHERE rank = 1 AND probability >= {PROBABILITY}
          AND (runner IS NULL OR weight - runner >= {MARGIN});
        """  # noqa: S608 - Splink's table name and our constants
    )
    ((candidates,),) = con.execute("SELECT count(*) FROM pm_pairs").fetchall()
    ((matched,),) = con.execute("SELECT count(*) FROM prob_choice").fetchall()
    # Splink's own tables go with the connection, which the linkage job closes after the run.
    con.execute(
        "DROP TABLE pm_pairs; DROP TABLE pm_train; DROP TABLE pm_right; DROP TABLE pm_left;"
        " DROP TABLE pm_named"
    )
    return MatchRun(int(candidates), int(matched), time.perf_counter() - started)
