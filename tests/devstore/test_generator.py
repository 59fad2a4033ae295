"""The store generator: reproducible, SHOPIFY.md shapes, consistent money and history."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from plugin.devstore.generator import (
    GeneratedStore,
    GeneratorConfig,
    generate_store,
    read_events_jsonl,
    write_store_files,
)

MONEY = re.compile(r"^\d+\.\d{2}$")
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$")
ORDER_TOPICS = {"orders/create", "orders/paid", "orders/updated", "orders/cancelled"}
ORDER_KEYS = {
    "id", "admin_graphql_api_id", "customer", "currency", "presentment_currency",
    "total_price_set", "current_total_price_set", "financial_status", "cancelled_at",
    "created_at", "processed_at", "updated_at", "test", "refunds", "source_name", "line_items",
    "billing_address", "shipping_address",
}  # fmt: skip
LINE_KEYS = {
    "id", "product_id", "variant_id", "quantity", "current_quantity", "price", "price_set",
    "total_discount", "sku", "gift_card", "product_type", "title",
}  # fmt: skip


@pytest.fixture(scope="module")
def store(seed42_store: GeneratedStore) -> GeneratedStore:
    return seed42_store


def cents(amount: str) -> int:
    return int(Decimal(amount) * 100)


def assert_money_set(value: dict[str, Any], shop: str) -> None:
    assert set(value) == {"shop_money", "presentment_money"}
    assert value["shop_money"]["currency_code"] == shop
    for side in value.values():
        assert MONEY.match(side["amount"]), side


def canonical(store: GeneratedStore) -> list[str]:
    return [
        json.dumps([e.topic, e.event_id, e.triggered_at.isoformat(), e.payload], sort_keys=True)
        for e in store.events
    ]


def test_generate_store_same_seed_identical_history_other_seed_differs() -> None:
    # Given one config
    config = GeneratorConfig(customers=800)
    # When it is generated twice with one seed and once with another
    first, again, other = (generate_store(config, seed=s) for s in (5, 5, 6))
    # Then the same seed reproduces every event, order and truth value; another seed does not
    assert canonical(first) == canonical(again)
    assert first.orders == again.orders and first.transactions == again.transactions
    assert first.truth.lam.tolist() == again.truth.lam.tolist()
    assert canonical(first) != canonical(other)


def test_generate_store_products_have_documented_shape(store: GeneratedStore) -> None:
    # Given the generated catalogue
    products = store.products
    # Then products have Shopify's shape, several types with several price levels each, and
    # most variants a cost per item (the dev store's inventory item unitCost) below the price
    for product in products:
        assert set(product) == {"id", "title", "product_type", "handle", "variants", "tags"}
        assert product["tags"] == [] and product["variants"]
        for variant in product["variants"]:
            assert set(variant) - {"cost"} == {"id", "price"} and MONEY.match(variant["price"])
            if "cost" in variant:
                assert MONEY.match(variant["cost"])
                assert 0 < Decimal(variant["cost"]) < Decimal(variant["price"])
    costed = [v for p in products for v in p["variants"] if "cost" in v]
    variants = sum(len(p["variants"]) for p in products)
    assert 0.8 * variants <= len(costed) < variants
    types = Counter(p["product_type"] for p in products)
    assert len(types) >= 5
    for type_name in types:
        prices = {p["variants"][0]["price"] for p in products if p["product_type"] == type_name}
        assert len(prices) >= 3
    ids = [v["id"] for p in products for v in p["variants"]] + [p["id"] for p in products]
    assert len(ids) == len(set(ids))


def test_generate_store_customers_have_documented_shape_and_fake_contact(
    store: GeneratedStore,
) -> None:
    # Given the generated customers
    customers = store.customers
    # Then each has Shopify's fields, including contact data the app must not store
    assert len(customers) == 3_000
    for c in customers:
        assert {"id", "admin_graphql_api_id", "created_at", "updated_at", "state"} <= set(c)
        assert {"email", "first_name", "last_name", "phone"} <= set(c)
        assert c["admin_graphql_api_id"] == f"gid://shopify/Customer/{c['id']}"
        assert c["state"] == "enabled" and c["email"].endswith("@example.com")
        assert ISO.match(c["created_at"]) and c["updated_at"] >= c["created_at"]
    assert len({c["id"] for c in customers}) == 3_000


def test_generate_store_orders_have_documented_shape(store: GeneratedStore) -> None:
    # Given every order payload of the history
    shop = store.shop_currency
    payloads = [e.payload for e in store.events if e.topic in ORDER_TOPICS]
    # Then each has the order resource fields, money as strings, shop money in shop currency
    for order in payloads:
        assert set(order) >= ORDER_KEYS
        assert order["admin_graphql_api_id"] == f"gid://shopify/Order/{order['id']}"
        assert order["currency"] == shop
        assert_money_set(order["total_price_set"], shop)
        assert_money_set(order["current_total_price_set"], shop)
        assert (
            order["current_total_price_set"]["presentment_money"]["currency_code"]
            == (order["presentment_currency"])
        )
        assert order["customer"] is None or {"id", "admin_graphql_api_id"} <= set(order["customer"])
        for line in order["line_items"]:
            assert set(line) >= LINE_KEYS
            assert MONEY.match(line["price"]) and MONEY.match(line["total_discount"])
            assert_money_set(line["price_set"], shop)
            assert 0 <= line["current_quantity"] <= line["quantity"]
    assert any(line["product_id"] is None for o in payloads for line in o["line_items"])


def test_generate_store_refund_payloads_have_documented_shape(store: GeneratedStore) -> None:
    # Given the refunds/create events
    refunds = [e.payload for e in store.events if e.topic == "refunds/create"]
    orders = {o["id"]: o for o in store.orders}
    # Then they carry line items with subtotal sets and a successful refund transaction
    assert refunds
    for refund in refunds:
        assert {"id", "order_id", "created_at", "refund_line_items", "transactions"} <= set(refund)
        assert refund["order_adjustments"] == []
        line_ids = {line["id"] for line in orders[refund["order_id"]]["line_items"]}
        for item in refund["refund_line_items"]:
            assert item["line_item_id"] in line_ids and item["quantity"] >= 1
            assert_money_set(item["subtotal_set"], store.shop_currency)
        [txn] = refund["transactions"]
        assert (txn["kind"], txn["status"]) == ("refund", "success")
        presentment = orders[refund["order_id"]]["presentment_currency"]
        assert txn["currency"] in {store.shop_currency, presentment}
        assert MONEY.match(txn["amount"])
    # And orders presented in another currency are refunded in both (unconfirmed which one)
    foreign = [
        (r["transactions"][0]["currency"], orders[r["order_id"]]["presentment_currency"])
        for r in refunds
        if orders[r["order_id"]]["presentment_currency"] != store.shop_currency
    ]
    assert {currency == presentment for currency, presentment in foreign} == {True, False}


def test_generate_store_current_totals_reflect_edits_refunds_and_cancellations(
    store: GeneratedStore,
) -> None:
    # Given the final orders
    statuses = Counter(o["financial_status"] for o in store.orders)
    # Then current total = total - items removed by edits - refunded amounts (0 if cancelled
    # or fully refunded), and the statuses cover every case
    assert {"paid", "partially_refunded", "refunded", "voided"} <= set(statuses)
    # And cancelled orders are either never paid (voided) or paid and refunded in full
    cancelled = Counter(
        (o["financial_status"], bool(o["refunds"])) for o in store.orders if o["cancelled_at"]
    )
    assert set(cancelled) == {("voided", False), ("refunded", True)}
    edited = 0
    for o in store.orders:
        total = cents(o["total_price_set"]["shop_money"]["amount"])
        current = cents(o["current_total_price_set"]["shop_money"]["amount"])
        refunded_lines = {i["line_item_id"] for r in o["refunds"] for i in r["refund_line_items"]}
        removed = sum(
            cents(line["price"]) * (line["quantity"] - line["current_quantity"])
            for line in o["line_items"]
            if line["id"] not in refunded_lines
        )
        refunded = sum(
            cents(item["subtotal_set"]["shop_money"]["amount"])
            for r in o["refunds"]
            for item in r["refund_line_items"]
        )
        if o["cancelled_at"] is not None or o["financial_status"] == "refunded":
            assert current == 0
            assert all(line["current_quantity"] == 0 for line in o["line_items"])
        else:
            assert current == total - removed - refunded > 0
            edited += removed > 0
    assert edited > 0


def test_generate_store_final_orders_equal_last_delivered_version(store: GeneratedStore) -> None:
    # Given the history of order events
    last: dict[int, dict[str, Any]] = {}
    for event in store.events:
        if event.topic in ORDER_TOPICS:
            last[event.payload["id"]] = event.payload
    # Then the final state is the newest version delivered, and versions only move forward
    assert last == {o["id"]: o for o in store.orders}
    for event in store.events:
        if event.topic in ORDER_TOPICS:
            assert event.payload["updated_at"] <= last[event.payload["id"]]["updated_at"]


def test_generate_store_has_guest_test_and_multi_currency_orders(store: GeneratedStore) -> None:
    # Given the final orders
    orders = store.orders
    # Then some are guest orders, some test orders, and several presentment currencies appear
    guests = [o for o in orders if o["customer"] is None]
    tests = [o for o in orders if o["test"]]
    currencies = Counter(o["presentment_currency"] for o in orders)
    assert 0.05 < len(guests) / len(orders) < 0.15
    assert tests
    assert len(currencies) >= 3 and currencies["USD"] < len(orders)
    foreign = next(o for o in orders if o["presentment_currency"] != "USD")
    money = foreign["total_price_set"]
    assert money["shop_money"]["currency_code"] == "USD"
    assert money["presentment_money"]["amount"] != money["shop_money"]["amount"]


def test_generate_store_events_time_ordered_unique_and_customer_created_first(
    store: GeneratedStore,
) -> None:
    # Given the history
    events = store.events
    # Then it is in time order, event ids are unique, and a customer exists before its orders
    assert [e.triggered_at for e in events] == sorted(e.triggered_at for e in events)
    assert len({e.event_id for e in events}) == len(events)
    assert {e.topic for e in events} == ORDER_TOPICS | {
        "customers/create",
        "customers/update",
        "refunds/create",
    }
    created: set[int] = set()
    for e in events:
        if e.topic == "customers/create":
            created.add(e.payload["id"])
        elif e.topic in ORDER_TOPICS and e.payload["customer"] is not None:
            assert e.payload["customer"]["id"] in created


def test_generate_store_transactions_are_counted_customer_purchases(store: GeneratedStore) -> None:
    # Given the orders an app should count: customer, not test, not cancelled, not refunded
    counted = [
        o
        for o in store.orders
        if o["customer"] and not o["test"] and not o["cancelled_at"]
        if o["financial_status"] != "refunded"
    ]
    # Then the transactions are exactly those, with their net current shop amount
    assert sorted((t.customer_id, t.amount) for t in store.transactions) == sorted(
        (o["customer"]["id"], Decimal(o["current_total_price_set"]["shop_money"]["amount"]))
        for o in counted
    )


def test_write_store_files_matches_in_memory_store(tmp_path: Path) -> None:
    # Given a small config
    config = GeneratorConfig(customers=600)
    memory = generate_store(config, seed=9)
    # When it is written to files
    summary = write_store_files(config, seed=9, out_dir=tmp_path, final_state=True)
    # Then the files describe the same store
    with (tmp_path / "transactions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["customer_id"]), r["date"], Decimal(r["amount"])) for r in rows] == [
        (t.customer_id, t.date.isoformat(), t.amount) for t in memory.transactions
    ]
    events = list(read_events_jsonl(tmp_path / "events.jsonl"))
    assert [(e.topic, e.event_id, e.triggered_at) for e in events] == [
        (e.topic, e.event_id, e.triggered_at) for e in memory.events
    ]
    assert events[-1].payload == memory.events[-1].payload
    with (tmp_path / "truth_customers.csv").open() as f:
        truth = list(csv.DictReader(f))
    assert [int(r["customer_id"]) for r in truth] == memory.truth.customer_ids.tolist()
    assert (summary.customers, summary.orders, summary.events) == (
        600,
        len(memory.orders),
        len(memory.events),
    )
    saved = json.loads((tmp_path / "truth.json").read_text())
    assert [tuple(p) for p in saved["complements"]] == list(memory.truth.complements)
    with (tmp_path / "orders.jsonl").open() as f:
        assert sum(1 for _ in f) == len(memory.orders)


def test_write_store_files_parallel_gzip_chunks_match_in_memory_store(tmp_path: Path) -> None:
    # Given a store of three chunks
    config = GeneratorConfig(customers=1_200, chunk_customers=400)
    memory = generate_store(config, seed=13)
    # When it is written by two worker processes, gzipped
    summary = write_store_files(config, seed=13, out_dir=tmp_path, compress=True, workers=2)
    # Then the merged history is the in-memory one, in time order across chunks
    events = list(read_events_jsonl(tmp_path / "events.jsonl.gz"))
    assert [(e.topic, e.event_id, e.triggered_at) for e in events] == [
        (e.topic, e.event_id, e.triggered_at) for e in memory.events
    ]
    assert summary.transactions == len(memory.transactions)
    assert "events.jsonl.gz" in summary.paths and "events.jsonl" not in summary.paths


def test_generate_store_final_state_loads_into_dev_store_state() -> None:
    # Given a generated store's final state
    from plugin.devstore.state import DevStoreState

    store = generate_store(GeneratorConfig(customers=300), seed=3)
    state = DevStoreState(domain=store.shop_domain, currency_code=store.shop_currency)
    # When the dev store loads it
    state.load(products=store.products, customers=store.customers, orders=store.orders)
    # Then every record is there, with the current (net) totals of the final versions
    assert (len(state.products), len(state.customers), len(state.orders)) == (
        len(store.products),
        len(store.customers),
        len(store.orders),
    )
    for order in store.orders:
        expected = Decimal(order["current_total_price_set"]["shop_money"]["amount"])
        assert state.orders[order["id"]].current_total_shop == expected
