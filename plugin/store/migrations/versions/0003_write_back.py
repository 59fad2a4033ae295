"""write-back: pushed state, audit trail, job runs and leases

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import plugin.store.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = plugin.store.types.UTCDateTime


def _shop_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE")


def upgrade() -> None:
    with op.batch_alter_table("shops") as shops:
        shops.add_column(
            sa.Column("definitions_version", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "customer_sync",
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("metafields", sa.Text(), nullable=False),
        sa.Column("pushed_at", _AT(timezone=True), nullable=True),
        sa.Column("checked_at", _AT(timezone=True), nullable=True),
        sa.Column("blocked", sa.Text(), nullable=True),
        sa.Column("blocked_tags", sa.Text(), nullable=True),
        _shop_fk(),
        sa.PrimaryKeyConstraint("shop_id", "customer_id"),
    )
    op.create_table(
        "sync_changes",
        sa.Column("id", _ID, nullable=False),
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("job_run_id", sa.BigInteger(), nullable=True),
        sa.Column("applied_at", _AT(timezone=True), nullable=False),
        _shop_fk(),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sync_changes_customer", "sync_changes", ["shop_id", "customer_id", "id"])
    op.create_table(
        "job_runs",
        sa.Column("id", _ID, nullable=False),
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("job", sa.String(length=32), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=False),
        sa.Column("started_at", _AT(timezone=True), nullable=False),
        sa.Column("finished_at", _AT(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _shop_fk(),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_job_runs_shop_job", "job_runs", ["shop_id", "job", "id"])
    op.create_table(
        "job_leases",
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("job", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("expires_at", _AT(timezone=True), nullable=False),
        _shop_fk(),
        sa.PrimaryKeyConstraint("shop_id", "job"),
    )


def downgrade() -> None:
    op.drop_table("job_leases")
    op.drop_index("ix_job_runs_shop_job", table_name="job_runs")
    op.drop_table("job_runs")
    op.drop_index("ix_sync_changes_customer", table_name="sync_changes")
    op.drop_table("sync_changes")
    op.drop_table("customer_sync")
    with op.batch_alter_table("shops") as shops:
        shops.drop_column("definitions_version")
