"""Scans to the lake (扫码记录入湖): the data centre sees gate and venue scans like any feed.

Every commit of the scan writer queues one ``healthcode.scans_recorded`` event; its handler
schedules this export, which takes every batch not exported yet, writes them as one file per
category — ``gate_scan`` (compound gates, checkpoints, stations) and ``venue_scan`` (venues,
and place codes residents scanned) — and hands each file to the data centre's own intake
(``datahub.service.Intake``), so scans are validated, pseudonymised (the ID number becomes the
keyed hash ``id_hmac``; the raw number goes only to the encrypted linkage store), deduplicated,
written to Parquet and recorded in the intake ledger exactly as an agency's file would be.
The files are staged before the write transaction, and the batches are marked exported in
the same short transaction as the ledger rows.

Only one export runs at a time (the data directory's intake lock, held until the commit), so
a batch is never exported twice; an export that fails leaves its batches for the next one.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.audit.service import SYSTEM, Actor
from citybrain.core.geo.models import PLACE_VENUE, Place
from citybrain.core.people.service import ID_FIELD
from citybrain.datahub.catalog import FieldSpec, FileSpec, Source, get_source
from citybrain.datahub.lake import LakePaths
from citybrain.datahub.push import intake_turn
from citybrain.datahub.service import FileResult, Intake
from citybrain.healthcode import repository
from citybrain.healthcode.models import SCAN_PLACE, Scan
from citybrain.kit import clock
from citybrain.kit.clock import CHINA_TZ
from citybrain.kit.crypto import field_cipher
from citybrain.kit.db import Database

CHANNEL_OUTBOX = "outbox"
GATE_CATEGORY = "gate_scan"
VENUE_CATEGORY = "venue_scan"
MAX_BATCHES = 5_000  # per run; a backlog longer than this is taken by the next runs
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# Directions as the lake's presence records say them (in: arriving at the place).
DIRECTIONS = {"entry": "in", "exit": "out", "visit": "in"}


def app_source(category: str) -> Source:
    """The catalogue's ``gate_scan`` or ``venue_scan`` category with the file contract of
    the records this package writes (JSON lines; the catalogue lists application categories
    without one, since no agency delivers them)."""
    base = get_source(category)
    return dataclasses.replace(
        base,
        file=FileSpec(format="jsonl"),
        fields=(
            FieldSpec("id_number", "id_number", "id_number", required=True),
            FieldSpec("place", "place", "text", required=True),
            FieldSpec("place_kind", "place_kind", "text"),
            FieldSpec("place_name", "place_name", "text"),
            FieldSpec(
                "start_time", "start_time", "datetime", required=True, formats=(TIME_FORMAT,)
            ),
            FieldSpec("direction", "direction", "enum", values=dict(DIRECTIONS)),
        ),
        identity_any=("id_number",),
    )


def category_of(scan: Scan, place: Place | None) -> str:
    """Which lake category a scan belongs to."""
    if scan.method == SCAN_PLACE or (place is not None and place.kind == PLACE_VENUE):
        return VENUE_CATEGORY
    return GATE_CATEGORY


@dataclass
class ExportResult:
    """What one export took to the lake."""

    batches: int = 0
    scans: int = 0
    files: list[FileResult] = field(default_factory=list)

    @property
    def received(self) -> int:
        """Rows the data centre received (equals ``scans`` when it reconciles)."""
        return sum(f.received for f in self.files)

    @property
    def reconciles(self) -> bool:
        """Every scan reached the intake, and every file's counts add up."""
        return self.received == self.scans and all(f.reconciles for f in self.files)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "batches": self.batches,
            "scans": self.scans,
            "received": self.received,
            "accepted": sum(f.accepted for f in self.files),
            "quarantined": sum(f.quarantined for f in self.files),
            "duplicate": sum(f.duplicate for f in self.files),
            "reconciled": self.reconciles,
            "files": [f.file_id for f in self.files],
        }


def _lines(session: Session, scans: list[Scan]) -> dict[str, list[dict[str, str]]]:
    """The scans as JSON-line records per category (ID numbers decrypted here, hashed by the
    intake)."""
    places = {
        p.code: p
        for p in session.scalars(select(Place).where(Place.code.in_({s.place_code for s in scans})))
    }
    encrypted = repository.id_numbers_of_refs(session, {s.person_ref for s in scans})
    cipher = field_cipher()
    numbers = {ref: cipher.decrypt(blob, ID_FIELD) for ref, blob in encrypted.items()}
    out: dict[str, list[dict[str, str]]] = defaultdict(list)
    for scan in scans:
        place = places.get(scan.place_code)
        out[category_of(scan, place)].append(
            {
                "id_number": numbers.get(scan.person_ref, ""),
                "place": scan.place_code,
                "place_kind": place.kind if place else "",
                "place_name": place.name if place else "",
                "start_time": scan.scanned_at.astimezone(CHINA_TZ).strftime(TIME_FORMAT),
                "direction": scan.direction,
                # Not a lake column: it makes every export's bytes its own, so two exports
                # with the same rows (the same people at the same gate in the same second)
                # are two files, the second's rows counted as duplicates, not one file
                # "already ingested" that leaves its scans unaccounted for.
                "scan_id": str(scan.id),
            }
        )
    return out


def export_scans(
    database: Database, paths: LakePaths | None = None, *, actor: Actor = SYSTEM
) -> ExportResult:
    """Export every scan batch not in the lake yet; commits. Returns the counts."""
    paths = paths or LakePaths.default()
    result = ExportResult()
    with intake_turn(paths):
        # Read outside the write transaction: on SQLite the write lock is then held only
        # for the intake and the marking, not for reading and decrypting.
        with database.unit_of_work() as session:
            batches = list(repository.unexported_batches(session, MAX_BATCHES))
            if not batches:
                return result
            scans = repository.scans_of_batches(session, batches)
            files = _lines(session, scans)
            kept = [(b.batch, b.count) for b in batches]
        result.batches, result.scans = len(kept), sum(count for _, count in kept)
        if len(scans) != result.scans:  # a bug, never bad input: refuse to mark them
            raise RuntimeError(f"scan batches hold {len(scans)} rows, not {result.scans}")
        today = clock.today_local()
        first, last = min(s.id for s in scans), max(s.id for s in scans)
        files_bytes = [
            (
                "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode(),
                f"{category}_{today:%Y%m%d}_scans-{first}-{last}.jsonl",
                app_source(category),
            )
            for category, lines in sorted(files.items())
        ]

        def mark(session: Session, outcomes: list[FileResult]) -> None:
            repository.mark_exported(
                session,
                [batch for batch, _ in kept],
                clock.now(),
                ",".join(f.file_id for f in outcomes)[:64],
            )

        intake = Intake(paths)
        try:
            # Staged before the write transaction: the scan batches committing meanwhile
            # wait for the ledger rows and marks only (milliseconds), not for the staging.
            result.files = intake.ingest_files_briefly(
                database,
                files_bytes,
                delivered=today,
                channel=CHANNEL_OUTBOX,
                actor=actor,
                also=mark,
            )
        finally:
            intake.close()
    return result
