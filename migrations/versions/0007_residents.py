"""residents: self-service accounts, failed logins, daily health reports

(The households' exit passes are the gate's: ``household_passes`` is created by 0005.)

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


def downgrade() -> None:
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
