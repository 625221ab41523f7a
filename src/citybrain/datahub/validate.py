"""Field validation and normalisation, one whole column at a time.

Each agency column is checked against its contract type (resident ID per GB 11643, mobile
number, passport, plate, dates in the agency's formats, enumerations…) with Arrow kernels and
numpy, never a Python loop per row. A row with any failing field is bad; the first failing field
(in contract order) and the reason are kept for the quarantine, with every failure listed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from citybrain.datahub.catalog import FieldSpec, Source
from citybrain.kit.idcheck import PROVINCE_CODES

# Reason codes, with what they say to the agency's data staff.
REASONS: dict[str, tuple[str, str]] = {
    "missing": ("必填项为空", "required value is empty"),
    "missing_identifier": ("缺少有效身份标识（证件号、手机号等）", "no identifier at all"),
    "missing_column": ("文件缺少约定的列", "the file lacks this agreed column"),
    "id_format": ("身份证号码格式错误（应为18位）", "resident ID is not 18 characters of digits"),
    "id_area": ("身份证号码地区码无效", "resident ID has an unknown area code"),
    "id_birth_date": ("身份证号码出生日期无效", "resident ID has an impossible birth date"),
    "id_checksum": ("身份证号码校验码错误", "resident ID check character is wrong"),
    "phone_format": ("手机号码格式错误", "not a mainland mobile number"),
    "passport_format": ("护照号码格式错误", "passport number has a wrong shape"),
    "plate_format": ("车牌号格式错误", "vehicle plate has a wrong shape"),
    "card_format": ("卡号格式错误", "card number has a wrong shape"),
    "not_integer": ("应为整数", "not a whole number"),
    "bad_datetime": ("时间格式不符合约定", "time not in the agreed format"),
    "bad_date": ("日期格式不符合约定", "date not in the agreed format"),
    "implausible_time": ("时间超出合理范围", "time outside the plausible range"),
    "unknown_value": ("取值不在约定范围内", "value not among the agreed values"),
    "too_long": ("内容过长", "value too long"),
    "malformed_row": ("行格式错误（列数不符）", "row has the wrong number of columns"),
    "bad_json": ("JSON 格式错误", "line is not a JSON object"),
}
MAX_TEXT = 200
EARLIEST = dt.datetime(2000, 1, 1)  # events: nothing an agency reports happened earlier
EARLIEST_DATE = dt.datetime(1900, 1, 1)  # plain dates include birth dates
LATEST = dt.datetime(2100, 1, 1)
CST_OFFSET_SECONDS = 8 * 3600  # Unix times are read as China Standard Time wall clock

_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)
_PROVINCES = np.array(sorted(int(code) for code in PROVINCE_CODES), dtype=np.int64)
_MONTH_DAYS = np.array([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def reason_text(code: str, lang: str = "zh-CN") -> str:
    """What reason ``code`` means, in ``lang``."""
    zh, en = REASONS.get(code, (code, code))
    return en if lang.startswith("en") else zh


# Reasons travel as small integers through the vectorised code; 0 is "no error".
REASON_CODES: tuple[str, ...] = ("", *REASONS)
_CODE = {code: number for number, code in enumerate(REASON_CODES)}


@dataclass
class Checked:
    """One field's normalised values and, per row, the reason number of a failure (0: ok)."""

    values: pa.Array
    reason: np.ndarray  # int8

    @property
    def bad(self) -> np.ndarray:
        """Rows where the field failed."""
        failed: np.ndarray = self.reason != 0
        return failed


@dataclass
class Validated:
    """A batch after validation: canonical columns, bad-row mask, first error per row."""

    values: dict[str, pa.Array]
    bad: np.ndarray
    error_field: np.ndarray  # int16 index into the source's fields, -1 when the row is good
    error_reason: np.ndarray  # int8 index into REASON_CODES
    failed_fields: list[tuple[int, np.ndarray]]  # (field index, rows that failed it)

    def errors_of(self, row: int) -> list[int]:
        """Indexes of every field that failed in ``row``, in contract order."""
        return [index for index, rows in self.failed_fields if rows[row]]


