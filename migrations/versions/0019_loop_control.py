"""the closed loop's last step: close contacts of the day's traces, how many are under
control, and the median minutes from their code to it (cockpit_loop_days)

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-25 15:35:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cockpit_loop_days", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("close_contacts", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("contacts_controlled", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("codes_to_control_min", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cockpit_loop_days", schema=None) as batch_op:
        batch_op.drop_column("codes_to_control_min")
        batch_op.drop_column("contacts_controlled")
        batch_op.drop_column("close_contacts")
