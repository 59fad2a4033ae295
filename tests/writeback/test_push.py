"""The push against a live dev store over real HTTP: exact end state, only the app's tags,
pacing, faults, bulk versus per-call, refusals, metafields, dry run, audit."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import anyio
import httpx
import pytest
from sqlmodel import Session, select

from jobs.plan import SAMPLE_SIZE
from jobs.runs import run_job
from jobs.writeback import WritebackError, plan_changes, push_shop, shop_writeback_settings
from plugin.devstore.config import DevStoreConfig
from plugin.domain.flags import FLAGS
from plugin.shopify.bulk import BulkOutcome, BulkRunner
from plugin.shopify.client import AuthError, TransientError
from plugin.store.models import CustomerScore, CustomerSync, SyncChange
from plugin.store.sync import uncertain_customers
from tests.devstore.conftest import AppSwitch, DevStoreFactory
from tests.helpers import add_shop
from tests.writeback.conftest import (
    Scenario,
    ScenarioFactory,
    devstore_state,
    merchant_tagged,
    plan_of,
)

pytestmark = pytest.mark.anyio
MERCHANT = {"newsletter", "wholesale", "north"}


def assert_in_sync(scenario: Scenario) -> None:
    desired = scenario.desired()
    tagged = merchant_tagged(scenario.store)
    for customer_id, tags in scenario.store_tags().items():
        assert len(tags) == len(set(tags)), f"customer {customer_id} holds a tag twice"
        ours = {t for t in tags if t.startswith("clv:")}
        assert ours == desired[customer_id], customer_id
        # "wholesale, north" was one string: the store split it, as Shopify does
        others = set(tags) - ours
        assert others == (MERCHANT if customer_id in tagged else set()), customer_id


async def test_push_per_call_under_faults_leaves_exactly_the_desired_tags(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a dev store that fails 10% of calls, throttles with 429 and drops 10% of responses
    # after applying the mutation
    config = DevStoreConfig(
        fault_error_share=0.1, fault_drop_share=0.1, throttle_status_code=429, seed=5
    )
    scenario = scenario_factory(config=config)
    pusher = scenario.pusher(http)
    # when the changes are pushed call by call
    plan = plan_of(pusher)
    assert plan.items and len(plan.items) < pusher.settings.bulk_threshold
    counts = await pusher.push(plan)
    # then every customer holds exactly the desired tags under the prefix, once, beside the
    # merchant's own, and faults were met and retried
    assert_in_sync(scenario)
    assert counts.bulk_operations == 0 and counts.customers_refused == 0
    assert pusher.client.stats.server_errors > 0 and pusher.client.stats.retries > 0
    # and a second push finds nothing left to do
    assert plan_of(pusher).items == []


async def test_push_with_aborted_responses_is_exact(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given responses cut off mid-body after the mutation ran (the client sees a broken
    # connection, not an answer)
    config = DevStoreConfig(fault_drop_share=0.3, fault_drop_mode="abort", seed=9)
    scenario = scenario_factory(config=config)
    pusher = scenario.pusher(http)
    # when pushed
    await pusher.push(plan_of(pusher))
    # then the retries leave the store exactly right
    assert pusher.client.stats.transport_errors > 0
    assert_in_sync(scenario)


async def test_paced_push_never_overdraws_the_bucket(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a small bucket that a burst of unpaced calls would empty at once
    scenario = scenario_factory(config=DevStoreConfig(bucket_size=600, restore_rate=50))
    pusher = scenario.pusher(http)
    # when a whole shop's changes are pushed
    await pusher.push(plan_of(pusher))
    # then no call was ever throttled: the client waited for the points each call needed
    stats = pusher.client.stats
    assert stats.throttled == 0 and stats.paced_seconds > 0 and stats.requests >= 3
    assert_in_sync(scenario)


async def test_bulk_and_per_call_paths_reach_the_same_end_state(
    scenario_factory: ScenarioFactory,
    devstore_factory: DevStoreFactory,
    http: httpx.AsyncClient,
) -> None:
    # given the same shop pushed call by call and, with a threshold of 1, in bulk
    per_call = scenario_factory(seed=4)
    pusher = per_call.pusher(http)
    await pusher.push(plan_of(pusher))
    end_state = (per_call.store_tags(), per_call.store_metafields())
    # (the same shop again, from scratch, in a fresh dev store that fails 10% of calls)
    per_call.forget_pushed_state()
    config = DevStoreConfig(fault_error_share=0.1, seed=2)
    bulk = replace(per_call, devstore=devstore_factory(devstore_state(per_call.store), config))
    bulk.set_shop_settings(bulk_threshold=1)
    bulk_pusher = bulk.pusher(http)
    counts = await bulk_pusher.push(plan_of(bulk_pusher))
    # then the bulk path ran bulk operations, and both stores hold the same tags and values
    assert counts.bulk_operations >= 2
    assert (bulk.store_tags(), bulk.store_metafields()) == end_state
    assert_in_sync(bulk)


def at_the_tag_cap(scenario: Scenario) -> int:
    """A customer with tags to receive, given 250 tags of the merchant's: Shopify's cap."""
    full = next(c for c, tags in scenario.desired().items() if tags)
    scenario.devstore.state.customers[full].tags = [f"m{i}" for i in range(250)]
    return full


async def refused_at_the_tag_cap(scenario: Scenario, http: httpx.AsyncClient) -> int:
    """A customer at the tag cap whose tags a push was refused."""
    full = at_the_tag_cap(scenario)
    pusher = scenario.pusher(http)
    await pusher.push(plan_of(pusher))
    return full


async def test_customer_at_the_tag_cap_is_refused_reported_and_not_resent(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a customer who already holds 250 tags of the merchant's
    scenario = scenario_factory()
    full = at_the_tag_cap(scenario)
    pusher = scenario.pusher(http)
    # when pushed
    counts = await pusher.push(plan_of(pusher))
    # then that customer is refused and recorded so, the rest are in sync
    assert counts.customers_refused == 1
    assert scenario.devstore.state.customers[full].tags == [f"m{i}" for i in range(250)]
    with Session(scenario.engine) as session:
        sync = session.get(CustomerSync, (scenario.shop.id, full))
        refusal = session.exec(select(SyncChange).where(SyncChange.action == "refused")).one()
    assert sync is not None and sync.blocked and "250" in sync.blocked
    assert refusal.customer_id == full
    # and the next plan does not send it again while nothing changed
    again = plan_of(pusher)
    assert again.skipped_refused == 1 and all(i.change.customer_id != full for i in again.items)


async def test_a_refused_tag_change_is_not_resent_with_the_customers_new_values(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a customer at the tag cap, refused once
    scenario = scenario_factory()
    full = await refused_at_the_tag_cap(scenario, http)
    for _ in range(2):
        # when the customer's value changes (a new order) and the shop is pushed again
        with Session(scenario.engine) as session, session.begin():
            score = session.get(CustomerScore, (scenario.shop.id, full))
            assert score is not None
            score.historical_clv += 10.0
        pusher = scenario.pusher(http)
        plan = plan_of(pusher)
        (item,) = [i for i in plan.items if i.change.customer_id == full]
        counts = await pusher.push(plan)
        # then the new value is sent and set, the refused tags are not sent again
        assert item.change.set_metafields and not item.change.tags_changed
        assert counts.customers_refused == 0 and counts.metafields_set == 1
    with Session(scenario.engine) as session:
        refused = session.exec(select(SyncChange).where(SyncChange.action == "refused")).all()
        sync = session.get(CustomerSync, (scenario.shop.id, full))
    assert len(refused) == 1 and sync is not None and sync.blocked
    held = scenario.store_metafields()[full]["historical_value"]
    assert float(held) == pytest.approx(float(item.change.set_metafields[0][1]))


async def test_a_refused_customer_is_sent_its_tags_again_once_they_change(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a customer at the tag cap, refused once, who then makes room (the merchant removed
    # tags of theirs)
    scenario = scenario_factory()
    full = await refused_at_the_tag_cap(scenario, http)
    scenario.devstore.state.customers[full].tags = [f"m{i}" for i in range(200)]
    # when the customer's desired tags change (a new scoring run)
    with Session(scenario.engine) as session, session.begin():
        score = session.get(CustomerScore, (scenario.shop.id, full))
        assert score is not None
        held = score.tags.split()
        new = next(flag for flag in FLAGS if flag not in held)
        score.tags = " ".join([*held, new])
    pusher = scenario.pusher(http)
    plan = plan_of(pusher)
    # then the new tags are planned and sent, and the store now holds them
    (item,) = [i for i in plan.items if i.change.customer_id == full]
    assert "clv:" + new in item.change.add
    counts = await pusher.push(plan)
    assert counts.customers_refused == 0
    assert {t for t in scenario.store_tags()[full] if t.startswith("clv:")} == item.desired_tags


def swap_first_tags_in_bulk(scenario: Scenario) -> None:
    """Each customer's next scores drop their first tag and add another, pushed in bulk."""
    with Session(scenario.engine) as session, session.begin():
        for score in session.exec(select(CustomerScore)).all():
            score.tags = " ".join([*score.tags.split()[1:], "spend-declining"])
    scenario.set_shop_settings(bulk_threshold=1)


