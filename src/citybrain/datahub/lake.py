"""The lake: Parquet files of canonical records, partitioned by kind, category and day.

Layout under the data directory::

    lake/<kind>/category=<code>/day=<YYYY-MM-DD>/<file_id>.parquet   pseudonymised records
    linkage/category=<code>/day=<YYYY-MM-DD>/<file_id>.parquet       identifiers, encrypted
    quarantine/category=<code>/<file_id>.parquet                     bad rows, encrypted

Every part is named by the id of the file it came from, so re-ingesting a file after a crash
rewrites the same parts instead of adding new ones, and parts of a file the database does not
record as ingested are orphans that the next run removes. Parts are written to a staging folder
first and moved into place one by one (an atomic rename each), so a reader never sees half a
Parquet file. Partition columns (category, day) live in the paths, Hive style, which DuckDB and
Spark both read.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from citybrain.kit.settings import get_settings

IDENTIFIERS = ("id_hmac", "phone_hmac", "passport_hmac", "plate_hmac", "card_hmac")
COMMON = [
    ("record_id", pa.int64()),
    ("file_id", pa.string()),
    ("line", pa.int32()),
    # Keyed hashes: the first 16 bytes of the blind index (see datahub.pseudonym).
    *[(name, pa.binary(16)) for name in IDENTIFIERS],
    ("row_hash", pa.int64()),
]
TS = pa.timestamp("s")
KIND_COLUMNS: dict[str, list[tuple[str, pa.DataType]]] = {
    "presence": [
        ("place", pa.string()),
        ("place_kind", pa.string()),
        ("place_name", pa.string()),
        ("start_time", TS),
        ("end_time", TS),
        ("vehicle", pa.string()),
        ("carriage", pa.int32()),
        ("row", pa.int32()),
        ("seat", pa.string()),
        ("direction", pa.string()),
    ],
    "travel": [
        ("mode", pa.string()),
        ("vehicle", pa.string()),
        ("carriage", pa.int32()),
        ("row", pa.int32()),
        ("seat", pa.string()),
        ("origin", pa.string()),
        ("destination", pa.string()),
        ("depart", TS),
        ("arrive", TS),
        ("direction", pa.string()),
        ("country", pa.string()),
        ("port", pa.string()),
    ],
    "health": [
        ("event", pa.string()),
        ("event_time", TS),
        ("place", pa.string()),
        ("result", pa.string()),
        ("detail", pa.string()),
        ("origin", pa.string()),
    ],
    "setting": [
        ("setting_kind", pa.string()),
        ("setting", pa.string()),
        ("setting_name", pa.string()),
        ("grade", pa.string()),
        ("unit", pa.string()),
        ("role", pa.string()),
    ],
    "identity": [
        ("setting_kind", pa.string()),
        ("setting", pa.string()),
        ("sex", pa.string()),
        ("role", pa.string()),
    ],
}
SCHEMAS: dict[str, pa.Schema] = {
    kind: pa.schema(COMMON + columns) for kind, columns in KIND_COLUMNS.items()
}
LINKAGE_ENCRYPTED = (
    "name",
    "id_number",
    "phone",
    "passport",
    "plate",
    "card",
    "birth_date",
    "address",
)
LINKAGE_SCHEMA = pa.schema(
    [
        ("record_id", pa.int64()),
        ("file_id", pa.string()),
        ("line", pa.int32()),
        ("name", pa.string()),
        ("id_number", pa.string()),
        ("phone", pa.string()),
        ("passport", pa.string()),
        ("plate", pa.string()),
        ("card", pa.string()),
        ("birth_date", pa.date32()),
        ("sex", pa.string()),
        ("address", pa.string()),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        ("file_id", pa.string()),
        ("file_name", pa.string()),
        ("line", pa.int32()),
        ("field", pa.string()),
        ("column", pa.string()),
        ("reason", pa.string()),
        ("errors", pa.string()),
        ("raw", pa.string()),  # the row as the agency sent it (JSON), encrypted
    ]
)
QUARANTINE_ENCRYPTED = ("raw",)
STAGING = "_staging"
ROW_GROUP_ROWS = 256_000
# Columns whose values hardly repeat within a part: no dictionary encoding for them.
UNIQUE_COLUMNS = frozenset(
    set(IDENTIFIERS)
    | {"record_id", "line", "row_hash", "start_time", "end_time", "event_time", "depart", "arrive"}
    | {"name", "id_number", "phone", "passport", "plate", "card", "birth_date", "address", "raw"}
)


# Below this many rows a part is written with snappy rather than the configured codec: zstd
# costs about a millisecond per part to set up, more than a small part's bytes are worth (the
# compaction job rewrites small parts anyway).
SMALL_PART_ROWS = 4096


def part_compression(rows: int) -> str:
    """The Parquet codec for a part of ``rows`` rows."""
    configured = get_settings().lake_compression
    if configured == "none" or rows >= SMALL_PART_ROWS:
        return configured
    return "snappy"


@dataclass(frozen=True)
class LakePaths:
    """Where the lake, the linkage store and the quarantine live."""

    root: Path

    @classmethod
    def default(cls) -> LakePaths:
        """Under the configured data directory."""
        return cls(get_settings().data_dir.resolve())

    @property
    def lake(self) -> Path:
        """Pseudonymised records."""
        return self.root / "lake"

    @property
    def linkage(self) -> Path:
        """Encrypted identifiers for the linkage job."""
        return self.root / "linkage"

    @property
    def quarantine(self) -> Path:
        """Encrypted bad rows."""
        return self.root / "quarantine"

    @property
    def staging(self) -> Path:
        """Parts being written, moved into place when complete."""
        return self.root / STAGING

    def kind_dir(self, kind: str) -> Path:
        """The folder of one canonical kind."""
        return self.lake / kind

    def lake_part(self, kind: str, category: str, day: str, file_id: str) -> Path:
        """Relative path of one lake part."""
        return Path("lake", kind, f"category={category}", f"day={day}", f"{file_id}.parquet")

    def linkage_part(self, category: str, day: str, file_id: str) -> Path:
        """Relative path of one linkage-store part."""
        return Path("linkage", f"category={category}", f"day={day}", f"{file_id}.parquet")

    def quarantine_part(self, category: str, file_id: str) -> Path:
        """Relative path of a file's quarantine."""
        return Path("quarantine", f"category={category}", f"{file_id}.parquet")

    def all_parts(self) -> Iterator[Path]:
        """Every part file in the lake, the linkage store and the quarantine."""
        for top in (self.lake, self.linkage, self.quarantine):
            if top.exists():
                yield from top.rglob("*.parquet")

    def glob(self, kind: str) -> str:
        """A glob DuckDB and Spark read one kind with (Hive partitions)."""
        return str(self.kind_dir(kind) / "**" / "*.parquet")


