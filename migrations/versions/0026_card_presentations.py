"""ended printed health cards presented at gates (挂失卡被出示)

Revision ID: 0026
Revises: 0025
Create Date: 2026-11-26 01:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from citybrain.kit.db import UTCDateTime

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "card_presentations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("card_id", sa.Integer(), nullable=False),
        sa.Column("place_code", sa.String(length=24), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("presented_by", sa.String(length=64), nullable=False),
        sa.Column("presented_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["card_id"],
            ["health_cards.id"],
            name=op.f("fk_card_presentations_card_id_health_cards"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_presentations")),
    )
    with op.batch_alter_table("card_presentations", schema=None) as batch_op:
        batch_op.create_index("ix_card_presentations_card_id", ["card_id"])


def downgrade() -> None:
    op.drop_table("card_presentations")
