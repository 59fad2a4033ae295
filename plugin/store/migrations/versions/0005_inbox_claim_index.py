"""inbox: claim pending events in id order from an index, without sorting the backlog

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_inbox_due", table_name="webhook_inbox")
    op.create_index("ix_inbox_pending", "webhook_inbox", ["status", "id", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_inbox_pending", table_name="webhook_inbox")
    op.create_index("ix_inbox_due", "webhook_inbox", ["status", "next_attempt_at", "id"])