def _mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Arrow boolean (nulls false) as numpy."""
    filled = pc.fill_null(array, False)
    mask: np.ndarray = np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)
    return mask


def _blank_to_null(array: pa.Array) -> pa.Array:
    trimmed = pc.utf8_trim_whitespace(array)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _reasons(n: int, bad: np.ndarray, code: str) -> np.ndarray:
    reason = np.zeros(n, dtype=np.int8)
    reason[bad] = _CODE[code]
    return reason


def check_resident_ids(array: pa.Array) -> Checked:
    """Normalise (trim, upper case) and validate resident ID numbers per GB 11643."""
    n = len(array)
    values = pc.utf8_upper(_blank_to_null(array))
    present = _mask(pc.is_valid(values))
    shaped = _mask(pc.match_substring_regex(values, r"^\d{17}[\dX]$"))
    reason = _reasons(n, present & ~shaped, "id_format")
    rows = np.flatnonzero(shaped)
    if len(rows):
        fixed = pc.cast(pc.take(values, pa.array(rows)), pa.binary(18))
        digits = (
            np.frombuffer(fixed.buffers()[1], dtype=np.uint8, count=len(rows) * 18)
            .reshape(-1, 18)
            .astype(np.int64)
        )
        last = digits[:, 17].astype(np.uint8)
        digits = digits - 48
        province = digits[:, 0] * 10 + digits[:, 1]
        area_ok = np.isin(province, _PROVINCES)
        year = digits[:, 6] * 1000 + digits[:, 7] * 100 + digits[:, 8] * 10 + digits[:, 9]
        month = digits[:, 10] * 10 + digits[:, 11]
        day = digits[:, 12] * 10 + digits[:, 13]
        leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
        month_ok = (month >= 1) & (month <= 12)
        max_day = np.where(month_ok, _MONTH_DAYS[np.clip(month, 0, 12)], 0)
        max_day = np.where((month == 2) & ~leap, 28, max_day)
        this_year = dt.date.today().year
        date_ok = month_ok & (day >= 1) & (day <= max_day) & (year >= 1900) & (year <= this_year)
        expected = _CHECK[(digits[:, :17] @ _WEIGHTS) % 11]
        sub = np.zeros(len(rows), dtype=np.int8)
        sub[expected != last] = _CODE["id_checksum"]
        sub[~date_ok] = _CODE["id_birth_date"]
        sub[~area_ok] = _CODE["id_area"]
        reason[rows] = sub
    return Checked(values, reason)


def _check_pattern(array: pa.Array, pattern: str, code: str, *, upper: bool = False) -> Checked:
    values = _blank_to_null(array)
    if upper:
        values = pc.utf8_upper(values)
    present = _mask(pc.is_valid(values))
    ok = _mask(pc.match_substring_regex(values, pattern))
    return Checked(values, _reasons(len(array), present & ~ok, code))


PHONE = r"^1[3-9]\d{9}$"


def check_phones(array: pa.Array) -> Checked:
    """Normalise (spaces, dashes, +86) and validate mainland mobile numbers."""
    # Most numbers arrive clean; only the others are normalised and checked one by one.
    clean = _mask(pc.match_substring_regex(array, PHONE))
    reason = np.zeros(len(array), dtype=np.int8)
    if clean.all():
        return Checked(array, reason)
    others = np.flatnonzero(~clean)
    values = pc.replace_substring_regex(array.take(pa.array(others)), r"[\s\-]", "")
    values = pc.replace_substring_regex(values, r"^(?:\+?86)(1\d{10})$", r"\1")
    checked = _check_pattern(values, PHONE, "phone_format")
    reason[others] = checked.reason
    merged = pc.replace_with_mask(
        array.cast(pa.string()), pa.array(~clean), checked.values.cast(pa.string())
    )
    return Checked(merged, reason)


def _check_times(array: pa.Array, spec: FieldSpec) -> Checked:
    values = _blank_to_null(array)
    present = _mask(pc.is_valid(values))
    parsed: pa.Array = pa.nulls(len(array), pa.timestamp("s"))
    for fmt in spec.formats:
        if fmt in ("epoch", "epoch_ms"):
            numeric = pc.fill_null(pc.match_substring_regex(values, r"^\d{1,13}$"), False)
            as_int = pc.cast(pc.if_else(numeric, values, "0"), pa.int64())
            if fmt == "epoch_ms":
                as_int = pc.divide(as_int, 1000)
            stamp = pc.cast(pc.add(as_int, CST_OFFSET_SECONDS), pa.timestamp("s"))
            attempt = pc.if_else(numeric, stamp, pa.scalar(None, pa.timestamp("s")))
        else:
            attempt = pc.strptime(values, format=fmt, unit="s", error_is_null=True)
        parsed = pc.coalesce(parsed, attempt)
    parsed_ok = _mask(pc.is_valid(parsed))
    plausible = _mask(
        pc.and_(
            pc.greater_equal(
                parsed,
                pa.scalar(EARLIEST_DATE if spec.type == "date" else EARLIEST, pa.timestamp("s")),
            ),
            pc.less(parsed, pa.scalar(LATEST, pa.timestamp("s"))),
        )
    )
    reason = _reasons(
        len(array), present & ~parsed_ok, "bad_date" if spec.type == "date" else "bad_datetime"
    )
    reason[present & parsed_ok & ~plausible] = _CODE["implausible_time"]
    out: pa.Array = parsed
    if spec.type == "date":
        out = pc.cast(parsed, pa.date32())
    return Checked(out, reason)


def _check_int(array: pa.Array, spec: FieldSpec) -> Checked:
    present = _mask(pc.is_valid(_blank_to_null(array)))
    values = _blank_to_null(array)
    if spec.regex:
        pattern = spec.regex.replace("(", "(?P<v>", 1)
        values = pc.struct_field(pc.extract_regex(values, pattern), "v")
    numeric = pc.fill_null(pc.match_substring_regex(values, r"^-?\d{1,9}$"), False)
    as_int = pc.cast(pc.if_else(numeric, values, pa.scalar(None, pa.string())), pa.int32())
    return Checked(as_int, _reasons(len(array), present & ~_mask(numeric), "not_integer"))


def _check_enum(array: pa.Array, spec: FieldSpec) -> Checked:
    values = _blank_to_null(array)
    keys = pa.array(list(spec.values), pa.string())
    index = pc.index_in(values, value_set=keys)
    mapped = pc.take(pa.array(list(spec.values.values()), pa.string()), index)
    present = _mask(pc.is_valid(values))
    bad = present & ~_mask(pc.is_valid(index))
    return Checked(mapped, _reasons(len(array), bad, "unknown_value"))


def _check_text(array: pa.Array, limit: int = MAX_TEXT) -> Checked:
    values = _blank_to_null(array)
    too_long = _mask(pc.greater(pc.utf8_length(values), limit))
    return Checked(values, _reasons(len(array), too_long, "too_long"))


def check_field(array: pa.Array, spec: FieldSpec) -> Checked:
    """Validate and normalise one column per its contract type."""
    kind = spec.type
    if kind == "id_number":
        return check_resident_ids(array)
    if kind == "phone":
        return check_phones(array)
    if kind == "passport":
        return _check_pattern(array, r"^[A-Z0-9]{5,17}$", "passport_format", upper=True)
    if kind == "plate":
        return _check_pattern(array, r"^\p{Han}[A-Z][A-Z0-9]{5,6}$", "plate_format", upper=True)
    if kind == "card":
        return _check_pattern(array, r"^\d{8,20}$", "card_format")
    if kind in ("datetime", "date"):
        return _check_times(array, spec)
    if kind == "int":
        return _check_int(array, spec)
    if kind == "enum":
        return _check_enum(array, spec)
    if kind == "name":
        return _check_text(array, 64)
    return _check_text(array)


def validate(columns: dict[str, pa.Array], rows: int, source: Source) -> Validated:
    """Check every field of ``source`` over the batch's columns."""
    values: dict[str, pa.Array] = {}
    error_field = np.full(rows, -1, dtype=np.int16)
    error_reason = np.zeros(rows, dtype=np.int8)
    failed: list[tuple[int, np.ndarray]] = []

    def note(index: int, reason: np.ndarray) -> None:
        bad = reason != 0
        if not bad.any():
            return
        fresh = bad & (error_reason == 0)
        error_field[fresh] = index
        error_reason[fresh] = reason[fresh]
        failed.append((index, bad))

    for index, spec in enumerate(source.fields):
        raw = columns.get(spec.column)
        if raw is not None and spec.passport_when:
            raw = _split_passports(raw, columns, source, spec, values, index, note)
        if raw is None:
            values[spec.name] = pa.nulls(rows, _type_of(spec))
            if spec.required:
                note(index, _reasons(rows, np.ones(rows, dtype=bool), "missing_column"))
            continue
        checked = check_field(raw, spec)
        values[spec.name] = checked.values
        note(index, checked.reason)
        if spec.required:
            missing = ~_mask(pc.is_valid(checked.values)) & (checked.reason == 0)
            note(index, _reasons(rows, missing, "missing"))
    if source.identity_any:
        has_any = np.zeros(rows, dtype=bool)
        for name in source.identity_any:
            present = values.get(name)  # a passport split out of an ID column may be absent
            if present is not None:
                has_any |= _mask(pc.is_valid(present))
        first = next(i for i, f in enumerate(source.fields) if f.name == source.identity_any[0])
        note(first, _reasons(rows, ~has_any, "missing_identifier"))
    return Validated(values, error_reason != 0, error_field, error_reason, failed)


