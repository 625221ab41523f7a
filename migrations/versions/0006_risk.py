"""risk: facts, rule sets and approvals, person colours, compound tiers, overrides, appeals

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import citybrain.kit.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "compound_tiers",
        sa.Column("compound_code", sa.String(length=15), nullable=False),
        sa.Column("tier", sa.String(length=8), nullable=False),
        sa.Column(
            "reasons",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("since", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("until", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("recheck_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("rule_set_version", sa.Integer(), nullable=False),
        sa.Column("computed_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("compound_code", name=op.f("pk_compound_tiers")),
    )
    with op.batch_alter_table("compound_tiers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_compound_tiers_recheck_at"), ["recheck_at"], unique=False
        )

    op.create_table(
        "facts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("source", sa.String(length=48), nullable=False),
        sa.Column(
            "evidence",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("setting", sa.String(length=16), nullable=True),
        sa.Column("compound_code", sa.String(length=15), nullable=True),
        sa.Column("asserted_by", sa.String(length=64), nullable=False),
        sa.Column("asserted_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("valid_from", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("valid_until", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("retracted_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("retracted_by", sa.String(length=64), nullable=True),
        sa.Column("retraction_reason", sa.String(length=200), nullable=True),
        sa.Column("dedupe_key", sa.String(length=96), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_facts")),
    )
    with op.batch_alter_table("facts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_facts_compound_code"), ["compound_code"], unique=False)
        batch_op.create_index(batch_op.f("ix_facts_dedupe_key"), ["dedupe_key"], unique=False)
        batch_op.create_index("ix_facts_subject_kind", ["subject", "kind"], unique=False)

    op.create_table(
        "person_colours",
        sa.Column("subject", sa.String(length=32), nullable=False),
        sa.Column("colour", sa.String(length=8), nullable=False),
        sa.Column(
            "reasons",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("until", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("recheck_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("rule_set_version", sa.Integer(), nullable=False),
        sa.Column("computed_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("area_code", sa.String(length=15), nullable=True),
        sa.Column("override_id", sa.Integer(), nullable=True),
        sa.Column("override_colour", sa.String(length=8), nullable=True),
        sa.Column("override_until", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "override_reason",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("subject", name=op.f("pk_person_colours")),
    )
    with op.batch_alter_table("person_colours", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_person_colours_area_code"), ["area_code"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_person_colours_recheck_at"), ["recheck_at"], unique=False
        )

    op.create_table(
        "risk_appeals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject", sa.String(length=32), nullable=False),
        sa.Column("street_code", sa.String(length=9), nullable=False),
        sa.Column("text_enc", sa.LargeBinary(), nullable=False),
        sa.Column("colour", sa.String(length=8), nullable=False),
        sa.Column("filed_by", sa.String(length=64), nullable=False),
        sa.Column("filed_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deadline", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome_zh", sa.String(length=500), nullable=True),
        sa.Column("outcome_en", sa.String(length=500), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=True),
        sa.Column("fact_id", sa.Integer(), nullable=True),
        sa.Column("override_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_appeals")),
    )
    with op.batch_alter_table("risk_appeals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_risk_appeals_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_risk_appeals_street_code"), ["street_code"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_risk_appeals_subject"), ["subject"], unique=False)

    op.create_table(
        "risk_notifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("text_zh", sa.String(length=500), nullable=False),
        sa.Column("text_en", sa.String(length=500), nullable=False),
        sa.Column("created_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("read_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_notifications")),
    )
    with op.batch_alter_table("risk_notifications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_risk_notifications_subject"), ["subject"], unique=False
        )

    op.create_table(
        "risk_overrides",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject", sa.String(length=32), nullable=False),
        sa.Column("colour", sa.String(length=8), nullable=False),
        sa.Column("legal_basis", sa.String(length=300), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.Column("area_code", sa.String(length=15), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("requested_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("approved_by", sa.String(length=64), nullable=True),
        sa.Column("approved_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(length=64), nullable=True),
        sa.Column("appeal_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_overrides")),
    )
    with op.batch_alter_table("risk_overrides", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_risk_overrides_area_code"), ["area_code"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_risk_overrides_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_risk_overrides_subject"), ["subject"], unique=False)

    op.create_table(
        "rule_sets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("yaml_text", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("proposed_by", sa.String(length=64), nullable=False),
        sa.Column("proposed_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "dry_run",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("approvals_required", sa.Integer(), nullable=False),
        sa.Column("activated_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("superseded_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_sets")),
        sa.UniqueConstraint("version", name=op.f("uq_rule_sets_version")),
    )
    with op.batch_alter_table("rule_sets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rule_sets_status"), ["status"], unique=False)

    op.create_table(
        "rule_set_approvals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rule_set_id", sa.Integer(), nullable=False),
        sa.Column("approver", sa.String(length=64), nullable=False),
        sa.Column("approver_role", sa.String(length=32), nullable=True),
        sa.Column("approved_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["rule_set_id"],
            ["rule_sets.id"],
            name=op.f("fk_rule_set_approvals_rule_set_id_rule_sets"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_set_approvals")),
        sa.UniqueConstraint(
            "rule_set_id", "approver", name=op.f("uq_rule_set_approvals_rule_set_id_approver")
        ),
    )
    with op.batch_alter_table("rule_set_approvals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_rule_set_approvals_rule_set_id"), ["rule_set_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("rule_set_approvals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rule_set_approvals_rule_set_id"))

    op.drop_table("rule_set_approvals")
    with op.batch_alter_table("rule_sets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rule_sets_status"))

    op.drop_table("rule_sets")
    with op.batch_alter_table("risk_overrides", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_risk_overrides_subject"))
        batch_op.drop_index(batch_op.f("ix_risk_overrides_status"))
        batch_op.drop_index(batch_op.f("ix_risk_overrides_area_code"))

    op.drop_table("risk_overrides")
    with op.batch_alter_table("risk_notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_risk_notifications_subject"))

    op.drop_table("risk_notifications")
    with op.batch_alter_table("risk_appeals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_risk_appeals_subject"))
        batch_op.drop_index(batch_op.f("ix_risk_appeals_street_code"))
        batch_op.drop_index(batch_op.f("ix_risk_appeals_status"))

    op.drop_table("risk_appeals")
    with op.batch_alter_table("person_colours", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_person_colours_recheck_at"))
        batch_op.drop_index(batch_op.f("ix_person_colours_area_code"))

    op.drop_table("person_colours")
    with op.batch_alter_table("facts", schema=None) as batch_op:
        batch_op.drop_index("ix_facts_subject_kind")
        batch_op.drop_index(batch_op.f("ix_facts_dedupe_key"))
        batch_op.drop_index(batch_op.f("ix_facts_compound_code"))

    op.drop_table("facts")
    with op.batch_alter_table("compound_tiers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_compound_tiers_recheck_at"))

    op.drop_table("compound_tiers")
