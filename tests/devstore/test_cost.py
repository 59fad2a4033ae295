"""Calculated query cost against figures from Shopify's rate-limit documentation."""

from __future__ import annotations

from typing import Any

import pytest

from plugin.devstore.config import DevStoreConfig
from plugin.devstore.models import Refund
from tests.devstore.conftest import DevStoreFactory, LiveDevStore, make_state


def cost_of(store: LiveDevStore, query: str) -> dict[str, Any]:
    body = store.gql(query)
    assert "errors" not in body, body
    cost: dict[str, Any] = body["extensions"]["cost"]
    return cost


@pytest.mark.parametrize(
    ("query", "requested"),
    [
        # Shopify's docs: `shop { name }` is one object, scalars are free.
        ("{ shop { id name currencyCode } }", 1),
        # A connection is 2 plus `first` times one item (an object, 1).
        ("{ products(first: 10) { edges { node { title } } } }", 12),
        # Nested connections multiply: 2 + 10 x (1 + (2 + 5 x 1)) = 82.
        (
            "{ products(first: 10) { edges { node { title "
            "variants(first: 5) { edges { node { price } } } } } } }",
            82,
        ),
        # An object inside each item costs 1 more per item: 2 + 3 x (1 + 1) = 8.
        ("{ orders(first: 3) { nodes { customer { id } } } }", 8),
        # nodes(ids:) is one object per id.
        ('{ nodes(ids: ["gid://shopify/Customer/1", "gid://shopify/Customer/2"]) { id } }', 2),
    ],
)
def test_requested_cost_matches_shopify_rules(
    devstore_factory: DevStoreFactory,
    query: str,
    requested: int,
) -> None:
    # Given a store with more of everything than the pages ask for
    store = devstore_factory(make_state(customers=12, products=12))
    # When the query runs
    cost = cost_of(store, query)
    # Then the requested cost follows Shopify's published rules
    assert cost["requestedQueryCost"] == requested


def test_actual_cost_counts_returned_items_and_is_refunded(devstore: LiveDevStore) -> None:
    # Given 5 customers and a page of 50
    cost = cost_of(devstore, "{ customers(first: 50) { nodes { id tags } } }")
    # Then 52 points are requested, 2 + 5 are charged, and only 7 leave the bucket
    assert cost["requestedQueryCost"] == 52
    assert cost["actualQueryCost"] == 7
    assert cost["throttleStatus"]["currentlyAvailable"] == 2000 - 7


def test_actual_cost_of_a_missing_object_is_one(devstore: LiveDevStore) -> None:
    cost = cost_of(
        devstore,
        '{ product(id: "gid://shopify/Product/999") { variants(first: 250) { nodes { id } } } }',
    )
    assert cost["requestedQueryCost"] == 1 + 2 + 250
    assert cost["actualQueryCost"] == 1


def test_mutation_costs_ten(devstore: LiveDevStore) -> None:
    body = devstore.gql(
        'mutation { tagsAdd(id: "gid://shopify/Customer/1", tags: ["a"]) '
        "{ node { id } userErrors { message } } }"
    )
    assert body["extensions"]["cost"]["requestedQueryCost"] == 10
    assert body["extensions"]["cost"]["actualQueryCost"] == 10


def test_query_above_single_query_limit_is_max_cost_exceeded(devstore: LiveDevStore) -> None:
    # Given a query of 2 + 250 x (1 + 2 + 10) = 3252 points
    body = devstore.gql(
        "{ customers(first: 250) { nodes { id metafields(first: 10) { nodes { value } } } } }"
    )
    # Then it is refused before running, in Shopify's shape, and nothing is charged
    error = body["errors"][0]
    assert "data" not in body
    assert error["extensions"]["code"] == "MAX_COST_EXCEEDED"
    assert error["extensions"]["cost"] == 3252
    assert error["extensions"]["maxCost"] == 1000
    assert error["message"].startswith("Query cost is 3252, which exceeds the single query max")
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 2000


def test_max_query_cost_is_configurable(devstore_factory: DevStoreFactory) -> None:
    store = devstore_factory(config=DevStoreConfig(max_query_cost=10))
    body = store.gql("{ customers(first: 10) { nodes { id } } }")
    assert body["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"


def test_variables_size_the_connection(devstore: LiveDevStore) -> None:
    body = devstore.gql(
        "query($n: Int = 20) { customers(first: $n) { nodes { id } } }",
    )
    assert body["extensions"]["cost"]["requestedQueryCost"] == 22


def test_size_sent_as_a_float_variable_is_costed_as_the_int_it_becomes(
    devstore: LiveDevStore,
) -> None:
    # Given a page size sent as 250.0, which graphql-core coerces to the Int 250
    query = "query($n: Int!) { customers(first: $n) { nodes { id } } }"
    # When the query runs
    body = devstore.gql(query, {"n": 250.0})
    # Then it is costed as a page of 250, not as a page of nothing
    assert body["extensions"]["cost"]["requestedQueryCost"] == 252


def test_variable_that_does_not_fit_its_type_is_an_error_without_cost(
    devstore: LiveDevStore,
) -> None:
    body = devstore.gql("query($n: Int!) { customers(first: $n) { nodes { id } } }", {"n": 2.5})
    assert "Int cannot represent non-integer value" in body["errors"][0]["message"]
    assert "data" not in body
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 2000


def test_negative_first_is_refused_and_credits_nothing(devstore: LiveDevStore) -> None:
    # Given a full bucket and a call spending 10 points
    devstore.gql(
        'mutation { tagsAdd(id: "gid://shopify/Customer/1", tags: ["a"]) { node { id } } }'
    )
    # When a page of -100000 is asked for
    query = "query($n: Int) { customers(first: $n) { nodes { id } } }"
    body = devstore.gql(query, {"n": -100_000})
    # Then it is refused, its cost is not negative, and the bucket gains nothing from it
    assert body["errors"][0]["message"] == "first must be greater than or equal to 0"
    assert body["extensions"]["cost"]["requestedQueryCost"] == 2
    assert body["extensions"]["cost"]["actualQueryCost"] == 0
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 2000 - 10


def test_list_field_is_costed_by_its_size_and_actual_cost_above_requested_is_charged(
    devstore_factory: DevStoreFactory,
) -> None:
    # Given one order with three refunds
    state = make_state(customers=1, products=1)
    order = state.orders[5010]
    order.refunds = [Refund(n, "2025-02-02T00:00:00Z") for n in (1, 2, 3)]
    store = devstore_factory(state)
    # When refunds(first: 5) is asked for, it is costed as five refund objects
    sized = cost_of(store, "{ orders(first: 1) { nodes { refunds(first: 5) { id } } } }")
    assert sized["requestedQueryCost"] == 2 + 1 * (1 + 5)
    assert sized["actualQueryCost"] == 2 + 1 * (1 + 3)
    # When refunds is asked for without a size, one is requested but three come back
    unsized = cost_of(store, "{ orders(first: 1) { nodes { refunds { id } } } }")
    assert unsized["requestedQueryCost"] == 2 + 1 * (1 + 1)
    assert unsized["actualQueryCost"] == 2 + 1 * (1 + 3)
    # Then the bucket paid the actual cost of both calls, not the smaller requested one
    assert unsized["throttleStatus"]["currentlyAvailable"] == 2000 - 6 - 6
