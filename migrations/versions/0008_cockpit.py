"""cockpit: materialised figures and their leaf inputs, alerts, source freshness, loop times

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import citybrain.kit.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cockpit_leaf_values",
        sa.Column("area_code", sa.String(length=15), nullable=False),
        sa.Column("measure", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("area_code", "measure", "day", name=op.f("pk_cockpit_leaf_values")),
    )
    op.create_table(
        "cockpit_figures",
        sa.Column("area_code", sa.String(length=15), nullable=False),
        sa.Column("measure", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("area_code", "measure", "day", name=op.f("pk_cockpit_figures")),
    )
    op.create_index("ix_cockpit_figures_measure_day", "cockpit_figures", ["measure", "day"])
    op.create_table(
        "cockpit_alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("area_code", sa.String(length=15), nullable=False),
        sa.Column("title_zh", sa.String(length=200), nullable=False),
        sa.Column("title_en", sa.String(length=300), nullable=False),
        sa.Column("dedupe_key", sa.String(length=96), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cockpit_alerts")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_cockpit_alerts_dedupe_key")),
    )
    op.create_index(op.f("ix_cockpit_alerts_kind"), "cockpit_alerts", ["kind"])
    op.create_index(op.f("ix_cockpit_alerts_at"), "cockpit_alerts", ["at"])
    op.create_index(op.f("ix_cockpit_alerts_area_code"), "cockpit_alerts", ["area_code"])
    op.create_table(
        "cockpit_sources",
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("last_received_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("records_day", sa.Date(), nullable=True),
        sa.Column("records_today", sa.Integer(), nullable=False),
        sa.Column("stale_alerted_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("category", name=op.f("pk_cockpit_sources")),
    )
    op.create_table(
        "cockpit_loop_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("cases", sa.Integer(), nullable=False),
        sa.Column("arrival_to_contacts_min", sa.Float(), nullable=True),
        sa.Column("contacts_to_codes_min", sa.Float(), nullable=True),
        sa.Column("arrival_to_codes_min", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_cockpit_loop_days")),
    )


def downgrade() -> None:
    op.drop_table("cockpit_loop_days")
    op.drop_table("cockpit_sources")
    op.drop_index(op.f("ix_cockpit_alerts_area_code"), table_name="cockpit_alerts")
    op.drop_index(op.f("ix_cockpit_alerts_at"), table_name="cockpit_alerts")
    op.drop_index(op.f("ix_cockpit_alerts_kind"), table_name="cockpit_alerts")
    op.drop_table("cockpit_alerts")
    op.drop_index("ix_cockpit_figures_measure_day", table_name="cockpit_figures")
    op.drop_table("cockpit_figures")
    op.drop_table("cockpit_leaf_values")
