"""Risk tables: facts, rule sets and their approvals, person colours, compound tiers,
overrides, appeals and the notifications shown to residents.

Everything about a person is keyed by their risk subject (``risk.subjects``), a pseudonym;
no name, ID number or phone is stored here. The text of an appeal, which the person writes
freely, is kept encrypted like the registry's fields.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from citybrain.kit.db import Base, JSONType, UTCDateTime


class Fact(Base):
    """One typed fact about a subject (确诊、密接、行程…) with its evidence and valid period.

    ``evidence`` holds ids only (lake record ids, the analysis run, the household, the case
    fact). A retracted fact (``retracted_at``) no longer counts anywhere but stays for the
    record. ``dedupe_key`` makes repeated assertions of the same finding (a job retried, a
    trace read twice) one fact.
    """

    __tablename__ = "facts"
    __table_args__ = (
        Index("ix_facts_subject_kind", "subject", "kind"),
        Index("ix_facts_asserted_by_at", "asserted_by", "asserted_at"),
        # The register of hand turns reads these few among all the analysis's facts.
        Index(
            "ix_facts_turned_at",
            "asserted_at",
            postgresql_where=text("turned_colour IS NOT NULL"),
            sqlite_where=text("turned_colour IS NOT NULL"),
        ),
        # The register's withdrawals that turned a code green.
        Index(
            "ix_facts_freed_at",
            "retracted_at",
            postgresql_where=text("freed_colour IS NOT NULL"),
            sqlite_where=text("freed_colour IS NOT NULL"),
        ),
        # The queue of diagnoses asked to be withdrawn reads these few.
        Index(
            "ix_facts_retraction_asked",
            "retraction_requested_at",
            postgresql_where=text("retraction_requested_at IS NOT NULL AND retracted_at IS NULL"),
            sqlite_where=text("retraction_requested_at IS NOT NULL AND retracted_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(24))
    source: Mapped[str] = mapped_column(String(48))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Quarantine setting (home, facility, hospital) of an in_quarantine fact.
    setting: Mapped[str | None] = mapped_column(String(16))
    # The compound the fact places the subject in, when the source knows it.
    compound_code: Mapped[str | None] = mapped_column(String(15), index=True)
    asserted_by: Mapped[str] = mapped_column(String(64))
    asserted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    valid_from: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    retracted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    retracted_by: Mapped[str | None] = mapped_column(String(64))
    retraction_reason: Mapped[str | None] = mapped_column(String(200))
    dedupe_key: Mapped[str | None] = mapped_column(String(96), index=True)
    # Recorded by hand and turned the person's green code this colour (手工转码): counted
    # against the account's daily limit and shown on the person's page.
    turned_colour: Mapped[str | None] = mapped_column(String(8))
    # Withdrawn, it turned the person's code from this colour to green (手工转绿): listed in
    # the register beside the turns to red.
    freed_colour: Mapped[str | None] = mapped_column(String(8))
    # A case is withdrawn by two people: the first's request waits here for a second.
    retraction_requested_by: Mapped[str | None] = mapped_column(String(64))
    retraction_requested_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    retraction_request_reason: Mapped[str | None] = mapped_column(String(200))

    def __repr__(self) -> str:
        return f"<Fact {self.id} {self.kind}>"


class RuleSet(Base):
    """One version of the colour rules (YAML), with its dry run and lifecycle.

    ``status``: proposed → active → superseded, or rejected. ``dry_run`` is what activating
    would change, computed against the facts when it was proposed (or refreshed when the
    active version changed since): subjects changing colour, by district.
    """

    __tablename__ = "rule_sets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    name: Mapped[str] = mapped_column(String(128))
    yaml_text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    note: Mapped[str | None] = mapped_column(String(500))
    proposed_by: Mapped[str] = mapped_column(String(64))
    proposed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    dry_run: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    approvals_required: Mapped[int] = mapped_column(Integer)
    activated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    superseded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<RuleSet v{self.version} {self.status}>"


class RuleSetApproval(Base):
    """One approver's signature on a rule-set version; one per approver."""

    __tablename__ = "rule_set_approvals"
    __table_args__ = (UniqueConstraint("rule_set_id", "approver"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule_set_id: Mapped[int] = mapped_column(ForeignKey("rule_sets.id"), index=True)
    approver: Mapped[str] = mapped_column(String(64))
    approver_role: Mapped[str | None] = mapped_column(String(32))
    approved_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class PersonColour(Base):
    """A subject's colour as computed from their facts by a rule-set version, with reasons.

    ``until``: when the colour is due to end (None: open-ended); ``recheck_at``: the first
    moment the computation could give another answer (a rule's or fact's end, a fact's
    start), after which a read recomputes. ``area_code``: where the subject lives (the
    registry's, else a fact's compound), for compound tiers and district counts.
    The override columns carry an approved manual colour while it lasts, so a read stays one
    row.
    """

    __tablename__ = "person_colours"

    subject: Mapped[str] = mapped_column(String(32), primary_key=True)
    colour: Mapped[str] = mapped_column(String(8))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    recheck_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    rule_set_version: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    area_code: Mapped[str | None] = mapped_column(String(15), index=True)
    override_id: Mapped[int | None] = mapped_column(Integer)
    override_colour: Mapped[str | None] = mapped_column(String(8))
    override_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    override_reason: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class CompoundTier(Base):
    """A compound's tier (三色分层) as computed from its residents' facts, with reasons."""

    __tablename__ = "compound_tiers"

    compound_code: Mapped[str] = mapped_column(String(15), primary_key=True)
    tier: Mapped[str] = mapped_column(String(8))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    since: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    recheck_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    rule_set_version: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Override(Base):
    """A manual colour (人工赋码): requested by one user with a legal basis, applied only when
    another approves, for at most 72 hours.

    ``status``: requested → active → expired | revoked, or rejected.
    """

    __tablename__ = "risk_overrides"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(32), index=True)
    colour: Mapped[str] = mapped_column(String(8))
    legal_basis: Mapped[str] = mapped_column(String(300))
    reason: Mapped[str] = mapped_column(String(300))
    hours: Mapped[int] = mapped_column(Integer)
    area_code: Mapped[str | None] = mapped_column(String(15), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    approved_by: Mapped[str | None] = mapped_column(String(64))
    approved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ended_by: Mapped[str | None] = mapped_column(String(64))
    appeal_id: Mapped[int | None] = mapped_column(Integer)


class FactBatch(Base):
    """A list of people handed over at once (批量登记), e.g. a flight's close contacts from
    the CDC: uploaded by one account with its basis, asserted only when another approves.

    ``items`` holds, per accepted row, its row number, the risk subject and the contact date
    (never the ID number); ``errors`` the rejected rows by row, field and what is wrong;
    ``dry_run`` what approving would do (and, once approved, what it did). ``status``:
    requested → approving (the facts asserted a chunk at a time in the background,
    ``facts_asserted`` so far) → approved, or rejected; a request nobody decides lapses after
    72 hours.
    """

    __tablename__ = "risk_fact_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(24))
    note: Mapped[str] = mapped_column(String(200))
    days: Mapped[int] = mapped_column(Integer)
    area_code: Mapped[str] = mapped_column(String(15), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    rows_total: Mapped[int] = mapped_column(Integer)
    rows_accepted: Mapped[int] = mapped_column(Integer)
    items: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    errors: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    dry_run: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_role: Mapped[str | None] = mapped_column(String(32))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decision_reason: Mapped[str | None] = mapped_column(String(200))
    facts_asserted: Mapped[int] = mapped_column(Integer, default=0)


class Appeal(Base):
    """A person's appeal against their colour (申诉), in their street office's queue."""

    __tablename__ = "risk_appeals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(32), index=True)
    street_code: Mapped[str] = mapped_column(String(9), index=True)
    text_enc: Mapped[bytes] = mapped_column(LargeBinary)
    colour: Mapped[str] = mapped_column(String(8))
    filed_by: Mapped[str] = mapped_column(String(64))
    filed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    deadline: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), index=True)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    outcome_zh: Mapped[str | None] = mapped_column(String(500))
    outcome_en: Mapped[str | None] = mapped_column(String(500))
    action: Mapped[str | None] = mapped_column(String(16))
    fact_id: Mapped[int | None] = mapped_column(Integer)
    override_id: Mapped[int | None] = mapped_column(Integer)
    # When the text the person wrote was cleared, its retention period after the decision
    # over; the appeal, its outcome and its audit rows stay.
    text_purged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class RiskNotification(Base):
    """A message for the person (an override applied to them, their appeal decided), which
    the residents' pages show on the code page."""

    __tablename__ = "risk_notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    text_zh: Mapped[str] = mapped_column(String(500))
    text_en: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The text message to the person's phone: when it was settled and how ("sent"; "no_phone":
    # not registered, or no phone; "no_gateway": no SMS platform configured).
    texted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    text_outcome: Mapped[str | None] = mapped_column(String(16))
