"""datahub intake ledger

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 22:02:34.836723
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import citybrain.kit.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "intake_files",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("file_id", sa.String(length=20), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("delivered_day", sa.Date(), nullable=True),
        sa.Column("first_day", sa.Date(), nullable=True),
        sa.Column("last_day", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("quarantined", sa.Integer(), nullable=False),
        sa.Column("duplicate", sa.Integer(), nullable=False),
        sa.Column("late", sa.Integer(), nullable=False),
        sa.Column(
            "reasons",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("ingested_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intake_files")),
        sa.UniqueConstraint("file_id", name=op.f("uq_intake_files_file_id")),
    )
    with op.batch_alter_table("intake_files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_intake_files_category"), ["category"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_intake_files_ingested_at"), ["ingested_at"], unique=False
        )

    op.create_table(
        "push_batches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("intake_file_id", sa.Integer(), nullable=False),
        sa.Column("created_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["intake_file_id"],
            ["intake_files.id"],
            name=op.f("fk_push_batches_intake_file_id_intake_files"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_batches")),
        sa.UniqueConstraint(
            "actor", "idempotency_key", name=op.f("uq_push_batches_actor_idempotency_key")
        ),
    )


def downgrade() -> None:
    op.drop_table("push_batches")
    with op.batch_alter_table("intake_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_intake_files_ingested_at"))
        batch_op.drop_index(batch_op.f("ix_intake_files_category"))

    op.drop_table("intake_files")
