"""How the push cuts its work into requests against a live dev store: definitions the store
already holds, tag changes within half the bucket a request, deletes 250 a request (a delete
refused leaving its customers marked), and the counts of what was done."""

from __future__ import annotations

import httpx
import pytest
from sqlmodel import Session, select

from jobs.pusher import batches
from plugin.devstore.config import DevStoreConfig
from plugin.domain.writeback import DEFINITIONS_VERSION
from plugin.store.models import CustomerScore, Shop
from plugin.store.sync import uncertain_customers
from tests.writeback.conftest import (
    RecordsRequests,
    RefusingDeletes,
    Scenario,
    ScenarioFactory,
    plan_of,
)
from tests.writeback.test_push_refusals import set_confidence

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("bucket", "most"), [(200.0, 10), (2000.0, 50)])
async def test_tag_changes_go_at_most_half_the_bucket_a_request(
    scenario_factory: ScenarioFactory, bucket: float, most: int
) -> None:
    # given a store whose bucket holds `bucket` points (10 a tag mutation), and a shop with
    # many customers' tags to change
    config = DevStoreConfig(bucket_size=bucket, restore_rate=1000.0)
    scenario = scenario_factory(customers=120, config=config)
    transport = RecordsRequests()
    async with httpx.AsyncClient(transport=transport, timeout=10) as http:
        pusher = scenario.pusher(http)
        # when pushed (the bucket learnt from the definitions' answer, before any tag)
        counts = await pusher.push(plan_of(pusher))
    # then no request held more tag mutations than half the bucket pays for (and at most 50),
    # and the requests were full up to that
    per_request = [
        sent["query"].count("tagsAdd(") + sent["query"].count("tagsRemove(")
        for sent in transport.holding("mutation PushTags")
    ]
    assert sum(per_request) > 2 * most and counts.tags_added > 0
    assert max(per_request) == most


async def test_definitions_the_store_already_holds_are_taken_as_made(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a shop pushed to once, then recorded as not having its definitions (a database
    # restored from before the first push, or a newer version of them to make)
    scenario = scenario_factory()
    pusher = scenario.pusher(http)
    await pusher.push(plan_of(pusher))
    with Session(scenario.engine) as session, session.begin():
        shop = session.get(Shop, scenario.shop.id)
        assert shop is not None
        shop.definitions_version = 0
    # when pushed again
    again = scenario.pusher(http)
    await again.push(plan_of(again))
    # then the store's answer that they exist (TAKEN) is no refusal: the shop has them
    assert again.client.stats.requests == 1
    assert scenario.refreshed_shop().definitions_version == DEFINITIONS_VERSION


async def push_predictions_then_unfit(scenario: Scenario, http: httpx.AsyncClient) -> None:
    """Values pushed while the shop's models were fitted (predictions included); then the
    models no longer fit: every scored customer's predictions are to be deleted."""
    set_confidence(scenario, "fitted")
    pusher = scenario.pusher(http)
    await pusher.push(plan_of(pusher))
    set_confidence(scenario, "rules")


async def test_values_only_to_delete_are_deleted_250_a_request_and_nothing_is_set(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given values pushed while the shop's models were fitted (predictions included), and
    # then the models no longer fit: every scored customer's predictions are to be deleted,
    # and nothing else changes
    scenario = scenario_factory()
    await push_predictions_then_unfit(scenario, http)
    pusher = scenario.pusher(http)
    plan = plan_of(pusher)
    deleting = [i.change for i in plan.items if i.change.delete_metafields]
    assert len(deleting) > 10 and not any(i.change.set_metafields for i in plan.items)
    # when pushed
    transport = RecordsRequests()
    async with httpx.AsyncClient(transport=transport, timeout=10) as counting:
        pusher = scenario.pusher(counting)
        counts = await pusher.push(plan)
    # then one request deletes them all, and none sets anything
    total = sum(len(change.delete_metafields) for change in deleting)
    assert total <= 250 and counts.metafields_deleted == total
    assert len(transport.holding("metafieldsDelete(")) == 1
    assert transport.holding("metafieldsSet(") == []


async def test_push_counts_each_tag_added_and_removed_and_each_customer_tagged(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a pushed shop whose customers' tags then all go
    scenario = scenario_factory()
    pusher = scenario.pusher(http)
    plan = plan_of(pusher)
    first = await pusher.push(plan)
    tagged = [i.change for i in plan.items if i.change.tags_changed]
    assert first.tags_added == sum(len(change.add) for change in tagged) > len(tagged)
    assert first.customers_tagged == len(tagged)
    with Session(scenario.engine) as session, session.begin():
        for score in session.exec(select(CustomerScore)).all():
            score.tags = ""
    # when pushed
    pusher = scenario.pusher(http)
    plan = plan_of(pusher)
    counts = await pusher.push(plan)
    # then every tag removed is counted, and every customer tagged
    untagged = [i.change for i in plan.items if i.change.tags_changed]
    assert counts.tags_removed == first.tags_added and counts.customers_tagged == len(untagged)


async def test_customers_whose_delete_is_refused_stay_marked(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given values pushed while the shop's models were fitted, and then the models no longer
    # fitting (every scored customer's predictions to delete)
    scenario = scenario_factory(customers=20)
    await push_predictions_then_unfit(scenario, http)
    pusher = scenario.pusher(http)
    plan = plan_of(pusher)
    deleting = {i.change.customer_id for i in plan.items if i.change.delete_metafields}
    # when pushed to a store that answers the delete with an error (which of them it deleted
    # is not said)
    async with httpx.AsyncClient(transport=RefusingDeletes(), timeout=10) as refusing:
        pusher = scenario.pusher(refusing)
        counts = await pusher.push(plan)
    # then none is counted deleted; all stay marked, to be read back
    assert deleting and counts.metafields_deleted == 0
    assert counts.customers_uncertain == len(deleting)
    assert set(uncertain_customers(scenario.engine, scenario.shop.id)) == deleting


def test_batches_fill_each_group_up_to_its_capacity_and_never_leave_one_empty() -> None:
    weights = [2, 1, 2, 5, 1]
    # consecutive, each group's weight at most the capacity, an item never split
    assert list(batches(weights, 3, lambda w: w)) == [[2, 1], [2], [5], [1]]
    # an item heavier than the capacity goes alone (no empty group before it)
    assert list(batches([5, 1], 3, lambda w: w)) == [[5], [1]]
    # a callable capacity is asked again as the groups are taken (the bucket's room changes)
    room, groups = [1], []
    for group in batches(weights, lambda: room[0], lambda w: w):
        groups.append(group)
        room[0] = 4
    assert groups == [[2], [1, 2], [5], [1]]
    assert list(batches([], 3, lambda w: w)) == []
