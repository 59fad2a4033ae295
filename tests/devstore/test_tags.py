"""tagsAdd / tagsRemove: arrays, comma splitting, userErrors, the 250-tag cap, the input cap."""

from __future__ import annotations

from typing import Any

from plugin.devstore.tags import MAX_TAGS_PER_RECORD, add_tags, normalise_tags
from tests.devstore.conftest import DevStoreFactory, LiveDevStore, customer_payload, make_state

ADD = """
mutation Add($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) {
    node { id ... on Customer { tags } }
    userErrors { field message }
  }
}
"""
REMOVE = """
mutation Remove($id: ID!, $tags: [String!]!) {
  tagsRemove(id: $id, tags: $tags) { node { id } userErrors { field message } }
}
"""
CUSTOMER_1 = "gid://shopify/Customer/1"


def add(store: LiveDevStore, tags: list[str], gid: str = CUSTOMER_1) -> dict[str, Any]:
    body = store.gql(ADD, {"id": gid, "tags": tags})
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["tagsAdd"]
    return payload


def test_tags_add_array_items_are_added_once(devstore: LiveDevStore) -> None:
    # Given a customer with a merchant tag
    devstore.state.customers[1].tags.append("vip-by-hand")
    # When the app adds two tags, one of them twice
    payload = add(devstore, ["clv:champions", "clv:top-20", "clv:champions"])
    # Then both are added next to the merchant's tag, without duplicates
    assert payload["userErrors"] == []
    assert payload["node"]["tags"] == ["vip-by-hand", "clv:champions", "clv:top-20"]


def test_tags_add_comma_in_an_item_splits_it(devstore: LiveDevStore) -> None:
    # Given Shopify's documented behaviour ("tag1, tag2" is a list of two tags)
    # When one array item contains a comma
    payload = add(devstore, ["clv:a, clv:b"])
    # Then it becomes two tags, trimmed
    assert payload["node"]["tags"] == ["clv:a", "clv:b"]


def test_tags_add_a_single_string_is_coerced_to_a_list(devstore: LiveDevStore) -> None:
    # GraphQL input coercion turns a lone string into a one-item list, which is then split.
    body = devstore.gql(ADD, {"id": CUSTOMER_1, "tags": "one, two"})
    assert body["data"]["tagsAdd"]["node"]["tags"] == ["one", "two"]


def test_tags_add_beyond_250_tags_is_refused_whole(devstore_factory: DevStoreFactory) -> None:
    # Given a customer with 249 tags
    state = make_state(customers=0)
    state.add_customer(customer_payload(1, tags=[f"t{n}" for n in range(249)]))
    store = devstore_factory(state)
    # When two new tags would make 251
    payload = add(store, ["clv:a", "clv:b"])
    # Then a userError says so and nothing is added
    assert payload["node"] is None
    assert payload["userErrors"][0]["field"] == ["tags"]
    assert len(state.customers[1].tags) == 249
    # And one new tag (250 in all) is fine
    assert add(store, ["clv:a"])["userErrors"] == []
    assert len(state.customers[1].tags) == 250


def test_tags_add_tag_longer_than_255_is_a_user_error(devstore: LiveDevStore) -> None:
    payload = add(devstore, ["x" * 256])
    assert payload["userErrors"] == [
        {"field": ["tags"], "message": "Tag is too long (maximum is 255 characters)"}
    ]
    assert devstore.state.customers[1].tags == []
    assert add(devstore, ["x" * 255])["userErrors"] == []


