"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import plugin.store.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shops",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("access_token_encrypted", sa.Text(), nullable=True),
        sa.Column("scopes", sa.String(length=1024), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("installed_at", plugin.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("uninstalled_at", plugin.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("needs_reauth", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("domain"),
    )
    op.create_table(
        "webhook_inbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shop_domain", sa.String(length=255), nullable=False),
        sa.Column("webhook_id", sa.String(length=255), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=True),
        sa.Column("triggered_at", plugin.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("api_version", sa.String(length=32), nullable=True),
        sa.Column("received_at", plugin.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", plugin.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("processed_at", plugin.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("shop_domain", "webhook_id", name="uq_inbox_shop_webhook"),
    )
    with op.batch_alter_table("webhook_inbox", schema=None) as batch_op:
        batch_op.create_index("ix_inbox_due", ["status", "next_attempt_at", "id"], unique=False)

    op.create_table(
        "customers",
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", plugin.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", plugin.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=True),
        sa.Column("deleted_at", plugin.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("net_spend", plugin.store.types.Money(), nullable=False),
        sa.Column("first_order_at", plugin.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_order_at", plugin.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("shop_id", "customer_id"),
    )
    op.create_table(
        "data_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("received_at", plugin.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "order_lines",
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("line_id", sa.BigInteger(), nullable=False),
        sa.Column("product_id", sa.BigInteger(), nullable=True),
        sa.Column("variant_id", sa.BigInteger(), nullable=True),
        sa.Column("product_type", sa.String(length=255), nullable=True),
        sa.Column("sku", sa.String(length=255), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("current_quantity", sa.Integer(), nullable=False),
        sa.Column("price", plugin.store.types.Money(), nullable=False),
        sa.Column("total_discount", plugin.store.types.Money(), nullable=False),
        sa.Column("gift_card", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("shop_id", "order_id", "line_id"),
    )
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.create_index("ix_order_lines_product", ["shop_id", "product_id"], unique=False)

    op.create_table(
        "orders",
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", plugin.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("processed_at", plugin.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", plugin.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("version_digest", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("presentment_currency", sa.String(length=3), nullable=True),
        sa.Column("total", plugin.store.types.Money(), nullable=False),
        sa.Column("current_total", plugin.store.types.Money(), nullable=False),
        sa.Column("financial_status", sa.String(length=32), nullable=True),
        sa.Column("cancelled_at", plugin.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("source_name", sa.String(length=255), nullable=True),
        sa.Column("net_amount", plugin.store.types.Money(), nullable=False),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("shop_id", "order_id"),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_customer", ["shop_id", "customer_id"], unique=False)

    op.create_table(
        "refunds",
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("refund_id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", plugin.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lines_amount", plugin.store.types.Money(), nullable=False),
        sa.Column("transactions_amount", plugin.store.types.Money(), nullable=True),
        sa.Column("transactions_currency", sa.String(length=3), nullable=True),
        sa.Column("lines", sa.Text(), nullable=False),
        sa.Column("reflected", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("shop_id", "refund_id"),
    )
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.create_index("ix_refunds_order", ["shop_id", "order_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index("ix_refunds_order")

    op.drop_table("refunds")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_customer")

    op.drop_table("orders")
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.drop_index("ix_order_lines_product")

    op.drop_table("order_lines")
    op.drop_table("data_requests")
    op.drop_table("customers")
    with op.batch_alter_table("webhook_inbox", schema=None) as batch_op:
        batch_op.drop_index("ix_inbox_due")

    op.drop_table("webhook_inbox")
    op.drop_table("shops")
