"""A backfill (bulk query) and a push in bulk (bulk mutations) through a dev store whose storage
fails: they end as they do without faults, or, when a result file is never read whole, fail
saying so with the ledger as it was. Live dev store over real HTTP on loopback."""

# ruff: noqa: F811  (fixtures are imported, and used by name)

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from jobs.backfill import last_backfill_start
from jobs.runs import OK, run_job
from plugin.devstore.config import DEFAULT_TOKEN, DevStoreConfig
from plugin.devstore.gen_config import GeneratorConfig
from plugin.devstore.generator import generate_store
from plugin.store.models import CustomerSync
from tests.devstore.conftest import (  # noqa: F401
    DevStoreFactory,
    LiveDevStore,
    anyio_backend,
    devstore_factory,
    live_switch,
)
from tests.helpers import add_shop
from tests.shopify.test_bulk_files import Storage, http, storage  # noqa: F401
from tests.test_backfill import (
    REFERENCE,
    apply_payloads,
    backfill,
    backfill_job,
    ledger_of,
    live_store,
)
from tests.test_backfill import context as backfill_context
from tests.test_backfill import shop_id as shop_id_of
from tests.writeback.conftest import (  # noqa: F401  (the fixture, used by name)
    ScenarioFactory,
    plan_of,
    scenario_factory,
)
from tests.writeback.test_push import assert_in_sync

pytestmark = pytest.mark.anyio


def faults(seed: int) -> DevStoreConfig:
    """Storage that fails 30% of requests and serves 40% of files short as if whole (the
    seeds used serve a short file before a whole one, which a reader that trusts a clean end
    takes for the file)."""
    return DevStoreConfig(
        fault_file_error_share=0.3,
        fault_file_cut_share=0.4,
        fault_file_cut_mode="truncate",
        seed=seed,
    )


async def test_backfill_through_failing_storage_builds_the_ledger_the_webhooks_build(
    engine: Engine,
    devstore_factory: DevStoreFactory,
    http: httpx.AsyncClient,
    storage: Storage,
) -> None:
    # given a generated store's history behind storage that fails 30% of requests and serves
    # 40% of files short as if whole, and the same orders applied as webhooks to a reference
    store = generate_store(GeneratorConfig(customers=80), seed=5)
    add_shop(engine, store.shop_domain, DEFAULT_TOKEN)
    add_shop(engine, REFERENCE)
    apply_payloads(engine, REFERENCE, store.orders)
    faulty = live_store(devstore_factory, store, config=faults(5))
    # when the shop is backfilled
    counts = await backfill(engine, http, faulty)
    # then the export took more than one read, every order was read, and the ledger is the
    # reference's
    assert len(storage.files) > 1
    assert counts["orders_read"] == len(store.orders)
    assert ledger_of(engine, store.shop_domain) == ledger_of(engine, REFERENCE)


async def test_backfill_whose_export_is_never_read_whole_fails_and_keeps_the_ledger(
    engine: Engine,
    devstore_factory: DevStoreFactory,
    http: httpx.AsyncClient,
    storage: Storage,
) -> None:
    # given a shop with half its orders already in the ledger (by webhook), and a store
    # whose storage serves every file short, as if whole
    store = generate_store(GeneratorConfig(customers=60), seed=7)
    add_shop(engine, store.shop_domain, DEFAULT_TOKEN)
    apply_payloads(engine, store.shop_domain, store.orders[: len(store.orders) // 2])
    before = ledger_of(engine, store.shop_domain)
    cut = DevStoreConfig(fault_file_cut_share=1.0, fault_file_cut_mode="truncate", seed=2)
    faulty = live_store(devstore_factory, store, config=cut)
    # when the shop is backfilled
    sid = shop_id_of(engine, store.shop_domain)
    result = await run_job(backfill_context(engine, http, faulty), sid, "backfill", backfill_job)
    # then the run failed, saying the export could not be read, after five reads
    assert result.outcome != OK
    assert "result file could not be read in 5 attempts" in (result.error or "")
    assert len(storage.files) == 5
    # and nothing of the short reads reached the ledger, nor counts as a backfill done (the
    # daily run reads the whole history again)
    assert ledger_of(engine, store.shop_domain) == before
    with Session(engine) as session:
        assert last_backfill_start(session, sid) is None


async def test_push_in_bulk_through_failing_storage_is_exact(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    storage: Storage,
) -> None:
    # given storage that fails 30% of requests and serves 40% of files short as if whole
    scenario = scenario_factory(config=faults(50))
    scenario.set_shop_settings(bulk_threshold=1)
    pusher = scenario.pusher(http)
    # when the shop's changes are pushed in bulk
    counts = await pusher.push(plan_of(pusher))
    # then uploads and result files were asked for again, every change was answered (none
    # left uncertain), and the store holds exactly the desired tags
    assert counts.bulk_operations >= 2
    assert len(storage.uploads) > counts.bulk_operations
    assert len(storage.files) > counts.bulk_operations
    assert counts.customers_uncertain == 0
    with Session(scenario.engine) as session:
        assert not session.exec(select(CustomerSync).where(CustomerSync.uncertain)).all()
    assert_in_sync(scenario)
    assert plan_of(pusher).items == []
