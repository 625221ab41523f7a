"""All SQL of the health codes: signing keys, scans and scan batches."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from citybrain.core.geo.models import Place
from citybrain.core.people.models import Person
from citybrain.healthcode.models import (
    KEY_ACTIVE,
    KEY_REMOVED,
    KEY_RETIRED,
    Scan,
    ScanBatch,
    SigningKey,
)
from citybrain.risk.models import CompoundTier

# -- signing keys -------------------------------------------------------------------------


def active_key(session: Session) -> SigningKey | None:
    """The one active signing key, if any."""
    return session.scalar(select(SigningKey).where(SigningKey.status == KEY_ACTIVE))


def trusted_keys(session: Session, at: dt.datetime) -> Sequence[SigningKey]:
    """Keys whose codes are accepted at ``at``: the active one and retired ones in their grace
    period, oldest first."""
    return session.scalars(
        select(SigningKey)
        .where(
            SigningKey.status.in_((KEY_ACTIVE, KEY_RETIRED)),
            or_(SigningKey.verify_until.is_(None), SigningKey.verify_until > at),
        )
        .order_by(SigningKey.created_at, SigningKey.kid)
    ).all()


def all_keys(session: Session) -> Sequence[SigningKey]:
    """Every key ever made, newest first."""
    return session.scalars(select(SigningKey).order_by(SigningKey.created_at.desc())).all()


def expired_retired_keys(session: Session, at: dt.datetime) -> Sequence[SigningKey]:
    """Retired keys whose grace period has ended by ``at``."""
    return session.scalars(
        select(SigningKey).where(
            SigningKey.status == KEY_RETIRED,
            SigningKey.verify_until.is_not(None),
            SigningKey.verify_until <= at,
        )
    ).all()


def key_by_kid(session: Session, kid: str) -> SigningKey | None:
    """One key by id."""
    return session.get(SigningKey, kid)


def removed_status() -> str:
    """The status of a key taken out of the trust list."""
    return KEY_REMOVED


# -- persons and places (read only) -------------------------------------------------------


def subjects_of_refs(session: Session, refs: Iterable[str]) -> dict[str, str]:
    """Person ref -> risk subject (the first 32 hex digits of the ID-number blind index)."""
    wanted = list(set(refs))
    if not wanted:
        return {}
    rows = session.execute(
        select(Person.ref, Person.id_number_bidx).where(Person.ref.in_(wanted))
    ).all()
    return {ref: bidx[:32] for ref, bidx in rows}


def person_compounds(session: Session, refs: Iterable[str]) -> dict[str, str]:
    """Person ref -> the compound the person lives in (area codes of compound length only)."""
    wanted = list(set(refs))
    if not wanted:
        return {}
    rows = session.execute(select(Person.ref, Person.area_code).where(Person.ref.in_(wanted))).all()
    return {ref: area for ref, area in rows if len(area) == 15}


@dataclass(frozen=True)
class StoredTier:
    """A compound's stored tier and what its freshness depends on."""

    tier: str
    rule_set_version: int
    recheck_at: dt.datetime | None


def stored_tiers(session: Session, codes: Iterable[str]) -> dict[str, StoredTier]:
    """The stored tiers (三色分层) of ``codes`` in one read (compounds without a row are
    green: the risk engine stores only compounds some fact touches)."""
    wanted = list(set(codes))
    if not wanted:
        return {}
    rows = session.execute(
        select(
            CompoundTier.compound_code,
            CompoundTier.tier,
            CompoundTier.rule_set_version,
            CompoundTier.recheck_at,
        ).where(CompoundTier.compound_code.in_(wanted))
    ).all()
    return {code: StoredTier(tier, version, recheck) for code, tier, version, recheck in rows}


def place(session: Session, code: str) -> Place | None:
    """One place by code."""
    return session.get(Place, code)


# -- scans --------------------------------------------------------------------------------


def insert_scans(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert scan rows in one statement; their ids in the order given."""
    if not rows:
        return []
    # Core, not the ORM: the rows are never loaded as objects, and this is the hot path.
    table = Scan.__table__
    assert isinstance(table, Table)
    statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    return [int(row[0]) for row in session.connection().execute(statement, rows)]


def add_batch(session: Session, batch: ScanBatch) -> None:
    """Record one writer commit."""
    session.add(batch)


def unexported_batches(session: Session, limit: int) -> Sequence[ScanBatch]:
    """Batches not yet in the lake, oldest first."""
    return session.scalars(
        select(ScanBatch)
        .where(ScanBatch.exported_at.is_(None))
        .order_by(ScanBatch.recorded_at, ScanBatch.batch)
        .limit(limit)
    ).all()


def scans_of_batches(session: Session, batches: Sequence[ScanBatch]) -> list[Scan]:
    """The scans the given batches wrote, in id order (by each batch's id range and key)."""
    out: list[Scan] = []
    for batch in batches:
        out.extend(
            session.scalars(
                select(Scan)
                .where(
                    Scan.id >= batch.first_id,
                    Scan.id <= batch.last_id,
                    Scan.batch == batch.batch,
                )
                .order_by(Scan.id)
            ).all()
        )
    return out


def mark_exported(
    session: Session, batches: Sequence[str], at: dt.datetime, files: str | None
) -> None:
    """Mark batches as exported to the lake."""
    if batches:
        session.execute(
            update(ScanBatch)
            .where(ScanBatch.batch.in_(list(batches)))
            .values(exported_at=at, exported_files=files)
            .execution_options(synchronize_session=False)
        )


def id_numbers_of_refs(session: Session, refs: Iterable[str]) -> dict[str, bytes]:
    """Person ref -> the encrypted ID number (for the lake export, which pseudonymises it)."""
    wanted = list(set(refs))
    if not wanted:
        return {}
    rows = session.execute(
        select(Person.ref, Person.id_number_enc).where(Person.ref.in_(wanted))
    ).all()
    return dict(rows)


def scan_count(session: Session, *, exported: bool | None = None) -> int:
    """How many scans are recorded (``exported``: only those in exported/unexported batches)."""
    if exported is None:
        return int(session.scalar(select(func.count()).select_from(Scan)) or 0)
    condition = ScanBatch.exported_at.is_not(None) if exported else ScanBatch.exported_at.is_(None)
    return int(
        session.scalar(select(func.coalesce(func.sum(ScanBatch.count), 0)).where(condition)) or 0
    )


def recent_scans(session: Session, place_code: str, limit: int = 20) -> Sequence[Scan]:
    """The latest scans at a place, newest first."""
    return session.scalars(
        select(Scan).where(Scan.place_code == place_code).order_by(Scan.id.desc()).limit(limit)
    ).all()


def purge_scans_before(session: Session, before: dt.datetime) -> int:
    """Delete scans recorded before ``before`` whose batch is in the lake already (never one
    not yet exported), and the batches left empty; how many scans went."""
    exported = select(ScanBatch.batch).where(
        ScanBatch.exported_at.is_not(None), ScanBatch.recorded_at < before
    )
    result = session.execute(
        delete(Scan)
        .where(Scan.scanned_at < before, Scan.batch.in_(exported))
        .execution_options(synchronize_session=False)
    )
    gone = int(getattr(result, "rowcount", 0) or 0)
    session.execute(
        delete(ScanBatch)
        .where(
            ScanBatch.exported_at.is_not(None),
            ScanBatch.recorded_at < before,
            ~select(Scan.id).where(Scan.batch == ScanBatch.batch).exists(),
        )
        .execution_options(synchronize_session=False)
    )
    return gone
