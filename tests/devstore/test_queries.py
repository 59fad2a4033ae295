"""The query side's computed fields and filters, each as the app (or Shopify's docs) reads it."""

from __future__ import annotations

from typing import Any

from plugin.devstore.state import DevStoreState
from tests.devstore.conftest import (
    DevStoreFactory,
    LiveDevStore,
    customer_payload,
    make_state,
    order_payload,
    product_payload,
)
from tests.devstore.test_bulk import RUN_MUTATION, TAGS_ADD, stage_and_upload, start_query
from tests.devstore.test_metafields import DEFINE, SET


def keys(nodes: list[dict[str, Any]]) -> list[str]:
    return [f"{node['namespace']}.{node['key']}" for node in nodes]


def test_a_typed_lookup_finds_only_its_own_type(devstore: LiveDevStore) -> None:
    data = devstore.gql(
        '{ customer(id: "gid://shopify/Product/1") { id } '
        'same: customer(id: "gid://shopify/Customer/1") { id } }'
    )["data"]
    # (customer 1 exists: a product's id of the same number does not find it)
    assert data == {"customer": None, "same": {"id": "gid://shopify/Customer/1"}}


def test_shop_reports_its_time_zone(devstore_factory: DevStoreFactory) -> None:
    store = devstore_factory(DevStoreState(time_zone="Pacific/Auckland", currency_code="NZD"))
    shop = store.gql("{ shop { ianaTimezone currencyCode } }")["data"]["shop"]
    assert shop == {"ianaTimezone": "Pacific/Auckland", "currencyCode": "NZD"}


def test_current_bulk_operation_is_the_newest_of_its_type(devstore: LiveDevStore) -> None:
    query = "{ customers { edges { node { id } } } }"
    first = start_query(devstore, query)["bulkOperation"]["id"]
    path = stage_and_upload(devstore, [{"id": "gid://shopify/Customer/1", "tags": ["x"]}])
    mutation = devstore.gql(RUN_MUTATION, {"mutation": TAGS_ADD, "path": path})["data"][
        "bulkOperationRunMutation"
    ]["bulkOperation"]["id"]
    second = start_query(devstore, query)["bulkOperation"]["id"]
    data = devstore.gql(
        "{ q: currentBulkOperation { id } m: currentBulkOperation(type: MUTATION) { id } }"
    )["data"]
    assert first != second
    assert data == {"q": {"id": second}, "m": {"id": mutation}}


def test_metafield_definitions_filter_by_owner_namespace_and_key(devstore: LiveDevStore) -> None:
    for owner, namespace, key in [
        ("CUSTOMER", "clv", "segment"),
        ("CUSTOMER", "clv", "p_alive"),
        ("CUSTOMER", "other", "segment"),
        ("PRODUCT", "clv", "segment"),
    ]:
        definition = {"name": key, "namespace": namespace, "key": key, "ownerType": owner}
        devstore.gql(DEFINE, {"definition": definition | {"type": "single_line_text_field"}})

    def listed(arguments: str) -> list[str]:
        body = devstore.gql(
            f"{{ metafieldDefinitions({arguments}, first: 10) {{ nodes {{ namespace key }} }} }}"
        )
        return keys(body["data"]["metafieldDefinitions"]["nodes"])

    assert listed("ownerType: CUSTOMER") == ["clv.segment", "clv.p_alive", "other.segment"]
    assert listed('ownerType: CUSTOMER, namespace: "clv"') == ["clv.segment", "clv.p_alive"]
    assert listed('ownerType: CUSTOMER, key: "segment"') == ["clv.segment", "other.segment"]
    assert listed("ownerType: PRODUCT") == ["clv.segment"]


def test_metafields_filter_by_namespace_and_keys(devstore: LiveDevStore) -> None:
    owner = "gid://shopify/Customer/1"
    fields = [("clv", "segment"), ("clv", "p_alive"), ("other", "segment")]
    devstore.gql(
        SET,
        {
            "metafields": [
                {"ownerId": owner, "namespace": namespace, "key": key, "value": "1"}
                | {"type": "number_integer"}
                for namespace, key in fields
            ]
        },
    )

    def listed(arguments: str) -> list[str]:
        body = devstore.gql(
            f'{{ customer(id: "{owner}") {{ metafields({arguments}first: 10) '
            "{ nodes { namespace key } } } }"
        )
        return keys(body["data"]["customer"]["metafields"]["nodes"])

    assert listed("") == ["clv.segment", "clv.p_alive", "other.segment"]
    assert listed('namespace: "clv", ') == ["clv.segment", "clv.p_alive"]
    assert listed('keys: ["clv.segment", "other.segment"], ') == ["clv.segment", "other.segment"]


