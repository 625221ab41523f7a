"""All SQL of the health codes: signing keys, scans and scan batches."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from citybrain.core.geo.models import PLACE_VENUE, Place
from citybrain.core.people.models import Person
from citybrain.healthcode.models import (
    KEY_ACTIVE,
    KEY_REMOVED,
    KEY_RETIRED,
    SCAN_PLACE,
    Scan,
    ScanBatch,
    SigningKey,
)
from citybrain.kit.db import rows_affected
from citybrain.risk.models import CompoundTier, PersonColour
from citybrain.risk.repository import active_version_query

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
class PersonAtGate:
    """What a gate needs of a person, read in the scan batch's one query: the risk subject,
    where they live, and their stored colour (``colour`` None: no row, so no facts) with what
    decides whether the stored colour is still current."""

    ref: str
    subject: str
    area_code: str
    colour: str | None
    rule_set_version: int | None
    recheck_at: dt.datetime | None
    override_colour: str | None
    override_until: dt.datetime | None


# The scan path's statements, built once: building a statement and its cache key costs
# more than SQLite takes to run it. Run on the session's connection (Core, no ORM layer).
_PERSONS_AT_GATE = (
    select(
        active_version_query().scalar_subquery(),
        Person.ref,
        Person.id_number_bidx,
        Person.area_code,
        PersonColour.colour,
        PersonColour.rule_set_version,
        PersonColour.recheck_at,
        PersonColour.override_colour,
        PersonColour.override_until,
    )
    .select_from(Person)
    .outerjoin(PersonColour, PersonColour.subject == func.substr(Person.id_number_bidx, 1, 32))
    .where(Person.ref.in_(bindparam("refs", expanding=True)))
)


def persons_at_gate(
    session: Session, refs: Iterable[str]
) -> tuple[int | None, dict[str, PersonAtGate]]:
    """The active rule-set version and, by ref, the persons of ``refs`` with their stored
    colours, in one round trip (persons by their unique ref, each colour by its primary key,
    the subject being the first 32 hex digits of the ID-number blind index). The version is
    None when no person matched or no rule set is active yet."""
    wanted = list(set(refs))
    if not wanted:
        return None, {}
    rows = session.connection().execute(_PERSONS_AT_GATE, {"refs": wanted}).all()
    version: int | None = None
    found: dict[str, PersonAtGate] = {}
    for row in rows:
        if row[0] is not None:
            version = int(row[0])
        found[row[1]] = PersonAtGate(
            ref=row[1],
            subject=row[2][:32],
            area_code=row[3],
            colour=row[4],
            rule_set_version=row[5],
            recheck_at=row[6],
            override_colour=row[7],
            override_until=row[8],
        )
    return version, found


@dataclass(frozen=True)
class PlaceAtGate:
    """What a scan needs of its place (a place's kind, name and compound rarely change, so
    the scan writer keeps these in memory for a while)."""

    code: str
    kind: str
    name: str
    compound_code: str | None
    area_code: str


_PLACES_AT_GATE = select(
    Place.code, Place.kind, Place.name, Place.compound_code, Place.area_code
).where(Place.code.in_(bindparam("codes", expanding=True)))


def places_at_gate(session: Session, codes: Iterable[str]) -> dict[str, PlaceAtGate]:
    """The places of ``codes`` that exist, by code (one read)."""
    wanted = list(set(codes))
    if not wanted:
        return {}
    rows = session.connection().execute(_PLACES_AT_GATE, {"codes": wanted}).all()
    return {row[0]: PlaceAtGate(*row) for row in rows}


@dataclass(frozen=True)
class StoredTier:
    """A compound's stored tier and what its freshness depends on."""

    tier: str
    rule_set_version: int
    recheck_at: dt.datetime | None


_STORED_TIERS = select(
    CompoundTier.compound_code,
    CompoundTier.tier,
    CompoundTier.rule_set_version,
    CompoundTier.recheck_at,
).where(CompoundTier.compound_code.in_(bindparam("codes", expanding=True)))


