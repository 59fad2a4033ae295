"""A push whose changes got no answer: the store applied them (or not), the response was lost,
and every retry failed. Its customers are marked uncertain and read back before the next push
plans, so that a later plan never compares against a record the store no longer matches."""

from __future__ import annotations

import logging
import re
from typing import Any

import anyio
import httpx
import pytest
from sqlmodel import Session, select

import jobs.pusher as pusher_module
from jobs import runs
from jobs.pusher import Pusher
from jobs.writeback import push_shop
from plugin.shopify.bulk import BulkOutcome, BulkRunner
from plugin.shopify.client import AdminClient, TransientError
from plugin.store.models import Customer, CustomerScore, CustomerSync
from tests.devstore.conftest import AppSwitch
from tests.writeback.conftest import Scenario, ScenarioFactory
from tests.writeback.test_push import assert_in_sync

pytestmark = pytest.mark.anyio


def set_scores(scenario: Scenario, change: Any) -> dict[int, tuple[str, float]]:
    """Apply `change(score)` to every score; each customer's tags and value before it."""
    before = {}
    with Session(scenario.engine) as session, session.begin():
        for score in session.exec(select(CustomerScore)).all():
            before[score.customer_id] = (score.tags, score.historical_clv)
            change(score)
    return before


def restore_scores(scenario: Scenario, before: dict[int, tuple[str, float]]) -> None:
    with Session(scenario.engine) as session, session.begin():
        for score in session.exec(select(CustomerScore)).all():
            score.tags, score.historical_clv = before[score.customer_id]


def uncertain(scenario: Scenario) -> set[int]:
    with Session(scenario.engine) as session:
        rows = session.exec(select(CustomerSync).where(CustomerSync.uncertain)).all()
    return {row.customer_id for row in rows}


def faults_of(live_switch: tuple[AppSwitch, str]) -> Any:
    return live_switch[0].target.state.devstore.faults  # type: ignore[union-attr]


def new_tag(score: CustomerScore) -> None:
    score.tags = " ".join([*score.tags.split()[1:], "spend-declining"])


