"""an index on persons.birth_date, for the daily look for the household members who turn 18
(成年提醒)

Revision ID: 0024
Revises: 0023
Create Date: 2026-11-25 21:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.create_index("ix_persons_birth_date", ["birth_date"])


def downgrade() -> None:
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.drop_index("ix_persons_birth_date")
