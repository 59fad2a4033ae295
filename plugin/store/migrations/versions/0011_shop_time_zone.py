"""the shop's time zone: purchase days are the shop's calendar days

`shops.iana_timezone`: the zone Shopify gives as `shop { ianaTimezone }`, read by the backfill
and the reconcile. Until it is known (NULL), days are UTC days, as before.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both databases (SQLite drops a column itself since 3.35): a batch
# operation would copy `shops` on SQLite, and dropping the old copy deletes, by cascade, every
# row that refers to a shop.


def upgrade() -> None:
    op.add_column("shops", sa.Column("iana_timezone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("shops", "iana_timezone")
