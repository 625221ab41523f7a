"""agency tokens: an API token may act for an agency, limited to its source categories

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 22:10:15.459810
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("agency", sa.String(length=40), nullable=True))
        batch_op.add_column(
            sa.Column(
                "categories",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("categories")
        batch_op.drop_column("agency")
