"""residents: self-service accounts, failed logins, daily health reports, household passes

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import citybrain.kit.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "resident_accounts",
        sa.Column("person_ref", sa.String(length=32), nullable=False),
        sa.Column("created_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "sessions_revoked_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["person_ref"], ["persons.ref"], name=op.f("fk_resident_accounts_person_ref_persons")
        ),
        sa.PrimaryKeyConstraint("person_ref", name=op.f("pk_resident_accounts")),
    )

    op.create_table(
        "resident_login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=False),
        sa.Column("at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resident_login_failures")),
    )
    with op.batch_alter_table("resident_login_failures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resident_login_failures_at"), ["at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_resident_login_failures_client_ip"), ["client_ip"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_resident_login_failures_key"), ["key"], unique=False)

    op.create_table(
        "health_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_ref", sa.String(length=32), nullable=False),
        sa.Column("report_date", sa.Date(), nullable=False),
        sa.Column("area_code", sa.String(length=15), nullable=False),
        sa.Column("temperature", sa.Float(), nullable=False),
        sa.Column(
            "symptoms",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("whereabouts", sa.String(length=8), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("reported_by", sa.String(length=32), nullable=False),
        sa.Column("corrections", sa.Integer(), nullable=False),
        sa.Column("created_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("followed_up_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("followed_up_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_ref"], ["persons.ref"], name=op.f("fk_health_reports_person_ref_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_reports")),
        sa.UniqueConstraint(
            "person_ref", "report_date", name=op.f("uq_health_reports_person_ref_report_date")
        ),
    )
    with op.batch_alter_table("health_reports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_health_reports_area_code"), ["area_code"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_health_reports_flagged"), ["flagged"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_health_reports_report_date"), ["report_date"], unique=False
        )

    op.create_table(
        "household_passes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("household_id", sa.Integer(), nullable=False),
        sa.Column("compound_code", sa.String(length=15), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("note", sa.String(length=100), nullable=True),
        sa.Column("issued_by", sa.String(length=64), nullable=False),
        sa.Column("issued_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["compound_code"],
            ["compounds.code"],
            name=op.f("fk_household_passes_compound_code_compounds"),
        ),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["households.id"],
            name=op.f("fk_household_passes_household_id_households"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_household_passes")),
    )
    with op.batch_alter_table("household_passes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_household_passes_compound_code"), ["compound_code"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_household_passes_household_id"), ["household_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_household_passes_valid_until"), ["valid_until"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("household_passes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_household_passes_valid_until"))
        batch_op.drop_index(batch_op.f("ix_household_passes_household_id"))
        batch_op.drop_index(batch_op.f("ix_household_passes_compound_code"))
    op.drop_table("household_passes")
    with op.batch_alter_table("health_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_health_reports_report_date"))
        batch_op.drop_index(batch_op.f("ix_health_reports_flagged"))
        batch_op.drop_index(batch_op.f("ix_health_reports_area_code"))
    op.drop_table("health_reports")
    with op.batch_alter_table("resident_login_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resident_login_failures_key"))
        batch_op.drop_index(batch_op.f("ix_resident_login_failures_client_ip"))
        batch_op.drop_index(batch_op.f("ix_resident_login_failures_at"))
    op.drop_table("resident_login_failures")
    op.drop_table("resident_accounts")
