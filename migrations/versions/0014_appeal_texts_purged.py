"""appeal texts purged: when the text a person wrote was cleared after its retention period

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-25 03:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import citybrain.kit.db

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("risk_appeals") as batch:
        batch.add_column(
            sa.Column("text_purged_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("risk_appeals") as batch:
        batch.drop_column("text_purged_at")
