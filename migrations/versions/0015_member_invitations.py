"""member invitations: adult household members awaiting their own consent; the purpose of a
one-time code (login or consent)

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-25 09:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import citybrain.kit.db

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "resident_member_invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("household_id", sa.Integer(), nullable=False),
        sa.Column("compound_code", sa.String(length=15), nullable=False),
        sa.Column("invited_by", sa.String(length=32), nullable=False),
        sa.Column("name_enc", sa.LargeBinary(), nullable=False),
        sa.Column("id_number_enc", sa.LargeBinary(), nullable=False),
        sa.Column("id_number_bidx", sa.String(length=64), nullable=False),
        sa.Column("phone_enc", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["households.id"],
            name=op.f("fk_resident_member_invitations_household_id_households"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resident_member_invitations")),
    )
    with op.batch_alter_table("resident_member_invitations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_resident_member_invitations_compound_code"),
            ["compound_code"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_resident_member_invitations_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_resident_member_invitations_household_id"),
            ["household_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_resident_member_invitations_id_number_bidx"),
            ["id_number_bidx"],
            unique=False,
        )
    with op.batch_alter_table("resident_sms_codes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("purpose", sa.String(length=16), server_default="login", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("resident_sms_codes", schema=None) as batch_op:
        batch_op.drop_column("purpose")
    with op.batch_alter_table("resident_member_invitations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resident_member_invitations_id_number_bidx"))
        batch_op.drop_index(batch_op.f("ix_resident_member_invitations_household_id"))
        batch_op.drop_index(batch_op.f("ix_resident_member_invitations_expires_at"))
        batch_op.drop_index(batch_op.f("ix_resident_member_invitations_compound_code"))
    op.drop_table("resident_member_invitations")
