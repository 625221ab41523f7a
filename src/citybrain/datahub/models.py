"""The data centre's ledger: every file taken in, with its reconciliation counts, and every
batch pushed over the API with its idempotency key."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Date, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from citybrain.kit.db import Base, JSONType, UTCDateTime

STATUS_INGESTED = "ingested"  # taken in: every row accepted, quarantined or a duplicate
STATUS_REJECTED = "rejected"  # unreadable as a whole (encoding, not a workbook, no header)
CHANNEL_DROP = "drop"  # the agency's drop folder
CHANNEL_PUSH = "push"  # POST /api/v1/datahub/batches


class IntakeFile(Base):
    """One file (or pushed batch) taken in, and how its rows reconcile:
    ``received = accepted + quarantined + duplicate``, exactly."""

    __tablename__ = "intake_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The first 20 hex digits of the content's SHA-256: the same bytes are the same file, so
    # re-ingesting them is a no-op. Lake parts are named by it.
    file_id: Mapped[str] = mapped_column(String(20), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(40), index=True)
    name: Mapped[str] = mapped_column(String(300))
    channel: Mapped[str] = mapped_column(String(8), default=CHANNEL_DROP)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    delivered_day: Mapped[dt.date | None] = mapped_column(Date)
    first_day: Mapped[dt.date | None] = mapped_column(Date)
    last_day: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(12))
    error: Mapped[str | None] = mapped_column(Text)
    received: Mapped[int] = mapped_column(Integer, default=0)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    quarantined: Mapped[int] = mapped_column(Integer, default=0)
    duplicate: Mapped[int] = mapped_column(Integer, default=0)
    late: Mapped[int] = mapped_column(Integer, default=0)  # rows older than the day before delivery
    reasons: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # reason -> count
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    ingested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    # When the file's rows left the lake, the linkage store and the quarantine at the end of
    # their retention period (datahub.retention); the counts above stay as its history.
    purged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    # Days of a file spanning several that reached their retention before its newest day did:
    # every day up to ``purged_through`` has left the lake and the linkage store, taking
    # ``purged_rows`` of its accepted rows (its quarantined rows go with the whole file).
    purged_through: Mapped[dt.date | None] = mapped_column(Date, default=None)
    purged_rows: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    def __repr__(self) -> str:
        return f"<IntakeFile {self.file_id} {self.category} {self.status}>"


class PushBatch(Base):
    """A batch an agency pushed over the API, by its idempotency key: the same key again
    returns the first answer and takes nothing in twice."""

    __tablename__ = "push_batches"
    __table_args__ = (UniqueConstraint("actor", "idempotency_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(80))
    idempotency_key: Mapped[str] = mapped_column(String(100))
    category: Mapped[str] = mapped_column(String(40))
    body_sha256: Mapped[str] = mapped_column(String(64))
    intake_file_id: Mapped[int] = mapped_column(ForeignKey("intake_files.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
