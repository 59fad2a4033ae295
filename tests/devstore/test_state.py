"""The in-memory state: loading Shopify-shaped payloads, re-loading, several shops, scale."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from plugin.devstore.config import DevStoreConfig
from plugin.devstore.state import DevStoreState
from tests.devstore.conftest import (
    DevStoreFactory,
    customer_payload,
    order_payload,
    product_payload,
)


def test_state_load_rest_shaped_payloads() -> None:
    # Given REST-shaped payloads (tags as one comma-separated string, offsets in timestamps)
    state = DevStoreState()
    state.load(
        products=[product_payload(1, tags="summer, tea")],
        customers=[customer_payload(7, created_at="2025-01-01T02:00:00+02:00", tags="vip")],
        orders=[order_payload(70, 7, 1), order_payload(71, None, 1)],
    )
    # Then they are normalised to Shopify's GraphQL forms
    assert state.products[1].tags == ["summer", "tea"]
    assert state.customers[7].created_at == "2025-01-01T00:00:00Z"
    assert state.customers[7].tags == ["vip"]
    assert state.customers[7].state == "ENABLED"
    assert state.orders_by_customer == {7: [70]}
    assert state.orders[71].customer_id is None


def test_state_customer_update_without_tags_keeps_stored_tags() -> None:
    # Given a customer whose tags live in the store (webhooks carry none since 2025-01)
    state = DevStoreState()
    state.add_customer(customer_payload(1, tags=["clv:lost"]))
    # When a customers/update payload without tags is loaded
    state.add_customer(customer_payload(1, updated_at="2025-03-01T00:00:00Z"))
    # Then the tags survive and the timestamp moves
    assert state.customers[1].tags == ["clv:lost"]
    assert state.customers[1].updated_at == "2025-03-01T00:00:00Z"


def test_state_order_reassigned_to_other_customer_moves_index() -> None:
    state = DevStoreState()
    state.add_order(order_payload(1, 10, 5))
    state.add_order(order_payload(1, 11, 5))
    assert state.orders_by_customer == {10: [], 11: [1]}


def test_state_hundred_thousand_customers_load_and_page_fast(
    devstore_factory: DevStoreFactory,
) -> None:
    # Given 100,000 customers
    state = DevStoreState()
    started = time.monotonic()
    state.load(customers=(customer_payload(n) for n in range(1, 100_001)))
    load_seconds = time.monotonic() - started
    store = devstore_factory(state)
    # When a page is read from a cursor near the end
    first = store.gql("{ customers(first: 1, reverse: true) { edges { cursor } } }")
    cursor = first["data"]["customers"]["edges"][0]["cursor"]
    started = time.monotonic()
    body = store.gql(
        "query($c: String) { customers(first: 250, after: $c, reverse: true) { nodes { id } } }",
        {"c": cursor},
    )
    page_seconds = time.monotonic() - started
    # Then loading took seconds at most, and the page is the next 250 in reverse order, quickly
    nodes = body["data"]["customers"]["nodes"]
    assert nodes[0]["id"] == "gid://shopify/Customer/99999"
    assert len(nodes) == 250
    assert load_seconds < 5
    assert page_seconds < 1


def test_state_each_token_reaches_its_own_shop(devstore_factory: DevStoreFactory) -> None:
    # Given two shops, each with its own token
    first, second = DevStoreState("a.myshopify.com"), DevStoreState("b.myshopify.com", "B")
    first.add_customer(customer_payload(1))
    second.add_customer(customer_payload(2))
    config = DevStoreConfig(access_tokens={"tok_a": first.domain, "tok_b": second.domain})
    store = devstore_factory([first, second], config)
    # When each token lists customers
    seen = {}
    for token in ("tok_a", "tok_b"):
        store.token = token
        nodes = store.gql("{ customers(first: 5) { nodes { id } } }")["data"]["customers"]["nodes"]
        seen[token] = [node["id"] for node in nodes]
    # Then each sees only its shop
    assert seen == {"tok_a": ["gid://shopify/Customer/1"], "tok_b": ["gid://shopify/Customer/2"]}


def test_state_delete_customer_keeps_orders() -> None:
    state = DevStoreState()
    state.load(
        customers=[customer_payload(1), customer_payload(2)], orders=[order_payload(9, 1, 5)]
    )
    state.delete_customer(1)
    assert list(state.customers) == [2]
    assert state.customer_ids.ordered() == [2]
    assert state.orders[9].customer_id == 1


def test_state_default_token_reaches_a_single_shop_of_any_domain(
    devstore_factory: DevStoreFactory,
) -> None:
    # Given one shop with its own domain and no token mapping in the config
    state = DevStoreState("demo-shop.myshopify.com")
    state.add_customer(customer_payload(3))
    store = devstore_factory(state, DevStoreConfig())
    # When the default token calls
    body = store.gql("{ shop { myshopifyDomain } customers(first: 1) { nodes { id } } }")
    # Then it reaches that shop; another token does not
    assert body["data"]["shop"] == {"myshopifyDomain": "demo-shop.myshopify.com"}
    store.token = "shpat_other"
    assert store.post("{ shop { name } }").status_code == 401


def test_state_product_status_from_payloads_defaults_active_and_survives_an_update() -> None:
    # Given products loaded without a status, with REST's lower case, and with GraphQL's
    state = DevStoreState()
    state.load(
        products=[
            product_payload(1),
            product_payload(2, status="draft"),
            product_payload(3, status="ARCHIVED"),
        ]
    )
    # Then each holds Shopify's enum value, ACTIVE when none was given
    assert [state.products[p].status for p in (1, 2, 3)] == ["ACTIVE", "DRAFT", "ARCHIVED"]
    # and a product payload without a status keeps the stored one
    state.add_product(product_payload(2, title="Renamed"))
    assert state.products[2].status == "DRAFT"
    # and a value that is not a ProductStatus is refused
    with pytest.raises(ValueError, match="not a product status"):
        state.add_product(product_payload(4, status="hidden"))
    assert 4 not in state.products


def test_state_set_product_status_moves_updated_at_and_sends_products_update() -> None:
    # Given an active product, and a listener where Shopify would send webhooks
    now = [datetime(2026, 3, 1, tzinfo=UTC)]
    state = DevStoreState(now=lambda: now[0])
    state.add_product(product_payload(1, updated_at="2025-01-01T00:00:00Z"))
    sent: list[tuple[str, dict[str, Any]]] = []
    state.subscribe(lambda topic, payload: sent.append((topic, payload)))
    # When the merchant sets it to draft, then active again the next day
    state.set_product_status(1, "DRAFT")
    drafted = state.products[1].updated_at
    now[0] = datetime(2026, 3, 2, tzinfo=UTC)
    state.set_product_status(1, "active")
    # Then the product holds each status in turn, updated_at moving, and each change is sent
    assert state.products[1].status == "ACTIVE"
    assert (drafted, state.products[1].updated_at) == (
        "2026-03-01T00:00:00Z",
        "2026-03-02T00:00:00Z",
    )
    assert [(topic, payload["status"]) for topic, payload in sent] == [
        ("products/update", "draft"),
        ("products/update", "active"),
    ]
    # and a value that is not a ProductStatus is refused, leaving the product as it was
    with pytest.raises(ValueError, match="not a product status"):
        state.set_product_status(1, "deleted")
    assert state.products[1].status == "ACTIVE" and len(sent) == 2
