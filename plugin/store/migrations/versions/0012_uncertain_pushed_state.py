"""pushed state the store may not hold: a mutation sent without an answer

`customer_sync.uncertain`: a push sent a change to this customer and never learned whether the
store applied it (the response lost, then every retry failed; a bulk line without a result; a
delete refused part way). The recorded state may then be wrong either way, so the next push
reads the customer back before it plans.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# Plain ALTER TABLE on both databases, as in 0011: a batch operation would copy the table on
# SQLite.


def upgrade() -> None:
    op.add_column(
        "customer_sync",
        sa.Column("uncertain", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("customer_sync", "uncertain")
