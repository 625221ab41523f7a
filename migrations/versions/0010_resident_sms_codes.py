"""resident sms codes: one-time codes sent to residents' phones (blind-indexed, hashed)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 21:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import citybrain.kit.db

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "resident_sms_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phone_key", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=False),
        sa.Column("sent_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("used_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resident_sms_codes")),
    )
    with op.batch_alter_table("resident_sms_codes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_resident_sms_codes_client_ip"), ["client_ip"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_resident_sms_codes_phone_key"), ["phone_key"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_resident_sms_codes_sent_at"), ["sent_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("resident_sms_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resident_sms_codes_sent_at"))
        batch_op.drop_index(batch_op.f("ix_resident_sms_codes_phone_key"))
        batch_op.drop_index(batch_op.f("ix_resident_sms_codes_client_ip"))
    op.drop_table("resident_sms_codes")