async def test_bulk_removals_the_store_confirmed_are_recorded_when_the_additions_fail(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    live_switch: tuple[AppSwitch, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a pushed shop whose next scores drop each customer's first tag and add another
    scenario = scenario_factory(customers=20)
    pusher = scenario.pusher(http)
    await pusher.push(plan_of(pusher))
    swap_first_tags_in_bulk(scenario)
    # and an Admin API that fails from the moment the removals' bulk operation completed
    faults = live_switch[0].target.state.devstore.faults
    run_bulk = BulkRunner.mutation

    async def mutation(runner: BulkRunner, document: str, variables: Any) -> BulkOutcome:
        outcome = await run_bulk(runner, document, variables)
        faults.error_share = 1.0
        return outcome

    monkeypatch.setattr(BulkRunner, "mutation", mutation)
    pusher = scenario.pusher(http)
    plan = plan_of(pusher)
    removed = {i.change.customer_id: set(i.change.remove) for i in plan.items if i.change.remove}
    # when pushed in bulk
    with pytest.raises(TransientError):
        await pusher.push(plan)
    # then the store dropped the tags, and that is recorded: the customers' pushed tags and
    # one audit row per removal
    store = scenario.store_tags()
    assert removed and all(not tags & set(store[c]) for c, tags in removed.items())
    with Session(scenario.engine) as session:
        audited = session.exec(select(SyncChange).where(SyncChange.action == "remove")).all()
        pushed = {
            row.customer_id: set(json.loads(row.tags)) for row in session.exec(select(CustomerSync))
        }
    assert sorted((r.customer_id, r.name) for r in audited) == sorted(
        (c, tag) for c, tags in removed.items() for tag in tags
    )
    assert all(not tags & pushed[c] for c, tags in removed.items())
    # and the customers whose additions got no answer stay marked, to be read back
    adding = {i.change.customer_id for i in plan.items if i.change.add}
    assert adding and set(uncertain_customers(scenario.engine, scenario.shop.id)) == adding
    # and, the outage over, the next push adds what is missing and the store is as desired
    faults.error_share = 0.0
    pusher = scenario.pusher(http)
    await pusher.push(plan_of(pusher))
    assert_in_sync(scenario)


async def test_bulk_additions_answered_beside_removals_unanswered_leave_the_removals_unsure(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a pushed shop whose next scores drop each customer's first tag and add another
    scenario = scenario_factory(customers=20)
    pusher = scenario.pusher(http)
    await pusher.push(plan_of(pusher))
    swap_first_tags_in_bulk(scenario)
    # and a store that applies the removals' bulk operation but whose result file is lost
    # (the file of a bulk mutation may come back without lines; this plays it with the
    # lines taken off the outcome), while the additions' come back whole
    run_bulk = BulkRunner.mutation

    async def mutation(runner: BulkRunner, document: str, variables: Any) -> BulkOutcome:
        outcome = await run_bulk(runner, document, variables)
        return replace(outcome, lines=[]) if "tagsRemove" in document else outcome

    monkeypatch.setattr(BulkRunner, "mutation", mutation)
    pusher = scenario.pusher(http)
    plan = plan_of(pusher)
    removed = {i.change.customer_id: set(i.change.remove) for i in plan.items if i.change.remove}
    # when pushed in bulk
    counts = await pusher.push(plan)
    # then the additions are recorded, the removals are not (the record keeps those tags), and
    # the customers whose removals got no answer stay marked, to be read back
    with Session(scenario.engine) as session:
        pushed = {
            row.customer_id: set(json.loads(row.tags)) for row in session.exec(select(CustomerSync))
        }
    assert removed and all(tags <= pushed[c] for c, tags in removed.items())
    assert counts.tags_added > 0 and counts.tags_removed == 0
    assert set(uncertain_customers(scenario.engine, scenario.shop.id)) == set(removed)
    assert counts.customers_uncertain == len(removed)


async def test_bulk_removals_the_store_confirmed_are_recorded_when_a_shutdown_stops_the_run(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a pushed shop whose next scores drop each customer's first tag and add another,
    # pushed in bulk as a job run, and the additions' bulk operation still running when the
    # process shuts down
    scenario = scenario_factory(customers=20)
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    swap_first_tags_in_bulk(scenario)
    run_bulk, adding = BulkRunner.mutation, anyio.Event()

    async def mutation(runner: BulkRunner, document: str, variables: Any) -> BulkOutcome:
        if "tagsAdd" in document:
            adding.set()
            await anyio.sleep_forever()
        return await run_bulk(runner, document, variables)

    monkeypatch.setattr(BulkRunner, "mutation", mutation)
    shop = scenario.refreshed_shop()
    assert shop.id is not None
    pusher = scenario.pusher(http)
    plan = plan_of(pusher)
    removed = {i.change.customer_id: set(i.change.remove) for i in plan.items if i.change.remove}
    # when the run is cancelled then (a shutdown past its grace)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(run_job, ctx, shop.id, "push", push_shop)
            await adding.wait()
            tasks.cancel_scope.cancel()
    # then the removals the store confirmed are recorded all the same, in the audit
    with Session(scenario.engine) as session:
        audited = session.exec(select(SyncChange).where(SyncChange.action == "remove")).all()
    assert removed and sorted((r.customer_id, r.name) for r in audited) == sorted(
        (c, tag) for c, tags in removed.items() for tag in tags
    )


async def test_metafields_are_defined_once_typed_and_set_only_when_changed(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    scenario = scenario_factory()
    pusher = scenario.pusher(http)
    # when pushed twice
    counts = await pusher.push(plan_of(pusher))
    requests_first = pusher.client.stats.requests
    second = scenario.pusher(http)
    await second.push(plan_of(second))
    # then the definitions exist, typed, and the values match the scores
    definitions = {
        d.key: d.type
        for d in scenario.devstore.state.metafield_definitions.values()
        if d.namespace == "clv" and d.owner_type == "CUSTOMER"
    }
    assert definitions["predicted_value"] == "number_decimal"
    assert definitions["expected_next_order_date"] == "date"
    assert definitions["segment"] == "single_line_text_field"
    values = scenario.store_metafields()
    scored = {c for c, tags in scenario.desired().items() if tags}
    assert counts.metafields_set > 0 and all(values[c].get("segment") for c in scored)
    # and the second push sent nothing at all
    assert requests_first > 0 and second.client.stats.requests == 0


async def test_push_job_dry_run_reports_without_calling(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    scenario = scenario_factory()
    before = scenario.store_tags()
    # when the shop's dry-run setting is on
    scenario.set_shop_settings(dry_run=True)
    result = await push_shop(scenario.context(http), scenario.refreshed_shop(), None)
    # then the plan is reported, with counts by tag and reasons, and the store is untouched
    assert result["dry_run"] is True and result["customers_with_tag_changes"] > 0
    assert sum(result["tags_added"].values()) > 0
    assert all(reason for sample in result["sample"] for reason in sample["add"].values())
    assert scenario.store_tags() == before


def test_a_dry_runs_sample_is_the_first_ten_customers(scenario_factory: ScenarioFactory) -> None:
    scenario = scenario_factory()
    shop = scenario.refreshed_shop()
    plan = plan_changes(scenario.engine, shop, shop_writeback_settings(shop))
    sample = plan.summary()["sample"]
    assert len(plan.items) > SAMPLE_SIZE == len(sample)
    assert [s["customer_id"] for s in sample] == [
        i.change.customer_id for i in plan.items[:SAMPLE_SIZE]
    ]


async def test_push_job_records_every_applied_change_with_its_reason(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    scenario = scenario_factory()
    result = await push_shop(scenario.context(http), scenario.refreshed_shop(), 7)
    with Session(scenario.engine) as session:
        changes = session.exec(select(SyncChange)).all()
    added = [c for c in changes if c.kind == "tag" and c.action == "add"]
    assert len(added) == result["tags_added"] > 0
    assert all(c.reason and c.job_run_id == 7 and c.via == "call" for c in added)
    assert_in_sync(scenario)


def test_bad_write_back_setting_is_named(scenario_factory: ScenarioFactory) -> None:
    scenario = scenario_factory(customers=30)
    scenario.set_shop_settings(bulk_threshold=0)
    with pytest.raises(Exception, match="bulk_threshold must be at least 1"):
        shop_writeback_settings(scenario.refreshed_shop())


async def test_push_job_with_a_refused_token_marks_the_shop_for_reauthorisation(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a shop whose stored token the store no longer accepts
    scenario = scenario_factory(customers=30)
    add_shop(scenario.engine, scenario.store.shop_domain, "shpat_revoked")
    # when the push job runs
    with pytest.raises(AuthError):
        await push_shop(scenario.context(http), scenario.refreshed_shop(), None)
    # then the shop is marked as needing re-authorisation, and later pushes refuse to start
    shop = scenario.refreshed_shop()
    assert shop.needs_reauth
    with pytest.raises(WritebackError, match="needs to authorise the app again"):
        await push_shop(scenario.context(http), shop, None)


@pytest.mark.parametrize("above", [0, 1])
async def test_bulk_from_exactly_the_threshold_per_call_under_it(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, above: int
) -> None:
    # given a threshold of exactly the number of customers whose tags, and whose values, change
    # (or one more)
    scenario = scenario_factory(seed=4)
    pusher = scenario.pusher(http)
    plan = plan_of(pusher)
    tagged = sum(item.change.tags_changed for item in plan.items)
    valued = sum(item.change.metafields_changed for item in plan.items)
    assert tagged == valued > 1
    scenario.set_shop_settings(bulk_threshold=tagged + above)
    pusher = scenario.pusher(http)
    # when pushed
    counts = await pusher.push(plan_of(pusher))
    # then each kind went in one bulk operation at the threshold and call by call under it
    assert counts.bulk_operations == (2 if above == 0 else 0)
    assert_in_sync(scenario)
