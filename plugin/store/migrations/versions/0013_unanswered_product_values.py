"""product values sent without an answer: read back before the next push plans

`product_sync.unanswered`: a JSON object ("namespace.key" -> value, null for a delete) of the
values a push sent to this product without learning whether the store applied them (the
response lost, then every retry failed; a value left unanswered when sent apart; a delete
refused). The recorded values may then be wrong either way, so the next push reads the
product back before it plans. The values themselves are kept, not a flag as for customers
(0012): a value the app wrote to Shopify's complementary-products field and then finds there
is its own, not the merchant's, and without them it could not tell. NULL: nothing unanswered.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# Plain ALTER TABLE on both databases, as in 0011: a batch operation would copy the table on
# SQLite.


def upgrade() -> None:
    op.add_column("product_sync", sa.Column("unanswered", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("product_sync", "unanswered")
