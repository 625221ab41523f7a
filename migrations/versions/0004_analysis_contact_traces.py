"""analysis contact traces: one row per case traced on arrival

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import citybrain.kit.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "contact_traces",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_key", sa.BigInteger(), nullable=False),
        sa.Column("found_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("arrived_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("traced_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("close_contacts", sa.Integer(), nullable=False),
        sa.Column("secondary_contacts", sa.Integer(), nullable=False),
        sa.Column("result_path", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_traces")),
        sa.UniqueConstraint("case_key", name=op.f("uq_contact_traces_case_key")),
    )
    with op.batch_alter_table("contact_traces", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_contact_traces_traced_at"), ["traced_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("contact_traces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contact_traces_traced_at"))
    op.drop_table("contact_traces")
