"""Product values sent without an answer: the store applied them (or not), the response was
lost, and every retry failed (or the store answered a delete with errors). The values are
recorded as unanswered, and their products read back by id before the next push plans, so that
a later plan never compares against a record the store no longer matches, and a value the app
wrote to Shopify's complementary-products field is never taken for the merchant's."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select

from jobs.writeback import push_shop, reconcile_shop
from plugin.domain.writeback import COMPLEMENTARY_PRODUCTS
from plugin.shopify.client import TransientError
from plugin.store.models import KeptProductField, ProductSync
from plugin.store.recommendations import replace_recommendations
from tests.devstore.conftest import AppSwitch
from tests.writeback.conftest import Scenario, ScenarioFactory
from tests.writeback.test_product_push import product_metafields, recommend
from tests.writeback.test_product_references import delete_product, gone

pytestmark = pytest.mark.anyio
gid = "gid://shopify/Product/{}".format
FBT = "clv.frequently_bought_together"


def faults_of(live_switch: tuple[AppSwitch, str]) -> Any:
    return live_switch[0].target.state.devstore.faults  # type: ignore[union-attr]


def unanswered(scenario: Scenario) -> dict[int, dict[str, Any]]:
    query = select(ProductSync).where(col(ProductSync.unanswered).is_not(None))
    with Session(scenario.engine) as session:
        rows = session.exec(query).all()
    return {row.product_id: json.loads(row.unanswered or "{}") for row in rows}


def recorded(scenario: Scenario, product_id: int) -> dict[str, str]:
    with Session(scenario.engine) as session:
        row = session.get(ProductSync, (scenario.shop.id, product_id))
    return {} if row is None else json.loads(row.metafields)


def kept(scenario: Scenario) -> set[tuple[int, str]]:
    with Session(scenario.engine) as session:
        rows = session.exec(select(KeptProductField)).all()
    return {(row.product_id, row.name) for row in rows}


async def pushed_in_sync(scenario: Scenario, http: httpx.AsyncClient) -> None:
    """A first push with no product recommendations and no customer's next products (those
    would change with the products' recommendations below, and go first)."""
    assert scenario.shop.id is not None
    replace_recommendations(scenario.engine, scenario.shop.id, [], [], [])
    await push_shop(scenario.context(http), scenario.refreshed_shop(), None)


async def test_product_values_set_without_an_answer_are_read_back_before_the_next_plan(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    live_switch: tuple[AppSwitch, str],
) -> None:
    # given a product pushed with partner b, whose partner then becomes c
    scenario = scenario_factory(customers=20)
    a, b, c = sorted(scenario.devstore.state.products)[:3]
    await pushed_in_sync(scenario, http)
    ctx = scenario.context(http)
    recommend(scenario, {a: [b]}, [])
    await push_shop(ctx, scenario.refreshed_shop(), None)
    recommend(scenario, {a: [c]}, [])
    # and a store that applies each mutation but whose every answer is lost (502 after it)
    faults = faults_of(live_switch)
    faults.drop_share = 1.0
    # when the push runs out of retries
    with pytest.raises(TransientError):
        await push_shop(ctx, scenario.refreshed_shop(), None)
    # then the store took the new partner, and the value sent is recorded as unanswered
    assert product_metafields(scenario)[a][FBT] == [gid(c)]
    assert unanswered(scenario) == {a: {FBT: json.dumps([gid(c)])}}
    # and when the partner goes back to b, the one recorded, and the outage is over, the next
    # push reads the product back first and sends b again
    faults.drop_share = 0.0
    recommend(scenario, {a: [b]}, [])
    counts = await push_shop(ctx, scenario.refreshed_shop(), None)
    assert product_metafields(scenario)[a][FBT] == [gid(b)]
    assert counts["products_read_back"] == 1 and counts["product_metafields_set"] == 1
    assert unanswered(scenario) == {}
    assert recorded(scenario, a) == {FBT: json.dumps([gid(b)])}


@pytest.mark.parametrize("then", ["push", "reconcile"])
async def test_complementary_value_written_without_an_answer_is_not_taken_for_the_merchants(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    live_switch: tuple[AppSwitch, str],
    then: str,
) -> None:
    # given a shop asking for Shopify's complementary-products field, and the app's first
    # write to a product's field sent without an answer (the store applied it)
    scenario = scenario_factory(customers=20)
    a, b, c = sorted(scenario.devstore.state.products)[:3]
    scenario.set_shop_settings(complementary_products=True)
    await pushed_in_sync(scenario, http)
    ctx = scenario.context(http)
    recommend(scenario, {a: [b]}, [])
    faults = faults_of(live_switch)
    faults.drop_share = 1.0
    with pytest.raises(TransientError):
        await push_shop(ctx, scenario.refreshed_shop(), None)
    assert product_metafields(scenario)[a][COMPLEMENTARY_PRODUCTS] == [gid(b)]
    # when the partner changes and the next push (or a reconcile) runs
    faults.drop_share = 0.0
    recommend(scenario, {a: [c]}, [])
    run = push_shop if then == "push" else reconcile_shop
    counts = await run(ctx, scenario.refreshed_shop(), None)
    # then the value found there was the app's: replaced, not kept as the merchant's
    held = product_metafields(scenario)[a]
    assert held[COMPLEMENTARY_PRODUCTS] == held[FBT] == [gid(c)]
    assert counts["product_fields_kept"] == 0 and kept(scenario) == set()
    assert unanswered(scenario) == {}


