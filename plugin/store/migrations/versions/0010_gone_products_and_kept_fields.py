"""gone products and kept product fields: what the product push leaves out

`gone_products`: products the store no longer has, left out of the pushed lists (a metafield
naming one is refused, and took the owner's other values with it) until seen again.
`kept_product_fields`: Shopify's complementary-products field found holding a value the app
did not write (the merchant's), which the app leaves alone.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import plugin.store.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gone_products",
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("gone_at", plugin.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("shop_id", "product_id"),
    )
    op.create_table(
        "kept_product_fields",
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("found_at", plugin.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("shop_id", "product_id", "name"),
    )


def downgrade() -> None:
    op.drop_table("kept_product_fields")
    op.drop_table("gone_products")
