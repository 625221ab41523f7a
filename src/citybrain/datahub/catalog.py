"""The data centre's source catalog (数据资源目录): the 42 categories, who provides each, how
sensitive it is, how long it is kept, how often it should arrive, and, for the 30 agency feeds,
the file shape agreed with the agency.

Two packaged files are the data: ``source_catalog.csv`` (copied from the shared catalogue:
codes, agencies, names, origin, evidence) and ``sources.yaml`` (governance and the connector
contract). Nothing here is hard-coded per agency.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from citybrain.kit.errors import NotFound

ORIGIN_AGENCY = "agency_feed"
ORIGIN_APP = "platform_app"
KINDS = ("identity", "presence", "travel", "health", "setting")
SENSITIVITY_LABELS = {
    "S2": ("内部数据", "internal"),
    "S3": ("个人信息", "personal"),
    "S4": ("敏感个人信息", "sensitive personal"),
}
FREQUENCY_LABELS = {
    "hourly": ("每小时", "hourly"),
    "daily": ("每日", "daily"),
    "weekly": ("每周", "weekly"),
    "on_change": ("变更时", "on change"),
}
FIELD_TYPES = (
    "name",
    "id_number",
    "phone",
    "passport",
    "plate",
    "card",
    "text",
    "int",
    "datetime",
    "date",
    "enum",
)
FORMATS = ("csv", "jsonl", "xlsx")
EXTENSIONS = {"csv": ".csv", "jsonl": ".jsonl", "xlsx": ".xlsx"}
# <category>_<YYYYMMDD>[_anything].<ext>: the day the agency delivered the file for.
FILE_NAME = re.compile(
    r"^(?P<category>[a-z_]+?)_(?P<day>\d{8})(?:_[\w.-]+)?\.(?P<ext>csv|jsonl|xlsx)$"
)


@dataclass(frozen=True)
class FieldSpec:
    """One canonical field and the agency column it comes from."""

    name: str
    column: str
    type: str
    required: bool = False
    formats: tuple[str, ...] = ()
    values: dict[str, str] = field(default_factory=dict)
    regex: str | None = None
    # For an ID column shared by document types: the values of the source's id_type field
    # that mean the number is a passport (then it is checked and hashed as one).
    passport_when: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileSpec:
    """How the agency's files look."""

    format: str = "csv"
    encoding: str = "utf-8"

    @property
    def extension(self) -> str:
        """File extension including the dot."""
        return EXTENSIONS[self.format]


@dataclass(frozen=True)
class Source:
    """One source category of the catalogue."""

    code: str
    agency: str
    agency_en: str
    name: str
    name_en: str
    origin: str
    evidence: str
    sensitivity: str
    retention_days: int
    frequency: str
    stale_after_hours: int
    kinds: tuple[str, ...]
    file: FileSpec | None = None
    fields: tuple[FieldSpec, ...] = ()
    identity_any: tuple[str, ...] = ()
    constants: dict[str, str] = field(default_factory=dict)
    vehicle_place: str | None = None
    place_from: tuple[str, ...] = ()
    setting_from: str | None = None

    @property
    def is_feed(self) -> bool:
        """Whether an outside agency delivers files for it (the others come from our apps)."""
        return self.origin == ORIGIN_AGENCY

    def field_named(self, name: str) -> FieldSpec | None:
        """The field spec for canonical ``name``, if the feed has one."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        return None

    @property
    def columns(self) -> tuple[str, ...]:
        """The agency's column names, in contract order, without repeats."""
        return tuple(dict.fromkeys(spec.column for spec in self.fields))

    def label(self, lang: str = "zh-CN") -> str:
        """Human name in ``lang``."""
        return self.name_en if lang == "en" else self.name


def _text(filename: str) -> str:
    return resources.files("citybrain.datahub").joinpath("data", filename).read_text("utf-8")


def _field(name: str, raw: dict[str, Any], source: str) -> FieldSpec:
    kind = raw.get("type")
    if kind not in FIELD_TYPES:
        raise ValueError(f"sources.yaml: {source}.{name}: unknown type {kind!r}")
    formats = tuple(str(f) for f in raw.get("formats", ()))
    if kind in ("datetime", "date") and not formats:
        raise ValueError(f"sources.yaml: {source}.{name}: a {kind} needs formats")
    values = {str(k): str(v) for k, v in (raw.get("values") or {}).items()}
    if kind == "enum" and not values:
        raise ValueError(f"sources.yaml: {source}.{name}: an enum needs values")
    return FieldSpec(
        name=name,
        column=str(raw["column"]),
        type=kind,
        required=bool(raw.get("required", False)),
        formats=formats,
        values=values,
        regex=raw.get("regex"),
        passport_when=tuple(str(v) for v in raw.get("passport_when", ())),
    )


