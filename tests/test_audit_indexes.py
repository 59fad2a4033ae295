"""The audit's indexes (migration 0007): the undo's and the prune's reads of one shop's
`sync_changes` can use them instead of scanning every shop's audit."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, delete, event, inspect, select, text
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


def test_on_postgresql_0007_builds_the_indexes_concurrently_and_keeps_one_built_by_hand(
    fresh_postgres_url: str,
) -> None:
    # given a database at 0006 where an operator already built one of the indexes by hand
    engine = make_engine(fresh_postgres_url)
    upgrade(engine, "0006")
    with engine.begin() as connection:
        connection.execute(
            text("CREATE INDEX ix_sync_changes_run ON sync_changes (shop_id, job_run_id, id)")
        )
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    # when the migrations run to the head
    upgrade(engine)
    # then both indexes are built without blocking writes, and both are valid
    creates = [s for s in statements if s.startswith("CREATE INDEX")]
    assert len(creates) == 2
    assert all(s.startswith("CREATE INDEX CONCURRENTLY IF NOT EXISTS") for s in creates)
    with engine.connect() as connection:
        valid = connection.execute(
            text(
                "SELECT c.relname, i.indisvalid FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE 'ix_sync_changes_%'"
            )
        ).all()
    assert {name: ok for name, ok in valid if name in INDEXES} == dict.fromkeys(INDEXES, True)
    engine.dispose()


def test_on_postgresql_processes_starting_together_migrate_one_at_a_time_without_deadlock(
    fresh_postgres_url: str,
) -> None:
    # given three processes' engines on an empty database
    engines = [make_engine(fresh_postgres_url) for _ in range(3)]
    errors: list[BaseException] = []

    def migrate(engine: Engine) -> None:
        try:
            upgrade(engine)
        except BaseException as exc:  # reported below
            errors.append(exc)

    # when all three run the migrations at once (those waiting for the first must not hold
    # a snapshot that its CREATE INDEX CONCURRENTLY waits for)
    threads = [threading.Thread(target=migrate, args=(e,), daemon=True) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # then each finished, and the schema is at the head once
    assert not any(thread.is_alive() for thread in threads), "upgrade deadlocked"
    assert errors == []
    assert indexes(engines[0]) >= INDEXES
    with engines[0].connect() as connection:
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        assert list(versions) == [
            ScriptDirectory.from_config(alembic_config(engines[0])).get_current_head()
        ]
    for engine in engines:
        engine.dispose()
