import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citybrain.kit.errors import InvalidInput
from citybrain.kit.idcheck import (
    check_character,
    make_resident_id,
    normalise_mobile,
    parse_resident_id,
)

VALID = make_resident_id("410105", dt.date(1985, 3, 14), 123)


def test_known_valid_number_is_parsed() -> None:
    # 11010519491231002X is the standard's own worked example.
    parsed = parse_resident_id("11010519491231002x")
    assert parsed.number == "11010519491231002X"
    assert parsed.birth_date == dt.date(1949, 12, 31)
    assert parsed.sex == "F"
    assert parsed.area_code == "110105"


def test_wrong_checksum_is_refused_naming_the_checksum() -> None:
    wrong = VALID[:17] + ("0" if VALID[17] != "0" else "1")
    with pytest.raises(InvalidInput) as caught:
        parse_resident_id(wrong)
    assert caught.value.code == "id_checksum"
    assert "校验码" in caught.value.message_zh
    assert "checksum" in caught.value.message_en
    assert caught.value.field == "id_number"


@pytest.mark.parametrize(
    ("value", "code", "word"),
    [
        ("41010519850314", "id_length", "length"),
        ("4101051985031412AB", "id_characters", "characters"),
        ("990105198503141234", "id_area_code", "area code"),
        ("410105198502301234", "id_birth_date", "birth date"),
        ("410105180001011234", "id_birth_date", "birth date"),
    ],
)
def test_each_check_names_itself(value: str, code: str, word: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_resident_id(value)
    assert caught.value.code == code
    assert word in caught.value.message_en


def test_future_birth_date_is_refused() -> None:
    future = make_resident_id("410105", dt.date(2030, 1, 1), 1)
    with pytest.raises(InvalidInput):
        parse_resident_id(future, today=dt.date(2026, 1, 1))


@given(
    st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2020, 12, 31)),
    st.integers(min_value=0, max_value=999),
    st.sampled_from(["410102", "410185", "110101", "650102"]),
)
def test_built_numbers_validate_and_any_single_digit_change_is_caught(
    birth: dt.date, sequence: int, area: str
) -> None:
    number = make_resident_id(area, birth, sequence)
    assert parse_resident_id(number).sex == ("M" if sequence % 2 else "F")
    # MOD 11-2 catches every single-character substitution in the first 17.
    position = sequence % 17
    digit = str((int(number[position]) + 1) % 10)
    altered = number[:position] + digit + number[position + 1 :]
    assert check_character(altered[:17]) != altered[17]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13812345678", "13812345678"),
        ("+86 138 1234 5678", "13812345678"),
        ("0086-19912345678", "19912345678"),
    ],
)
def test_mobile_numbers_normalise(raw: str, expected: str) -> None:
    assert normalise_mobile(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("1381234567", "phone_length"),
        ("12812345678", "phone_prefix"),
        ("1381234567a", "phone_characters"),
    ],
)
def test_bad_mobiles_say_why(raw: str, code: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise_mobile(raw)
    assert caught.value.code == code
    assert caught.value.field == "phone"
