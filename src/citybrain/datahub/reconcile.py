"""Reconciliation from file to lake (对账): every ledger row's counts against what the lake, the
linkage store and the quarantine actually hold, counted independently of the intake run.

For each file the ledger says ``received = accepted + quarantined + duplicate``; here the
accepted rows are counted in every lake kind of the category and in the linkage store, and
the quarantined rows in the quarantine, by the file id in each part's name. A file purged at
the end of its retention period (``datahub.retention``) must hold no rows anywhere, and one
whose older days went must hold its accepted rows less those days' (``purged_rows``). Parts
that no finished file owns are reported too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.datahub import lake
from citybrain.datahub.catalog import catalog
from citybrain.datahub.models import STATUS_INGESTED, STATUS_REJECTED, IntakeFile
from citybrain.datahub.vault import Vault


@dataclass
class Mismatch:
    """A file whose stored rows differ from its ledger row."""

    file_id: str
    name: str
    what: str  # "lake:<kind>" | "linkage" | "quarantine" | "ledger"
    expected: int
    found: int


@dataclass
class ReconcileReport:
    """The whole lake against the whole ledger."""

    files: int = 0
    received: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicate: int = 0
    lake_rows: dict[str, int] = field(default_factory=dict)
    linkage_rows: int = 0
    quarantine_rows: int = 0
    orphan_files: int = 0  # file ids with parts but no finished ledger row
    purged_files: int = 0  # files whose rows left at the end of their retention period
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every count agrees and nothing is stray."""
        return not self.mismatches and self.orphan_files == 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["ok"] = self.ok
        return out


def _rows_by_file(parts: list[Any]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for part in parts:
        # The row count sits in the footer: no data page is read.
        counts[lake.file_id_of(part)] += pq.ParquetFile(part).metadata.num_rows
    return counts


def reconcile(session: Session, paths: lake.LakePaths | None = None) -> ReconcileReport:
    """Count what every finished file left in the lake and compare it with the ledger."""
    paths = paths or lake.LakePaths.default()
    report = ReconcileReport()
    files = list(
        session.scalars(
            select(IntakeFile).where(IntakeFile.status.in_([STATUS_INGESTED, STATUS_REJECTED]))
        )
    )
    owned = {f.file_id for f in files}
    by_kind: dict[str, Counter[str]] = {}
    for kind in lake.KIND_COLUMNS:
        folder = paths.kind_dir(kind)
        by_kind[kind] = _rows_by_file(sorted(folder.rglob("*.parquet")) if folder.exists() else [])
        report.lake_rows[kind] = sum(by_kind[kind].values())
    vault = Vault()
    secret: dict[str, Counter[str]] = {}
    for store, top in (("linkage", paths.linkage), ("quarantine", paths.quarantine)):
        counts: Counter[str] = Counter()
        for part in sorted(top.rglob("*.parquet")) if top.exists() else []:
            counts[lake.file_id_of(part)] += vault.metadata(part).num_rows
        secret[store] = counts
    report.linkage_rows = sum(secret["linkage"].values())
    report.quarantine_rows = sum(secret["quarantine"].values())
    sources = catalog()
    for f in files:
        report.files += 1
        report.received += f.received
        report.accepted += f.accepted
        report.quarantined += f.quarantined
        report.duplicate += f.duplicate
        checks = [("ledger", f.received, f.accepted + f.quarantined + f.duplicate)]
        purged = f.purged_at is not None
        report.purged_files += purged
        # Days of a multi-day file that reached their retention left before the file did.
        accepted, quarantined = (0, 0) if purged else (f.accepted - f.purged_rows, f.quarantined)
        source = sources.get(f.category)
        for kind in source.kinds if source is not None and source.is_feed else ():
            checks.append((f"lake:{kind}", accepted, by_kind[kind][f.file_id]))
        checks.append(("linkage", accepted, secret["linkage"][f.file_id]))
        checks.append(("quarantine", quarantined, secret["quarantine"][f.file_id]))
        for what, expected, found in checks:
            if expected != found:
                report.mismatches.append(Mismatch(f.file_id, f.name, what, expected, found))
    stray = {fid for counts in (*by_kind.values(), *secret.values()) for fid in counts} - owned
    report.orphan_files = len(stray)
    return report
