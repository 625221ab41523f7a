"""invitations of registered adults: an adult already registered in the compound, invited to
move into a household (consent asked on their registered phone)

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-25 10:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("resident_member_invitations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("person_ref", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("resident_member_invitations", schema=None) as batch_op:
        batch_op.drop_column("person_ref")
