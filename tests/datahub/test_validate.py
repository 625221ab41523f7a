"""Field validation over whole columns: the reason and the field for every bad value."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from citybrain.datahub.catalog import get_source
from citybrain.datahub.validate import (
    REASON_CODES,
    check_field,
    check_phones,
    check_resident_ids,
    validate,
)
from citybrain.kit.idcheck import is_valid_resident_id, make_resident_id

VALID = make_resident_id("410105", dt.date(1990, 5, 17), 123)


def reasons(values: list[int]) -> list[str]:
    return [REASON_CODES[v] for v in values]


def test_resident_ids_are_checked_per_gb_11643() -> None:
    wrong_sum = VALID[:-1] + ("0" if VALID[-1] != "0" else "1")
    no_such_province = "99" + VALID[2:]
    bad_date = VALID[:10] + "1332" + VALID[14:]
    values = [VALID, wrong_sum, "", None, "12345", VALID.lower(), no_such_province, bad_date]
    checked = check_resident_ids(pa.array(values, pa.string()))
    assert reasons(checked.reason.tolist()) == [
        "", "id_checksum", "", "", "id_format", "", "id_area", "id_birth_date",
    ]  # fmt: skip
    assert checked.values.to_pylist()[5] == VALID.upper()


@settings(max_examples=200, deadline=None)
@given(
    area=st.sampled_from(["410105", "420102", "110101", "440103"]),
    birth=st.dates(dt.date(1930, 1, 1), dt.date(2019, 12, 31)),
    sequence=st.integers(0, 999),
    position=st.integers(0, 16),
    delta=st.integers(1, 9),
)
def test_valid_ids_pass_and_one_changed_digit_never_does(
    area: str, birth: dt.date, sequence: int, position: int, delta: int
) -> None:
    number = make_resident_id(area, birth, sequence)
    digit = (int(number[position]) + delta) % 10
    changed = number[:position] + str(digit) + number[position + 1 :]
    checked = check_resident_ids(pa.array([number, changed]))
    assert checked.reason[0] == 0
    # The vectorised check agrees with the reference implementation on the changed number.
    assert (checked.reason[1] == 0) == is_valid_resident_id(changed)
    assert checked.reason[1] != 0


def test_phones_are_normalised_and_checked() -> None:
    checked = check_phones(pa.array(["138 0013 8000", "+86-13800138000", "12345678901", ""]))
    assert checked.values.to_pylist() == ["13800138000", "13800138000", "12345678901", None]
    assert reasons(checked.reason.tolist()) == ["", "", "phone_format", ""]


def test_times_in_the_agencies_formats_and_unix_times_in_china_time() -> None:
    depart = get_source("rail_ticket").field_named("depart")
    roaming = get_source("telecom_roaming").field_named("arrive")
    transit = get_source("transit_card").field_named("start_time")
    assert depart is not None and roaming is not None and transit is not None
    checked = check_field(
        pa.array(["2020-01-20 08:35", "2020/01/20 08:35", "1800-01-01 00:00"]), depart
    )
    assert checked.values[0].as_py() == dt.datetime(2020, 1, 20, 8, 35)
    assert reasons(checked.reason.tolist()) == ["", "bad_datetime", "implausible_time"]
    # 1579480500 is 2020-01-20 00:35 UTC, 08:35 in Zhengzhou.
    assert check_field(pa.array(["1579480500"]), roaming).values[0].as_py() == dt.datetime(
        2020, 1, 20, 8, 35
    )
    assert check_field(pa.array(["1579480500123"]), transit).values[0].as_py() == dt.datetime(
        2020, 1, 20, 8, 35
    )


def test_rows_with_missing_fields_identifiers_or_columns_are_bad_with_where() -> None:
    source = get_source("rail_ticket")
    columns = {f.column: pa.array(["x", "y"]) for f in source.fields}
    columns["乘车人姓名"] = pa.array(["王伟", ""])
    columns["证件号码"] = pa.array([VALID, ""])
    columns["发车时间"] = pa.array(["2020-01-20 08:35"] * 2)
    columns["到达时间"] = pa.array(["2020-01-20 10:35"] * 2)
    columns["车厢号"] = pa.array(["3", "x"])
    columns["手机号"] = pa.array(["13800138000", "13800138000"])
    result = validate(columns, 2, source)
    assert result.bad.tolist() == [False, True]
    names = [f.name for f in source.fields]
    # The first failing field in contract order is the name; every failure is listed.
    assert names[result.error_field[1]] == "name"
    assert REASON_CODES[result.error_reason[1]] == "missing"
    failed = {names[i] for i in result.errors_of(1)}
    assert failed == {"name", "id_number", "carriage"}
    without_column = dict(columns)
    del without_column["车次"]
    result = validate(without_column, 2, source)
    assert result.bad.all()
    assert REASON_CODES[result.error_reason[0]] == "missing_column"


def test_dates_of_birth_before_2000_are_plausible_but_event_times_are_not() -> None:
    birth = get_source("household_registry").field_named("birth_date")
    depart = get_source("rail_ticket").field_named("depart")
    assert birth is not None and depart is not None
    assert check_field(pa.array(["19520504", "18990101"]), birth).reason.tolist() != [0, 0]
    assert check_field(pa.array(["19520504"]), birth).reason.tolist() == [0]
    assert reasons(check_field(pa.array(["1999-12-31 23:59"]), depart).reason.tolist()) == [
        "implausible_time"
    ]


def test_a_passport_in_the_shared_document_number_column_is_checked_as_a_passport() -> None:
    source = get_source("rail_ticket")
    columns = {f.column: pa.array(["G1"] * 3) for f in source.fields}
    columns.update(
        {
            "乘车人姓名": pa.array(["王伟", "Tom Lee", "Ann"]),
            "证件类型": pa.array(["身份证", "护照", "护照"]),
            "证件号码": pa.array([VALID, "e12345678", "bad!"]),
            "发车时间": pa.array(["2020-01-20 08:35"] * 3),
            "到达时间": pa.array(["2020-01-20 10:35"] * 3),
            "车厢号": pa.array(["3"] * 3),
            "手机号": pa.array(["13800138000"] * 3),
        }
    )
    result = validate(columns, 3, source)
    assert result.bad.tolist() == [False, False, True]
    assert REASON_CODES[result.error_reason[2]] == "passport_format"
    assert result.values["id_number"].to_pylist() == [VALID, None, None]
    assert result.values["passport"].to_pylist()[:2] == [None, "E12345678"]


def test_without_the_document_type_column_the_id_column_is_all_resident_ids() -> None:
    source = get_source("rail_ticket")
    columns = {f.column: pa.array(["G1"]) for f in source.fields if f.column != "证件类型"}
    columns.update({"乘车人姓名": pa.array(["王伟"]), "证件号码": pa.array(["E12345678"])})
    result = validate(columns, 1, source)
    assert result.bad.tolist() == [True]
    assert REASON_CODES[result.error_reason[0]] in {"id_format", "bad_datetime", "not_integer"}
