"""healthcode: signing keys, scans and households' exit passes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import citybrain.kit.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("private_key_enc", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("created_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("activated_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("retired_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("verify_until", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("removed_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
    )
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.create_index(
            "uq_signing_keys_active",
            ["status"],
            unique=True,
            postgresql_where=sa.text("status = 'active'"),
            sqlite_where=sa.text("status = 'active'"),
        )

    op.create_table(
        "scans",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("place_code", sa.String(length=24), nullable=False),
        sa.Column("person_ref", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=32), nullable=True),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("colour", sa.String(length=8), nullable=False),
        sa.Column("colour_source", sa.String(length=8), nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("device_token_id", sa.Integer(), nullable=True),
        sa.Column("scanned_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("batch", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_token_id"],
            ["api_tokens.id"],
            name=op.f("fk_scans_device_token_id_api_tokens"),
        ),
        sa.ForeignKeyConstraint(
            ["place_code"], ["places.code"], name=op.f("fk_scans_place_code_places")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scans")),
    )
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.create_index(
            "ix_scans_place_code_scanned_at", ["place_code", "scanned_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_scans_person_ref"), ["person_ref"], unique=False)
        batch_op.create_index(batch_op.f("ix_scans_subject"), ["subject"], unique=False)
        batch_op.create_index(batch_op.f("ix_scans_scanned_at"), ["scanned_at"], unique=False)

    op.create_table(
        "scan_batches",
        sa.Column("batch", sa.String(length=32), nullable=False),
        sa.Column("first_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("last_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("recorded_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("exported_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("exported_files", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("batch", name=op.f("pk_scan_batches")),
    )
    with op.batch_alter_table("scan_batches", schema=None) as batch_op:
        batch_op.create_index(
            "ix_scan_batches_unexported",
            ["recorded_at"],
            unique=False,
            postgresql_where=sa.text("exported_at IS NULL"),
            sqlite_where=sa.text("exported_at IS NULL"),
        )

    op.create_table(
        "household_passes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("household_id", sa.Integer(), nullable=False),
        sa.Column("compound_code", sa.String(length=15), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("note", sa.String(length=100), nullable=True),
        sa.Column("issued_by", sa.String(length=64), nullable=False),
        sa.Column("issued_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", citybrain.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["compound_code"],
            ["compounds.code"],
            name=op.f("fk_household_passes_compound_code_compounds"),
        ),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["households.id"],
            name=op.f("fk_household_passes_household_id_households"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_household_passes")),
    )
    with op.batch_alter_table("household_passes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_household_passes_compound_code"), ["compound_code"], unique=False
        )
        batch_op.create_index(
            "ix_household_passes_household_id_valid_until",
            ["household_id", "valid_until"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("household_passes", schema=None) as batch_op:
        batch_op.drop_index("ix_household_passes_household_id_valid_until")
        batch_op.drop_index(batch_op.f("ix_household_passes_compound_code"))
    op.drop_table("household_passes")
    with op.batch_alter_table("scan_batches", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_scan_batches_unexported",
            postgresql_where=sa.text("exported_at IS NULL"),
            sqlite_where=sa.text("exported_at IS NULL"),
        )
    op.drop_table("scan_batches")
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scans_scanned_at"))
        batch_op.drop_index(batch_op.f("ix_scans_subject"))
        batch_op.drop_index(batch_op.f("ix_scans_person_ref"))
        batch_op.drop_index("ix_scans_place_code_scanned_at")
    op.drop_table("scans")
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_signing_keys_active",
            postgresql_where=sa.text("status = 'active'"),
            sqlite_where=sa.text("status = 'active'"),
        )
    op.drop_table("signing_keys")
