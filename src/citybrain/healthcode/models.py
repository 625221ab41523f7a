"""Health-code tables: the signing keys (签名密钥), the scans (扫码记录) at gates and places, and
the households' exit passes (出入证) that the gate decision honours."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from citybrain.kit.db import Base, UTCDateTime

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
ScanId = BigInteger().with_variant(Integer, "sqlite")

KEY_ACTIVE = "active"  # signs new codes; exactly one at a time
KEY_RETIRED = "retired"  # signs nothing, still verifies the codes it signed until verify_until
KEY_REMOVED = "removed"  # out of the trust list
KEY_STATUSES = (KEY_ACTIVE, KEY_RETIRED, KEY_REMOVED)


class SigningKey(Base):
    """An ES256 (P-256) key pair that signs health codes and place codes.

    ``kid`` is derived from the public key as the EU DCC does (the first 8 bytes of the
    SHA-256 of the SubjectPublicKeyInfo, base64url), so a gate can check it matches the key.
    The private key is stored only encrypted with the platform's field cipher.
    """

    __tablename__ = "signing_keys"
    __table_args__ = (
        # One active key at a time, even when two processes create the first key at once.
        Index(
            "uq_signing_keys_active",
            "status",
            unique=True,
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
    )

    kid: Mapped[str] = mapped_column(String(16), primary_key=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # SPKI, DER
    private_key_enc: Mapped[bytes] = mapped_column(LargeBinary)  # PKCS#8 PEM, field-encrypted
    status: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    activated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # A retired key stays in the trust list until every code it signed has expired.
    verify_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    removed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<SigningKey {self.kid} {self.status}>"


SCAN_GATE = "gate"  # a device at a place scanned a person's code
SCAN_PLACE = "place"  # a person scanned a place's code (场所码)
DIRECTION_ENTRY = "entry"
DIRECTION_EXIT = "exit"
DIRECTION_VISIT = "visit"  # a place-code scan says only "I was here"
DECISION_PASS = "pass"  # noqa: S105 — a decision, not a password
DECISION_DENY = "deny"


class Scan(Base):
    """One scan: who (pseudonymous ref and risk subject) passed or was turned back where, when,
    which way, with which colour, and why.

    Rows are written in batches by the scan writer; ``batch`` names the batch so its one
    outbox event can find exactly its rows.
    """

    __tablename__ = "scans"
    __table_args__ = (
        Index("ix_scans_place_code_scanned_at", "place_code", "scanned_at"),
        # An offline scan uploaded twice (a retry after a lost answer) is recorded once.
        # Partial: the gate scans of the hot path (no key) add no entry to this index.
        Index(
            "uq_scans_offline_key",
            "offline_key",
            unique=True,
            postgresql_where=text("offline_key IS NOT NULL"),
            sqlite_where=text("offline_key IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(ScanId, primary_key=True, autoincrement=True)
    method: Mapped[str] = mapped_column(String(8))
    place_code: Mapped[str] = mapped_column(ForeignKey("places.code"))
    person_ref: Mapped[str] = mapped_column(String(32), index=True)
    subject: Mapped[str | None] = mapped_column(String(32), index=True)
    direction: Mapped[str] = mapped_column(String(8))
    colour: Mapped[str] = mapped_column(String(8))
    # Whether the colour came from the server (online) or only from inside the code (offline).
    colour_source: Mapped[str] = mapped_column(String(8))
    decision: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(40))
    device_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    scanned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    batch: Mapped[str] = mapped_column(String(32))
    # Offline scans only (``service.record_offline_scans``): the scanner and the gate's own id
    # of the scan, "<kind>:<principal id>:<client id>"; None for every scan made online.
    offline_key: Mapped[str | None] = mapped_column(String(100))
    # A printed health card's number when the scan was of a card (纸质健康卡), not of a phone:
    # the gate checked an ID card. No foreign key: a card's row is purged before its scans.
    card_id: Mapped[int | None] = mapped_column(Integer)

    def __repr__(self) -> str:
        # Never the person: reprs end up in logs.
        return f"<Scan {self.id} {self.place_code} {self.decision}>"


class ScanBatch(Base):
    """One commit of the scan writer: which scans it wrote (ids ``first_id``..``last_id`` with
    this ``batch``), and when they were exported to the lake (the export job takes every
    batch not exported yet, so one lake file holds many batches)."""

    __tablename__ = "scan_batches"
    __table_args__ = (
        Index(
            "ix_scan_batches_unexported",
            "recorded_at",
            postgresql_where=text("exported_at IS NULL"),
            sqlite_where=text("exported_at IS NULL"),
        ),
    )

    batch: Mapped[str] = mapped_column(String(32), primary_key=True)
    first_id: Mapped[int] = mapped_column(ScanId)
    last_id: Mapped[int] = mapped_column(ScanId)
    count: Mapped[int] = mapped_column(Integer)
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    exported_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The lake files (ledger file ids) the batch's scans went into, by category.
    exported_files: Mapped[str | None] = mapped_column(String(64))

    def __repr__(self) -> str:
        return f"<ScanBatch {self.batch} {self.count}>"


# Why a household may leave a closed or controlled compound (出入证事由).
PERMIT_SUPPLIES = "supplies"  # 采购生活物资
PERMIT_MEDICAL = "medical"  # 就医
PERMIT_ESSENTIAL_WORK = "essential_work"  # 保供保运等必要工作
PERMIT_OTHER = "other"  # 其他（须写明）
PASS_REASONS = (PERMIT_SUPPLIES, PERMIT_MEDICAL, PERMIT_ESSENTIAL_WORK, PERMIT_OTHER)


class HouseholdPass(Base):
    """An exit pass (出入证) for a household of a closed (red) or controlled (yellow) compound,
    valid for whole local days (China time) from ``valid_from`` to ``valid_until`` inclusive,
    unless revoked. It covers every member of the household; at the compound's gate it lets a
    resident with a green code out of a closed compound (see ``healthcode.policy``).

    Issued and revoked by ``healthcode.passes`` (the residents app's staff pages call it).
    """

    __tablename__ = "household_passes"
    __table_args__ = (
        # The gate's lookup: a person's household's passes that end on or after today.
        Index("ix_household_passes_household_id_valid_until", "household_id", "valid_until"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    compound_code: Mapped[str] = mapped_column(ForeignKey("compounds.code"), index=True)
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_until: Mapped[dt.date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(String(100))
    issued_by: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(64))

    def __repr__(self) -> str:
        return f"<HouseholdPass {self.id} {self.compound_code}>"


# Why a printed health card stopped being valid before its time (作废原因).
CARD_LOST = "lost"  # 挂失
CARD_REPLACED = "replaced"  # 补办新卡，旧卡作废
CARD_CANCELLED = "cancelled"  # 其他原因作废
CARD_END_REASONS = (CARD_LOST, CARD_REPLACED, CARD_CANCELLED)
CARD_BY_STAFF = "staff"  # issued by the community's staff (社区代办)
CARD_BY_HOUSEHOLD = "household"  # printed by the holder's household on the residents' pages


class HealthCard(Base):
    """A printed health card (纸质健康卡) for a resident without a smartphone of their own (an
    elder, a child): its QR names the holder and the card, never a colour, and the gate takes
    the holder's current colour online, then shows the holder's masked name and the last four
    characters of their ID number so the gate staff check the ID card beside it.

    ``id`` is the card's number, printed on it and signed into it: a card reported lost, or
    replaced by a new one, is refused at the gate however many copies were printed. The masked
    name and the ID's tail are kept here (not decrypted per scan) as printed. A person's cards
    go with their registration (ON DELETE CASCADE). Issued and ended by
    ``healthcode.cards``."""

    __tablename__ = "health_cards"
    __table_args__ = (Index("ix_health_cards_area_code_issued_at", "area_code", "issued_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_ref: Mapped[str] = mapped_column(
        ForeignKey("persons.ref", ondelete="CASCADE"), index=True
    )
    holder_name: Mapped[str] = mapped_column(String(40))  # masked, as printed: 张*明
    id_tail: Mapped[str] = mapped_column(String(4))
    # The holder's area when the card was issued (printed on it). The staff who look after a
    # card are those of where the holder lives now (``cards.holder_area``).
    area_code: Mapped[str] = mapped_column(String(15))
    issued_via: Mapped[str] = mapped_column(String(12))
    issued_by: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ended_by: Mapped[str | None] = mapped_column(String(64))
    end_reason: Mapped[str | None] = mapped_column(String(12))

    def __repr__(self) -> str:
        # Never the holder: reprs end up in logs.
        return f"<HealthCard {self.id}>"


class CardPresentation(Base):
    """A printed health card that had ended (reported lost, replaced or cancelled) presented at
    a gate and refused there (挂失卡被出示): someone may be going about with another's card, or
    the holder with an old copy. The holder's household and community see where and when; one
    row per card and place within a few minutes (a scanner reading the same card again adds
    none). Goes with its card (ON DELETE CASCADE). Written by ``healthcode.cards``."""

    __tablename__ = "card_presentations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    card_id: Mapped[int] = mapped_column(
        ForeignKey("health_cards.id", ondelete="CASCADE"), index=True
    )
    place_code: Mapped[str] = mapped_column(String(24))
    direction: Mapped[str] = mapped_column(String(8))
    # The device or staff account that scanned it.
    presented_by: Mapped[str] = mapped_column(String(64))
    presented_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<CardPresentation {self.id} card={self.card_id}>"
