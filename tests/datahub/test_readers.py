"""Reading agency files: every row accounted for, with the line it came from."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from citybrain.datahub.catalog import get_source
from citybrain.datahub.readers import UnreadableFile, read_bytes
from tests.datahub.feeds import RAIL_HEADER, rail_rows, travellers, write_cases, write_flights

DAY = dt.date(2020, 1, 21)


def test_gbk_csv_keeps_physical_line_numbers_across_blank_and_malformed_lines() -> None:
    rows = rail_rows(travellers(5), DAY)
    text = "\n".join([RAIL_HEADER, rows[0], "", rows[1], "cut,short", rows[2], "\r", rows[3]])
    batch = read_bytes((text + "\n").encode("gbk"), get_source("rail_ticket"))
    assert batch.lines.tolist() == [2, 4, 6, 8]
    assert [(u.line, u.reason) for u in batch.unparsed] == [(5, "malformed_row")]
    assert batch.received == 5
    assert batch.columns["乘车人姓名"].to_pylist()[0] == rows[0].split(",")[0]


def test_a_utf8_feed_that_is_not_utf8_is_refused_as_a_whole() -> None:
    data = "msisdn,home_city,arrive_time,first_cell\n13800000000,武汉市,1579500000,x\n"
    with pytest.raises(UnreadableFile) as caught:
        read_bytes(data.encode("gbk"), get_source("telecom_roaming"))
    assert caught.value.reason == "encoding"


def test_json_lines_fast_path_and_broken_lines_found_exactly(tmp_path: Path) -> None:
    people = travellers(20)
    clean = write_flights(tmp_path / "a", DAY, people).read_bytes()
    batch = read_bytes(clean, get_source("flight_manifest"))
    assert batch.parsed == 20 and not batch.unparsed
    assert batch.lines.tolist() == list(range(1, 21))
    broken = write_flights(tmp_path / "b", DAY, people, broken=3).read_bytes()
    batch = read_bytes(broken, get_source("flight_manifest"))
    assert [u.line for u in batch.unparsed] == [1, 2, 3]
    assert batch.lines.tolist() == list(range(4, 21))
    assert batch.columns["id_no"].to_pylist()[0] == people[3].id_number


def test_excel_dates_come_back_in_the_contract_format(tmp_path: Path) -> None:
    people = travellers(3)
    data = write_cases(tmp_path, DAY, people).read_bytes()
    batch = read_bytes(data, get_source("case_confirmed"))
    assert batch.lines.tolist() == [2, 3, 4]
    assert batch.columns["确诊日期"].to_pylist() == ["2020-01-21"] * 3
    assert batch.columns["年龄"].to_pylist() == ["40"] * 3
    with pytest.raises(UnreadableFile):
        read_bytes(b"not a workbook", get_source("case_confirmed"))


def test_a_workbook_continues_on_later_sheets_with_row_numbers_kept_apart() -> None:
    import io as _io

    from openpyxl import Workbook

    from citybrain.datahub.readers import SHEET_ROWS

    book = Workbook()
    first = book.active
    assert first is not None
    header = ["机构名称", "姓名", "身份证号", "类别", "联系电话", "入住日期"]
    first.append(header)
    first.append(["康乐养老院", "王伟", "", "老人", None, "2019-05-01"])
    second = book.create_sheet("养老机构人员2")
    second.append(header)
    second.append(["康乐养老院", "李娜", "", "员工"])  # short row: empty cells absent
    buffer = _io.BytesIO()
    book.save(buffer)
    batch = read_bytes(buffer.getvalue(), get_source("elderly_care"))
    assert batch.lines.tolist() == [2, SHEET_ROWS + 2]
    assert batch.columns["姓名"].to_pylist() == ["王伟", "李娜"]
    assert batch.columns["入住日期"].to_pylist() == ["2019-05-01", ""]
