"""Reading an agency's file into columns of text, with the line each row came from.

Every reader returns a :class:`RawBatch`: one string column per agency column (empty string for
an empty cell), the line number of every parsed row, and the rows that could not be parsed at
all (wrong number of columns, broken JSON) with their line and reason, so nothing is silently
dropped. Line numbers are physical lines of the file (header = line 1) for CSV, lines for JSON
lines (first record = line 1), and sheet rows (header = row 1) for Excel.

CSV and JSON lines are parsed by Arrow in C++; Excel (the agencies' small lists) by openpyxl.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from citybrain.datahub.catalog import Source

BLOCK_SIZE = 16 << 20


@dataclass
class Unparsed:
    """A row that could not be split into the agency's columns."""

    line: int
    reason: str  # malformed_row | bad_json
    text: str


@dataclass
class RawBatch:
    """A file's rows as text columns keyed by the agency's column names."""

    columns: dict[str, pa.Array]
    lines: np.ndarray  # int64, one per parsed row
    unparsed: list[Unparsed] = field(default_factory=list)
    header: tuple[str, ...] = ()

    @property
    def parsed(self) -> int:
        """Rows split into columns."""
        return len(self.lines)

    @property
    def received(self) -> int:
        """Every data row of the file, parsed or not."""
        return self.parsed + len(self.unparsed)


class UnreadableFile(Exception):
    """The file as a whole cannot be read (wrong encoding, not a workbook, no header)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def to_utf8(data: bytes, encoding: str) -> bytes:
    """The file's bytes as UTF-8. GBK is read as GB 18030, its superset, so characters an
    agency's system added beyond GBK still decode."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if encoding.lower().replace("-", "") in ("utf8",):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnreadableFile(
                "encoding", f"not UTF-8 at byte {exc.start}: expected encoding utf-8"
            ) from exc
        return data
    codec = "gb18030" if encoding.lower() in ("gbk", "gb2312", "gb18030") else encoding
    try:
        return data.decode(codec).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFile("encoding", f"not {encoding} at byte {exc.start}") from exc


def _line_count(data: bytes) -> int:
    """Physical lines in ``data`` (a last line without a newline counts)."""
    if not data:
        return 0
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def _nonempty_line_numbers(data: bytes, records: int | None = None) -> np.ndarray:
    """Physical line numbers (1-based) of the lines that hold something.

    With ``records``, the number of lines a parser found: when the file has exactly that many
    lines, none is blank (the usual file) and the numbers follow without a scan."""
    count = _line_count(data)
    if records == count:
        return np.arange(1, count + 1, dtype=np.int64)
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    if len(buf) and buf[-1] != 10:
        ends = np.append(ends, len(buf))
    starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else np.array([], dtype=np.int64)
    lengths = ends - starts
    # A line holding only "\r" is empty too.
    only_cr = (lengths == 1) & (buf[np.minimum(starts, max(len(buf) - 1, 0))] == 13)
    keep = (lengths > 0) & ~only_cr
    return (np.flatnonzero(keep) + 1).astype(np.int64)


def read_csv(data: bytes) -> RawBatch:
    """Parse UTF-8 CSV with a header row; every value as text."""
    try:
        header_line = data.split(b"\n", 1)[0].decode("utf-8").rstrip("\r")
    except UnicodeDecodeError as exc:  # pragma: no cover - to_utf8 ran first
        raise UnreadableFile("encoding", "header is not text") from exc
    if not header_line.strip():
        raise UnreadableFile("no_header", "the first line (header) is empty")
    try:
        names = next(iter(_csv_rows(header_line)))
    except (csv.Error, StopIteration) as exc:  # a stray carriage return inside the header
        raise UnreadableFile("malformed_file", f"the header cannot be read: {exc}") from exc
    types = dict.fromkeys(names, pa.string())

    bad: list[tuple[int | None, str]] = []

    def handler(row: pacsv.InvalidRow) -> str:
        bad.append((row.number, row.text))
        return "skip"

    try:
        # One thread: intake runs a worker process per core, and only the single-threaded
        # parser knows which record each bad row was.
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(use_threads=False, block_size=BLOCK_SIZE),
            parse_options=pacsv.ParseOptions(invalid_row_handler=handler),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise UnreadableFile("malformed_file", str(exc).splitlines()[0]) from exc
    records = table.num_rows + len(bad)
    # Record numbers count the header as 1 and skip blank lines; map them to physical lines.
    physical = _nonempty_line_numbers(data, records + 1)
    if len(physical) == records + 1:
        line_of = physical  # index k-1 -> physical line of record k
    else:  # quoted line breaks inside values: report record numbers
        line_of = np.arange(1, records + 2, dtype=np.int64)
    bad_numbers = np.array(sorted(int(n or 0) for n, _ in bad), dtype=np.int64)
    all_numbers = np.arange(2, records + 2, dtype=np.int64)
    good_numbers = np.setdiff1d(all_numbers, bad_numbers, assume_unique=True)
    unparsed = [
        Unparsed(int(line_of[int(n or 1) - 1]), "malformed_row", text)
        for n, text in sorted(bad, key=lambda b: b[0] or 0)
    ]
    columns = {name: table.column(name).combine_chunks() for name in table.column_names}
    return RawBatch(columns, line_of[good_numbers - 1], unparsed, tuple(names))


