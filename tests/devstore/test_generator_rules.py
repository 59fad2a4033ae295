"""The generator's rules beyond shapes: every version of an order adds up, a refund moves what
the order lost, versions move forward and say what happened, extra orders ride on purchases.

These hold for every order of a seed, so a change to a rule fails here by name, where the
digests of test_generator_taste only say that the output changed.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plugin.devstore.gen_baskets import SHIPPING_CAP_CENTS, build_baskets
from plugin.devstore.gen_config import CatalogueParams, LifecycleParams
from plugin.devstore.generator import (
    GeneratedStore,
    GeneratorConfig,
    WebhookEvent,
    catalogue_for,
    generate_store,
    write_store_files,
)
from tests.devstore.test_generator import ORDER_TOPICS, cents

RATES = {code: rate for code, rate, _ in LifecycleParams().presentment_currencies}
# Each order-level amount beside its money set, and the money sets a line carries.
ORDER_AMOUNTS = (
    ("total_price", "total_price_set"),
    ("current_total_price", "current_total_price_set"),
    ("subtotal_price", "subtotal_price_set"),
    ("total_discounts", "total_discounts_set"),
    ("total_tax", "total_tax_set"),
)
LINE_AMOUNTS = (("price", "price_set"), ("total_discount", "total_discount_set"))


@pytest.fixture(scope="module")
def store(seed42_store: GeneratedStore) -> GeneratedStore:
    return seed42_store


@pytest.fixture(scope="module")
def histories(store: GeneratedStore) -> dict[int, list[WebhookEvent]]:
    """Each order's webhooks (its refunds/create included) in delivery order."""
    by_order: dict[int, list[WebhookEvent]] = defaultdict(list)
    for event in store.events:
        if event.topic in ORDER_TOPICS:
            by_order[event.payload["id"]].append(event)
        elif event.topic == "refunds/create":
            by_order[event.payload["order_id"]].append(event)
    return by_order


def shop(money_set: dict[str, Any]) -> int:
    return cents(money_set["shop_money"]["amount"])


def current(order: dict[str, Any]) -> int:
    return shop(order["current_total_price_set"])


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def is_zeroed(order: dict[str, Any]) -> bool:
    return order["cancelled_at"] is not None or order["financial_status"] == "refunded"


def order_versions(store: GeneratedStore) -> list[dict[str, Any]]:
    return [e.payload for e in store.events if e.topic in ORDER_TOPICS]


def money_sets(order: dict[str, Any]) -> list[dict[str, Any]]:
    sets = [order[name] for _, name in ORDER_AMOUNTS] + [order["total_shipping_price_set"]]
    return sets + [line[name] for line in order["line_items"] for _, name in LINE_AMOUNTS]


def test_every_version_of_an_order_adds_up(store: GeneratedStore) -> None:
    # Given every version of every order delivered
    for order in order_versions(store):
        # Then each plain amount is its set's shop amount, presentment amounts are the shop's
        # at the currency's rate, and total = subtotal - discounts + shipping + tax, with the
        # subtotal and discounts the sums of the lines as ordered and shipping capped
        for plain, name in ORDER_AMOUNTS:
            assert cents(order[plain]) == shop(order[name]), (order["id"], plain)
        for line in order["line_items"]:
            for plain, name in LINE_AMOUNTS:
                assert cents(line[plain]) == shop(line[name]), (line["id"], plain)
        rate = RATES[order["presentment_currency"]]
        for money in money_sets(order):
            presented = money["presentment_money"]
            assert presented["currency_code"] == order["presentment_currency"]
            assert cents(presented["amount"]) == round(shop(money) * rate)
        lines = order["line_items"]
        subtotal = shop(order["subtotal_price_set"])
        discounts = shop(order["total_discounts_set"])
        shipping = shop(order["total_shipping_price_set"])
        assert subtotal == sum(cents(line["price"]) * line["quantity"] for line in lines)
        assert discounts == sum(cents(line["total_discount"]) for line in lines)
        assert 0 <= shipping <= SHIPPING_CAP_CENTS
        total = subtotal - discounts + shipping + shop(order["total_tax_set"])
        assert shop(order["total_price_set"]) == total


