"""product costs: each variant's cost per item, for historical CLV as gross margin

`product_costs`: the store's cost per item of each variant that has one (Shopify's
`InventoryItem.unitCost`, shop currency), read by the costs job when a shop sets
`scoring.margin_from_costs`; replaced whole by each read.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import plugin.store.types

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "product_costs",
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("variant_id", sa.BigInteger(), nullable=False),
        sa.Column("unit_cost", plugin.store.types.Money(), nullable=False),
        sa.Column("read_at", plugin.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("shop_id", "variant_id"),
    )


def downgrade() -> None:
    op.drop_table("product_costs")
