"""The audit's indexes (migration 0007): the undo's and the prune's reads of one shop's
`sync_changes` can use them instead of scanning every shop's audit."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from alembic import command
from sqlalchemy import Engine, delete, inspect, select, text
from sqlmodel import col

from plugin.store.db import alembic_config, make_engine, upgrade
from plugin.store.models import SyncChange
from tests.helpers import T0, add_shop

INDEXES = {"ix_sync_changes_run", "ix_sync_changes_applied"}


def indexes(engine: Engine) -> set[str]:
    return {str(ix["name"]) for ix in inspect(engine).get_indexes("sync_changes")}


def test_migration_0007_adds_the_audit_indexes_and_its_downgrade_drops_them(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine, "0006")
    assert not indexes(engine) & INDEXES
    upgrade(engine)
    assert indexes(engine) >= INDEXES
    command.downgrade(alembic_config(engine), "0006")
    assert not indexes(engine) & INDEXES
    engine.dispose()


def plan(engine: Engine, statement: object) -> str:
    compiled = statement.compile(engine, compile_kwargs={"literal_binds": True})  # type: ignore[attr-defined]
    with engine.connect() as connection:
        return "\n".join(connection.execute(text(f"EXPLAIN {compiled}")).scalars())


def test_undo_and_prune_reads_of_the_audit_use_its_indexes(postgres_engine: Engine) -> None:
    # given two shops' audits of 20,000 changes each: 200 job runs over the last 181 days
    shops = [add_shop(postgres_engine, f"audit-{n}.myshopify.com").id for n in range(2)]
    with postgres_engine.begin() as connection:
        for shop_id in shops:
            connection.execute(
                text(
                    "INSERT INTO sync_changes (shop_id, customer_id, kind, name, action, reason,"
                    " via, job_run_id, applied_at)"
                    " SELECT :shop, n, 'tag', 'clv:vip', 'add', '', 'bulk', n / 100,"
                    " CAST(:now AS timestamptz) - (n / 100) * interval '21 hours 43 minutes'"
                    " FROM generate_series(1, 20000) AS n"
                ),
                {"shop": shop_id, "now": T0},
            )
        connection.execute(text("ANALYZE sync_changes"))
    # when PostgreSQL plans the undo's read of one run's changes and the prune's delete by age
    by_run = select(SyncChange.id).where(
        col(SyncChange.shop_id) == shops[0], col(SyncChange.job_run_id) == 7
    )
    by_age = delete(SyncChange).where(
        col(SyncChange.shop_id) == shops[0],
        col(SyncChange.applied_at) < T0 - timedelta(days=180),
    )
    # then each reads its index, not the whole table
    assert "ix_sync_changes_run" in plan(postgres_engine, by_run)
    assert "ix_sync_changes_applied" in plan(postgres_engine, by_age)