def test_every_version_holds_what_its_edits_and_refunds_left(store: GeneratedStore) -> None:
    # Given every version of every order (not only the final one)
    versions = order_versions(store)
    # Then its current total is its total less the lines its edits removed and the refunds it
    # carries, and a refunded line's current quantity is less the units refunded; a cancelled
    # or fully refunded version holds nothing
    partly_refunded = 0
    for order in versions:
        lines = order["line_items"]
        if is_zeroed(order):
            assert current(order) == 0
            assert all(line["current_quantity"] == 0 for line in lines)
            continue
        refunded_units: Counter[int] = Counter()
        for refund in order["refunds"]:
            for item in refund["refund_line_items"]:
                refunded_units[item["line_item_id"]] += item["quantity"]
        removed = sum(
            cents(line["price"]) * (line["quantity"] - line["current_quantity"])
            for line in lines
            if line["id"] not in refunded_units
        )
        refunded = sum(
            shop(item["subtotal_set"]) for r in order["refunds"] for item in r["refund_line_items"]
        )
        assert current(order) == shop(order["total_price_set"]) - removed - refunded > 0
        for line in lines:
            if line["id"] in refunded_units:
                assert line["current_quantity"] == line["quantity"] - refunded_units[line["id"]]
                partly_refunded += 1
    assert partly_refunded > 0