def stored_tiers(session: Session, codes: Iterable[str]) -> dict[str, StoredTier]:
    """The stored tiers (三色分层) of ``codes`` in one read (compounds without a row are
    green: the risk engine stores only compounds some fact touches)."""
    wanted = list(set(codes))
    if not wanted:
        return {}
    rows = session.connection().execute(_STORED_TIERS, {"codes": wanted}).all()
    return {code: StoredTier(tier, version, recheck) for code, tier, version, recheck in rows}


def place(session: Session, code: str) -> Place | None:
    """One place by code."""
    return session.get(Place, code)


# -- scans --------------------------------------------------------------------------------


_SCAN_TABLE = Scan.__table__
_BATCH_TABLE = ScanBatch.__table__
assert isinstance(_SCAN_TABLE, Table) and isinstance(_BATCH_TABLE, Table)
_LAST_SCAN_ID = select(func.max(_SCAN_TABLE.c.id))
_NEXT_SCAN_IDS = text(
    "SELECT nextval(pg_get_serial_sequence('scans', 'id')) FROM generate_series(1, :n)"
)
_INSERT_SCANS = insert(_SCAN_TABLE)
_INSERT_BATCH = insert(_BATCH_TABLE)


def _scan_ids(session: Session, count: int) -> list[int]:
    """``count`` new scan ids. PostgreSQL: from the column's sequence. SQLite: after the
    largest id, which is safe because a scan batch writes under SQLite's one write lock (the
    writer begins IMMEDIATE; any other writer that read the same largest id fails on the
    primary key or on the lock, it never writes a row twice)."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        return sorted(int(row[0]) for row in connection.execute(_NEXT_SCAN_IDS, {"n": count}))
    last = int(connection.execute(_LAST_SCAN_ID).scalar() or 0)
    return list(range(last + 1, last + 1 + count))


_SCAN_COLUMNS = (
    ("id", "BIGINT"),
    ("method", "VARCHAR"),
    ("place_code", "VARCHAR"),
    ("person_ref", "VARCHAR"),
    ("subject", "VARCHAR"),
    ("direction", "VARCHAR"),
    ("colour", "VARCHAR"),
    ("colour_source", "VARCHAR"),
    ("decision", "VARCHAR"),
    ("reason", "VARCHAR"),
    ("device_token_id", "INTEGER"),
    ("scanned_at", "TIMESTAMPTZ"),
    ("batch", "VARCHAR"),
    ("card_id", "INTEGER"),
)
# PostgreSQL: every row in one statement of fixed text, one array per column (a driver's
# executemany sends, and converts in Python, one statement per row).
_COLUMN_LIST = ", ".join(name for name, _ in _SCAN_COLUMNS)
_ARRAY_LIST = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _SCAN_COLUMNS)
# Built from the constants above only; the values travel as bound arrays.
_INSERT_SCANS_UNNEST = text(
    f"INSERT INTO scans ({_COLUMN_LIST}) SELECT * FROM unnest({_ARRAY_LIST})"  # noqa: S608
)


def insert_scans(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert scan rows, their ids in the order given.

    The ids are taken first and written with the rows, so the rows go in one statement:
    an insert that returns its ids in order would be one statement per row on SQLite, whose
    RETURNING has no guaranteed order. SQLite: one ``executemany`` (its driver loops in C);
    PostgreSQL: one ``INSERT … SELECT FROM unnest(arrays)``."""
    if not rows:
        return []
    ids = _scan_ids(session, len(rows))
    connection = session.connection()
    # Core, not the ORM: the rows are never loaded as objects, and this is the hot path.
    if connection.dialect.name == "postgresql":
        columns: dict[str, list[Any]] = {"id": ids}
        for name, _ in _SCAN_COLUMNS[1:]:
            columns[name] = [row[name] for row in rows]
        connection.execute(_INSERT_SCANS_UNNEST, columns)
        return ids
    connection.execute(
        _INSERT_SCANS, [{**row, "id": scan_id} for row, scan_id in zip(rows, ids, strict=True)]
    )
    return ids


