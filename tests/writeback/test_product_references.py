"""Product references in the push, against the live dev store: a product deleted from the store
takes none of an owner's other values with it and is left out of the lists until it is seen
again; Shopify's complementary-products field holding the merchant's own list is left alone."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from jobs import product_push, readback, writeback
from jobs.product_push import ProductChange, _shared_not_allowed, plan_products
from jobs.pusher import Apart
from jobs.writeback import push_shop, reconcile_shop, shop_writeback_settings
from plugin.devstore.config import DevStoreConfig
from plugin.devstore.models import Metafield, Product
from plugin.domain.writeback import COMPLEMENTARY_PRODUCTS
from plugin.store.models import GoneProduct, SyncChange
from plugin.store.recommendations import Partner, replace_recommendations
from tests.helpers import add_ledger_order
from tests.writeback.conftest import RecordsRequests, RewritingAnswers, Scenario, ScenarioFactory
from tests.writeback.test_product_push import product_metafields, recommend
from tests.writeback.test_push_refusals import (
    recommend_to,
    recorded_metafields,
    refusals,
    scored,
)

pytestmark = pytest.mark.anyio
gid = "gid://shopify/Product/{}".format
NAMESPACE, KEY = COMPLEMENTARY_PRODUCTS.rsplit(".", 1)
ORDER_IDS = itertools.count(9_900_000_000_000, 10)


def recommend_to_many(scenario: Scenario, customers: list[int], product_ids: list[int]) -> None:
    for customer in customers:
        recommend_to(scenario, customer, product_ids)


def delete_product(scenario: Scenario, product_id: int) -> Product:
    """The merchant deletes a product in Shopify (the dev store has no mutation for it)."""
    state = scenario.devstore.state
    state.product_ids.remove(product_id)
    return state.products.pop(product_id)


def gone(scenario: Scenario) -> set[int]:
    with Session(scenario.engine) as session:
        return set(session.exec(select(GoneProduct.product_id)).all())


def recommended(scenario: Scenario, customer: int) -> list[str]:
    return json.loads(scenario.store_metafields()[customer]["recommended_products"])


class WithoutFieldPaths(RewritingAnswers):
    """Takes the `field` path and `elementIndex` out of every user error (whether Shopify
    always gives them is not relied on)."""

    stripped = 0

    def rewrite(self, sent: dict[str, Any], body: dict[str, Any]) -> None:
        for answer in (body.get("data") or {}).values():
            for error in (answer or {}).get("userErrors", []) if isinstance(answer, dict) else []:
                self.stripped += error.pop("field", None) is not None
                error.pop("elementIndex", None)


@pytest.mark.parametrize("bulk_threshold", [1000, 1])
async def test_push_customers_recommended_a_deleted_product_keep_their_other_values(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, bulk_threshold: int
) -> None:
    # given a third of the customers recommended a product the merchant then deleted in
    # Shopify (the app hears of no deletion), and another product, pushed per call or in bulk
    scenario = scenario_factory()
    scenario.set_shop_settings(bulk_threshold=bulk_threshold)
    deleted, kept = sorted(scenario.devstore.state.products)[:2]
    victims = scored(scenario)[::3]
    recommend_to_many(scenario, victims, [deleted, kept])
    delete_product(scenario, deleted)
    ctx = scenario.context(http)
    # when pushed
    counts = await push_shop(ctx, scenario.refreshed_shop(), None)
    # then every customer holds their value and segment, recorded as held
    held = scenario.store_metafields()
    recorded = recorded_metafields(scenario)
    assert all(held[c].get("historical_value") and held[c].get("segment") for c in scored(scenario))
    assert all(recorded[c] == held[c] for c in scored(scenario))
    # and only the recommendation naming the deleted product was refused, counted
    assert counts["metafields_refused"] == len(victims)
    refused = refusals(scenario, "metafield")
    assert sorted(r.customer_id for r in refused) == sorted(victims)
    assert {r.name for r in refused} == {"recommended_products"}
    assert all(str(deleted) in r.reason for r in refused)
    # and the product is known gone: the next push recommends the others without it
    assert gone(scenario) == {deleted}
    again = await push_shop(ctx, scenario.refreshed_shop(), None)
    assert again["metafields_refused"] == 0 and again["metafields_set"] == len(victims)
    assert all(recommended(scenario, c) == [gid(kept)] for c in victims)
    third = await push_shop(ctx, scenario.refreshed_shop(), None)
    assert third["api_requests"] == 0


async def test_push_refused_values_without_field_paths_are_sent_one_by_one(
    scenario_factory: ScenarioFactory,
) -> None:
    # given customers recommended a deleted product, and a store whose refusals do not say
    # which value they refuse
    scenario = scenario_factory()
    deleted = sorted(scenario.devstore.state.products)[0]
    victims = scored(scenario)[:4]
    recommend_to_many(scenario, victims, [deleted])
    delete_product(scenario, deleted)
    transport = WithoutFieldPaths()
    async with httpx.AsyncClient(transport=transport, timeout=10) as http:
        # when pushed
        counts = await push_shop(scenario.context(http), scenario.refreshed_shop(), None)
    # then their other values went one by one, and only the recommendation stays refused
    assert transport.stripped > 0
    held = scenario.store_metafields()
    assert all(held[c].get("historical_value") and held[c].get("segment") for c in victims)
    assert all("recommended_products" not in held[c] for c in victims)
    assert counts["metafields_refused"] == len(victims)
    assert {r.name for r in refusals(scenario, "metafield")} == {"recommended_products"}


async def test_product_refused_partner_keeps_its_other_values(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a product whose frequently-bought-together partners include a product since
    # deleted, and whose upsell does not
    scenario = scenario_factory()
    a, b, c = sorted(scenario.devstore.state.products)[:3]
    replace_recommendations(
        scenario.engine,
        scenario.shop.id,
        [Partner(a, "fbt", 1, b, 5, 0.5, 2.0), Partner(a, "upsell", 1, c, 3, None, None)],
        [],
        [],
    )
    delete_product(scenario, b)
    ctx = scenario.context(http)
    # when pushed
    counts = await push_shop(ctx, scenario.refreshed_shop(), None)
    # then the upsell is in the store, the list naming the deleted product refused alone
    assert product_metafields(scenario)[a] == {"clv.upsell": [gid(c)]}
    assert counts["product_metafields_set"] == 1 and counts["product_metafields_refused"] == 1
    assert [(r.product_id, r.name) for r in refusals(scenario, "metafield")] == [
        (a, "clv.frequently_bought_together")
    ]
    assert gone(scenario) == {b}


def order_naming(scenario: Scenario, product_id: int, days_after: int) -> None:
    """A guest order in the ledger, placed (and updated) `days_after` days after the scenario's
    time, with a line of the product."""
    at = scenario.as_of + timedelta(days=days_after)
    with Session(scenario.engine) as session, session.begin():
        add_ledger_order(
            session,
            scenario.shop.id,
            next(ORDER_IDS),
            at,
            [(product_id, None)],
            None,
            counted=False,
        )


async def test_reconcile_product_not_found_is_left_out_until_seen_again(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a product recommended as a partner and to a customer, pushed, then deleted in
    # Shopify (nothing pushed names it afresh, so no refusal tells)
    scenario = scenario_factory()
    a, b, c, d = sorted(scenario.devstore.state.products)[:4]
    customer = recommend(scenario, {a: [b, c]}, [b, d])
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    product_b = delete_product(scenario, b)
    # when reconciled
    result = await reconcile_shop(ctx, scenario.refreshed_shop(), None)
    # then the read did not find it: it is gone, and the lists are pushed without it
    assert result["products_not_found"] == 1 and gone(scenario) == {b}
    assert product_metafields(scenario)[a]["clv.frequently_bought_together"] == [gid(c)]
    assert recommended(scenario, customer) == [gid(d)]
    assert result["metafields_refused"] == result["product_metafields_refused"] == 0
    # and an order older than that does not bring it back; one placed since does
    order_naming(scenario, b, days_after=-1)
    assert (await push_shop(ctx, scenario.refreshed_shop(), None))["api_requests"] == 0
    scenario.devstore.state.add_product({"id": b, "title": product_b.title})
    order_naming(scenario, b + 1, days_after=1)  # another product's order changes nothing
    assert (await push_shop(ctx, scenario.refreshed_shop(), None))["api_requests"] == 0
    order_naming(scenario, b, days_after=1)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    assert recommended(scenario, customer) == [gid(b), gid(d)]
    # and a read that finds it takes it off the gone list
    await reconcile_shop(ctx, scenario.refreshed_shop(), None)
    assert gone(scenario) == set()


def curate(scenario: Scenario, product_id: int, others: list[int]) -> str:
    """The merchant's own complementary products on a product (Search & Discovery)."""
    value = json.dumps([gid(p) for p in others])
    stamp = "2026-01-01T00:00:00Z"
    product = scenario.devstore.state.products[product_id]
    kind = "list.product_reference"
    owner = gid(product_id)
    field = Metafield(999001, owner, "PRODUCT", NAMESPACE, KEY, value, kind, stamp, stamp)
    product.metafields = {(NAMESPACE, KEY): field}
    return value


