"""The Admin GraphQL endpoint over HTTP: auth, versions, validation, lookups, pagination."""

from __future__ import annotations

from tests.devstore.conftest import DevStoreFactory, LiveDevStore, make_state, order_payload

CUSTOMERS_PAGE = """
query Page($first: Int!, $after: String) {
  customers(first: $first, after: $after) {
    edges { cursor node { id legacyResourceId } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""


def test_graphql_without_token_is_401_with_shopifys_body(devstore: LiveDevStore) -> None:
    # Given a dev store
    # When a request carries no access token, or an unknown one
    missing = devstore.client.post(devstore.graphql_url, json={"query": "{ shop { name } }"})
    wrong = devstore.post("{ shop { name } }", headers={"X-Shopify-Access-Token": "shpat_wrong"})
    # Then both are refused with Shopify's error body
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json() == {
            "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
        }


def test_graphql_unsupported_version_is_404(devstore: LiveDevStore) -> None:
    # Given a dev store that serves 2025-10 to 2026-10
    devstore.version = "2019-04"
    # When a client asks for a retired version
    response = devstore.post("{ shop { name } }")
    # Then the path does not exist
    assert response.status_code == 404


def test_graphql_missing_query_is_400(devstore: LiveDevStore) -> None:
    # Given a body without a query
    response = devstore.client.post(
        devstore.graphql_url,
        json={"variables": {}},
        headers={"X-Shopify-Access-Token": devstore.token},
    )
    # Then Shopify's parameter error comes back
    assert response.status_code == 400
    assert response.json() == {"errors": {"query": "Required parameter missing or invalid"}}


def test_graphql_unknown_field_is_a_validation_error_not_data(devstore: LiveDevStore) -> None:
    # Given a query for a field the schema does not have
    body = devstore.gql("{ customers(first: 1) { nodes { email } } }")
    # Then it is refused by validation, with no data and the cost extension still present
    assert "data" not in body
    assert "Cannot query field 'email'" in body["errors"][0]["message"]
    assert body["extensions"]["cost"]["throttleStatus"]["maximumAvailable"] == 2000


def test_graphql_syntax_error_is_reported(devstore: LiveDevStore) -> None:
    body = devstore.gql("{ customers(first: 1) { nodes { id }")
    assert body["errors"][0]["message"].startswith("Syntax Error")


def test_customers_paginate_with_cursors_visits_each_once(
    devstore_factory: DevStoreFactory,
) -> None:
    # Given 12 customers
    store = devstore_factory(make_state(customers=12))
    seen: list[str] = []
    after = None
    pages = 0
    # When paging 5 at a time with endCursor
    while True:
        page = store.gql(CUSTOMERS_PAGE, {"first": 5, "after": after})["data"]["customers"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        pages += 1
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    # Then three pages visit every customer once, in id order, as GIDs
    assert pages == 3
    assert seen == [f"gid://shopify/Customer/{n}" for n in range(1, 13)]


def test_customers_last_before_pages_backwards(devstore_factory: DevStoreFactory) -> None:
    store = devstore_factory(make_state(customers=6))
    first = store.gql(CUSTOMERS_PAGE, {"first": 4})["data"]["customers"]
    end = first["pageInfo"]["endCursor"]
    # When asking for the two before the fourth customer
    body = store.gql(
        "query($b: String) { customers(last: 2, before: $b) { nodes { legacyResourceId }"
        " pageInfo { hasPreviousPage hasNextPage } } }",
        {"b": end},
    )
    page = body["data"]["customers"]
    # Then customers 2 and 3 come back, with more on both sides
    assert [node["legacyResourceId"] for node in page["nodes"]] == ["2", "3"]
    assert page["pageInfo"] == {"hasPreviousPage": True, "hasNextPage": True}


def test_customers_without_first_or_last_is_an_error(devstore: LiveDevStore) -> None:
    body = devstore.gql("{ customers { nodes { id } } }")
    assert body["errors"][0]["message"] == "you must provide one of first or last"


def test_customers_first_above_250_is_an_error(devstore: LiveDevStore) -> None:
    body = devstore.gql("{ customers(first: 251) { nodes { id } } }")
    assert body["errors"][0]["message"].startswith("first cannot exceed 250")


def test_customers_query_filters_by_updated_at(devstore_factory: DevStoreFactory) -> None:
    # Given two customers updated on different days
    state = make_state(customers=2)
    state.customers[2].updated_at = "2025-06-01T00:00:00Z"
    store = devstore_factory(state)
    # When filtering on updated_at
    body = store.gql(
        "{ customers(first: 10, query: \"updated_at:>='2025-05-01T00:00:00Z'\") { nodes { id } } }"
    )
    # Then only the recent one matches
    assert body["data"]["customers"]["nodes"] == [{"id": "gid://shopify/Customer/2"}]


def test_nodes_by_ids_returns_null_for_unknown(devstore: LiveDevStore) -> None:
    body = devstore.gql(
        'query { nodes(ids: ["gid://shopify/Customer/2", "gid://shopify/Customer/999"]) '
        "{ id ... on Customer { tags createdAt } } }"
    )
    assert body["data"]["nodes"] == [
        {"id": "gid://shopify/Customer/2", "tags": [], "createdAt": "2025-01-01T00:00:00Z"},
        None,
    ]


def test_node_with_malformed_gid_is_a_coercion_error(devstore: LiveDevStore) -> None:
    body = devstore.gql('{ node(id: "42") { id } }')
    assert body["errors"][0]["message"] == "Invalid global id '42'"
    assert body["errors"][0]["extensions"]["code"] == "argumentLiteralsIncompatible"


def test_order_reads_customer_money_and_lines(devstore: LiveDevStore) -> None:
    body = devstore.gql(
        "{ orders(first: 1) { nodes { id customer { id } test cancelledAt "
        "currentTotalPriceSet { shopMoney { amount currencyCode } "
        "presentmentMoney { amount currencyCode } } "
        "lineItems(first: 5) { nodes { quantity product { id productType } "
        "variant { price } } } } } }"
    )
    order = body["data"]["orders"]["nodes"][0]
    assert order["customer"] == {"id": "gid://shopify/Customer/1"}
    assert order["currentTotalPriceSet"] == {
        "shopMoney": {"amount": "24.00", "currencyCode": "USD"},
        "presentmentMoney": {"amount": "22.00", "currencyCode": "EUR"},
    }
    assert order["lineItems"]["nodes"][0]["variant"] == {"price": "12.00"}
    assert order["test"] is False and order["cancelledAt"] is None


def test_line_item_presentment_money_is_in_the_orders_currency(
    devstore_factory: DevStoreFactory,
) -> None:
    # Given an order presented in EUR whose line's price set says what the buyer saw
    state = make_state(customers=1, products=1)
    line = order_payload(7000, 1, 1000)["line_items"][0] | {
        "price_set": {
            "shop_money": {"amount": "12.00", "currency_code": "USD"},
            "presentment_money": {"amount": "11.04", "currency_code": "EUR"},
        },
        "total_discount": "1.00",
        "total_discount_set": {
            "shop_money": {"amount": "1.00", "currency_code": "USD"},
            "presentment_money": {"amount": "0.92", "currency_code": "EUR"},
        },
    }
    state.add_order(order_payload(7000, 1, 1000) | {"line_items": [line]})
    store = devstore_factory(state)
    # When its line is read
    body = store.gql(
        '{ order(id: "gid://shopify/Order/7000") { lineItems(first: 1) { nodes { '
        "originalUnitPriceSet { shopMoney { amount currencyCode } "
        "presentmentMoney { amount currencyCode } } "
        "totalDiscountSet { presentmentMoney { amount currencyCode } } } } } }"
    )
    # Then presentment money is in EUR at the order's rate, not the shop amount again
    [node] = body["data"]["order"]["lineItems"]["nodes"]
    assert node["originalUnitPriceSet"] == {
        "shopMoney": {"amount": "12.00", "currencyCode": "USD"},
        "presentmentMoney": {"amount": "11.04", "currencyCode": "EUR"},
    }
    assert node["totalDiscountSet"]["presentmentMoney"] == {"amount": "0.92", "currencyCode": "EUR"}


def test_product_reads_price_range_and_shop(devstore: LiveDevStore) -> None:
    body = devstore.gql(
        '{ product(id: "gid://shopify/Product/1000") { handle productType '
        "priceRangeV2 { minVariantPrice { amount currencyCode } } } "
        "shop { name currencyCode } }"
    )
    assert body["data"]["product"] == {
        "handle": "product-1000",
        "productType": "tea",
        "priceRangeV2": {"minVariantPrice": {"amount": "12.00", "currencyCode": "USD"}},
    }
    assert body["data"]["shop"] == {"name": "Dev Store", "currencyCode": "USD"}


def test_customers_sort_key_updated_at_pages_in_that_order(
    devstore_factory: DevStoreFactory,
) -> None:
    # Given three customers updated in the order 3, 1, 2
    state = make_state(customers=3, orders_per_customer=0)
    for customer_id, day in ((3, "01"), (1, "02"), (2, "03")):
        state.customers[customer_id].updated_at = f"2025-07-{day}T00:00:00Z"
    store = devstore_factory(state)
    query = (
        "query($after: String) { customers(first: 2, after: $after, sortKey: UPDATED_AT) "
        "{ nodes { legacyResourceId } pageInfo { endCursor hasNextPage } } }"
    )
    # When paging by updated_at
    first = store.gql(query)["data"]["customers"]
    second = store.gql(query, {"after": first["pageInfo"]["endCursor"]})["data"]["customers"]
    # Then the order follows updated_at across the cursor
    ids = [node["legacyResourceId"] for node in first["nodes"] + second["nodes"]]
    assert ids == ["3", "1", "2"]
    assert second["pageInfo"]["hasNextPage"] is False


def test_customer_amount_spent_sums_non_test_orders(devstore_factory: DevStoreFactory) -> None:
    state = make_state(customers=1, orders_per_customer=2)
    state.orders[5011].test = True
    store = devstore_factory(state)
    body = store.gql(
        '{ customer(id: "gid://shopify/Customer/1") { numberOfOrders '
        "amountSpent { amount currencyCode } } }"
    )
    assert body["data"]["customer"] == {
        "numberOfOrders": "2",
        "amountSpent": {"amount": "24.00", "currencyCode": "USD"},
    }


def test_nodes_with_more_than_250_ids_is_max_input_size_exceeded(devstore: LiveDevStore) -> None:
    ids = [f"gid://shopify/Customer/{n}" for n in range(251)]
    body = devstore.gql("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": ids})
    assert body["errors"][0]["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"
    assert body["data"] is None


def test_graphql_accepts_application_graphql_body(devstore: LiveDevStore) -> None:
    response = devstore.client.post(
        devstore.graphql_url,
        content="{ shop { name } }",
        headers={"X-Shopify-Access-Token": devstore.token, "Content-Type": "application/graphql"},
    )
    assert response.json()["data"] == {"shop": {"name": "Dev Store"}}


def test_graphql_body_of_invalid_utf8_is_400(devstore: LiveDevStore) -> None:
    # Given a bare query whose bytes are not UTF-8
    response = devstore.client.post(
        devstore.graphql_url,
        content=b"{ shop { name } }\xff",
        headers={"X-Shopify-Access-Token": devstore.token, "Content-Type": "application/graphql"},
    )
    # Then it is a bad request, not a server error
    assert response.status_code == 400
    assert response.json() == {"errors": {"query": "Required parameter missing or invalid"}}


def test_products_read_their_status_by_pages_drafts_and_archived_included(
    devstore_factory: DevStoreFactory,
) -> None:
    # Given five products, one a draft and one archived by the merchant
    state = make_state(customers=1, products=5)
    state.set_product_status(1001, "DRAFT")
    state.set_product_status(1003, "ARCHIVED")
    store = devstore_factory(state)
    # When every product is read two to a page, with its status
    statuses: dict[str, str] = {}
    after = None
    while True:
        page = store.gql(
            "query($after: String) { products(first: 2, after: $after) "
            "{ nodes { id status } pageInfo { hasNextPage endCursor } } }",
            {"after": after},
        )["data"]["products"]
        statuses |= {node["id"]: node["status"] for node in page["nodes"]}
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    # Then the catalogue still holds them all, each with Shopify's ProductStatus value
    assert statuses == {
        "gid://shopify/Product/1000": "ACTIVE",
        "gid://shopify/Product/1001": "DRAFT",
        "gid://shopify/Product/1002": "ACTIVE",
        "gid://shopify/Product/1003": "ARCHIVED",
        "gid://shopify/Product/1004": "ACTIVE",
    }
    # and the schema's enum is Shopify's (UNLISTED since 2025-10)
    enum = store.gql('{ __type(name: "ProductStatus") { enumValues { name } } }')
    names = [value["name"] for value in enum["data"]["__type"]["enumValues"]]
    assert names == ["ACTIVE", "ARCHIVED", "DRAFT", "UNLISTED"]
