"""scores and model runs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import plugin.store.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer_scores",
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("ledger_version", sa.Integer(), nullable=False),
        sa.Column("aov", sa.Float(), nullable=False),
        sa.Column("mean_days_between_orders", sa.Float(), nullable=True),
        sa.Column("trailing_12m_spend", sa.Float(), nullable=False),
        sa.Column("historical_clv", sa.Float(), nullable=False),
        sa.Column("p_alive", sa.Float(), nullable=False),
        sa.Column("expected_purchases", sa.Float(), nullable=False),
        sa.Column(
            "expected_next_order_at", plugin.store.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("expected_spend_per_order", sa.Float(), nullable=False),
        sa.Column("predicted_clv", sa.Float(), nullable=False),
        sa.Column("recency_score", sa.Integer(), nullable=False),
        sa.Column("frequency_score", sa.Integer(), nullable=False),
        sa.Column("monetary_score", sa.Integer(), nullable=False),
        sa.Column("segment", sa.String(length=32), nullable=False),
        sa.Column("reorder_due_at", plugin.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("shop_id", "customer_id"),
    )
    op.create_table(
        "model_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("started_at", plugin.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("as_of", plugin.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("repeat_model", sa.String(length=16), nullable=False),
        sa.Column("repeat_params", sa.Text(), nullable=False),
        sa.Column("spend_params", sa.Text(), nullable=True),
        sa.Column("log_likelihood", sa.Float(), nullable=True),
        sa.Column("converged", sa.Boolean(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("repeat_customers", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("scored", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("model_runs", schema=None) as batch_op:
        batch_op.create_index("ix_model_runs_shop", ["shop_id", "id"], unique=False)

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ledger_version", sa.Integer(), nullable=False, server_default="0")
        )

    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.add_column(sa.Column("settings", sa.Text(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.drop_column("settings")

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("ledger_version")

    with op.batch_alter_table("model_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_model_runs_shop")

    op.drop_table("model_runs")
    op.drop_table("customer_scores")
