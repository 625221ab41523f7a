"""a fact recorded by hand that turned a green code red or yellow keeps the colour it turned
it to (facts.turned_colour), so each account's turns in a day can be counted and limited

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-25 17:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("facts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("turned_colour", sa.String(length=8), nullable=True))
        batch_op.create_index("ix_facts_asserted_by_at", ["asserted_by", "asserted_at"])
        # The register of hand turns reads these few among all the analysis's facts.
        batch_op.create_index(
            "ix_facts_turned_at",
            ["asserted_at"],
            postgresql_where=sa.text("turned_colour IS NOT NULL"),
            sqlite_where=sa.text("turned_colour IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("facts", schema=None) as batch_op:
        batch_op.drop_index("ix_facts_turned_at")
        batch_op.drop_index("ix_facts_asserted_by_at")
        batch_op.drop_column("turned_colour")