async def test_tags_applied_without_an_answer_are_read_back_before_the_next_plan(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    live_switch: tuple[AppSwitch, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a pushed shop whose next scores drop each customer's first tag and add another
    scenario = scenario_factory(customers=20)
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    before = set_scores(scenario, new_tag)
    # and a store that applies each mutation but whose every answer is lost (502 after it)
    faults = faults_of(live_switch)
    faults.drop_share = 1.0
    # when the push runs out of retries
    with caplog.at_level(logging.WARNING, logger="jobs.pusher"), pytest.raises(TransientError):
        await push_shop(ctx, scenario.refreshed_shop(), None)
    # then the store took the new tag, and the customers sent it are marked uncertain
    took = {c for c, tags in scenario.store_tags().items() if "clv:spend-declining" in tags}
    marked = uncertain(scenario)
    assert took and took <= marked
    # and the operator is warned of them, by their count
    warned = [
        int(found.group(1))
        for record in caplog.records
        if record.levelno == logging.WARNING
        and (found := re.search(r"no answer for the changes of (\d+) customer", record.message))
    ]
    assert sum(warned) == len(marked)
    # and when the scores go back to what the store was last known to hold, and the outage
    # is over, the next push reads them back first and takes the new tag off again
    faults.drop_share = 0.0
    restore_scores(scenario, before)
    counts = await push_shop(ctx, scenario.refreshed_shop(), None)
    assert counts["customers_read_back"] == len(marked)
    assert_in_sync(scenario)
    assert uncertain(scenario) == set()


async def test_values_set_without_an_answer_are_read_back_before_the_next_plan(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    live_switch: tuple[AppSwitch, str],
) -> None:
    # given a pushed shop whose customers' historical value then changes, and a store that
    # sets each value but whose every answer is lost
    scenario = scenario_factory(customers=20)
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    pushed = scenario.store_metafields()

    def raise_value(score: CustomerScore) -> None:
        score.historical_clv += 1000

    before = set_scores(scenario, raise_value)
    faults = faults_of(live_switch)
    faults.drop_share = 1.0
    with pytest.raises(TransientError):
        await push_shop(ctx, scenario.refreshed_shop(), None)
    assert scenario.store_metafields() != pushed and uncertain(scenario)
    # when the value goes back and the next push runs
    faults.drop_share = 0.0
    restore_scores(scenario, before)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    # then the store holds the values it held before the failed push
    assert scenario.store_metafields() == pushed
    assert uncertain(scenario) == set()


async def test_bulk_lines_without_a_result_are_read_back_before_the_next_plan(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    live_switch: tuple[AppSwitch, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a pushed shop whose next scores change each customer's tags, pushed in bulk, and
    # a bulk operation that runs to the end but whose result file is never read
    scenario = scenario_factory(customers=20)
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    before = set_scores(scenario, new_tag)
    scenario.set_shop_settings(bulk_threshold=1)
    run_bulk = BulkRunner.mutation

    async def mutation(runner: BulkRunner, document: str, variables: Any) -> BulkOutcome:
        await run_bulk(runner, document, variables)
        raise TransientError("the result file could not be read (test)")

    monkeypatch.setattr(BulkRunner, "mutation", mutation)
    with pytest.raises(TransientError):
        await push_shop(ctx, scenario.refreshed_shop(), None)
    took = {c for c, tags in scenario.store_tags().items() if "clv:spend-declining" in tags}
    assert took and took <= uncertain(scenario)
    # when the scores go back and the next push runs, the bulk path whole again
    monkeypatch.setattr(BulkRunner, "mutation", run_bulk)
    restore_scores(scenario, before)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    # then the store holds exactly the desired tags
    assert_in_sync(scenario)
    assert uncertain(scenario) == set()


async def test_dry_run_counts_the_customers_to_read_back(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    live_switch: tuple[AppSwitch, str],
) -> None:
    scenario = scenario_factory(customers=10)
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    set_scores(scenario, new_tag)
    faults_of(live_switch).drop_share = 1.0
    with pytest.raises(TransientError):
        await push_shop(ctx, scenario.refreshed_shop(), None)
    plan = await push_shop(ctx, scenario.refreshed_shop(), None, dry_run=True)
    assert plan["customers_to_read_back"] == len(uncertain(scenario)) > 0


async def test_a_customer_read_back_that_the_store_no_longer_holds_is_marked_deleted(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    live_switch: tuple[AppSwitch, str],
) -> None:
    # given customers left uncertain, one of whom is then deleted in the store
    scenario = scenario_factory(customers=10)
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    set_scores(scenario, new_tag)
    faults = faults_of(live_switch)
    faults.drop_share = 1.0
    with pytest.raises(TransientError):
        await push_shop(ctx, scenario.refreshed_shop(), None)
    gone = min(uncertain(scenario))
    del scenario.devstore.state.customers[gone]
    faults.drop_share = 0.0
    # when the next push reads them back
    result = await push_shop(ctx, scenario.refreshed_shop(), None)
    # then that customer is marked deleted, as the customers/delete webhook would, with no
    # pushed state left, and nothing was sent to it (the store would refuse it)
    with Session(scenario.engine) as session:
        assert session.get(CustomerSync, (scenario.shop.id, gone)) is None
        customer = session.get(Customer, (scenario.shop.id, gone))
    assert customer is not None and customer.deleted_at is not None
    assert result["customers_gone"] == 1
    assert result["customers_refused"] == result["metafields_refused"] == 0
    assert uncertain(scenario) == set()
    # and the next push plans nothing for it
    again = await push_shop(ctx, scenario.refreshed_shop(), None)
    assert again["customers_tagged"] == again["metafields_set"] == again["customers_gone"] == 0


async def test_a_push_stopped_while_recording_bulk_results_leaves_the_rest_marked(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a pushed shop whose values then change, pushed in bulk, the results recorded 3
    # customers a transaction, and one result line missing (applied all the same)
    scenario = scenario_factory(customers=60)
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    pushed = scenario.store_metafields()

    def raise_value(score: CustomerScore) -> None:
        score.historical_clv += 1000

    before = set_scores(scenario, raise_value)
    scenario.set_shop_settings(bulk_threshold=1)
    monkeypatch.setattr(pusher_module, "RECORD_EVERY", 3)
    run_bulk = BulkRunner.mutation

    async def mutation(runner: BulkRunner, document: str, variables: Any) -> BulkOutcome:
        outcome = await run_bulk(runner, document, variables)
        last = max(outcome.by_line)
        outcome.lines = [line for line in outcome.lines if line.get("__lineNumber") != last]
        return outcome

    monkeypatch.setattr(BulkRunner, "mutation", mutation)
    record = Pusher._record
    # when the push is stopped (a shutdown, a lost lease) once the first results are written
    with anyio.CancelScope() as scope:

        async def stopping_record(self: Pusher, *args: Any, **kwargs: Any) -> None:
            await record(self, *args, **kwargs)
            scope.cancel()

        monkeypatch.setattr(Pusher, "_record", stopping_record)
        await push_shop(ctx, scenario.refreshed_shop(), None)
    assert scope.cancelled_caught
    monkeypatch.undo()
    # and the values go back to what the store was last known to hold
    restore_scores(scenario, before)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    # then the next push read back every customer whose result was not recorded, and the
    # store holds the values it held before
    assert scenario.store_metafields() == pushed
    assert uncertain(scenario) == set()


async def test_a_call_out_when_the_lease_is_lost_leaves_its_customers_marked(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a pushed shop whose tags then change, and a tag call the store applies, its answer
    # still on the way when the push's lease is lost (the run's database access stopped first)
    scenario = scenario_factory(customers=10)
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    set_scores(scenario, new_tag)
    out = anyio.Event()
    execute = AdminClient.execute

    async def execute_and_wait(self: AdminClient, query: str, *args: Any, **kw: Any) -> Any:
        data = await execute(self, query, *args, **kw)
        if query.startswith("mutation PushTags"):
            out.set()
            await anyio.sleep_forever()
        return data

    async def keep_lease(ctx: Any, shop: Any, lease: Any) -> str:
        await out.wait()
        return "lease lost (test)"

    monkeypatch.setattr(AdminClient, "execute", execute_and_wait)
    monkeypatch.setattr(runs, "_keep_lease", keep_lease)
    # when the push runs as a job and loses its lease
    result = await runs.run_job(ctx, scenario.shop.id, "push", push_shop)
    # then it failed, and every customer the store changed is marked, to be read back
    assert result.outcome == "failed"
    took = {c for c, tags in scenario.store_tags().items() if "clv:spend-declining" in tags}
    assert took and took <= uncertain(scenario)


async def test_customers_left_uncertain_are_counted_once(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given customers whose tags and values both change, pushed in bulk, and bulk operations
    # that run but end without a result line
    scenario = scenario_factory(customers=20)
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)

    def both(score: CustomerScore) -> None:
        new_tag(score)
        score.historical_clv += 1000

    set_scores(scenario, both)
    scenario.set_shop_settings(bulk_threshold=1)
    run_bulk = BulkRunner.mutation

    async def mutation(runner: BulkRunner, document: str, variables: Any) -> BulkOutcome:
        outcome = await run_bulk(runner, document, variables)
        outcome.lines, outcome.status = [], "FAILED"
        return outcome

    monkeypatch.setattr(BulkRunner, "mutation", mutation)
    # when pushed
    counts = await push_shop(ctx, scenario.refreshed_shop(), None)
    # then each customer left uncertain is counted once
    assert counts["customers_uncertain"] == len(uncertain(scenario)) > 0