def insert_batch(
    session: Session, *, batch: str, ids: Sequence[int], recorded_at: dt.datetime
) -> None:
    """Record one writer commit of the scans ``ids`` (Core: nothing to load back)."""
    session.connection().execute(
        _INSERT_BATCH,
        {
            "batch": batch,
            "first_id": min(ids),
            "last_id": max(ids),
            "count": len(ids),
            "recorded_at": recorded_at,
            "exported_at": None,
            "exported_files": None,
        },
    )


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
    gone = rows_affected(result)
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


# -- offline scans ------------------------------------------------------------------------


def keys_for_offline_scans(session: Session) -> Sequence[SigningKey]:
    """Every key that ever verified codes and was not removed as compromised, oldest first:
    an offline scan is checked against the trust list as it was when it was made, so a key
    retired or removed since (its grace period over) still verifies what it signed before
    its ``verify_until``. A compromised key (removed at once: ``verify_until`` equal to its
    ``retired_at``) verifies nothing, whenever the scan says it was made."""
    compromised = (SigningKey.status == KEY_REMOVED) & (
        SigningKey.verify_until.is_(None)
        | SigningKey.retired_at.is_(None)
        | (SigningKey.verify_until <= SigningKey.retired_at)
    )
    return session.scalars(
        select(SigningKey).where(~compromised).order_by(SigningKey.created_at, SigningKey.kid)
    ).all()


def offline_scans_by_key(session: Session, keys: Iterable[str]) -> dict[str, int]:
    """Offline key -> scan id, for the keys of ``keys`` already recorded."""
    wanted = list(set(keys))
    if not wanted:
        return {}
    found: dict[str, int] = {}
    # In chunks: a batch holds up to 500 keys, well under every driver's parameter limit.
    for start in range(0, len(wanted), 500):
        rows = session.execute(
            select(Scan.offline_key, Scan.id).where(
                Scan.offline_key.in_(wanted[start : start + 500])
            )
        ).all()
        found.update({str(key): int(scan_id) for key, scan_id in rows})
    return found


def insert_offline_scans(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert offline scan rows (with their ``offline_key``), their ids in the order given.
    The database numbers them (not the hot path: an upload is rare and small), and
    RETURNING sorted by the parameters' order gives the ids back in order on both backends.
    Raises IntegrityError when an offline key is already recorded (a concurrent upload)."""
    if not rows:
        return []
    result = session.execute(insert(Scan).returning(Scan.id, sort_by_parameter_order=True), rows)
    return [int(scan_id) for scan_id in result.scalars().all()]


def places_for_codes(
    session: Session,
    area_code: str,
    *,
    name: str | None,
    kind: str | None,
    offset: int,
    limit: int,
    venue_subkinds: tuple[str, ...] | None = None,
) -> tuple[int, list[Place]]:
    """Places inside ``area_code`` (named like ``name``, of ``kind``; only venues of
    ``venue_subkinds`` when given), by kind and code: how many in all, and the page asked
    for."""
    statement = select(Place).where(Place.area_code.startswith(area_code))
    if venue_subkinds is not None:
        statement = statement.where(Place.kind == PLACE_VENUE, Place.subkind.in_(venue_subkinds))
    if name:
        statement = statement.where(Place.name.contains(name, autoescape=True))
    if kind:
        statement = statement.where(Place.kind == kind)
    total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    rows = session.scalars(statement.order_by(Place.kind, Place.code).offset(offset).limit(limit))
    return int(total), list(rows)


def latest_place_scan(
    session: Session, person_ref: str, place_code: str, since: dt.datetime
) -> Scan | None:
    """The person's latest check-in at the place (``method`` place) since ``since``."""
    return session.scalars(
        select(Scan)
        .where(
            Scan.person_ref == person_ref,
            Scan.place_code == place_code,
            Scan.method == SCAN_PLACE,
            Scan.scanned_at >= since,
        )
        .order_by(Scan.scanned_at.desc(), Scan.id.desc())
        .limit(1)
    ).first()
