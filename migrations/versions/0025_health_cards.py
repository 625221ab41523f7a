"""printed health cards (纸质健康卡) for residents without a smartphone of their own

Revision ID: 0025
Revises: 0024
Create Date: 2026-11-25 22:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from citybrain.kit.db import UTCDateTime

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "health_cards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_ref", sa.String(length=32), nullable=False),
        sa.Column("holder_name", sa.String(length=40), nullable=False),
        sa.Column("id_tail", sa.String(length=4), nullable=False),
        sa.Column("area_code", sa.String(length=15), nullable=False),
        sa.Column("issued_via", sa.String(length=12), nullable=False),
        sa.Column("issued_by", sa.String(length=64), nullable=False),
        sa.Column("issued_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(length=64), nullable=True),
        sa.Column("end_reason", sa.String(length=12), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_ref"],
            ["persons.ref"],
            name=op.f("fk_health_cards_person_ref_persons"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_cards")),
    )
    with op.batch_alter_table("health_cards", schema=None) as batch_op:
        batch_op.create_index("ix_health_cards_person_ref", ["person_ref"])
        batch_op.create_index("ix_health_cards_area_code_issued_at", ["area_code", "issued_at"])


def downgrade() -> None:
    op.drop_table("health_cards")
