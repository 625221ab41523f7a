"""Pseudonymisation: big columns of phones and resident IDs are looked up by number, and give
exactly the keyed hashes the value-by-value path gives."""

from __future__ import annotations

import datetime as dt
import random

import pyarrow as pa

from citybrain.datahub.pseudonym import NUMBERED_FROM, Pseudonymiser, numbered_keys
from citybrain.kit.crypto import blind_index
from citybrain.kit.idcheck import make_resident_id


def value_by_value(values: pa.Array, kind: str) -> pa.Array:
    """The dict path: slices too short for numbered lookups."""
    plain = Pseudonymiser()
    step = NUMBERED_FROM // 2
    return pa.concat_arrays(
        [plain.column(values.slice(i, step), kind) for i in range(0, len(values), step)]
    )


def test_big_phone_and_id_columns_hash_exactly_as_value_by_value() -> None:
    rng = random.Random(5)
    phones = [f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}" for _ in range(3000)]
    ids = [
        make_resident_id(
            "410105", dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(20000)), i % 999
        )
        for i in range(3000)
    ]
    assert any(i.endswith("X") for i in ids)
    # Cards of different lengths, leading zeros included: "007" is not "07".
    cards = [f"{rng.randrange(10**11):0{rng.choice([8, 12, 17])}d}" for _ in range(2000)]
    cards += ["00001234", "000001234", "12340000"]
    numbered = Pseudonymiser(remember=2500)  # a column beyond it starts the cache afresh
    for kind, texts in (("phone", phones), ("id_number", ids), ("transit_card", cards)):
        column = pa.array([None if i % 97 == 0 else v for i, v in enumerate(texts * 2)])
        assert numbered_keys(column, kind) is not None
        hashed = numbered.column(column, kind)
        assert hashed.equals(value_by_value(column, kind))
        assert hashed.null_count == column.null_count
        # Again, from the cache; and a slice that starts mid-array.
        assert numbered.column(column, kind).equals(hashed)
        assert numbered.column(column.slice(7, 2000), kind).equals(hashed.slice(7, 2000))
    first = numbered.column(pa.array(phones[:1]), "phone")[0].as_py()
    assert first == bytes.fromhex(blind_index().digest(phones[0], "phone")[:32])


def test_a_column_of_another_shape_goes_value_by_value() -> None:
    for kind, value in (("phone", "+8613800138000"), ("transit_card", "1" * 18)):
        column = pa.array([value] * NUMBERED_FROM)
        assert numbered_keys(column, kind) is None
        assert Pseudonymiser().column(column, kind).equals(value_by_value(column, kind))
