"""File writers: CSV (UTF-8 or GBK), JSON lines and XLSX, byte-identical for the same input.

CSV and JSON lines are built as whole Arrow string columns, one element per line ending in a
newline, so the array's data buffer *is* the file content: no Python per row. GBK files are
the UTF-8 bytes transcoded with Python's codec, a chunk of lines at a time. XLSX goes through
openpyxl's write-only mode (the XLSX feeds are the small ones) and is then re-zipped with fixed
timestamps and entry order, because a zip otherwise records when it was written.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import openpyxl
import pyarrow as pa
import pyarrow.compute as pc

from citybrain.simulate.feeds.render import csv_quote, json_escape, may_contain, one_chunk
from citybrain.simulate.feeds.shapes import FeedShape

CHUNK_ROWS = 500_000  # lines built and transcoded at a time: bounds memory and int32 offsets
XLSX_MAX_ROWS = 1_000_000  # data rows per sheet; Excel stops at 1,048,576
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Written:
    """Where each row of a written file landed."""

    line: npt.NDArray[np.int32]  # CSV: physical line (header = 1); JSONL: line; XLSX: sheet row
    sheets: list[str] | None  # XLSX: the sheet titles
    sheet_of_row: npt.NDArray[np.int32] | None  # XLSX: index into ``sheets`` of each row
    bytes: int


def _data_buffer(lines: pa.Array | pa.ChunkedArray) -> pa.Buffer | bytes:
    """The concatenated values of a string array: its data buffer from first to last offset."""
    lines = one_chunk(lines)
    if len(lines) == 0:
        return b""
    if pa.types.is_large_string(lines.type):
        lines = lines.cast(pa.string())
    buffers = lines.buffers()
    offsets_buf, data = buffers[1], buffers[2]
    assert offsets_buf is not None and data is not None
    offsets = np.frombuffer(
        offsets_buf, dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4
    )
    start, end = int(offsets[0]), int(offsets[-1])
    return data.slice(start, end - start)


def _encode(text_utf8: pa.Buffer | bytes, encoding: str) -> pa.Buffer | bytes:
    if encoding == "utf-8":
        return text_utf8
    # The agencies' GBK systems: the same text in their code page. Strict: every generated
    # name and place is GBK-encodable, and a failure here is a generator bug to surface.
    return str(memoryview(text_utf8), "utf-8").encode(encoding)


def _strings(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name)
    arr = one_chunk(column)
    if not pa.types.is_string(arr.type):
        arr = arr.cast(pa.string())
    return arr


def csv_lines(table: pa.Table, shape: FeedShape, cut: Bools | None) -> pa.Array:
    """One CSV line per row (with its newline); ``cut`` rows are cut off after a few fields."""
    cols = []
    for col in shape.columns:
        arr = _strings(table, col.column)
        if col.needs_escaping:
            arr = csv_quote(arr)
        cols.append(pc.fill_null(arr, ""))
    cols[-1] = pc.binary_join_element_wise(cols[-1], "\n", "")
    lines = pc.binary_join_element_wise(*cols, ",")
    if cut is not None and cut.any():
        rows = np.flatnonzero(cut)
        keep = max(1, len(cols) // 2)
        # A line broken off mid-record (a transfer cut short): fewer fields than the header.
        values = [pc.take(c, pa.array(rows)).to_pylist() for c in cols[:keep]]
        broken = [",".join(str(v[i]) for v in values) + "\n" for i in range(len(rows))]
        lines = pc.replace_with_mask(lines, pa.array(cut), pa.array(broken, pa.string()))
    return lines


def jsonl_lines(table: pa.Table, shape: FeedShape, cut: Bools | None) -> pa.Array:
    """One JSON object per row, keys in the shape's order; ``cut`` rows are broken off."""
    pieces = []
    last = len(shape.columns) - 1
    for i, col in enumerate(shape.columns):
        key = ("{" if i == 0 else "") + json.dumps(col.column, ensure_ascii=False) + ":"
        end = "}\n" if i == last else ""
        column = table.column(col.column)
        arr = one_chunk(column)
        if col.json_number:
            text = pc.cast(arr, pa.string())
            piece = pc.binary_join_element_wise(key, text, end, "")
        else:
            text = arr if pa.types.is_string(arr.type) else arr.cast(pa.string())
            if col.needs_escaping:
                text = json_escape(text)
            piece = pc.binary_join_element_wise(key + '"', text, '"' + end, "")
        pieces.append(pc.fill_null(piece, key + "null" + end))
    lines = pc.binary_join_element_wise(*pieces, ",")
    if cut is not None and cut.any():
        rows = np.flatnonzero(cut)
        # A line broken off half way (the closing brace never arrives): not valid JSON.
        broken = [
            s[: max(1, len(s) // 2)] + "\n" for s in pc.take(lines, pa.array(rows)).to_pylist()
        ]
        lines = pc.replace_with_mask(lines, pa.array(cut), pa.array(broken, pa.string()))
    return lines


def write_text(
    path: Path, table: pa.Table, shape: FeedShape, cut: Bools | None, header: bool
) -> Written:
    """Write a CSV or JSON lines file; returns each row's line number."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = table.num_rows
    size = 0
    with path.open("wb") as fh:
        if header:
            head = ",".join(c.column for c in shape.columns) + "\n"
            head_bytes = _encode(head.encode("utf-8"), shape.encoding)
            fh.write(head_bytes)
            size += len(head_bytes)
        for start in range(0, n, CHUNK_ROWS):
            part = table.slice(start, CHUNK_ROWS)
            part_cut = None if cut is None else cut[start : start + CHUNK_ROWS]
            if shape.format == "csv":
                lines = csv_lines(part, shape, part_cut)
            else:
                lines = jsonl_lines(part, shape, part_cut)
            data = _encode(_data_buffer(lines), shape.encoding)
            fh.write(data)
            size += data.size if isinstance(data, pa.Buffer) else len(data)
    first = 2 if header else 1
    return Written(np.arange(first, first + n, dtype=np.int32), None, None, size)


_CORE_TIME = re.compile(rb"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)")
_SHEET = re.compile(r"^xl/worksheets/sheet(\d+)\.xml$")
_SHEET_DATA_END = b"</sheetData>"
XLSX_CHUNK_ROWS = 100_000


def write_xlsx(
    path: Path, table: pa.Table, shape: FeedShape, day: dt.date, max_rows: int | None = None
) -> Written:
    """Write an XLSX workbook (header row 1, data from row 2; a new sheet every 1M rows).

    Integer columns are numbers; everything else, dates included, is text in the agency's
    format, as the agencies' exports have it (ID numbers must be text or Excel mangles them).

    openpyxl (write-only) lays out the package with each sheet's header row; the data rows,
    millions of them in a full city's student roster, are then streamed into each sheet's
    ``sheetData`` as inline-string cells built column-wise, as openpyxl would write them but
    without a Python call per cell.
    """
    per_sheet = max_rows or XLSX_MAX_ROWS
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook(write_only=True)
    stamp = dt.datetime(day.year, day.month, day.day)
    wb.properties.creator = "citybrain-simulate"
    wb.properties.created = stamp
    n = table.num_rows
    titles: list[str] = []
    parts: list[tuple[int, int]] = []
    for part, start in enumerate(range(0, max(n, 1), per_sheet)):
        title = shape.sheet_title if part == 0 else f"{shape.sheet_title}{part + 1}"
        ws = wb.create_sheet(title)
        ws.append([c.column for c in shape.columns])
        titles.append(title)
        parts.append((start, min(n, start + per_sheet)))
    buffer = io.BytesIO()
    wb.save(buffer)

    def rows_of_sheet(number: int) -> Iterator[pa.Buffer | bytes]:
        start, stop = parts[number - 1]
        for chunk in range(start, stop, XLSX_CHUNK_ROWS):
            end = min(stop, chunk + XLSX_CHUNK_ROWS)
            part = table.slice(chunk, end - chunk)
            rows = xlsx_rows(part, shape, first_row=chunk - start + 2)
            yield _data_buffer(rows)

    size = _rezip(buffer.getvalue(), path, stamp, rows_of_sheet)
    rows = np.arange(n, dtype=np.int64)
    line = (rows % per_sheet + 2).astype(np.int32)
    return Written(line, titles, (rows // per_sheet).astype(np.int32), size)


_COLUMN_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def xlsx_rows(table: pa.Table, shape: FeedShape, first_row: int) -> pa.Array:
    """SpreadsheetML ``<row>`` elements, one per table row, numbered from ``first_row``.

    Text as inline strings (XML-escaped), integers as numbers, empty values as absent cells
    (each cell names its reference, so a gap does not shift the next cell).
    """
    n = table.num_rows
    numbers = pc.cast(pa.array(np.arange(first_row, first_row + n, dtype=np.int64)), pa.string())
    cells = []
    for i, col in enumerate(shape.columns):
        letter = _COLUMN_LETTERS[i]
        column = table.column(col.column)
        arr = one_chunk(column)
        if pa.types.is_integer(arr.type):
            cell = pc.binary_join_element_wise(
                f'<c r="{letter}', numbers, '" t="n"><v>', pc.cast(arr, pa.string()), "</v></c>", ""
            )
        else:
            text = arr if pa.types.is_string(arr.type) else arr.cast(pa.string())
            # Every text column: one stray "&" would make the whole workbook unreadable.
            text = _xml_escape(text)
            cell = pc.binary_join_element_wise(
                f'<c r="{letter}', numbers, '" t="inlineStr"><is><t>', text, "</t></is></c>", ""
            )
        cells.append(pc.fill_null(cell, ""))
    head = pc.binary_join_element_wise('<row r="', numbers, '">', "")
    return pc.binary_join_element_wise(head, *cells, "</row>", "")


def _xml_escape(arr: pa.Array) -> pa.Array:
    if not may_contain(arr, b"&<>"):
        return arr
    out = arr
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
        if pc.any(pc.match_substring(out, char)).as_py():
            out = pc.replace_substring(out, char, entity)
    return out


def _rezip(
    data: bytes,
    path: Path,
    stamp: dt.datetime,
    sheet_rows: Callable[[int], Iterator[pa.Buffer | bytes]],
) -> int:
    """Rewrite openpyxl's zip: fixed entry times, sorted entries, a fixed core.xml time, and
    each sheet's data rows streamed in before ``</sheetData>``."""
    iso = stamp.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(path, "w") as dst:
        for name in sorted(src.namelist()):
            content = src.read(name)
            if name == "docProps/core.xml":
                content = _CORE_TIME.sub(lambda m: m.group(1) + iso + m.group(3), content)
            info = zipfile.ZipInfo(name, date_time=stamp.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o600 << 16
            sheet = _SHEET.match(name)
            if sheet is None:
                dst.writestr(info, content, compresslevel=6)
                continue
            # Level 1 for the big sheets: twice as fast as the default, a little larger.
            # (``ZipFile.open(..., "w")`` takes the level from this attribute only.)
            setattr(info, "_compresslevel", 1)  # noqa: B010
            head, tail = content.split(_SHEET_DATA_END, 1)
            with dst.open(info, "w", force_zip64=True) as fh:
                fh.write(head)
                for chunk in sheet_rows(int(sheet.group(1))):
                    fh.write(chunk)
                fh.write(_SHEET_DATA_END + tail)
    return path.stat().st_size
