"""feeds never received: when the freshness check first looked for a feed that had sent
nothing yet (cockpit_sources.watched_since)

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-25 14:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import citybrain.kit.db

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cockpit_sources", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("watched_since", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("cockpit_sources", schema=None) as batch_op:
        batch_op.drop_column("watched_since")
