"""Historical CLV as gross margin from product costs: the costs job reads every variant's cost
per item from the live dev store (one bulk query, over real HTTP on loopback), and a recompute
takes each customer's net spend less the cost of the goods they kept."""

# ruff: noqa: F811  (the dev store's fixtures are imported, and used by name)

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from jobs.costs import CostsError, read_costs, variant_costs
from jobs.recompute import full_recompute, rescore_changed
from jobs.runs import OK, run_job
from plugin.devstore.generator import GeneratedStore
from plugin.store import ledger, shops
from plugin.store.costs import replace_costs
from plugin.store.models import Customer, CustomerScore, Order, OrderLine, ProductCost, Shop
from tests.devstore.conftest import (  # noqa: F401
    DevStoreFactory,
    anyio_backend,
    devstore_factory,
    live_switch,
)
from tests.test_backfill import backfill, context, installed
from webhooks.payloads import parse_order

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def set_scoring(engine: Engine, shop_id: int, scoring: dict[str, Any]) -> Shop:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        shop = session.get(Shop, shop_id)
        assert shop is not None
        shop.settings = json.dumps({"scoring": scoring})
        return shop


def planted_costs(store: GeneratedStore) -> dict[int, Decimal]:
    return {
        int(variant["id"]): Decimal(variant["cost"])
        for product in store.products
        for variant in product["variants"]
        if "cost" in variant
    }


def stored_costs(engine: Engine, shop_id: int) -> dict[int, Decimal]:
    with Session(engine) as session:
        rows = session.exec(select(ProductCost).where(ProductCost.shop_id == shop_id))
        return {row.variant_id: row.unit_cost for row in rows}


async def costs_run(engine: Engine, http: httpx.AsyncClient, live: Any, shop_id: int) -> Any:
    result = await run_job(context(engine, http, live), shop_id, "costs", read_costs)
    assert result.outcome == OK, result.error
    return result.counts


def kept_lines(engine: Engine, shop_id: int) -> list[tuple[int, OrderLine]]:
    """The lines of products held (units left, not a gift card or a custom item) in customers'
    counted orders, with their customer, from the ledger's rows."""
    with Session(engine) as session:
        owner = {
            o.order_id: o.customer_id
            for o in session.exec(select(Order).where(Order.shop_id == shop_id, Order.counted))
            if o.customer_id is not None
        }
        return [
            (owner[line.order_id], line)
            for line in session.exec(select(OrderLine).where(OrderLine.shop_id == shop_id))
            if line.order_id in owner
            and line.product_id is not None
            and line.current_quantity > 0
            and not line.gift_card
        ]


def gross_margins(engine: Engine, shop_id: int, costs: dict[int, Decimal]) -> dict[int, Decimal]:
    """Each customer's net spend less, over their kept lines, the units kept x the variant's
    cost (none without one)."""
    with Session(engine) as session:
        customers = select(Customer).where(Customer.shop_id == shop_id, Customer.orders > 0)
        margin = {c.customer_id: c.net_spend for c in session.exec(customers)}
    for customer, line in kept_lines(engine, shop_id):
        margin[customer] -= costs.get(line.variant_id or 0, Decimal(0)) * line.current_quantity
    return margin


async def test_recompute_takes_gross_margin_from_the_costs_read_from_the_store(
    engine: Engine, devstore_factory: DevStoreFactory, http: httpx.AsyncClient
) -> None:
    # given a generated store (its catalogue plants a cost on about nine variants in ten) in
    # the dev store, its orders backfilled, and the shop taking historical CLV from costs
    store, live, shop = installed(engine, devstore_factory, 150, 5)
    assert shop.id is not None
    await backfill(engine, http, live)
    shop = set_scoring(engine, shop.id, {"margin_from_costs": True})
    # when the costs job runs, then a full recompute
    counts = await costs_run(engine, http, live, shop.id)
    as_of = datetime.now(UTC) + timedelta(days=1)
    summary = full_recompute(engine, shop, as_of)
    # then the shop holds every variant's planted cost, and only those
    planted = planted_costs(store)
    variants = sum(len(product["variants"]) for product in store.products)
    assert stored_costs(engine, shop.id) == planted
    assert counts == {"variants": variants, "with_cost": len(planted), "other_currency": 0}
    assert 0 < len(planted) < variants
    # and each customer's historical CLV is their net spend less the cost of the goods kept
    expected = gross_margins(engine, shop.id, planted)
    scored = scores_of(engine, shop.id)
    assert scored.keys() == expected.keys()
    assert all(abs(scored[c] - float(expected[c])) < 1e-6 for c in expected)
    with Session(engine) as session:
        net = {c.customer_id: float(c.net_spend) for c in session.exec(select(Customer))}
    assert sum(scored[c] < net[c] for c in scored) > 0.9 * len(scored)
    # and the run says how many of the units kept (of products, custom items aside) had no cost
    kept, without = units_kept(engine, shop.id, planted)
    assert (summary["units_kept"], summary["units_without_cost"]) == (kept, without)
    assert 0 < without < kept
    # when a customer orders again and the changed customers are re-scored
    customer = buy_again(engine, store, as_of - timedelta(hours=1))
    assert rescore_changed(engine, shop, as_of)["customers_scored"] == 1
    # then their historical CLV counts the new order's goods at their costs too
    again = gross_margins(engine, shop.id, planted)[customer]
    assert again > expected[customer]
    assert abs(scores_of(engine, shop.id)[customer] - float(again)) < 1e-6


