"""customer_scores: no foreign key to shops, checked once per write instead of once per row

A full recompute writes a shop's every score in one go (a million rows for a large shop), and
PostgreSQL checked the key row by row: a third of the write. `replace_scores` now checks the
shop once and holds it (FOR KEY SHARE) until its rows are in, and `forget_shop` deletes the
scores the cascade used to.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# SQLite's key has no name: this gives it PostgreSQL's, so that batch mode can drop it
_NAMES = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}


def upgrade() -> None:
    with op.batch_alter_table("customer_scores", naming_convention=_NAMES) as batch_op:
        batch_op.drop_constraint("customer_scores_shop_id_fkey", type_="foreignkey")


def downgrade() -> None:
    op.execute("DELETE FROM customer_scores WHERE shop_id NOT IN (SELECT id FROM shops)")
    with op.batch_alter_table("customer_scores", naming_convention=_NAMES) as batch_op:
        batch_op.create_foreign_key(
            "customer_scores_shop_id_fkey", "shops", ["shop_id"], ["id"], ondelete="CASCADE"
        )
