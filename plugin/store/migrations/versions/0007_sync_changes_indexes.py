"""sync_changes: indexes for reading a job run's changes (undo) and for pruning by age

Both read the audit of one shop: the undo by `job_run_id`, the nightly prune by `applied_at`.
Without these, each scanned the whole table, every shop's audit, once per shop and night.

On PostgreSQL the indexes are built CONCURRENTLY, outside the migration's transaction, so the
audit rows that pushes write meanwhile are not blocked however large the table already is. An
index an operator built by hand beforehand (same name) is kept. Should a concurrent build fail
(it leaves an INVALID index behind), drop that index and run the upgrade again.

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


INDEXES = {
    "ix_sync_changes_run": ["shop_id", "job_run_id", "id"],
    "ix_sync_changes_applied": ["shop_id", "applied_at"],
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for name, columns in INDEXES.items():
            op.create_index(name, "sync_changes", columns)
        return
    with op.get_context().autocommit_block():
        for name, columns in INDEXES.items():
            op.create_index(
                name, "sync_changes", columns, postgresql_concurrently=True, if_not_exists=True
            )


def downgrade() -> None:
    op.drop_index("ix_sync_changes_applied", table_name="sync_changes")
    op.drop_index("ix_sync_changes_run", table_name="sync_changes")