async def test_product_values_deleted_without_an_answer_are_read_back_before_the_next_plan(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    live_switch: tuple[AppSwitch, str],
) -> None:
    # given a product pushed with partner b, whose recommendations are then gone, and whose
    # delete the store applies without an answer
    scenario = scenario_factory(customers=20)
    a, b = sorted(scenario.devstore.state.products)[:2]
    await pushed_in_sync(scenario, http)
    ctx = scenario.context(http)
    recommend(scenario, {a: [b]}, [])
    await push_shop(ctx, scenario.refreshed_shop(), None)
    assert scenario.shop.id is not None
    replace_recommendations(scenario.engine, scenario.shop.id, [], [], [])
    faults = faults_of(live_switch)
    faults.drop_share = 1.0
    with pytest.raises(TransientError):
        await push_shop(ctx, scenario.refreshed_shop(), None)
    assert a not in product_metafields(scenario)
    assert unanswered(scenario) == {a: {FBT: None}}
    # when the recommendation comes back as it was recorded, and the next push runs
    faults.drop_share = 0.0
    recommend(scenario, {a: [b]}, [])
    await push_shop(ctx, scenario.refreshed_shop(), None)
    # then the store holds it again
    assert product_metafields(scenario)[a][FBT] == [gid(b)]
    assert unanswered(scenario) == {}


class RefusingDeletes(httpx.AsyncBaseTransport):
    """Forwards to the dev store, and answers each metafieldsDelete (which the store applied)
    with a user error."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = json.loads(await response.aread())
        answer = (body.get("data") or {}).get("metafieldsDelete")
        if isinstance(answer, dict):
            answer["userErrors"] = [{"field": ["metafields", "0"], "message": "refused (test)"}]
            self.refused += 1
        return httpx.Response(response.status_code, json=body)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_product_delete_refused_is_read_back_before_the_next_plan(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a product pushed with partner b, whose recommendations are then gone, and a store
    # that deletes the value but answers with an error
    scenario = scenario_factory(customers=20)
    a, b = sorted(scenario.devstore.state.products)[:2]
    await pushed_in_sync(scenario, http)
    recommend(scenario, {a: [b]}, [])
    await push_shop(scenario.context(http), scenario.refreshed_shop(), None)
    assert scenario.shop.id is not None
    replace_recommendations(scenario.engine, scenario.shop.id, [], [], [])
    transport = RefusingDeletes()
    async with httpx.AsyncClient(transport=transport, timeout=10) as refusing:
        counts = await push_shop(scenario.context(refusing), scenario.refreshed_shop(), None)
    assert transport.refused == 1 and counts["product_metafields_refused"] == 1
    assert a not in product_metafields(scenario)
    # when the recommendation comes back as it was recorded, and the next push runs
    recommend(scenario, {a: [b]}, [])
    counts = await push_shop(scenario.context(http), scenario.refreshed_shop(), None)
    # then the store holds it again
    assert product_metafields(scenario)[a][FBT] == [gid(b)]
    assert counts["products_read_back"] == 1 and unanswered(scenario) == {}


async def test_product_deleted_in_the_store_while_unanswered_holds_nothing(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    live_switch: tuple[AppSwitch, str],
) -> None:
    # given a product left with a value unanswered, which the merchant then deletes
    scenario = scenario_factory(customers=20)
    a, b, c = sorted(scenario.devstore.state.products)[:3]
    await pushed_in_sync(scenario, http)
    ctx = scenario.context(http)
    recommend(scenario, {a: [b]}, [])
    await push_shop(ctx, scenario.refreshed_shop(), None)
    recommend(scenario, {a: [c]}, [])
    faults = faults_of(live_switch)
    faults.drop_share = 1.0
    with pytest.raises(TransientError):
        await push_shop(ctx, scenario.refreshed_shop(), None)
    delete_product(scenario, a)
    # when the recommendation goes back to the one recorded, and the next push reads it back
    faults.drop_share = 0.0
    recommend(scenario, {a: [b]}, [])
    counts = await push_shop(ctx, scenario.refreshed_shop(), None)
    # then the product holds nothing, not what was recorded, and is gone: nothing is sent to it
    assert recorded(scenario, a) == {}
    assert a in gone(scenario)
    assert counts["product_metafields_set"] == counts["product_metafields_refused"] == 0
    assert unanswered(scenario) == {}