def units_kept(engine: Engine, shop_id: int, costs: dict[int, Decimal]) -> tuple[int, int]:
    """Units of the kept lines, and of them those of variants without a cost."""
    lines = [line for _, line in kept_lines(engine, shop_id)]
    kept = sum(line.current_quantity for line in lines)
    without = sum(line.current_quantity for line in lines if line.variant_id not in costs)
    return kept, without


def scores_of(engine: Engine, shop_id: int) -> dict[int, float]:
    with Session(engine) as session:
        rows = session.exec(select(CustomerScore).where(CustomerScore.shop_id == shop_id))
        return {s.customer_id: s.historical_clv for s in rows}


def buy_again(engine: Engine, store: GeneratedStore, at: datetime) -> int:
    """A copy of a customer's paid order, placed at `at`, applied as its webhook would be; the
    customer."""
    order = next(
        o
        for o in store.orders
        if o.get("customer") and o["financial_status"] == "paid" and not o.get("test")
    )
    stamp = at.isoformat()
    lines = [{**line, "id": 9_100_000_100 + i} for i, line in enumerate(order["line_items"])]
    again = {
        **order,
        "id": 9_100_000_001,
        "line_items": lines,
        "refunds": [],
        "created_at": stamp,
        "processed_at": stamp,
        "updated_at": stamp,
    }
    with Session(engine, expire_on_commit=False) as session, session.begin():
        shop = shops.get_shop(session, store.shop_domain)
        assert shop is not None
        ledger.apply_order(session, shop, parse_order(again))
    return int(order["customer"]["id"])


async def test_a_cost_cleared_in_the_store_is_gone_after_the_next_read(
    engine: Engine, devstore_factory: DevStoreFactory, http: httpx.AsyncClient
) -> None:
    # given costs read from the store
    store, live, shop = installed(engine, devstore_factory, 20, 3)
    assert shop.id is not None
    set_scoring(engine, shop.id, {"margin_from_costs": True})
    await costs_run(engine, http, live, shop.id)
    planted = planted_costs(store)
    # when the merchant clears one variant's cost and changes another's, and the job runs again
    cleared, changed = sorted(planted)[:2]
    for product in live.state.products.values():
        for variant in product.variants:
            if variant.id == cleared:
                variant.cost = None
            elif variant.id == changed:
                variant.cost = Decimal("1.2345")
    await costs_run(engine, http, live, shop.id)
    # then the shop holds the store's costs as they are now
    expected = {v: c for v, c in planted.items() if v != cleared} | {changed: Decimal("1.2345")}
    assert stored_costs(engine, shop.id) == expected


async def test_the_job_reads_nothing_and_holds_no_costs_while_the_shop_does_not_take_them(
    engine: Engine, devstore_factory: DevStoreFactory
) -> None:
    # given a shop that took its costs once, then turned margin_from_costs off
    _, live, shop = installed(engine, devstore_factory, 20, 3)
    assert shop.id is not None
    replace_costs(engine, shop.id, {1: Decimal("2.50")}, datetime.now(UTC))
    # when the costs job runs, on a client that records what it sends
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    async with httpx.AsyncClient(timeout=10, event_hooks={"request": [record]}) as http:
        counts = await costs_run(engine, http, live, shop.id)
    # then it asked the store nothing, says why, and the costs held before are gone
    assert counts == {"skipped": "scoring.margin_from_costs is off"}
    assert sent == [] and stored_costs(engine, shop.id) == {}


def variant_line(number: int, cost: dict[str, str] | None) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/ProductVariant/{number}",
        "inventoryItem": {"unitCost": cost},
        "__parentId": "gid://shopify/Product/1",
    }


def test_costs_are_taken_in_the_shops_currency_and_not_as_other_lines() -> None:
    # given an export with a product's line, a variant without a cost, one in another currency
    lines = [
        {"id": "gid://shopify/Product/1"},
        variant_line(11, {"amount": "4.5", "currencyCode": "EUR"}),
        variant_line(12, None),
        variant_line(13, {"amount": "3.00", "currencyCode": "USD"}),
    ]
    # when the costs are taken for a EUR shop, then only the EUR cost is
    costs, counts = variant_costs(lines, "EUR")
    assert costs == {11: Decimal("4.5")}
    assert (counts.variants, counts.with_cost, counts.other_currency) == (3, 1, 1)
    # and for a shop whose currency is not known yet, every cost is
    assert variant_costs(lines, None)[0] == {11: Decimal("4.5"), 13: Decimal("3.00")}


@pytest.mark.parametrize("amount", ["-1.00", "NaN", "ten", None])
def test_a_cost_that_is_not_an_amount_stops_the_read_naming_the_variant(amount: Any) -> None:
    lines = [variant_line(7, {"amount": amount, "currencyCode": "USD"})]
    with pytest.raises(CostsError, match="variant gid://shopify/ProductVariant/7"):
        variant_costs(lines, "USD")
