"""intake days purged: the days of a multi-day file that left the lake before the file did

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25 03:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("intake_files") as batch:
        batch.add_column(sa.Column("purged_through", sa.Date(), nullable=True))
        batch.add_column(sa.Column("purged_rows", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("intake_files") as batch:
        batch.drop_column("purged_rows")
        batch.drop_column("purged_through")
