"""The token's access scopes: `currentAppInstallation { accessScopes }`, and the 60-day window of
orders Shopify serves a token without read_all_orders, paginated and in bulk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from plugin.devstore.config import APP_SCOPES, READ_ALL_ORDERS, DevStoreConfig
from plugin.devstore.state import DevStoreState
from tests.devstore.conftest import (
    DevStoreFactory,
    LiveDevStore,
    customer_payload,
    order_payload,
    product_payload,
)
from tests.devstore.test_bulk import download_jsonl, poll_until_done, start_query

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
SCOPES = "{ currentAppInstallation { id accessScopes { handle description } } }"
ORDERS_PAGE = """
query Page($after: String) {
  orders(first: 2, after: $after) { nodes { id createdAt } pageInfo { hasNextPage endCursor } }
}
"""
# days before NOW each order was created: 59 days 23 hours is inside the window, 60 days and
# an hour is not
AGES = {
    7001: timedelta(days=400),
    7002: timedelta(days=60, hours=1),
    7003: timedelta(days=59, hours=23),
    7004: timedelta(days=10),
    7005: timedelta(hours=1),
}
RECENT = [7003, 7004, 7005]


def store_with_ages() -> DevStoreState:
    """One customer whose orders were created AGES before the store's now, NOW; the oldest
    was updated (refunded, say) yesterday, which does not bring it into the window."""
    state = DevStoreState(now=lambda: NOW)
    orders = []
    for order_id, age in AGES.items():
        created = (NOW - age).strftime("%Y-%m-%dT%H:%M:%SZ")
        order = {**order_payload(order_id, 1, 1000), "created_at": created}
        orders.append({**order, "processed_at": created, "updated_at": created})
    orders[0]["updated_at"] = (NOW - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    state.load(products=[product_payload(1000)], customers=[customer_payload(1)], orders=orders)
    return state


def numbers(nodes: list[dict[str, Any]]) -> list[int]:
    return [int(node["id"].rpartition("/")[2]) for node in nodes]


def paged_orders(store: LiveDevStore) -> list[int]:
    """Every order the `orders` connection serves, two a page."""
    found: list[int] = []
    after = None
    while True:
        page = store.gql(ORDERS_PAGE, {"after": after})["data"]["orders"]
        found += numbers(page["nodes"])
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


def bulk_orders(store: LiveDevStore) -> list[int]:
    """Every order a bulk query of `orders` exports (root lines, not line items)."""
    query = "{ orders { edges { node { id lineItems { edges { node { id } } } } } } }"
    started = start_query(store, query)
    assert started["userErrors"] == []
    operation, _ = poll_until_done(store, started["bulkOperation"]["id"])
    assert operation["status"] == "COMPLETED"
    lines = download_jsonl(store, operation["url"])
    return sorted(numbers([line for line in lines if "__parentId" not in line]))


def test_current_app_installation_lists_the_app_scopes_and_read_all_orders_by_default(
    devstore: LiveDevStore,
) -> None:
    # when a token of a dev store configured by default asks for its scopes
    body = devstore.gql(SCOPES)
    # then they are the app's (shopify.app.toml) and read_all_orders, each with a description
    installation = body["data"]["currentAppInstallation"]
    handles = [scope["handle"] for scope in installation["accessScopes"]]
    assert handles == [*APP_SCOPES, READ_ALL_ORDERS]
    assert all(scope["description"] for scope in installation["accessScopes"])
    assert installation["id"].startswith("gid://shopify/AppInstallation/")


def test_current_app_installation_lists_the_configured_scopes(
    devstore_factory: DevStoreFactory,
) -> None:
    store = devstore_factory(config=DevStoreConfig(access_scopes=("read_orders",)))
    scopes = store.gql(SCOPES)["data"]["currentAppInstallation"]["accessScopes"]
    assert [scope["handle"] for scope in scopes] == ["read_orders"]


@pytest.mark.parametrize("read", [paged_orders, bulk_orders], ids=["paginated", "bulk"])
def test_orders_without_read_all_orders_are_those_created_in_the_last_60_days(
    devstore_factory: DevStoreFactory, read: Any
) -> None:
    # given a store whose token holds the app's scopes but not read_all_orders
    store = devstore_factory(store_with_ages(), DevStoreConfig(access_scopes=APP_SCOPES))
    # when its orders are read, then only those created in the 60 days before its now are
    # served (the oldest one's recent update does not bring it back)
    assert read(store) == RECENT


@pytest.mark.parametrize("read", [paged_orders, bulk_orders], ids=["paginated", "bulk"])
def test_orders_with_read_all_orders_are_every_order(
    devstore_factory: DevStoreFactory, read: Any
) -> None:
    store = devstore_factory(store_with_ages())
    assert read(store) == sorted(AGES)


def test_an_order_older_than_the_window_is_not_found_by_id_or_through_its_customer(
    devstore_factory: DevStoreFactory,
) -> None:
    # given a token without read_all_orders
    store = devstore_factory(store_with_ages(), DevStoreConfig(access_scopes=APP_SCOPES))
    # when an old order and a recent one are asked for by id, by node, and as the customer's
    query = """
    { old: order(id: "gid://shopify/Order/7002") { id }
      recent: order(id: "gid://shopify/Order/7003") { id }
      nodes(ids: ["gid://shopify/Order/7001", "gid://shopify/Order/7004"]) { id }
      customer(id: "gid://shopify/Customer/1") { orders(first: 10) { nodes { id } } } }
    """
    data = store.gql(query)["data"]
    # then only the recent ones are found, as Shopify answers for orders outside the window
    assert data["old"] is None and data["recent"] == {"id": "gid://shopify/Order/7003"}
    assert data["nodes"] == [None, {"id": "gid://shopify/Order/7004"}]
    assert numbers(data["customer"]["orders"]["nodes"]) == RECENT


def test_the_window_moves_with_the_stores_now(devstore_factory: DevStoreFactory) -> None:
    # given a store without read_all_orders whose now moves on by two days
    state = store_with_ages()
    store = devstore_factory(state, DevStoreConfig(access_scopes=APP_SCOPES))
    state.now = lambda: NOW + timedelta(days=2)
    # then the order created 59 days 23 hours before NOW has left the window
    assert paged_orders(store) == [7004, 7005]


def test_access_scopes_are_read_from_json_as_a_list_of_handles() -> None:
    config = DevStoreConfig.from_dict({"access_scopes": ["read_orders", "read_customers"]})
    assert config.access_scopes == ("read_orders", "read_customers")
    assert DevStoreConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="access_scopes must be a list of strings"):
        DevStoreConfig.from_dict({"access_scopes": "read_orders"})


def test_a_search_on_orders_stays_inside_the_window_of_the_token(
    devstore_factory: DevStoreFactory,
) -> None:
    # given a token without read_all_orders, and a search for orders 30 days old and older
    store = devstore_factory(store_with_ages(), DevStoreConfig(access_scopes=APP_SCOPES))
    bound = (NOW - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    query = f"{{ orders(first: 10, query: \"created_at:<='{bound}'\") {{ nodes {{ id }} }} }}"
    # then only the order both inside the window and matching the search is served
    assert numbers(store.gql(query)["data"]["orders"]["nodes"]) == [7003]
