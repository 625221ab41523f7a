"""Vectorised formatting: timestamps, dates, numbers and lookups as Arrow string arrays.

Everything here works on whole columns. Arrow's ``strftime`` manages about a million values a
second, too slow for the full city's hundreds of millions of timestamps, so times are formatted
by arithmetic on numpy digit matrices instead (ten to twenty times faster), and the matrix
becomes the string array's data buffer without a copy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

Int64s = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

CST_OFFSET_S = 8 * 3600  # China Standard Time is UTC+8 all year
_TOKEN = re.compile(r"%[YmdHMS]")
_WIDTH = {"%Y": 4, "%m": 2, "%d": 2, "%H": 2, "%M": 2, "%S": 2}


def one_chunk(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A contiguous array; a single-chunk column is returned without a copy."""
    if not isinstance(arr, pa.ChunkedArray):
        return arr
    if arr.num_chunks == 1:
        return arr.chunk(0)
    if arr.num_chunks == 0:
        return pa.array([], arr.type)
    return arr.combine_chunks()


def seconds(arr: pa.Array | pa.ChunkedArray) -> tuple[Int64s, Bools]:
    """Seconds since 1970 of a ``timestamp[s]`` or ``date32`` column, and which are present.

    Missing values come back as 0 with ``False`` in the second array.
    """
    arr = one_chunk(arr)
    valid = np.ones(len(arr), dtype=np.bool_)
    if arr.null_count:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_date32(arr.type):
        days = pc.fill_null(arr.cast(pa.int32()), 0).to_numpy(zero_copy_only=False)
        return days.astype(np.int64) * 86400, valid
    if pa.types.is_timestamp(arr.type):
        unit = {"s": 1, "ms": 1000, "us": 1_000_000, "ns": 1_000_000_000}[arr.type.unit]
        raw = pc.fill_null(arr.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
        return (raw // unit).astype(np.int64), valid
    raise TypeError(f"not a time column: {arr.type}")


def civil(days: Int64s) -> tuple[Int64s, Int64s, Int64s]:
    """Year, month and day of days since 1970-01-01 (proleptic Gregorian), vectorised.

    Howard Hinnant's ``civil_from_days``: integer arithmetic only, valid for any day.
    """
    z = days + 719468
    era = np.floor_divide(z, 146097)
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    return year, month, day


def _strings_from_matrix(matrix: npt.NDArray[np.uint8], valid: Bools | None) -> pa.StringArray:
    """A string array whose i-th value is row i of a fixed-width byte matrix (no copy)."""
    n, width = matrix.shape
    offsets = (np.arange(n + 1, dtype=np.int32) * width).astype(np.int32)
    data = np.ascontiguousarray(matrix).reshape(-1)
    validity = None
    null_count = 0
    if valid is not None and not valid.all():
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
        null_count = int(n - valid.sum())
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(data), validity, null_count
    )


_TWO_DIGITS = np.array([[48 + i // 10, 48 + i % 10] for i in range(100)], dtype=np.uint8)


def _parse_format(fmt: str) -> list[tuple[str, bytes]]:
    """Split a pattern into (token, "") and ("", literal bytes) parts."""
    parts: list[tuple[str, bytes]] = []
    pos = 0
    for match in _TOKEN.finditer(fmt):
        if match.start() > pos:
            parts.append(("", fmt[pos : match.start()].encode("utf-8")))
        parts.append((match.group(), b""))
        pos = match.end()
    if pos < len(fmt):
        parts.append(("", fmt[pos:].encode("utf-8")))
    return parts


def format_seconds(secs: Int64s, fmt: str, valid: Bools | None = None) -> pa.StringArray:
    """Format seconds since 1970 (naive local time) with a strftime-like pattern.

    Supports %Y %m %d %H %M %S and any literal text (also non-ASCII), enough for every
    agency's format and for the deliberately wrong ones of malformed rows. The date part and
    the literals are rendered once per distinct day and copied by row; hours, minutes and
    seconds come from a two-digit lookup table.
    """
    parts = _parse_format(fmt)
    width = sum(_WIDTH[tok] if tok else len(lit) for tok, lit in parts)
    n = len(secs)
    days = np.floor_divide(secs, 86400)
    first = int(days.min()) if n else 0
    span = (int(days.max()) - first + 1) if n else 1
    if span > max(4 * n, 1 << 16):
        # Days spread thinly (birth dates over a century, few rows): render per distinct day.
        uniq, day_index = np.unique(days, return_inverse=True)
    else:
        uniq = np.arange(first, first + span, dtype=np.int64)
        day_index = days - first
    year, month, day = civil(uniq)
    per_day = np.zeros((len(uniq), width), dtype=np.uint8)
    col = 0
    time_cols: list[tuple[str, int]] = []
    for tok, lit in parts:
        if not tok:
            per_day[:, col : col + len(lit)] = np.frombuffer(lit, dtype=np.uint8)
            col += len(lit)
        elif tok == "%Y":
            per_day[:, col : col + 2] = _TWO_DIGITS[(year // 100) % 100]
            per_day[:, col + 2 : col + 4] = _TWO_DIGITS[year % 100]
            col += 4
        elif tok in ("%m", "%d"):
            per_day[:, col : col + 2] = _TWO_DIGITS[month if tok == "%m" else day]
            col += 2
        else:
            time_cols.append((tok, col))
            col += 2
    matrix = per_day[day_index]
    if time_cols:
        sod = (secs - days * 86400).astype(np.int32)
        for tok, col in time_cols:
            if tok == "%H":
                value = sod // 3600
            elif tok == "%M":
                value = (sod // 60) % 60
            else:
                value = sod % 60
            matrix[:, col] = 48 + value // 10
            matrix[:, col + 1] = 48 + value % 10
    return _strings_from_matrix(matrix, valid)


def format_times(arr: pa.Array | pa.ChunkedArray, fmt: str) -> pa.Array:
    """Render a time or date column in an agency's format (strftime pattern, epoch, epoch_ms).

    ``epoch``/``epoch_ms`` are Unix times of the China Standard Time wall clock, i.e. the naive
    local time shifted back by eight hours.
    """
    secs, valid = seconds(arr)
    if fmt in ("epoch", "epoch_ms"):
        unix = secs - CST_OFFSET_S
        if fmt == "epoch_ms":
            unix = unix * 1000
        mask = None if valid.all() else ~valid
        return pa.array(unix, mask=mask).cast(pa.string())
    return format_seconds(secs, fmt, None if valid.all() else valid)


def int_strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Integers as decimal strings (nulls stay null)."""
    return pc.cast(values, pa.string())


def zero_pad(values: npt.NDArray[np.integer], width: int, prefix: str = "") -> pa.Array:
    """``prefix`` + each integer zero-padded to ``width`` digits, as a string array."""
    matrix = np.empty((len(values), len(prefix.encode()) + width), dtype=np.uint8)
    p = prefix.encode()
    if p:
        matrix[:, : len(p)] = np.frombuffer(p, dtype=np.uint8)
    v = values.astype(np.int64)
    for k in range(width):
        matrix[:, len(p) + k] = 48 + (v // 10 ** (width - 1 - k)) % 10
    return _strings_from_matrix(matrix, None)


def choose(codes: npt.NDArray[np.integer], options: Sequence[str | None]) -> pa.Array:
    """``options[codes[i]]`` for every i, as a string array (a vectorised table lookup)."""
    return pc.take(pa.array(list(options), pa.string()), pa.array(codes.astype(np.int32)))


def map_strings(
    arr: pa.Array | pa.ChunkedArray, fn: Callable[[str], str | None] | Mapping[str, str | None]
) -> pa.Array:
    """Apply ``fn`` to each *distinct* value of a string column and spread the results back.

    Columns like place ids or cell ids have few distinct values among millions of rows, so the
    Python work is per distinct value, not per row. Unknown keys of a mapping become null.
    """
    arr = one_chunk(arr)
    encoded = pc.dictionary_encode(arr)
    assert isinstance(encoded, pa.DictionaryArray)
    uniques = encoded.dictionary.to_pylist()
    mapped = [fn(u) for u in uniques] if callable(fn) else [fn.get(u) for u in uniques]
    return pc.take(pa.array(mapped, pa.string()), encoded.indices)


def enum_raw(arr: pa.Array | pa.ChunkedArray, values: Mapping[str, str]) -> pa.Array:
    """Canonical enum values -> the agency's raw values (``values`` maps raw -> canonical)."""
    inverse = {canon: raw for raw, canon in values.items()}
    return map_strings(arr, inverse)


def may_contain(arr: pa.Array, chars: bytes) -> bool:
    """Whether any value may contain one of ``chars`` (single-byte ASCII).

    Scans the column's data buffer at memory speed: almost no generated value needs quoting
    or escaping, and this spares the per-row checks for those columns. Conservative: a sliced
    array's buffer may hold neighbours' bytes too.
    """
    arr = one_chunk(arr)
    if len(arr) == 0 or arr.null_count == len(arr):
        return False
    data = arr.buffers()[2]
    if data is None:
        return False
    raw = data.to_pybytes()
    return any(raw.find(bytes([c])) >= 0 for c in chars)


def json_escape(arr: pa.Array) -> pa.Array:
    """Escape a string column for the inside of a JSON string literal."""
    if not may_contain(arr, b'\\"\n\r\t'):
        return arr
    out = arr
    for char, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r")):
        if pc.any(pc.match_substring(out, char)).as_py():
            out = pc.replace_substring(out, char, escaped)
    if pc.any(pc.match_substring(out, "\t")).as_py():
        out = pc.replace_substring(out, "\t", "\\t")
    return out


def csv_quote(arr: pa.Array) -> pa.Array:
    """Quote the values that need it (comma, quote, newline), doubling inner quotes (RFC 4180)."""
    if not may_contain(arr, b',"\r\n'):
        return arr
    needs = pc.match_substring_regex(arr, '[",\r\n]')
    if not pc.any(needs).as_py():
        return arr
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(arr, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, arr)
