"""offline scans: the scanner's own id of a scan made offline, unique per scanner

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column and a unique index: both are plain ALTER/CREATE on SQLite too.
    op.add_column("scans", sa.Column("offline_key", sa.String(length=100), nullable=True))
    op.create_index(
        "uq_scans_offline_key",
        "scans",
        ["offline_key"],
        unique=True,
        postgresql_where=sa.text("offline_key IS NOT NULL"),
        sqlite_where=sa.text("offline_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_scans_offline_key", table_name="scans")
    op.drop_column("scans", "offline_key")
