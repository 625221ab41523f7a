"""Reads the simulator's feed files back the way the contract says (a test-side parser).

Independent of the writers: CSV through the ``csv`` module, JSON lines through ``json``, XLSX
through openpyxl, values checked against the formats and enum values declared in
``sources.yaml``, so a writer bug cannot hide behind a reader with the same bug.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl
import yaml

SOURCES_YAML = (
    Path(__file__).resolve().parents[2] / "src" / "citybrain" / "datahub" / "data" / "sources.yaml"
)
CST = dt.timezone(dt.timedelta(hours=8))


def load_sources() -> dict[str, Any]:
    """The agency feeds of ``sources.yaml`` (those with a ``fields:`` block), with defaults."""
    data = yaml.safe_load(SOURCES_YAML.read_text(encoding="utf-8"))
    defaults = data["defaults"]["file"]
    out = {}
    for name, source in data["sources"].items():
        if "fields" in source:
            source = dict(source)
            source["file"] = {**defaults, **source.get("file", {})}
            out[name] = source
    return out


def columns_of(source: dict[str, Any]) -> list[str]:
    """The file's columns in the contract's order (a column feeding two fields counts once)."""
    return list(dict.fromkeys(f["column"] for f in source["fields"].values()))


@dataclass
class Record:
    """One record as found in a file."""

    line: int
    sheet: str | None
    values: dict[str, str] | None  # None: the line/row could not be read at all
    text: str  # the raw line (CSV/JSONL) or the row joined (XLSX)


def read_file(path: Path, source: dict[str, Any]) -> tuple[list[str], list[Record]]:
    """The header and the records of a feed file."""
    file = source["file"]
    columns = columns_of(source)
    if file["format"] == "xlsx":
        return _read_xlsx(path, columns)
    text = path.read_bytes().decode(file.get("encoding", "utf-8"))
    lines = text.split("\n")
    assert lines[-1] == "", "files end with a newline"
    lines = lines[:-1]
    records: list[Record] = []
    if file["format"] == "csv":
        header = next(csv.reader([lines[0]]))
        for number, line in enumerate(lines[1:], start=2):
            row = next(csv.reader([line]))
            values = dict(zip(header, row, strict=True)) if len(row) == len(header) else None
            records.append(Record(number, None, values, line))
        return header, records
    for number, line in enumerate(lines, start=1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            records.append(Record(number, None, None, line))
            continue
        assert list(obj) == columns, "JSON keys in the contract's order"
        values = {k: "" if v is None else str(v) for k, v in obj.items()}
        records.append(Record(number, None, values, line))
    return columns, records


def _read_xlsx(path: Path, columns: list[str]) -> tuple[list[str], list[Record]]:
    wb = openpyxl.load_workbook(path, read_only=True)
    header: list[str] = []
    records: list[Record] = []
    for ws in wb.worksheets:
        rows = ws.iter_rows(values_only=True)
        head = [str(v) for v in next(rows)]
        header = header or head
        assert head == header
        for number, row in enumerate(rows, start=2):
            # Trailing empty cells are absent: a short row reads as empty values.
            cells = list(row) + [None] * (len(head) - len(row))
            values = {h: "" if v is None else str(v) for h, v in zip(head, cells, strict=True)}
            records.append(Record(number, ws.title, values, "\t".join(values.values())))
    wb.close()
    return header, records


def parse_value(field: dict[str, Any], raw: str) -> Any:
    """A value per its declared type; raises ValueError when it does not fit."""
    kind = field["type"]
    if kind in ("datetime", "date"):
        for fmt in field["formats"]:
            try:
                if fmt == "epoch":
                    return dt.datetime.fromtimestamp(int(raw), CST).replace(tzinfo=None)
                if fmt == "epoch_ms":
                    return dt.datetime.fromtimestamp(int(raw) / 1000, CST).replace(tzinfo=None)
                return dt.datetime.strptime(raw, fmt)
            except ValueError:
                continue
        raise ValueError(f"{raw!r} fits none of {field['formats']}")
    if kind == "int":
        return int(raw)
    if kind == "enum":
        values = {str(k): v for k, v in field["values"].items()}
        if raw not in values:
            raise ValueError(f"{raw!r} not one of {list(values)}")
        return values[raw]
    return raw


def parse_record(source: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """Every field of a record parsed; raises ValueError on a bad or missing required value."""
    out: dict[str, Any] = {}
    for key, field in source["fields"].items():
        raw = values.get(field["column"], "")
        if raw == "":
            if field.get("required"):
                raise ValueError(f"{field['column']} is required")
            out[key] = None
            continue
        if key == "row":  # the seat's leading digits
            digits = "".join(c for c in raw[:3] if c.isdigit())
            out[key] = int(digits) if digits else None
            continue
        out[key] = parse_value(field, raw)
    return out


def feed_files(out: Path) -> list[Path]:
    """Every file under the feeds folder."""
    return sorted(p for p in out.rglob("*") if p.is_file())