def _source(row: dict[str, str], raw: dict[str, Any], defaults: dict[str, Any]) -> Source:
    code = row["code"]
    kinds = tuple(raw.get("kinds", ()))
    if not kinds or any(k not in KINDS for k in kinds):
        raise ValueError(f"sources.yaml: {code}: kinds must be some of {KINDS}")
    if raw.get("sensitivity") not in SENSITIVITY_LABELS:
        raise ValueError(f"sources.yaml: {code}: unknown sensitivity")
    if raw.get("frequency") not in FREQUENCY_LABELS:
        raise ValueError(f"sources.yaml: {code}: unknown frequency")
    fields = tuple(_field(n, f, code) for n, f in (raw.get("fields") or {}).items())
    file_spec = None
    if row["origin"] == ORIGIN_AGENCY:
        if not fields:
            raise ValueError(f"sources.yaml: agency feed {code} has no fields")
        merged = {**defaults.get("file", {}), **(raw.get("file") or {})}
        if merged.get("format") not in FORMATS:
            raise ValueError(f"sources.yaml: {code}: unknown file format")
        file_spec = FileSpec(format=merged["format"], encoding=merged.get("encoding", "utf-8"))
    names = {f.name for f in fields}
    if any(f.passport_when for f in fields):
        if "id_type" not in names:
            raise ValueError(f"sources.yaml: {code}: passport_when needs an id_type field")
        names.add("passport")
    identity_any = tuple(raw.get("identity_any", ()))
    if any(n not in names for n in identity_any):
        raise ValueError(f"sources.yaml: {code}: identity_any names a missing field")
    return Source(
        code=code,
        agency=row["agency"],
        agency_en=row["agency_en"],
        name=row["name"],
        name_en=row["name_en"],
        origin=row["origin"],
        evidence=row["evidence"],
        sensitivity=raw["sensitivity"],
        retention_days=int(raw["retention_days"]),
        frequency=raw["frequency"],
        stale_after_hours=int(raw["stale_after_hours"]),
        kinds=kinds,
        file=file_spec,
        fields=fields,
        identity_any=identity_any,
        constants={str(k): str(v) for k, v in (raw.get("constants") or {}).items()},
        vehicle_place=raw.get("vehicle_place"),
        place_from=tuple(raw.get("place_from", ())),
        setting_from=raw.get("setting_from"),
    )


@lru_cache(maxsize=1)
def catalog() -> dict[str, Source]:
    """All 42 categories by code, in the catalogue's order."""
    rows = list(csv.DictReader(io.StringIO(_text("source_catalog.csv"))))
    spec = yaml.safe_load(_text("sources.yaml"))
    governed = spec["sources"]
    missing = [r["code"] for r in rows if r["code"] not in governed]
    extra = sorted(set(governed) - {r["code"] for r in rows})
    if missing or extra:
        raise ValueError(f"sources.yaml and source_catalog.csv disagree: {missing} {extra}")
    return {r["code"]: _source(r, governed[r["code"]], spec.get("defaults", {})) for r in rows}


def get_source(code: str) -> Source:
    """The category ``code``, or a clear error naming it."""
    source = catalog().get(code)
    if source is None:
        raise NotFound(
            f"未知的数据类别：{code}",
            f"unknown source category: {code}",
            code="unknown_category",
            field="category",
        )
    return source


def feeds() -> list[Source]:
    """The 30 categories delivered as files by outside agencies."""
    return [s for s in catalog().values() if s.is_feed]


def identify(path: Path) -> tuple[Source, str | None] | None:
    """Which feed a dropped file belongs to, and the delivery day its name gives
    (``YYYYMMDD``), from ``<category>_<YYYYMMDD>[_suffix].<ext>``; None if it is not a feed
    file (the caller reports it)."""
    match = FILE_NAME.match(path.name)
    if match is None:
        return None
    source = catalog().get(match["category"])
    if source is None or not source.is_feed or source.file is None:
        return None
    if source.file.extension != f".{match['ext']}":
        return None
    return source, match["day"]
