"""scans record the printed health card scanned (纸质健康卡), if it was one

Revision ID: 0027
Revises: 0026
Create Date: 2026-11-26 01:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column without a default: PostgreSQL adds it without rewriting the table,
    # SQLite with ALTER TABLE ADD COLUMN (no rebuild).
    op.add_column("scans", sa.Column("card_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.drop_column("card_id")