def test_a_refund_moves_what_the_order_lost(
    store: GeneratedStore, histories: dict[int, list[WebhookEvent]]
) -> None:
    # Given each refunds/create, the order's version delivered before it and the first one
    # after that carries it
    checked: Counter[str] = Counter()
    for history in histories.values():
        for k, event in enumerate(history):
            if event.topic != "refunds/create":
                continue
            refund = event.payload
            before = history[k - 1].payload
            after = next(
                e.payload
                for e in history[k + 1 :]
                if e.topic != "refunds/create" and refund in e.payload["refunds"]
            )
            lost = current(before) - current(after)
            # Then its transaction is what the order lost, in shop currency or at the rate of
            # the order's presentment currency
            [txn] = refund["transactions"]
            if txn["currency"] == store.shop_currency:
                assert cents(txn["amount"]) == lost
            else:
                assert txn["currency"] == before["presentment_currency"]
                assert cents(txn["amount"]) == round(lost * RATES[txn["currency"]])
            lines = {line["id"]: line for line in before["line_items"]}
            items = refund["refund_line_items"]
            if is_zeroed(after):
                # And a full refund returns every line still held, net of its discount
                held = [line for line in before["line_items"] if line["current_quantity"] > 0]
                assert [(i["line_item_id"], i["quantity"]) for i in items] == [
                    (line["id"], line["quantity"]) for line in held
                ]
                for item in items:
                    line = lines[item["line_item_id"]]
                    net = cents(line["price"]) * line["quantity"] - cents(line["total_discount"])
                    assert shop(item["subtotal_set"]) == net
                checked["full"] += 1
            else:
                # And a partial one returns one unit of the first line, net of its share of
                # the line's discount, at most 80% of what the order held
                [item] = items
                first = before["line_items"][0]
                assert (item["line_item_id"], item["quantity"]) == (first["id"], 1)
                unit = cents(first["price"]) - cents(first["total_discount"]) // first["quantity"]
                assert shop(item["subtotal_set"]) == lost == min(unit, current(before) * 8 // 10)
                checked["partial"] += 1
    assert checked["full"] > 0 and checked["partial"] > 0


def test_order_versions_move_forward_and_say_what_happened(
    store: GeneratedStore, histories: dict[int, list[WebhookEvent]]
) -> None:
    # Given each order's webhooks
    final = {order["id"]: order for order in store.orders}
    for order_id, history in histories.items():
        versions = [e for e in history if e.topic != "refunds/create"]
        # Then every webhook is triggered when its payload was last updated (a refund when it
        # was created), and each new version is strictly newer than the one before
        for event in history:
            stamp = "created_at" if event.topic == "refunds/create" else "updated_at"
            assert at(event.payload[stamp]) == event.triggered_at
        for earlier, later in itertools.pairwise(versions):
            if later.payload != earlier.payload:
                assert at(later.payload["updated_at"]) > at(earlier.payload["updated_at"])
        # And orders/paid carries a paid order; a cancelled order sends orders/cancelled
        # with its final version
        for event in versions:
            if event.topic == "orders/paid":
                assert event.payload["financial_status"] == "paid"
        cancelled = [e.payload for e in versions if e.topic == "orders/cancelled"]
        assert cancelled == ([final[order_id]] if final[order_id]["cancelled_at"] else [])


def test_customer_updates_come_after_the_customer_was_created(store: GeneratedStore) -> None:
    # Given the customer webhooks
    created: dict[int, datetime] = {}
    updates = 0
    for event in store.events:
        payload = event.payload
        if event.topic == "customers/create":
            # Then customers/create is triggered when the customer was created
            assert at(payload["created_at"]) == at(payload["updated_at"]) == event.triggered_at
            created[payload["id"]] = event.triggered_at
        elif event.topic == "customers/update":
            # And customers/update later, when its payload was updated
            assert at(payload["updated_at"]) == event.triggered_at > created[payload["id"]]
            updates += 1
    assert updates > 0


def test_lines_name_a_variant_of_their_product_at_its_price(store: GeneratedStore) -> None:
    # Given the catalogue and the final orders' lines
    products = {p["id"]: p for p in store.products}
    lines = [line for o in store.orders for line in o["line_items"] if line["product_id"]]
    # Then each line's variant is one of its product's, at that variant's price, with the
    # product's title and type
    for line in lines:
        product = products[line["product_id"]]
        variants = {v["id"]: v for v in product["variants"]}
        assert line["variant_id"] in variants
        assert line["price"] == variants[line["variant_id"]]["price"]
        assert (line["title"], line["product_type"]) == (product["title"], product["product_type"])
    assert len({line["variant_id"] for line in lines}) > len(products)


def test_catalogue_prices_end_like_a_shops(store: GeneratedStore) -> None:
    # Given the catalogue's prices
    endings = Counter(v["price"][-3:] for p in store.products for v in p["variants"])
    # Then they end in .99 or .00, and both occur
    assert set(endings) == {".99", ".00"}


def test_extra_orders_ride_on_a_purchase_of_their_customer(store: GeneratedStore) -> None:
    # Given the counted purchases of each customer
    kinds = store.truth.order_kinds
    purchases: dict[int, list[datetime]] = defaultdict(list)
    for order in store.orders:
        if kinds[order["id"]] == "purchase":
            purchases[order["customer"]["id"]].append(at(order["created_at"]))
    # Then each cancelled, fully refunded or test order comes within 3 days after one of them
    extras = [o for o in store.orders if kinds[o["id"]] in {"cancelled", "full_refund", "test"}]
    assert extras
    for order in extras:
        placed = at(order["created_at"])
        assert any(
            placed - timedelta(days=3) <= day <= placed
            for day in purchases[order["customer"]["id"]]
        )


def test_guests_and_partial_refunds_are_spread_as_configured(store: GeneratedStore) -> None:
    # Given the final orders
    kinds = store.truth.order_kinds
    guests = [o for o in store.orders if o["customer"] is None]
    # Then guest orders are the configured share of all orders (10%; 1,548 guests here,
    # so Poisson noise is about 0.0025 of the share), in the presentment currencies' configured
    # shares, as customers' orders are (70% USD: binomial noise about 0.012 here; drawn
    # uniformly, each would be 25%)
    share = store.config.lifecycle.guest_share
    assert len(guests) / len(store.orders) == pytest.approx(share, abs=0.006)
    drawn = Counter(o["presentment_currency"] for o in guests)
    assert set(drawn) == set(RATES)
    for code, _, currency_share in store.config.lifecycle.presentment_currencies:
        assert drawn[code] / len(guests) == pytest.approx(currency_share, abs=0.04)
    # And partial refunds come on refills as on purchases
    partial = Counter(kinds[o["id"]] for o in store.orders if o["refunds"] and not is_zeroed(o))
    assert set(partial) == {"purchase", "refill"}


def test_the_same_variant_twice_in_a_cart_is_one_line_of_both_units() -> None:
    # Given a catalogue where every candidate line draws one variant (no planted partner, no
    # custom items), and a target of exactly six of it
    params = CatalogueParams(custom_item_share=0.0)
    catalogue = catalogue_for(GeneratorConfig(), seed=1)
    variant = int(np.flatnonzero(catalogue.complement_variant < 0)[0])
    weight = np.zeros(catalogue.n_variants)
    weight[variant] = 1.0
    only = dataclasses.replace(catalogue, variant_weight=weight)
    price = int(catalogue.variant_price_cents[variant])
    # When the baskets are built
    baskets = build_baskets(np.random.default_rng(0), only, params, np.array([6 * price] * 3))
    # Then each order is one line of six units, the whole target (so no shipping or tax)
    assert baskets.line_order.tolist() == [0, 1, 2]
    assert baskets.line_variant.tolist() == [variant] * 3
    assert baskets.line_quantity.tolist() == [6] * 3
    assert (baskets.subtotal.tolist(), baskets.shipping.tolist()) == ([6 * price] * 3, [0] * 3)


def test_no_version_of_an_order_holds_a_variant_on_two_lines(store: GeneratedStore) -> None:
    # Given every version of every order delivered, edited ones among them (their first
    # version holds the item the edit removes)
    versions = order_versions(store)
    assert any(line["current_quantity"] == 0 for o in versions for line in o["line_items"])
    # Then none holds a variant on two lines, as a cart puts both units on one line
    for order in versions:
        variants = [line["variant_id"] for line in order["line_items"] if line["variant_id"]]
        assert len(variants) == len(set(variants)), order["id"]


def test_final_orders_are_listed_as_they_were_placed(store: GeneratedStore) -> None:
    # Given the final orders (generated kind by kind: purchases, refills, then the rest)
    keys = [(order["created_at"], order["id"]) for order in store.orders]
    # Then they come in the order they were placed (ties by id)
    assert keys == sorted(keys)


def test_truth_files_hold_what_was_planted(tmp_path: Path) -> None:
    # Given a store written to files and the same store in memory
    config = GeneratorConfig(customers=500, chunk_customers=200)
    memory = generate_store(config, seed=4)
    write_store_files(config, seed=4, out_dir=tmp_path)
    # Then truth_customers.csv holds each customer's planted figures to 9 significant digits
    # (rates) or a millionth of a day or currency unit
    truth = memory.truth
    with (tmp_path / "truth_customers.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["customer_id"]) for r in rows] == truth.customer_ids.tolist()
    for column, planted, tolerance in (
        ("lambda_per_day", truth.lam, {"rel": 1e-8}),
        ("p_drop", truth.p_drop, {"rel": 1e-8}),
        ("spend_mean", truth.spend_mean, {"abs": 1e-6}),
        ("first_purchase_day", truth.first_purchase_day, {"abs": 1e-6}),
    ):
        written = [float(r[column]) for r in rows]
        assert written == pytest.approx(planted.tolist(), **tolerance), column
    assert [r["alive_at_end"] == "1" for r in rows] == truth.alive_at_end.tolist()
    # And truth.json the store's seed, span, size, population and planted products
    saved = json.loads((tmp_path / "truth.json").read_text())
    assert saved == {
        "seed": 4,
        "time_unit": "day",
        "start": config.start.isoformat(),
        "end": config.end.isoformat(),
        "customers": 500,
        "population": dataclasses.asdict(config.population),
        "complements": [list(pair) for pair in truth.complements],
        "consumables": {str(k): v for k, v in truth.consumables.items()},
        "shop_currency": "USD",
    }
    # And no chunk's parts are left beside them
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "events.jsonl",
        "products.jsonl",
        "transactions.csv",
        "truth.json",
        "truth_customers.csv",
    ]


def customer_lines(store: GeneratedStore) -> dict[int, list[tuple[datetime, str, int, int]]]:
    """Each customer's lines of counted orders: (placed, order kind, product id, units)."""
    kinds = store.truth.order_kinds
    lines: dict[int, list[tuple[datetime, str, int, int]]] = defaultdict(list)
    for order in store.orders:
        kind = kinds[order["id"]]
        if kind in {"purchase", "refill"}:
            for line in order["line_items"]:
                if line["product_id"]:
                    placed = at(order["created_at"])
                    lines[order["customer"]["id"]].append(
                        (placed, kind, line["product_id"], line["quantity"])
                    )
    return lines


def test_customers_who_dropped_out_refill_nothing_after_their_last_purchase(
    store: GeneratedStore,
) -> None:
    # Given the customers planted as dropped out by the end (they left after their last
    # purchase)
    lines = customer_lines(store)
    gone = store.truth.customer_ids[~store.truth.alive_at_end].tolist()
    # Then none of them has a refill after that purchase, though refills came before it
    refills_before = 0
    for cid in gone:
        last = max(placed for placed, kind, _, _ in lines[cid] if kind == "purchase")
        refills = [placed for placed, kind, _, _ in lines[cid] if kind == "refill"]
        assert all(placed <= last for placed in refills), cid
        refills_before += len(refills)
    assert refills_before > 0


def test_a_fifth_of_refill_chains_are_abandoned_before_the_first_refill(
    store: GeneratedStore,
) -> None:
    # Given the consumables first bought by customers still active at the end, long enough
    # before it that the units bought would have run out (a cycle stretches to 1.5 at most),
    # and never bought again in a purchase
    cycles = store.truth.consumables
    active = set(store.truth.customer_ids[store.truth.alive_at_end].tolist())
    end = store.config.end
    refilled: list[bool] = []
    for cid, lines in customer_lines(store).items():
        if cid not in active:
            continue
        for product, cycle in cycles.items():
            mine = [(placed, kind, units) for placed, kind, p, units in lines if p == product]
            purchases = [(placed, units) for placed, kind, units in mine if kind == "purchase"]
            if len(purchases) != 1:
                continue
            placed, units = purchases[0]
            if placed + timedelta(days=1.5 * cycle * units + 1) < end:
                refilled.append(any(kind == "refill" for _, kind, _ in mine))
    # Then the customer abandons the product before any refill with the configured chance
    # (0.2 per refill): 0.199 of 629 chains here, whose noise is about 0.016
    abandoned = 1 - sum(refilled) / len(refilled)
    assert len(refilled) > 300
    assert abandoned == pytest.approx(store.config.catalogue.refill_abandon_probability, abs=0.05)
