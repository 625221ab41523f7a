"""intake files purged: when a file's rows left the lake at the end of their retention

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import citybrain.kit.db

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("intake_files") as batch:
        batch.add_column(
            sa.Column("purged_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("intake_files") as batch:
        batch.drop_column("purged_at")
