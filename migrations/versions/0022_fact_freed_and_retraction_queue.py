"""a withdrawal that turned a code green keeps the colour it ended (facts.freed_colour, for
the register of hand turns); partial indexes on those and on the requests to withdraw a case
still waiting for a second person

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-25 20:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FREED = "freed_colour IS NOT NULL"
WAITING = "retraction_requested_at IS NOT NULL AND retracted_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("facts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("freed_colour", sa.String(length=8)))
        batch_op.create_index(
            "ix_facts_freed_at",
            ["retracted_at"],
            postgresql_where=sa.text(FREED),
            sqlite_where=sa.text(FREED),
        )
        batch_op.create_index(
            "ix_facts_retraction_asked",
            ["retraction_requested_at"],
            postgresql_where=sa.text(WAITING),
            sqlite_where=sa.text(WAITING),
        )


def downgrade() -> None:
    with op.batch_alter_table("facts", schema=None) as batch_op:
        batch_op.drop_index("ix_facts_retraction_asked")
        batch_op.drop_index("ix_facts_freed_at")
        batch_op.drop_column("freed_colour")
