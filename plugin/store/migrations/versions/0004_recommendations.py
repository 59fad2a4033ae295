"""recommendations: product partners, bundle candidates, customers' next products, product sync

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import plugin.store.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _shop_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE")


def upgrade() -> None:
    with op.batch_alter_table("sync_changes") as changes:  # product metafields are audited too
        changes.alter_column("customer_id", existing_type=sa.BigInteger(), nullable=True)
        changes.add_column(sa.Column("product_id", sa.BigInteger(), nullable=True))
    op.create_table(
        "product_recommendations",
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("other_product_id", sa.BigInteger(), nullable=False),
        sa.Column("support", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("lift", sa.Float(), nullable=True),
        _shop_fk(),
        sa.PrimaryKeyConstraint("shop_id", "product_id", "kind", "rank"),
    )
    op.create_table(
        "bundle_candidates",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("product_ids", sa.Text(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("lift", sa.Float(), nullable=False),
        sa.Column("combined_price", plugin.store.types.Money(), nullable=False),
        _shop_fk(),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_bundle_candidates_shop", "bundle_candidates", ["shop_id", "rank"])
    op.create_table(
        "customer_recommendations",
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("product_ids", sa.Text(), nullable=False),
        _shop_fk(),
        sa.PrimaryKeyConstraint("shop_id", "customer_id"),
    )
    op.create_table(
        "product_sync",
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("product_id", sa.BigInteger(), nullable=False),
        sa.Column("metafields", sa.Text(), nullable=False),
        sa.Column("pushed_at", plugin.store.types.UTCDateTime(timezone=True), nullable=True),
        _shop_fk(),
        sa.PrimaryKeyConstraint("shop_id", "product_id"),
    )


def downgrade() -> None:
    op.drop_table("product_sync")
    op.drop_table("customer_recommendations")
    op.drop_index("ix_bundle_candidates_shop", table_name="bundle_candidates")
    op.drop_table("bundle_candidates")
    op.drop_table("product_recommendations")
    with op.batch_alter_table("sync_changes") as changes:
        changes.drop_column("product_id")
        changes.alter_column("customer_id", existing_type=sa.BigInteger(), nullable=False)