def file_id_of(part: Path) -> str:
    """The id of the file a part came from (its stem)."""
    return part.stem


class Staging:
    """Parts of one file, written aside and moved into place together.

    Staged parts sit flat in one shared folder, named ``<file_id>.<n>.parquet``: no folder to
    make or remove per file (directory operations cost more than small writes on some disks).
    """

    def __init__(self, paths: LakePaths, file_id: str) -> None:
        self.paths = paths
        self.file_id = file_id
        paths.staging.mkdir(parents=True, exist_ok=True)
        self.parts: list[tuple[Path, Path]] = []

    def path_for(self, relative: Path) -> Path:
        """Where to write the part that will live at ``relative``."""
        target = self.paths.staging / f"{self.file_id}.{len(self.parts)}.parquet"
        self.parts.append((target, relative))
        return target

    def publish(self, made: set[Path] | None = None) -> list[Path]:
        """Move every part into place, each with an atomic rename. ``made``: folders known to
        exist (a run publishing many files remembers them)."""
        placed = []
        made = set() if made is None else made
        for staged, relative in self.parts:
            final = self.paths.root / relative
            if final.parent not in made:
                final.parent.mkdir(parents=True, exist_ok=True)
                made.add(final.parent)
            os.replace(staged, final)
            placed.append(final)
        self.parts.clear()
        return placed

    def discard(self) -> None:
        """Forget the parts (the file failed as a whole)."""
        for staged, _ in self.parts:
            staged.unlink(missing_ok=True)
        self.parts.clear()


