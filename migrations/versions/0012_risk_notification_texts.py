"""risk notifications texted: when and how each went to the person's phone

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25 02:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import citybrain.kit.db

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("risk_notifications") as batch:
        batch.add_column(
            sa.Column("texted_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("text_outcome", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("risk_notifications") as batch:
        batch.drop_column("text_outcome")
        batch.drop_column("texted_at")