def test_tags_add_more_than_250_items_is_max_input_size_exceeded(devstore: LiveDevStore) -> None:
    body = devstore.gql(ADD, {"id": CUSTOMER_1, "tags": [f"t{n}" for n in range(251)]})
    assert body["errors"][0]["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"
    assert devstore.state.customers[1].tags == []


def test_tags_add_unknown_customer_is_a_user_error(devstore: LiveDevStore) -> None:
    payload = add(devstore, ["a"], gid="gid://shopify/Customer/999")
    assert payload == {
        "node": None,
        "userErrors": [{"field": ["id"], "message": "Customer does not exist"}],
    }


def test_tags_add_bumps_updated_at_only_when_something_changed(devstore: LiveDevStore) -> None:
    before = devstore.state.customers[1].updated_at
    add(devstore, ["a"])
    changed = devstore.state.customers[1].updated_at
    assert changed != before
    devstore.state.customers[1].updated_at = before
    add(devstore, ["a"])
    assert devstore.state.customers[1].updated_at == before


def test_tags_remove_leaves_other_tags(devstore: LiveDevStore) -> None:
    # Given a customer with the app's tags and a merchant's tag
    devstore.state.customers[2].tags.extend(["clv:lost", "wholesale", "clv:win-back"])
    # When the app removes its tags (one of them absent)
    body = devstore.gql(
        REMOVE, {"id": "gid://shopify/Customer/2", "tags": ["clv:lost", "clv:win-back", "nope"]}
    )
    # Then only the merchant's tag remains
    assert body["data"]["tagsRemove"]["userErrors"] == []
    assert devstore.state.customers[2].tags == ["wholesale"]


def test_tags_add_works_on_products_and_orders(devstore: LiveDevStore) -> None:
    add(devstore, ["fbt"], gid="gid://shopify/Product/1000")
    add(devstore, ["seen"], gid="gid://shopify/Order/5010")
    assert devstore.state.products[1000].tags == ["fbt"]
    assert devstore.state.orders[5010].tags == ["seen"]


def test_tags_add_announces_customers_update_without_tags(devstore: LiveDevStore) -> None:
    # Given a listener on the store, as the webhook sender subscribes
    events: list[tuple[str, dict[str, Any]]] = []
    devstore.state.subscribe(lambda topic, payload: events.append((topic, payload)))
    # When a tag is added, then added again (no change)
    add(devstore, ["clv:new"])
    add(devstore, ["clv:new"])
    # Then one customers/update is announced, without tags, with the new updated_at
    assert [topic for topic, _ in events] == ["customers/update"]
    payload = events[0][1]
    assert payload["admin_graphql_api_id"] == CUSTOMER_1
    assert "tags" not in payload
    assert payload["updated_at"] == devstore.state.customers[1].updated_at


def test_normalise_tags_drops_blank_parts() -> None:
    assert normalise_tags(["a,,b", " ", "a , c"]) == ["a", "b", "c"]


def test_tags_cap_counts_only_the_tags_not_held_yet() -> None:
    # given a customer at the 250-tag cap
    held = [f"t{i}" for i in range(MAX_TAGS_PER_RECORD)]
    # when a tag it holds is added again, that is no error and changes nothing
    assert add_tags(held, ["t0"], cap=MAX_TAGS_PER_RECORD) == []
    assert len(held) == MAX_TAGS_PER_RECORD
    # and a new one is refused
    assert add_tags(held, ["t0", "new"], cap=MAX_TAGS_PER_RECORD) != []


def test_tags_add_cap_holds_for_products_but_not_orders(devstore: LiveDevStore) -> None:
    # Given a product and an order each holding 250 tags
    full = [f"t{n}" for n in range(MAX_TAGS_PER_RECORD)]
    devstore.state.products[1000].tags.extend(full)
    devstore.state.orders[5010].tags.extend(full)
    # Then the product refuses one more (Shopify caps product tags at 250), the order takes it
    refused = add(devstore, ["more"], gid="gid://shopify/Product/1000")
    assert refused["userErrors"] == [{"field": ["tags"], "message": "Tags cannot be more than 250"}]
    assert len(devstore.state.products[1000].tags) == MAX_TAGS_PER_RECORD
    assert add(devstore, ["more"], gid="gid://shopify/Order/5010")["userErrors"] == []
    assert devstore.state.orders[5010].tags[-1] == "more"


def test_tags_remove_bumps_updated_at_only_when_something_went(devstore: LiveDevStore) -> None:
    customer = devstore.state.customers[2]
    customer.tags.append("clv:lost")
    customer.updated_at = before = "2026-01-01T00:00:00Z"
    # When tags it does not hold are removed, it is untouched
    devstore.gql(REMOVE, {"id": "gid://shopify/Customer/2", "tags": ["clv:champions"]})
    assert customer.updated_at == before
    # When a tag it holds is removed, it is updated
    devstore.gql(REMOVE, {"id": "gid://shopify/Customer/2", "tags": ["clv:lost"]})
    assert customer.tags == []
    assert customer.updated_at != before