def _split_passports(
    raw: pa.Array,
    columns: dict[str, pa.Array],
    source: Source,
    spec: FieldSpec,
    values: dict[str, pa.Array],
    index: int,
    note: Callable[[int, np.ndarray], None],
) -> pa.Array:
    """Where the document type says passport, take the number out of the ID column and check
    it as a passport (it becomes the row's ``passport``); return what is left as IDs."""
    kind = source.field_named("id_type")
    assert kind is not None  # the catalogue checks passport_when has an id_type field
    types = columns.get(kind.column)
    if types is None:
        return raw
    is_passport = pc.fill_null(
        pc.is_in(pc.utf8_trim_whitespace(types), value_set=pa.array(spec.passport_when)), False
    )
    nothing = pa.scalar(None, pa.string())
    checked = check_field(pc.if_else(is_passport, raw, nothing), _PASSPORT)
    previous = values.get("passport")
    values["passport"] = (
        checked.values if previous is None else pc.coalesce(previous, checked.values)
    )
    note(index, checked.reason)
    return pc.if_else(is_passport, nothing, raw)


_PASSPORT = FieldSpec(name="passport", column="", type="passport")


def _type_of(spec: FieldSpec) -> pa.DataType:
    if spec.type == "datetime":
        return pa.timestamp("s")
    if spec.type == "date":
        return pa.date32()
    if spec.type == "int":
        return pa.int32()
    return pa.string()
