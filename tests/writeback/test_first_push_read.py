"""The push reads a customer from the store before its first write to them: tags and values
of the app's the store already holds (an earlier install left them, or the merchant set them)
are not sent again nor counted as the push's, so its undo leaves them where it found them."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlmodel import Session, select

from jobs.runs import OK, run_job
from jobs.writeback import push_shop, reconcile_shop
from plugin.store.models import CustomerScore, JobRun, SyncChange
from tests.writeback.conftest import ScenarioFactory
from tests.writeback.test_undo import (
    OLD_SEGMENT,
    left_by_an_earlier_install,
    push,
    store_state,
    undo,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("bulk_threshold", [1000, 10], ids=["by-id", "in-bulk"])
async def test_the_first_push_leaves_alone_the_apps_tags_the_store_already_held(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, bulk_threshold: int
) -> None:
    # given customers holding some of the app's tags and values before its first push (60
    # customers: read by id under the shop's bulk threshold, in bulk from it)
    scenario = scenario_factory()
    scenario.set_shop_settings(bulk_threshold=bulk_threshold)
    held = left_by_an_earlier_install(scenario)
    assert len(held) >= 5
    # when the app pushes for the first time
    run = await push(scenario, http)
    # then it read them first (by id, or in one bulk query of the store's customers), and
    # neither sent nor audited an addition of a tag they held; the segment it replaced is
    # audited as found
    with Session(scenario.engine) as session:
        changes = session.exec(select(SyncChange).where(SyncChange.job_run_id == run)).all()
        scored = len(session.exec(select(CustomerScore.customer_id)).all())
        job_run = session.get(JobRun, run)
    assert job_run is not None and json.loads(job_run.counts)["customers_read_back"] == scored
    read_in_bulk = [
        op.query for op in scenario.devstore.state.bulk_operations.values() if op.type == "QUERY"
    ]
    assert len(read_in_bulk) == (1 if bulk_threshold <= scored else 0)
    assert all("customers" in query for query in read_in_bulk)
    added = {(c.customer_id, c.name) for c in changes if c.action == "add"}
    assert added and not added & set(held.items())
    found = {(c.customer_id, c.name, c.value) for c in changes if c.action == "found"}
    assert found == {(customer, "segment", OLD_SEGMENT) for customer in held}
    tags = scenario.store_tags()
    assert all(tags[customer].count(tag) == 1 for customer, tag in held.items())


async def test_a_dry_run_counts_the_customers_the_first_push_reads(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    scenario = scenario_factory()
    with Session(scenario.engine) as session:
        scored = len(session.exec(select(CustomerScore.customer_id)).all())
    result = await push_shop(scenario.context(http), scenario.refreshed_shop(), None, dry_run=True)
    assert result["customers_to_read_back"] == scored
    await push(scenario, http)
    result = await push_shop(scenario.context(http), scenario.refreshed_shop(), None, dry_run=True)
    assert result["customers_to_read_back"] == 0


async def test_the_undo_of_a_reconcile_puts_back_a_value_it_found_edited(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a push, then the merchant editing one customer's segment in the store
    scenario = scenario_factory()
    await push(scenario, http)
    customer = next(c for c, values in scenario.store_metafields().items() if values)
    fields = scenario.devstore.state.customers[customer].metafields
    assert fields is not None
    fields["clv", "segment"].value = "edited-by-hand"
    before = store_state(scenario)
    # when a reconcile repairs it, and is undone
    assert scenario.shop.id is not None
    run = await run_job(scenario.context(http), scenario.shop.id, "reconcile", reconcile_shop)
    assert run.outcome == OK and run.run_id is not None, run.error
    assert scenario.store_metafields()[customer]["segment"] != "edited-by-hand"
    scenario.set_shop_settings(dry_run=True)
    result = await undo(scenario, http, run.run_id)
    # then the value is back as the reconcile found it
    assert result.outcome == OK, result.error
    assert store_state(scenario) == before


@pytest.mark.parametrize("above", [0, 1])
async def test_the_first_push_reads_in_bulk_from_exactly_the_shops_threshold(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, above: int
) -> None:
    # given a bulk threshold of exactly the number of customers to read (or one more)
    scenario = scenario_factory()
    with Session(scenario.engine) as session:
        scored = len(session.exec(select(CustomerScore.customer_id)).all())
    scenario.set_shop_settings(bulk_threshold=scored + above)
    # when the app pushes for the first time
    await push(scenario, http)
    # then it read them in one bulk query at the threshold, and by id under it
    read_in_bulk = [
        op for op in scenario.devstore.state.bulk_operations.values() if op.type == "QUERY"
    ]
    assert len(read_in_bulk) == (1 if above == 0 else 0)
