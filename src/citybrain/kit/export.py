"""Exports to CSV and Excel that cannot smuggle formulas (CSV injection): a text cell a
spreadsheet would run as a formula (= + - @) is written with a leading apostrophe."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """Prefix a text cell that a spreadsheet would run as a formula with an apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """UTF-8 CSV with a BOM (so Excel reads Chinese correctly), every cell neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([neutralise(h) for h in header])
    for row in rows:
        writer.writerow([neutralise(v) for v in row])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def xlsx_bytes(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """One sheet called ``title``: a bold, frozen header row, then ``rows``; all neutralised."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    # Sheet titles may not hold []:*?/\ and have at most 31 characters.
    sheet.title = "".join(c for c in title if c not in "[]:*?/\\")[:31] or "Sheet1"
    sheet.append([neutralise(h) for h in header])
    widths = [len(str(h)) * 2 + 2 for h in header]
    for row in rows:
        cells = [neutralise(v) for v in row]
        sheet.append(cells)
        for i, value in enumerate(cells[: len(widths)]):
            widths[i] = max(widths[i], min(40, len(str(value)) + 2))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "A2"
    for i, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(i)].width = width
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
