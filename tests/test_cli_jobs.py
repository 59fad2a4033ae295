"""`clvsync jobs run`: one scheduled job run now, as the scheduler would, seen from the CLI."""

# ruff: noqa: F811  (the dev store's fixtures are imported, and used by name)

from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import Engine

from plugin.cli import main
from tests.devstore.conftest import (  # noqa: F401
    DevStoreFactory,
    anyio_backend,
    devstore_factory,
    live_switch,
)
from tests.test_backfill import installed
from tests.test_compliance import cli_env


def test_jobs_run_backfill_shows_its_progress_as_the_backfill_command_does(
    engine: Engine, devstore_factory: DevStoreFactory, migrated_url: str
) -> None:
    # given a shop whose store holds orders the ledger lacks
    store, live, _ = installed(engine, devstore_factory, 40, 11)
    env = {**cli_env(migrated_url), "SHOPIFY_ADMIN_URL": live.base_url}
    # when the daily backfill is run now
    args = ["jobs", "run", "backfill", "--shop", store.shop_domain]
    result = CliRunner().invoke(main, args, env=env)
    # then it reads them all, saying how the bulk query and the applying go
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["orders_read"] == len(store.orders)
    assert "bulk query completed:" in result.stderr and "orders applied:" in result.stderr