def test_a_customers_orders_take_a_search_query(devstore_factory: DevStoreFactory) -> None:
    state = DevStoreState()
    orders = [order_payload(n, 1, 1000) for n in (6001, 6002)]
    orders[1] |= {"created_at": "2025-06-01T10:00:00Z"}
    state.load(products=[product_payload(1000)], customers=[customer_payload(1)], orders=orders)
    store = devstore_factory(state)
    body = store.gql(
        '{ customer(id: "gid://shopify/Customer/1") { '
        'orders(first: 10, query: "created_at:>=2025-05-01") { nodes { id } } } }'
    )
    assert body["data"]["customer"]["orders"]["nodes"] == [{"id": "gid://shopify/Order/6002"}]


def test_a_products_price_range_and_a_variants_cost(devstore_factory: DevStoreFactory) -> None:
    # Given a product of two variants, one with a cost per item and one without
    state = DevStoreState()
    variants = [{"id": 10, "price": "30.00", "cost": "11.50"}, {"id": 11, "price": "12.00"}]
    state.load(products=[product_payload(1000, variants=variants)])
    store = devstore_factory(state)
    product = store.gql(
        '{ product(id: "gid://shopify/Product/1000") { '
        "priceRangeV2 { minVariantPrice { amount } maxVariantPrice { amount } } "
        "variants(first: 5) { nodes { product { id } inventoryItem { unitCost { amount } } } } } }"
    )["data"]["product"]
    # Then the range runs from the cheaper to the dearer, and a cost not set is null
    assert product["priceRangeV2"] == {
        "minVariantPrice": {"amount": "12.00"},
        "maxVariantPrice": {"amount": "30.00"},
    }
    assert product["variants"]["nodes"] == [
        {
            "product": {"id": "gid://shopify/Product/1000"},
            "inventoryItem": {"unitCost": {"amount": "11.50"}},
        },
        {"product": {"id": "gid://shopify/Product/1000"}, "inventoryItem": {"unitCost": None}},
    ]


def test_an_orders_refunds_and_its_original_total(devstore_factory: DevStoreFactory) -> None:
    # Given an order of 24.00 refunded twice down to 10.00
    state = make_state(customers=0, products=1)
    order = order_payload(6001, None, 1000) | {
        "total_price_set": {"shop_money": {"amount": "24.00", "currency_code": "USD"}},
        "current_total_price_set": {"shop_money": {"amount": "10.00", "currency_code": "USD"}},
        "refunds": [
            {"id": 1, "created_at": "2025-02-03T00:00:00Z"},
            {"id": 2, "created_at": "2025-02-04T00:00:00Z"},
        ],
    }
    state.load(orders=[order])
    store = devstore_factory(state)
    data = store.gql(
        '{ order(id: "gid://shopify/Order/6001") { '
        "totalPriceSet { shopMoney { amount } } currentTotalPriceSet { shopMoney { amount } } "
        "all: refunds { id } one: refunds(first: 1) { id } "
        "lineItems(first: 1) { nodes { variant { id } } } } }"
    )["data"]["order"]
    assert data["totalPriceSet"] == {"shopMoney": {"amount": "24.00"}}
    assert data["currentTotalPriceSet"] == {"shopMoney": {"amount": "10.00"}}
    assert [refund["id"] for refund in data["all"]] == [
        "gid://shopify/Refund/1",
        "gid://shopify/Refund/2",
    ]
    assert data["one"] == [{"id": "gid://shopify/Refund/1"}]
    assert data["lineItems"]["nodes"] == [{"variant": {"id": "gid://shopify/ProductVariant/10000"}}]


def test_a_json_value_of_plain_text_is_the_text(devstore: LiveDevStore) -> None:
    item = {"ownerId": "gid://shopify/Customer/1", "namespace": "clv", "key": "segment"}
    devstore.gql(SET, {"metafields": [item | {"value": "loyal", "type": "single_line_text_field"}]})
    body = devstore.gql(
        '{ customer(id: "gid://shopify/Customer/1") '
        '{ metafield(namespace: "clv", key: "segment") { jsonValue } } }'
    )
    assert body["data"]["customer"]["metafield"] == {"jsonValue": "loyal"}
