"""redactions: the customers and orders customers/redact deleted, so nothing brings them back

A delivery processed after the redact (Shopify delivers up to a day late, and retries), or a
backfill, would otherwise store the customer and their orders again. Ids only; the shop's rows
go with it (shop/redact).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import plugin.store.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "redactions",
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("item_id", sa.BigInteger(), nullable=False),
        sa.Column("redacted_at", plugin.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("shop_id", "kind", "item_id"),
    )


def downgrade() -> None:
    op.drop_table("redactions")
