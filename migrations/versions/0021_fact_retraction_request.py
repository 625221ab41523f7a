"""withdrawing a confirmed case or an asymptomatic infection takes two people: the first
account's request (who, when, why) waits on the fact for a second to confirm

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-25 17:25:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from citybrain.kit.db import UTCDateTime

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("facts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retraction_requested_by", sa.String(length=64)))
        batch_op.add_column(sa.Column("retraction_requested_at", UTCDateTime(timezone=True)))
        batch_op.add_column(sa.Column("retraction_request_reason", sa.String(length=200)))


def downgrade() -> None:
    with op.batch_alter_table("facts", schema=None) as batch_op:
        batch_op.drop_column("retraction_request_reason")
        batch_op.drop_column("retraction_requested_at")
        batch_op.drop_column("retraction_requested_by")