def complementary(scenario: Scenario, product_id: int) -> str | None:
    held = (scenario.devstore.state.products[product_id].metafields or {}).get((NAMESPACE, KEY))
    return held.value if held else None


async def test_reconcile_leaves_a_merchants_complementary_list_alone(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given the shop asks for Shopify's complementary products, a product the app has
    # partners for, and another it has none for holding the merchant's own list
    scenario = scenario_factory()
    a, b, curated = sorted(scenario.devstore.state.products)[:3]
    recommend(scenario, {a: [b]}, [])
    value = curate(scenario, curated, [a, b])
    scenario.set_shop_settings(complementary_products=True)
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    # when reconciled, then pushed again
    result = await reconcile_shop(ctx, scenario.refreshed_shop(), None)
    again = await push_shop(ctx, scenario.refreshed_shop(), None)
    # then the merchant's list is as it was, never deleted, and counted as left alone
    assert complementary(scenario, curated) == value
    assert result["product_metafields_deleted"] == 0 and result["products_drifted"] == 0
    assert result["product_fields_kept"] == again["product_fields_kept"] == 1
    assert again["api_requests"] == 0
    with Session(scenario.engine) as session:
        audited = session.exec(select(SyncChange).where(SyncChange.product_id == curated)).all()
    assert audited == []
    # and the app's own value where it wrote one is still its own
    assert complementary(scenario, a) == json.dumps([gid(b)], separators=(",", ":"))


async def test_push_does_not_overwrite_a_merchants_complementary_list(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a product the app has partners for, holding the merchant's own complementary list,
    # and the shop asking for Shopify's complementary products
    scenario = scenario_factory()
    a, b, c = sorted(scenario.devstore.state.products)[:3]
    recommend(scenario, {a: [b]}, [])
    value = curate(scenario, a, [c])
    scenario.set_shop_settings(complementary_products=True)
    ctx = scenario.context(http)
    # when pushed, twice
    counts = await push_shop(ctx, scenario.refreshed_shop(), None)
    again = await push_shop(ctx, scenario.refreshed_shop(), None)
    # then the merchant's list stands, the app's own field holds its partners, and the field
    # is counted as left to the merchant, not sent again
    assert complementary(scenario, a) == value
    assert product_metafields(scenario)[a]["clv.frequently_bought_together"] == [gid(b)]
    assert counts["product_metafields_set"] == 1 and counts["product_fields_kept"] == 1
    assert again["api_requests"] == 0
    # and once the merchant empties it, a reconcile hands it to the app to fill
    metafields = scenario.devstore.state.products[a].metafields
    assert metafields is not None
    del metafields[(NAMESPACE, KEY)]
    result = await reconcile_shop(ctx, scenario.refreshed_shop(), None)
    assert result["product_fields_kept"] == 0
    assert json.loads(complementary(scenario, a) or "[]") == [gid(b)]


async def test_reconcile_leaves_a_merchants_edit_of_the_apps_complementary_list_alone(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a complementary list the app wrote, which the merchant then edits
    scenario = scenario_factory()
    a, b, c, d = sorted(scenario.devstore.state.products)[:4]
    recommend(scenario, {a: [b, d], c: [b, d]}, [])
    scenario.set_shop_settings(complementary_products=True)
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    edited = curate(scenario, a, [c])
    # and one the store gives back without a product of it (a store may drop a deleted one)
    metafields = scenario.devstore.state.products[c].metafields
    assert metafields is not None
    old = metafields[(NAMESPACE, KEY)]
    metafields[(NAMESPACE, KEY)] = replace(old, value=json.dumps([gid(b)]))
    # when the reconcile runs
    result = await reconcile_shop(ctx, scenario.refreshed_shop(), None)
    # then the merchant's edit is kept, not overwritten; the shortened list is still the app's
    assert complementary(scenario, a) == edited
    assert result["product_fields_kept"] == 1
    assert json.loads(complementary(scenario, c) or "[]") == [gid(b), gid(d)]


@pytest.mark.parametrize("read", ["pages", "past pagination", "large shop"])
async def test_reconcile_reads_the_whole_catalogue_by_pages_or_in_bulk(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    read: str,
) -> None:
    # given every product with a partner, pushed (Shopify's complementary products too); then,
    # far down the catalogue, one product deleted in the store and another's list edited by hand
    scenario = scenario_factory()
    products = sorted(scenario.devstore.state.products)
    recommend(
        scenario, {p: [products[0] if p != products[0] else products[1]] for p in products}, []
    )
    scenario.set_shop_settings(complementary_products=True)
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    deleted, edited = products[-1], products[-2]
    delete_product(scenario, deleted)
    fields = scenario.devstore.state.products[edited].metafields
    assert fields is not None and len(products) > 12
    old = fields[("clv", "frequently_bought_together")]
    fields[("clv", "frequently_bought_together")] = replace(
        old, value=json.dumps([gid(products[2])])
    )
    # when reconciled: by pages; in bulk once the pages reach pagination's limit (25,000,
    # played by 10 here); or in bulk at once for a shop whose orders name many products
    if read == "past pagination":
        monkeypatch.setattr(readback, "PAGINATION_LIMIT", 10)
        monkeypatch.setattr(readback, "READ_PAGE", 5)
    if read == "large shop":
        monkeypatch.setattr(writeback, "BULK_READ_ABOVE", 1)
    result = await reconcile_shop(ctx, scenario.refreshed_shop(), None)
    # then the read saw every product: the deleted one is gone, the edit is repaired
    assert result["products_not_found"] == 1 and gone(scenario) == {deleted}
    assert result["products_drifted"] == 2
    partner = [gid(products[0])]
    held = product_metafields(scenario)[edited]
    assert held == {"clv.frequently_bought_together": partner, COMPLEMENTARY_PRODUCTS: partner}
    assert result["product_fields_kept"] == 0  # the app's complementary lists read as its own
    # (customers are read in bulk too when they are more than the pages reach, or many)
    customers_in_bulk = read == "large shop" or len(scenario.devstore.state.customers) > 10
    expected_bulk = {"pages": 0, "past pagination": 1 + customers_in_bulk, "large shop": 2}
    assert result["bulk_operations"] == expected_bulk[read]


async def test_push_store_refusing_shopify_namespaces_refuses_only_that_field(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    # given a store that refuses apps' writes to Shopify's reserved namespaces (whether
    # Shopify does is unconfirmed), and a shop asking for the complementary products
    scenario = scenario_factory(config=DevStoreConfig(shopify_namespaces_writable=False))
    a, b, c = sorted(scenario.devstore.state.products)[:3]
    recommend(scenario, {a: [b, c], b: [a]}, [])
    scenario.set_shop_settings(complementary_products=True)
    ctx = scenario.context(http)
    # when pushed
    counts = await push_shop(ctx, scenario.refreshed_shop(), None)
    # then the app's own fields hold the partners, and only the complementary field is
    # refused, recorded as refused and not as held
    assert product_metafields(scenario) == {
        a: {"clv.frequently_bought_together": [gid(b), gid(c)]},
        b: {"clv.frequently_bought_together": [gid(a)]},
    }
    assert counts["product_metafields_set"] == 2 and counts["product_metafields_refused"] == 2
    assert sorted((r.product_id, r.name) for r in refusals(scenario, "metafield")) == [
        (a, COMPLEMENTARY_PRODUCTS),
        (b, COMPLEMENTARY_PRODUCTS),
    ]
    # and the shop's complementary_products setting is turned off, so the next plan does not
    # send the field again (it would be refused for every product at every push), and told once
    assert counts["complementary_products_turned_off"] == 1
    turned_off = [r for r in caplog.records if "complementary_products turned off" in r.message]
    assert [r.levelname for r in turned_off] == ["ERROR"]
    settings = shop_writeback_settings(scenario.refreshed_shop())
    assert settings.complementary_products is False
    assert plan_products(scenario.engine, scenario.shop.id, settings) == []
    assert gone(scenario) == set()


def test_only_a_refusal_of_the_complementary_field_alone_turns_it_off() -> None:
    own, shared = "clv.frequently_bought_together", COMPLEMENTARY_PRODUCTS
    change = ProductChange(7, {}, ((own, "[]"), (shared, "[]")), ())
    not_allowed = [{"code": "APP_NOT_AUTHORIZED", "message": "not allowed"}]
    # the field refused, the product's own value taken: that field is not the app's to write
    assert _shared_not_allowed(change, Apart(accepted=[0], refused={1: not_allowed}))
    # every value refused so (a scope taken away, say): nothing to learn about that field
    assert not _shared_not_allowed(change, Apart(refused={0: not_allowed, 1: not_allowed}))
    # refused for another reason (a deleted partner)
    gone = [{"code": "INVALID_VALUE", "message": "Value references non-existent resource"}]
    assert not _shared_not_allowed(change, Apart(accepted=[0], refused={1: gone}))
    # and a product with the field alone to set tells nothing either
    alone = ProductChange(7, {}, ((shared, "[]"),), ())
    assert not _shared_not_allowed(alone, Apart(refused={0: not_allowed}))
    # unless the store took the app's own values of it before (the setting turned on later)
    written = ProductChange(7, {own: "[]"}, ((shared, "[]"),), ())
    assert _shared_not_allowed(written, Apart(refused={0: not_allowed}))


async def test_complementary_products_turned_on_after_a_push_is_turned_off_when_refused(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a store that refuses Shopify's reserved namespaces, pushed to once, and the shop
    # then asking for the complementary products
    scenario = scenario_factory(config=DevStoreConfig(shopify_namespaces_writable=False))
    a, b, c = sorted(scenario.devstore.state.products)[:3]
    recommend(scenario, {a: [b, c], b: [a]}, [])
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    scenario.set_shop_settings(complementary_products=True)
    # when pushed again (the complementary field the only value to send)
    counts = await push_shop(ctx, scenario.refreshed_shop(), None)
    # then its refusal turns the setting off, and the next push sends nothing (it was sent
    # and refused for every product at every push, an audit row each)
    assert counts["product_metafields_refused"] == 2
    assert counts["complementary_products_turned_off"] == 1
    again = await push_shop(ctx, scenario.refreshed_shop(), None)
    assert again["api_requests"] == 0 and again["product_metafields_refused"] == 0


async def test_complementary_field_refused_is_left_out_of_the_rest_of_the_push(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a store that refuses Shopify's reserved namespaces, a shop asking for the
    # complementary products, and three products' values sent in three requests (two values
    # per request here, 250 in the app)
    scenario = scenario_factory(config=DevStoreConfig(shopify_namespaces_writable=False))
    a, b, c = sorted(scenario.devstore.state.products)[:3]
    recommend(scenario, {a: [b], b: [c], c: [a]}, [])
    scenario.set_shop_settings(complementary_products=True)
    monkeypatch.setattr(product_push, "METAFIELDS_PER_SET", 2)
    monkeypatch.setattr(product_push, "SETS_PER_CALL", 1)
    # when pushed
    counts = await push_shop(scenario.context(http), scenario.refreshed_shop(), None)
    # then the field, refused for the first product, is not sent for the others
    assert counts["complementary_products_turned_off"] == 1
    assert counts["product_metafields_set"] == 3 and counts["product_metafields_refused"] == 1
    assert [(r.product_id, r.name) for r in refusals(scenario, "metafield")] == [
        (a, COMPLEMENTARY_PRODUCTS)
    ]
    assert product_metafields(scenario) == {
        a: {"clv.frequently_bought_together": [gid(b)]},
        b: {"clv.frequently_bought_together": [gid(c)]},
        c: {"clv.frequently_bought_together": [gid(a)]},
    }


@pytest.mark.parametrize(("per_read", "reads"), [(None, [3]), (2, [2, 1])])
async def test_complementary_fields_are_read_before_a_first_write_many_products_a_read(
    scenario_factory: ScenarioFactory,
    monkeypatch: pytest.MonkeyPatch,
    per_read: int | None,
    reads: list[int],
) -> None:
    # given three products the app has partners for, the last holding the merchant's list,
    # and the shop asking for Shopify's complementary products
    scenario = scenario_factory()
    a, b, c, d = sorted(scenario.devstore.state.products)[:4]
    recommend(scenario, {a: [b], b: [c], c: [a]}, [])
    value = curate(scenario, c, [d])
    scenario.set_shop_settings(complementary_products=True)
    if per_read is not None:
        monkeypatch.setattr(product_push, "READ_IDS", per_read)
    # when pushed
    transport = RecordsRequests()
    async with httpx.AsyncClient(transport=transport, timeout=10) as counting:
        counts = await push_shop(scenario.context(counting), scenario.refreshed_shop(), None)
    # then the fields were read up to 100 products a request (2 here in the second case), and
    # the merchant's list found on the last is kept
    asked = [len(read["variables"]["ids"]) for read in transport.holding("query Complementary")]
    assert asked == reads
    assert complementary(scenario, c) == value and counts["product_fields_kept"] == 1
    assert json.loads(complementary(scenario, b) or "[]") == [gid(c)]


async def test_a_complementary_list_already_holding_the_apps_partners_is_the_apps(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a product whose complementary-products field holds, before the app's first write,
    # the very list the app would write (the app's own, from a record since lost)
    scenario = scenario_factory()
    a, b, c = sorted(scenario.devstore.state.products)[:3]
    recommend(scenario, {a: [b]}, [])
    curate(scenario, a, [b])
    scenario.set_shop_settings(complementary_products=True)
    ctx = scenario.context(http)
    # when pushed
    counts = await push_shop(ctx, scenario.refreshed_shop(), None)
    # then it is not kept as the merchant's: it is the app's from now on, and changes with the
    # partners
    assert counts["product_fields_kept"] == 0
    recommend(scenario, {a: [c]}, [])
    await push_shop(ctx, scenario.refreshed_shop(), None)
    assert json.loads(complementary(scenario, a) or "[]") == [gid(c)]
