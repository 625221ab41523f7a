"""Audit tables: the log itself and the head of its hash chain."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import DDL, BigInteger, Integer, String, Text, event
from sqlalchemy.orm import Mapped, mapped_column

from citybrain.kit.db import Base, JSONType, UTCDateTime


class AuditEntry(Base):
    """One audited act: who did what to which object, where, why, when, with what outcome.

    ``seq`` runs without gaps; ``hash`` covers this row's content and the previous row's hash,
    so altering, removing or reordering any row breaks the chain from there on.
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    # Indexed: an auditor asks "everything this account did" and "everything done to this".
    actor: Mapped[str] = mapped_column(String(64), index=True)
    actor_role: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str | None] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64), index=True)
    area_code: Mapped[str | None] = mapped_column(String(16))
    purpose: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The single row holding the last sequence number and hash; updating it first
    serialises writers, so the chain never forks."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


GENESIS_HASH = "0" * 64

# Append-only at the database: ordinary UPDATE and DELETE are refused. An administrator can
# still drop the trigger; the hash chain is what catches that.
SQLITE_APPEND_ONLY = [
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
]
POSTGRES_APPEND_ONLY = [
    "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END; $$ LANGUAGE plpgsql",
    "DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log",
    "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
]

for _statement in SQLITE_APPEND_ONLY:
    event.listen(
        AuditEntry.__table__,
        "after_create",
        DDL(_statement).execute_if(dialect="sqlite"),  # type: ignore[no-untyped-call]
    )
for _statement in POSTGRES_APPEND_ONLY:
    event.listen(
        AuditEntry.__table__,
        "after_create",
        DDL(_statement).execute_if(dialect="postgresql"),  # type: ignore[no-untyped-call]
    )


def _seed_head(target: Any, connection: Any, **_kw: Any) -> None:
    connection.execute(target.insert().values(id=1, seq=0, hash=GENESIS_HASH))


event.listen(AuditHead.__table__, "after_create", _seed_head)