def remove_orphans(paths: LakePaths, committed: Iterable[str]) -> int:
    """Delete parts no finished file owns, and everything in staging; return how many parts
    went. Called under the intake lock, which every writer of parts holds until its ledger
    rows commit, so nothing removed here is in use."""
    keep = set(committed)
    removed = 0
    for part in list(paths.all_parts()):
        if file_id_of(part) not in keep:
            part.unlink()
            removed += 1
    if paths.staging.exists():
        for staged in paths.staging.iterdir():
            if staged.is_dir():
                shutil.rmtree(staged, ignore_errors=True)
            else:
                staged.unlink(missing_ok=True)
    return removed


def remove_parts_of(paths: LakePaths, file_ids: Iterable[str]) -> int:
    """Delete the parts of ``file_ids`` (files whose ledger rows did not commit); return how
    many went. Called under the intake lock."""
    doomed = set(file_ids)
    removed = 0
    if doomed:
        for part in list(paths.all_parts()):
            if file_id_of(part) in doomed:
                part.unlink()
                removed += 1
    return removed


def day_of(part: Path) -> dt.date | None:
    """The day partition a lake or linkage part lies in (``day=YYYY-MM-DD``), if any."""
    name = part.parent.name
    if not name.startswith("day="):
        return None
    try:
        return dt.date.fromisoformat(name[4:])
    except ValueError:
        return None


def linkage_parts_of(paths: LakePaths, category: str, file_id: str) -> list[Path]:
    """A file's parts in the linkage store (one a day it holds rows of), by day."""
    folder = paths.linkage / f"category={category}"
    return sorted(folder.glob(f"day=*/{file_id}.parquet")) if folder.exists() else []


def remove_days_of(paths: LakePaths, through: dict[str, dt.date]) -> int:
    """Delete the lake and linkage parts of each file in ``through`` whose day is at or
    before the file's date there; return how many went. Called under the intake lock."""
    removed = 0
    if through:
        for top in (paths.lake, paths.linkage):
            if not top.exists():
                continue
            for part in list(top.rglob("*.parquet")):
                last = through.get(file_id_of(part))
                day = day_of(part)
                if last is not None and day is not None and day <= last:
                    part.unlink()
                    removed += 1
    return removed


def remove_empty_folders(paths: LakePaths) -> int:
    """Delete the partition and kind folders that no part is left in (after a retention
    purge), so that a kind's folder exists only while it holds parts: readers glob a kind's
    folder and an empty glob is an error to DuckDB. Called under the intake lock."""
    removed = 0
    for top in (paths.lake, paths.linkage, paths.quarantine):
        if not top.exists():
            continue
        # Bottom-up, so a folder whose children were just removed is seen empty.
        for folder, _, _ in os.walk(top, topdown=False):
            here = Path(folder)
            if here != top and not any(here.iterdir()):
                here.rmdir()
                removed += 1
    return removed


def existing_hashes(paths: LakePaths, kind: str, category: str, days: Iterable[str]) -> np.ndarray:
    """Row hashes already in the lake for ``category`` on ``days``."""
    chunks = []
    for day in days:
        folder = paths.kind_dir(kind) / f"category={category}" / f"day={day}"
        if not folder.exists():
            continue
        for part in folder.glob("*.parquet"):
            chunks.append(pq.read_table(part, columns=["row_hash"]).column(0).to_numpy())
    if not chunks:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(chunks)
