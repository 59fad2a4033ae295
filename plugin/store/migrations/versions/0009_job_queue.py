"""job_queue: the shops' jobs that are due, for any worker to take

The elected scheduler queues each tick; every worker takes what it has room for (`SELECT ...
FOR UPDATE SKIP LOCKED` on PostgreSQL), so jobs spread over the workers (DESIGN, process
model). One row per (shop, job): the shop's rows go with it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import plugin.store.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_queue",
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("job", sa.String(length=32), nullable=False),
        sa.Column("due_at", plugin.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("latest_at", plugin.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("shop_id", "job"),
    )


def downgrade() -> None:
    op.drop_table("job_queue")
