"""Writing and verifying the audit chain."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, insert, select, text
from sqlalchemy.orm import Session

from citybrain.core.audit.models import GENESIS_HASH, AuditEntry
from citybrain.kit import clock

OUTCOMES = ("ok", "denied", "failed")
_AUDIT_TABLE = AuditEntry.__table__
assert isinstance(_AUDIT_TABLE, Table)
# Rows go in through Core, not the ORM's unit of work: they are written once and never
# changed, and the ORM's bookkeeping cost more than the rest of an audit row (the scan
# writer writes one per batch of scans).
_INSERT_ENTRY = insert(_AUDIT_TABLE)
_COLUMNS = tuple(column.key for column in _AUDIT_TABLE.columns)


@dataclass(frozen=True)
class Actor:
    """Who acts: ``user:<id>``, ``device:<code>``, ``system`` or ``cli``; with their role and
    jurisdiction."""

    ref: str
    role: str | None = None
    area_code: str | None = None


SYSTEM = Actor("system", "system", None)


def _canonical(entry: AuditEntry) -> bytes:
    body = {
        "seq": entry.seq,
        "at": clock.as_utc(entry.at).isoformat(timespec="microseconds"),
        "actor": entry.actor,
        "actor_role": entry.actor_role,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "area_code": entry.area_code,
        "purpose": entry.purpose,
        "outcome": entry.outcome,
        "detail": entry.detail or {},
        "prev_hash": entry.prev_hash,
    }
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def entry_hash(entry: AuditEntry) -> str:
    """SHA-256 of the row's canonical content, which includes the previous row's hash."""
    return hashlib.sha256(_canonical(entry)).hexdigest()


OBJECT_ID_LENGTH = 64  # AuditEntry.object_id


def _object_id(value: str | int | None) -> str | None:
    """The object id as stored: at most the column's length, so an over-long id a caller took
    from the request (a failed look-up of a made-up ref) still leaves its audit row, marked
    cut with "…", instead of failing the insert (PostgreSQL enforces the length)."""
    if value is None:
        return None
    text_id = str(value)
    if len(text_id) <= OBJECT_ID_LENGTH:
        return text_id
    return text_id[: OBJECT_ID_LENGTH - 1] + "…"


def record(
    session: Session,
    actor: Actor,
    action: str,
    *,
    object_type: str | None = None,
    object_id: str | int | None = None,
    area_code: str | None = None,
    purpose: str | None = None,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one row to the chain within the caller's transaction.

    ``detail`` must hold ids and counts, never personal data. Taking the head row's lock first
    serialises concurrent writers on both SQLite and PostgreSQL.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}")
    row = session.execute(
        text("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
    ).one()
    seq, prev = int(row[0]), str(row[1])
    entry = AuditEntry(
        seq=seq,
        at=clock.now(),
        actor=actor.ref,
        actor_role=actor.role,
        action=action,
        object_type=object_type,
        object_id=_object_id(object_id),
        area_code=area_code,
        purpose=purpose,
        outcome=outcome,
        detail=detail or {},
        prev_hash=prev,
    )
    entry.hash = entry_hash(entry)
    _insert(session, [entry])
    session.execute(text("UPDATE audit_head SET hash = :h WHERE id = 1"), {"h": entry.hash})
    session.flush()
    return entry


def record_purge(
    session: Session,
    action: str,
    *,
    object_type: str,
    deleted: int,
    before: dt.datetime | dt.date,
    retention_days: int,
    actor: Actor = SYSTEM,
) -> AuditEntry | None:
    """Audit a retention purge (how many went, from before when, under which period) in the
    caller's transaction; nothing when none went."""
    if not deleted:
        return None
    return record(
        session,
        actor,
        action,
        object_type=object_type,
        detail={
            "deleted": deleted,
            "before": before.isoformat(),
            "retention_days": retention_days,
        },
    )


def _insert(session: Session, entries: list[AuditEntry]) -> None:
    """Write ``entries`` (transient objects, left out of the session) in one statement."""
    session.execute(
        _INSERT_ENTRY, [{key: getattr(entry, key) for key in _COLUMNS} for entry in entries]
    )


@dataclass(frozen=True)
class Event:
    """One audited act, for :func:`record_many`."""

    actor: Actor
    action: str
    object_type: str | None = None
    object_id: str | int | None = None
    area_code: str | None = None
    purpose: str | None = None
    outcome: str = "ok"
    detail: dict[str, Any] | None = None


def record_many(session: Session, events: list[Event]) -> list[AuditEntry]:
    """Append several rows to the chain within the caller's transaction, in order: the same
    rows as one ``record`` each, with one turn of the head row for them all (bulk work such as
    intake audits a file at a time, hundreds per transaction)."""
    if not events:
        return []
    for event in events:
        if event.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}")
    row = session.execute(
        text("UPDATE audit_head SET seq = seq + :n WHERE id = 1 RETURNING seq, hash"),
        {"n": len(events)},
    ).one()
    last_seq, prev = int(row[0]), str(row[1])
    entries = []
    for seq, event in enumerate(events, start=last_seq - len(events) + 1):
        entry = AuditEntry(
            seq=seq,
            at=clock.now(),
            actor=event.actor.ref,
            actor_role=event.actor.role,
            action=event.action,
            object_type=event.object_type,
            object_id=_object_id(event.object_id),
            area_code=event.area_code,
            purpose=event.purpose,
            outcome=event.outcome,
            detail=event.detail or {},
            prev_hash=prev,
        )
        entry.hash = prev = entry_hash(entry)
        entries.append(entry)
    _insert(session, entries)
    session.execute(text("UPDATE audit_head SET hash = :h WHERE id = 1"), {"h": prev})
    session.flush()
    return entries


@dataclass(frozen=True)
class ChainReport:
    """Result of verifying the chain."""

    rows: int
    ok: bool
    first_bad_seq: int | None = None
    reason: str | None = None


def _entries(session: Session, batch: int = 5000) -> Iterator[AuditEntry]:
    last = 0
    while True:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify_chain(session: Session) -> ChainReport:
    """Walk the whole log in order; report the first row whose sequence, link or hash is off,
    and check that the head agrees with the last row (so truncation is caught too)."""
    expected_seq, prev, count = 1, GENESIS_HASH, 0
    for entry in _entries(session):
        count += 1
        if entry.seq != expected_seq:
            return ChainReport(count, False, expected_seq, f"row {expected_seq} is missing")
        if entry.prev_hash != prev:
            return ChainReport(count, False, entry.seq, "link to the previous row is broken")
        if entry_hash(entry) != entry.hash:
            return ChainReport(count, False, entry.seq, "content does not match its hash")
        prev, expected_seq = entry.hash, expected_seq + 1
    head = session.execute(text("SELECT seq, hash FROM audit_head WHERE id = 1")).one()
    if int(head[0]) != expected_seq - 1 or str(head[1]) != prev:
        return ChainReport(
            count, False, expected_seq, "rows after this point were removed (head disagrees)"
        )
    return ChainReport(count, True)
