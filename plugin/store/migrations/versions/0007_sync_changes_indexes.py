"""sync_changes: indexes for reading a job run's changes (undo) and for pruning by age

Both read the audit of one shop: the undo by `job_run_id`, the nightly prune by `applied_at`.
Without these, each scanned the whole table, every shop's audit, once per shop and night.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sync_changes_run", "sync_changes", ["shop_id", "job_run_id", "id"])
    op.create_index("ix_sync_changes_applied", "sync_changes", ["shop_id", "applied_at"])


def downgrade() -> None:
    op.drop_index("ix_sync_changes_applied", table_name="sync_changes")
    op.drop_index("ix_sync_changes_run", table_name="sync_changes")
