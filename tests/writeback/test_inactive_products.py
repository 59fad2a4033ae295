"""Products the merchant sets to draft, archived or unlisted, against the live dev store: still
in the catalogue, but not for sale, so the reconcile leaves them out of every list the app
pushes until it reads them ACTIVE again; their own values are read back as they are."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta

import httpx
import pytest
from sqlmodel import Session, select

from jobs import readback, writeback
from jobs.writeback import push_shop, reconcile_shop
from plugin.domain.writeback import COMPLEMENTARY_PRODUCTS
from plugin.store.models import GoneProduct, Order, ProductSync
from plugin.store.recommendations import NOT_AVAILABLE
from tests.helpers import add_ledger_order
from tests.writeback.conftest import Scenario, ScenarioFactory
from tests.writeback.test_product_push import product_metafields, recommend

pytestmark = pytest.mark.anyio
gid = "gid://shopify/Product/{}".format
ORDER_IDS = itertools.count(9_800_000_000_000, 10)


def gone(scenario: Scenario) -> dict[int, str]:
    with Session(scenario.engine) as session:
        return {row.product_id: row.reason for row in session.exec(select(GoneProduct)).all()}


def recommended(scenario: Scenario, customer: int) -> list[str]:
    return json.loads(scenario.store_metafields()[customer]["recommended_products"])


def naming(scenario: Scenario, product_id: int) -> set[str]:
    """Where the store's pushed lists name the product: "customer N" or the product's field."""
    named = {
        f"customer {customer}"
        for customer, values in scenario.store_metafields().items()
        if gid(product_id) in json.loads(values.get("recommended_products", "[]"))
    }
    return named | {
        f"{owner} {name}"
        for owner, values in product_metafields(scenario).items()
        for name, ids in values.items()
        if gid(product_id) in ids
    }


def recorded(scenario: Scenario, product_id: int) -> dict[str, list[str]]:
    with Session(scenario.engine) as session:
        row = session.get(ProductSync, (scenario.shop.id, product_id))
    assert row is not None
    return {name: json.loads(value) for name, value in json.loads(row.metafields).items()}


def order_naming(scenario: Scenario, product_id: int, placed: datetime, updated: datetime) -> None:
    """A guest order in the ledger with a line of the product, placed and last updated then."""
    with Session(scenario.engine) as session, session.begin():
        order_id = next(ORDER_IDS)
        add_ledger_order(
            session, scenario.shop.id, order_id, updated, [(product_id, None)], None, counted=False
        )
    with Session(scenario.engine) as session, session.begin():
        order = session.get(Order, (scenario.shop.id, order_id))
        assert order is not None
        order.created_at = order.processed_at = placed


@pytest.mark.parametrize(
    ("status", "read"),
    [("DRAFT", "pages"), ("DRAFT", "bulk"), ("ARCHIVED", "pages"), ("UNLISTED", "bulk")],
)
async def test_reconcile_leaves_a_product_set_to_draft_out_until_it_is_active_again(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    status: str,
    read: str,
) -> None:
    # given a product recommended to a customer and as two products' partner, with partners of
    # its own (Shopify's complementary products too), all pushed; then the merchant sets it to
    # draft (or archives or unlists it): it stays in the catalogue, unavailable to customers
    scenario = scenario_factory()
    a, b, c, d = sorted(scenario.devstore.state.products)[:4]
    customer = recommend(scenario, {a: [b, c], c: [b, a], b: [a]}, [b, d])
    scenario.set_shop_settings(complementary_products=True)
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    own = {"clv.frequently_bought_together": [gid(a)], COMPLEMENTARY_PRODUCTS: [gid(a)]}
    assert product_metafields(scenario)[b] == own and recommended(scenario, customer)[0] == gid(b)
    scenario.devstore.state.set_product_status(b, status)
    if read == "bulk":
        monkeypatch.setattr(writeback, "BULK_READ_ABOVE", 1)
    # when reconciled
    result = await reconcile_shop(ctx, scenario.refreshed_shop(), None)
    # then it is recorded gone, saying why, and no pushed list names it any more
    assert result["products_not_found"] == 1 and gone(scenario) == {b: NOT_AVAILABLE}
    assert naming(scenario, b) == set()
    assert recommended(scenario, customer) == [gid(d)]
    assert product_metafields(scenario)[a]["clv.frequently_bought_together"] == [gid(c)]
    assert product_metafields(scenario)[c]["clv.frequently_bought_together"] == [gid(a)]
    # and its own values are read back as they are: not sent again, deleted or taken for the
    # merchant's
    assert product_metafields(scenario)[b] == own and recorded(scenario, b) == own
    assert result["products_drifted"] == 0 and result["product_metafields_deleted"] == 0
    assert result["product_fields_kept"] == 0 and result["metafields_refused"] == 0
    # and a reconcile while it stays so changes nothing
    again = await reconcile_shop(ctx, scenario.refreshed_shop(), None)
    assert again["products_drifted"] == again["product_fields_kept"] == 0
    assert again["metafields_set"] == again["product_metafields_set"] == 0
    assert again["product_metafields_deleted"] == 0
    # when the merchant sets it active again, and the next reconcile reads it
    scenario.devstore.state.set_product_status(b, "ACTIVE")
    back = await reconcile_shop(ctx, scenario.refreshed_shop(), None)
    # then it is recommended again, where it was, and its own values are still the app's
    assert back["products_not_found"] == 0 and gone(scenario) == {}
    assert recommended(scenario, customer) == [gid(b), gid(d)]
    assert naming(scenario, b) == {
        f"customer {customer}",
        f"{a} clv.frequently_bought_together",
        f"{a} {COMPLEMENTARY_PRODUCTS}",
        f"{c} clv.frequently_bought_together",
        f"{c} {COMPLEMENTARY_PRODUCTS}",
    }
    assert product_metafields(scenario)[b] == own and back["product_fields_kept"] == 0


async def test_gone_product_comes_back_by_an_order_placed_since_not_one_updated_since(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a product set to draft, recorded gone by a reconcile
    scenario = scenario_factory()
    a, b, d = sorted(scenario.devstore.state.products)[:3]
    customer = recommend(scenario, {a: [b]}, [b, d])
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    scenario.devstore.state.set_product_status(b, "DRAFT")
    await reconcile_shop(ctx, scenario.refreshed_shop(), None)
    assert set(gone(scenario)) == {b}
    # when an order placed before that and naming it is updated since (fulfilled, refunded)
    day = timedelta(days=1)
    order_naming(scenario, b, placed=scenario.as_of - day, updated=scenario.as_of + day)
    # then it is still left out: that order names it as it did before it became a draft
    assert (await push_shop(ctx, scenario.refreshed_shop(), None))["api_requests"] == 0
    assert recommended(scenario, customer) == [gid(d)]
    # and once the merchant sets it active, an order placed since says customers can buy it:
    # it is recommended again, before the next reconcile
    scenario.devstore.state.set_product_status(b, "ACTIVE")
    order_naming(scenario, b, placed=scenario.as_of + day, updated=scenario.as_of + day)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    assert recommended(scenario, customer) == [gid(b), gid(d)]


async def test_reconcile_counts_drafts_towards_paginations_limit(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a catalogue of mostly drafts, more products in all than pagination reaches (25,000,
    # played by 10 here) though fewer active ones, one of which a customer is recommended
    scenario = scenario_factory()
    products = sorted(scenario.devstore.state.products)
    assert len(products) > 12
    for product_id in products[3:]:
        scenario.devstore.state.set_product_status(product_id, "DRAFT")
    customer = recommend(scenario, {}, [products[0], products[-1]])
    monkeypatch.setattr(readback, "PAGINATION_LIMIT", 10)
    monkeypatch.setattr(readback, "READ_PAGE", 5)
    # when reconciled
    result = await reconcile_shop(scenario.context(http), scenario.refreshed_shop(), None)
    # then the pages stopped at the limit and the products were read in bulk (the customers
    # too when they are more than the pages reach), the draft left out
    customers_in_bulk = len(scenario.devstore.state.customers) > 10
    assert result["bulk_operations"] == 1 + customers_in_bulk
    assert set(gone(scenario)) == {products[-1]}
    assert recommended(scenario, customer) == [gid(products[0])]