def _csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader([text]))


def _json_table(data: bytes, schema: pa.Schema | None) -> pa.Table:
    options = pajson.ParseOptions(
        newlines_in_values=False,
        explicit_schema=schema,
        unexpected_field_behavior="infer",
    )
    return pajson.read_json(
        io.BytesIO(data),
        read_options=pajson.ReadOptions(use_threads=False, block_size=BLOCK_SIZE),
        parse_options=options,
    )


def read_jsonl(data: bytes, expected: tuple[str, ...] = ()) -> RawBatch:
    """Parse JSON lines (one object per line); every value as text exactly as sent.

    The agreed columns are read as strings, so Arrow does not reinterpret a time; an agency
    that sends some values as JSON numbers gets those columns read as numbers and then turned
    into text. A file with broken lines is read line by line to find exactly which.
    """
    as_text = pa.schema([(name, pa.string()) for name in expected]) if expected else None
    try:
        table = _json_table(data, as_text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        try:
            inferred = _json_table(data, None).schema
            typed = pa.schema(
                [
                    (f.name, f.type)
                    if pa.types.is_integer(f.type)
                    or pa.types.is_floating(f.type)
                    or pa.types.is_boolean(f.type)
                    else (f.name, pa.string())
                    for f in inferred
                ]
            )
            table = _json_table(data, typed)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return _read_jsonl_slowly(data, _nonempty_line_numbers(data))
    lines = _nonempty_line_numbers(data, table.num_rows)
    if table.num_rows != len(lines):
        return _read_jsonl_slowly(data, lines)
    columns: dict[str, pa.Array] = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if pa.types.is_struct(column.type) or pa.types.is_list(column.type):
            return _read_jsonl_slowly(data, lines)
        if pa.types.is_floating(column.type):
            # 12.0 -> "12": an agency's JSON number means the whole number it looks like.
            whole = pc.equal(column, pc.floor(column))
            column = pc.if_else(
                whole,
                pc.cast(pc.cast(column, pa.int64(), safe=False), pa.string()),
                pc.cast(column, pa.string()),
            )
        elif not pa.types.is_string(column.type):
            column = pc.cast(column, pa.string())
        columns[name] = pc.fill_null(column, "")
    return RawBatch(columns, lines, [], tuple(table.column_names))


def _read_jsonl_slowly(data: bytes, lines: np.ndarray) -> RawBatch:
    """Line by line, for files with broken lines: find exactly which lines are bad."""
    # The same rule as _nonempty_line_numbers (bytes, not str.strip, which also drops control
    # characters such as \x1e): a line holding anything but "\r" is a record, good or bad.
    texts = [t for t in data.decode("utf-8").split("\n") if t and t != "\r"]
    values: dict[str, list[str]] = {}
    good: list[int] = []
    unparsed: list[Unparsed] = []
    for index, (line, text) in enumerate(zip(lines.tolist(), texts, strict=True)):
        try:
            obj = json.loads(text)
            if not isinstance(obj, dict):
                raise ValueError("not an object")
        except ValueError:
            unparsed.append(Unparsed(int(line), "bad_json", text[:500]))
            continue
        row = len(good)
        for key, value in obj.items():
            column = values.setdefault(str(key), [""] * row)
            column.append(_as_text(value))
        for column in values.values():
            if len(column) < row + 1:
                column.append("")
        good.append(index)
    columns = {k: pa.array(v, pa.string()) for k, v in values.items()}
    return RawBatch(columns, lines[good] if good else lines[:0], unparsed, tuple(values))


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


# Excel's row limit: a workbook too long for one sheet continues on the next, and rows of the
# k-th sheet (from 0) are numbered k * SHEET_ROWS + their row, so every row keeps one number.
SHEET_ROWS = 1_048_576


def read_xlsx(data: bytes, source: Source) -> RawBatch:
    """Read every sheet of a workbook: header in row 1 of each, one record per later row.

    Rows of later sheets are numbered ``sheet_index * 1,048,576 + row`` (see SHEET_ROWS).
    Read with calamine (Rust), some fifty times faster than openpyxl on the agencies' lists.
    """
    from python_calamine import CalamineWorkbook

    try:
        book = CalamineWorkbook.from_filelike(io.BytesIO(data))
    except Exception as exc:  # calamine raises its own error types for a file that is not one
        raise UnreadableFile("not_a_workbook", f"not an Excel workbook: {exc}") from exc
    # A cell Excel typed as a date is written back in the contract's own format.
    formats = {f.column: f.formats[0] for f in source.fields if f.formats}
    header: list[str] = []
    values: list[list[pa.Array]] = []
    lines: list[np.ndarray] = []
    for sheet_index, sheet_name in enumerate(book.sheet_names):
        try:
            rows = book.get_sheet_by_name(sheet_name).to_python(skip_empty_area=False)
        except Exception as exc:
            raise UnreadableFile("malformed_file", f"sheet {sheet_name}: {exc}") from exc
        if not rows or not any(c not in (None, "") for c in rows[0]):
            if sheet_index == 0:
                raise UnreadableFile("no_header", "row 1 (header) is empty")
            continue
        names = [_as_text(c).strip() for c in rows[0]]
        while names and not names[-1]:
            names.pop()
        if sheet_index == 0:
            header = names
            values = [[] for _ in header]
        elif names != header:
            raise UnreadableFile(
                "malformed_file", f"sheet {sheet_name} has another header than the first"
            )
        body = rows[1:]
        if not body:
            continue
        # Column by column (a sheet's rows all have the sheet's width): text cells, the usual
        # case, go to Arrow as they are; only columns holding numbers or dates are converted
        # cell by cell.
        width = max(len(header), max(map(len, body)))
        padded = (
            body
            if all(len(r) == width for r in body)
            else [[*r, *([None] * (width - len(r)))] for r in body]
        )
        cells = list(zip(*padded, strict=True))
        texts = [_column_text(cells[i], formats.get(name)) for i, name in enumerate(header)]
        empty = np.ones(len(body), dtype=bool)
        for i in range(width):
            text = texts[i] if i < len(header) else _column_text(cells[i], None)
            empty &= np.asarray(pc.equal(text, "").to_numpy(zero_copy_only=False), dtype=bool)
        kept = np.flatnonzero(~empty)
        for i, text in enumerate(texts):
            values[i].append(text if len(kept) == len(body) else text.take(pa.array(kept)))
        lines.append(sheet_index * SHEET_ROWS + kept + 2)
    columns = {
        name: pa.concat_arrays(col) if col else pa.array([], pa.string())
        for name, col in zip(header, values, strict=True)
    }
    line_numbers = np.concatenate(lines) if lines else np.zeros(0, dtype=np.int64)
    return RawBatch(columns, line_numbers.astype(np.int64), [], tuple(header))


def _column_text(cells: tuple[object, ...], fmt: str | None) -> pa.Array:
    """A workbook column as text: an empty cell is "", a date in the contract's format."""
    if set(map(type, cells)) == {str}:
        return pa.array(cells, pa.string())
    out = []
    for cell in cells:
        if isinstance(cell, dt.datetime | dt.date):
            layout = fmt or "%Y-%m-%d %H:%M:%S"
            out.append(cell.strftime(layout) if not layout.startswith("epoch") else str(cell))
        else:
            out.append(_as_text(cell))
    return pa.array(out, pa.string())


def read_bytes(data: bytes, source: Source) -> RawBatch:
    """Read a file's bytes according to its source's file contract."""
    spec = source.file
    if spec is None:
        raise UnreadableFile("not_a_feed", f"{source.code} is not delivered as files")
    if spec.format == "xlsx":
        return read_xlsx(data, source)
    text = to_utf8(data, spec.encoding)
    if spec.format == "jsonl":
        return read_jsonl(text, source.columns)
    return read_csv(text)
