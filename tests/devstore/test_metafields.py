"""metafieldsSet (25 per call, atomic, typed values), metafieldsDelete, definitions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from plugin.devstore.config import DevStoreConfig
from tests.devstore.conftest import DevStoreFactory, LiveDevStore

SET = """
mutation Set($metafields: [MetafieldsSetInput!]!) {
  metafieldsSet(metafields: $metafields) {
    metafields { id namespace key value type compareDigest }
    userErrors { field message code elementIndex }
  }
}
"""
DEFINE = """
mutation Define($definition: MetafieldDefinitionInput!) {
  metafieldDefinitionCreate(definition: $definition) {
    createdDefinition { id namespace key ownerType type { name } }
    userErrors { field message code }
  }
}
"""


def metafield(key: str, value: str, type_name: str | None, owner: int = 1) -> dict[str, Any]:
    item = {"ownerId": f"gid://shopify/Customer/{owner}", "namespace": "clv", "key": key}
    item["value"] = value
    if type_name is not None:
        item["type"] = type_name
    return item


def set_fields(store: LiveDevStore, items: list[dict[str, Any]]) -> dict[str, Any]:
    body = store.gql(SET, {"metafields": items})
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["metafieldsSet"]
    return payload


@pytest.mark.parametrize(
    ("type_name", "value"),
    [
        ("number_integer", "42"),
        ("number_decimal", "1234.56"),
        ("date", "2026-02-28"),
        ("single_line_text_field", "champions"),
        ("boolean", "true"),
        ("json", '{"score": [1, 2]}'),
        ("list.product_reference", '["gid://shopify/Product/1000", "gid://shopify/Product/1001"]'),
        ("number_decimal", "-9999999999999.999999999"),
        ("number_decimal", "0.123456789"),
        ("list.product_reference", "[" + ",".join(['"gid://shopify/Product/1000"'] * 128) + "]"),
    ],
)
def test_metafields_set_valid_value_is_stored(
    devstore: LiveDevStore, type_name: str, value: str
) -> None:
    payload = set_fields(devstore, [metafield("field", value, type_name)])
    assert payload["userErrors"] == []
    assert payload["metafields"][0]["value"] == value
    assert devstore.state.customers[1].metafields is not None
    assert devstore.state.customers[1].metafields[("clv", "field")].type == type_name


@pytest.mark.parametrize(
    ("type_name", "value"),
    [
        ("number_integer", "4.2"),
        ("number_integer", "twelve"),
        ("number_decimal", "1,5"),
        ("date", "2026-02-30"),
        ("date", "28/02/2026"),
        ("single_line_text_field", "two\nlines"),
        ("boolean", "yes"),
        ("json", "{not json"),
        ("list.product_reference", '["gid://shopify/Product/999"]'),
        ("list.product_reference", '["gid://shopify/Customer/1"]'),
        ("list.product_reference", "gid://shopify/Product/1000"),
        # matched whole and in ASCII digits only
        ("number_integer", "12\n"),
        ("number_decimal", "12.5\n"),
        ("number_decimal", "\u0661\u0662.\u0665"),
        ("number_integer", "\u0661\u0662"),
        ("date", "2026-02-28\n"),
        # Shopify's decimal range: +/-9999999999999.999999999
        ("number_decimal", "1" * 14 + ".5"),
        ("number_decimal", "-10000000000000"),
        ("number_decimal", "1.1234567891"),
        # strict JSON
        ("json", '{"a": NaN}'),
        ("json", "Infinity"),
        ("json", "-Infinity"),
        # at most 128 items in a list
        ("list.product_reference", "[" + ",".join(['"gid://shopify/Product/1000"'] * 129) + "]"),
    ],
)
def test_metafields_set_invalid_value_is_an_invalid_value_user_error(
    devstore: LiveDevStore, type_name: str, value: str
) -> None:
    payload = set_fields(devstore, [metafield("field", value, type_name)])
    assert payload["metafields"] is None
    error = payload["userErrors"][0]
    assert error["code"] == "INVALID_VALUE"
    assert error["field"] == ["metafields", "0", "value"]
    assert error["elementIndex"] == 0
    assert devstore.state.customers[1].metafields is None


@pytest.mark.parametrize(
    ("type_name", "value", "code"),
    [
        ("single_line_text_field", "", "BLANK"),
        ("single_line_text_field", "   ", "BLANK"),
        ("number_decimal", "", "BLANK"),
        ("single_line_text_field", "x" * 65_001, "TOO_LONG"),
        ("json", '"' + "x" * 2_000_000 + '"', "TOO_LONG"),
    ],
)
def test_metafields_set_blank_or_too_long_value_is_refused(
    devstore: LiveDevStore, type_name: str, value: str, code: str
) -> None:
    payload = set_fields(devstore, [metafield("field", value, type_name)])
    assert payload["metafields"] is None
    assert payload["userErrors"][0]["code"] == code
    assert payload["userErrors"][0]["field"] == ["metafields", "0", "value"]
    assert devstore.state.customers[1].metafields is None


def test_metafields_set_more_than_25_is_refused(devstore: LiveDevStore) -> None:
    # Given 26 valid metafields
    items = [metafield(f"key_{n}", str(n), "number_integer") for n in range(26)]
    # When they are sent at once
    payload = set_fields(devstore, items)
    # Then Shopify's limit error comes back and nothing is written
    assert payload["userErrors"] == [
        {
            "field": ["metafields"],
            "message": "Exceeded the maximum metafields input limit of 25.",
            "code": "LESS_THAN_OR_EQUAL_TO",
            "elementIndex": None,
        }
    ]
    assert devstore.state.customers[1].metafields is None
    # And 25 are fine
    assert set_fields(devstore, items[:25])["userErrors"] == []


def test_metafields_set_is_atomic(devstore: LiveDevStore) -> None:
    # Given one good and one bad metafield in the same call
    items = [metafield("good", "1", "number_integer"), metafield("bad", "x", "number_integer")]
    # When they are set
    payload = set_fields(devstore, items)
    # Then the error points at the second, and neither is written
    assert [error["elementIndex"] for error in payload["userErrors"]] == [1]
    assert devstore.state.customers[1].metafields is None


def test_metafields_set_without_type_or_definition_is_blank_type(devstore: LiveDevStore) -> None:
    payload = set_fields(devstore, [metafield("segment", "lost", None)])
    assert payload["userErrors"][0]["code"] == "BLANK"


def test_metafields_set_takes_type_from_definition(devstore: LiveDevStore) -> None:
    # Given a customer definition clv.predicted_value of type number_decimal
    definition = {
        "name": "Predicted value",
        "namespace": "clv",
        "key": "predicted_value",
        "type": "number_decimal",
        "ownerType": "CUSTOMER",
    }
    created = devstore.gql(DEFINE, {"definition": definition})["data"]["metafieldDefinitionCreate"]
    assert created["userErrors"] == []
    assert created["createdDefinition"]["type"] == {"name": "number_decimal"}
    # When a value is set without a type, and another with a conflicting type
    ok = set_fields(devstore, [metafield("predicted_value", "512.25", None)])
    clash = set_fields(devstore, [metafield("predicted_value", "512", "number_integer")])
    # Then the first uses the definition's type and the second is refused
    assert ok["metafields"][0]["type"] == "number_decimal"
    assert clash["userErrors"][0]["code"] == "INVALID_TYPE"


def test_metafield_definition_create_twice_is_taken(devstore: LiveDevStore) -> None:
    definition = {"name": "Segment", "namespace": "clv", "key": "segment"}
    definition |= {"type": "single_line_text_field", "ownerType": "CUSTOMER"}
    devstore.gql(DEFINE, {"definition": definition})
    again = devstore.gql(DEFINE, {"definition": definition})["data"]["metafieldDefinitionCreate"]
    assert again["createdDefinition"] is None
    assert again["userErrors"][0]["code"] == "TAKEN"


@pytest.mark.parametrize("namespace", ["clv data", "clv.data", "cl"])
def test_metafield_definition_in_an_invalid_namespace_is_refused(
    devstore: LiveDevStore, namespace: str
) -> None:
    definition = {"name": "Segment", "namespace": namespace, "key": "segment"}
    definition |= {"type": "single_line_text_field", "ownerType": "CUSTOMER"}
    created = devstore.gql(DEFINE, {"definition": definition})["data"]["metafieldDefinitionCreate"]
    assert created["createdDefinition"] is None
    assert created["userErrors"][0]["field"] == ["definition", "namespace"]
    assert devstore.state.metafield_definitions == {}


def test_metafields_set_stale_compare_digest_is_refused(devstore: LiveDevStore) -> None:
    first = set_fields(devstore, [metafield("segment", "new", "single_line_text_field")])
    digest = first["metafields"][0]["compareDigest"]
    set_fields(devstore, [metafield("segment", "loyal", "single_line_text_field")])
    stale = metafield("segment", "lost", "single_line_text_field") | {"compareDigest": digest}
    payload = set_fields(devstore, [stale])
    assert payload["userErrors"][0]["code"] == "STALE_OBJECT"


def test_metafields_read_back_by_namespace_and_key(devstore: LiveDevStore) -> None:
    set_fields(
        devstore,
        [
            metafield("segment", "loyal", "single_line_text_field"),
            metafield("p_alive", "0.8", "number_decimal"),
        ],
    )
    body = devstore.gql(
        '{ customer(id: "gid://shopify/Customer/1") { segment: metafield(namespace: "clv", '
        'key: "segment") { value } metafields(first: 10, namespace: "clv") { nodes { key } } } }'
    )
    customer = body["data"]["customer"]
    assert customer["segment"] == {"value": "loyal"}
    assert [node["key"] for node in customer["metafields"]["nodes"]] == ["segment", "p_alive"]


def test_metafields_delete_removes_and_reports_missing_as_null(devstore: LiveDevStore) -> None:
    set_fields(devstore, [metafield("segment", "loyal", "single_line_text_field")])
    body = devstore.gql(
        "mutation($m: [MetafieldIdentifierInput!]!) { metafieldsDelete(metafields: $m) "
        "{ deletedMetafields { key } userErrors { message } } }",
        {
            "m": [
                {"ownerId": "gid://shopify/Customer/1", "namespace": "clv", "key": "segment"},
                {"ownerId": "gid://shopify/Customer/1", "namespace": "clv", "key": "nope"},
            ]
        },
    )
    assert body["data"]["metafieldsDelete"]["deletedMetafields"] == [{"key": "segment"}, None]
    assert devstore.state.customers[1].metafields == {}


def test_metafields_set_product_reference_list_on_product(devstore: LiveDevStore) -> None:
    item = {
        "ownerId": "gid://shopify/Product/1000",
        "namespace": "clv",
        "key": "frequently_bought_together",
        "type": "list.product_reference",
        "value": '["gid://shopify/Product/1001"]',
    }
    assert set_fields(devstore, [item])["userErrors"] == []
    body = devstore.gql(
        '{ product(id: "gid://shopify/Product/1000") { metafield(namespace: "clv", '
        'key: "frequently_bought_together") { jsonValue } } }'
    )
    assert body["data"]["product"]["metafield"]["jsonValue"] == ["gid://shopify/Product/1001"]


COMPLEMENTARY = {
    "ownerId": "gid://shopify/Product/1000",
    "namespace": "shopify--discovery--product_recommendation",
    "key": "complementary_products",
    "type": "list.product_reference",
    "value": '["gid://shopify/Product/1001"]',
}


def test_shopify_namespace_is_writable_by_default(devstore: LiveDevStore) -> None:
    payload = set_fields(devstore, [COMPLEMENTARY])
    assert payload["userErrors"] == []
    assert devstore.state.products[1000].metafields is not None


def test_shopify_namespace_refused_when_the_store_says_so(
    devstore_factory: DevStoreFactory,
) -> None:
    # Given a store where apps may not write Shopify's reserved namespaces
    store = devstore_factory(config=DevStoreConfig(shopify_namespaces_writable=False))
    # When the complementary products and the app's own field are set in one call
    own = COMPLEMENTARY | {"namespace": "clv", "key": "complements"}
    payload = set_fields(store, [own, COMPLEMENTARY])
    # Then the call is refused for the reserved namespace, and nothing is written (atomic)
    assert payload["metafields"] is None
    assert payload["userErrors"] == [
        {
            "field": ["metafields", "1", "namespace"],
            "message": "Access to this namespace and key on Metafields for this resource type "
            "is not allowed.",
            "code": "APP_NOT_AUTHORIZED",
            "elementIndex": 1,
        }
    ]
    assert store.state.products[1000].metafields is None
    # And the app's own namespace alone is still writable
    assert set_fields(store, [own])["userErrors"] == []


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("namespace", "cl", "TOO_SHORT"),
        ("namespace", "c" * 256, "TOO_LONG"),
        ("key", "s", "TOO_SHORT"),
        ("key", "s" * 65, "TOO_LONG"),
    ],
)
def test_metafields_set_names_outside_their_lengths_are_refused(
    devstore: LiveDevStore, field: str, value: str, code: str
) -> None:
    # Shopify: a namespace is 3-255 characters, a key 2-64
    item = metafield("segment", "loyal", "single_line_text_field") | {field: value}
    payload = set_fields(devstore, [item])
    assert payload["metafields"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        (["metafields", "0", field], code)
    ]


def test_metafields_set_names_at_their_length_bounds_are_stored(devstore: LiveDevStore) -> None:
    items = [
        metafield("ab", "1", "number_integer") | {"namespace": "clv"},
        metafield("k" * 64, "2", "number_integer") | {"namespace": "n" * 255},
    ]
    payload = set_fields(devstore, items)
    assert payload["userErrors"] == []
    assert set(devstore.state.customers[1].metafields or {}) == {
        ("clv", "ab"),
        ("n" * 255, "k" * 64),
    }


def test_metafields_set_without_a_namespace_goes_to_the_app_namespace(
    devstore: LiveDevStore,
) -> None:
    item = metafield("segment", "loyal", "single_line_text_field")
    del item["namespace"]
    payload = set_fields(devstore, [item])
    assert payload["metafields"][0]["namespace"] == "app--1"
    body = devstore.gql(
        '{ customer(id: "gid://shopify/Customer/1") { metafield(key: "segment") { value } } }'
    )
    assert body["data"]["customer"]["metafield"] == {"value": "loyal"}


def test_metafields_set_compare_digest_guards_creation_too(devstore: LiveDevStore) -> None:
    item = metafield("segment", "loyal", "single_line_text_field")
    # Given no metafield yet: a digest of some value is stale, a null digest ("none yet") passes
    stale = set_fields(devstore, [item | {"compareDigest": "0" * 64}])
    assert [e["code"] for e in stale["userErrors"]] == ["STALE_OBJECT"]
    assert devstore.state.customers[1].metafields in (None, {})
    created = set_fields(devstore, [item | {"compareDigest": None}])
    assert created["userErrors"] == []
    # Once it exists, a null digest is stale and its own digest passes
    again = set_fields(devstore, [item | {"value": "lost", "compareDigest": None}])
    assert [e["code"] for e in again["userErrors"]] == ["STALE_OBJECT"]
    digest = created["metafields"][0]["compareDigest"]
    fresh = set_fields(devstore, [item | {"value": "lost", "compareDigest": digest}])
    assert fresh["userErrors"] == []
    assert fresh["metafields"][0]["value"] == "lost"


def test_metafields_set_over_a_value_moves_updated_at_only(devstore: LiveDevStore) -> None:
    item = metafield("segment", "loyal", "single_line_text_field")
    devstore.state.now = lambda: datetime(2026, 3, 1, 9, tzinfo=UTC)
    set_fields(devstore, [item])
    devstore.state.now = lambda: datetime(2026, 3, 2, 9, tzinfo=UTC)
    set_fields(devstore, [item | {"value": "lost"}])
    body = devstore.gql(
        '{ customer(id: "gid://shopify/Customer/1") { metafield(namespace: "clv", '
        'key: "segment") { value createdAt updatedAt } } }'
    )
    assert body["data"]["customer"]["metafield"] == {
        "value": "lost",
        "createdAt": "2026-03-01T09:00:00Z",
        "updatedAt": "2026-03-02T09:00:00Z",
    }


def test_metafields_delete_leaves_no_node_behind(devstore: LiveDevStore) -> None:
    created = set_fields(devstore, [metafield("segment", "loyal", "single_line_text_field")])
    gid = created["metafields"][0]["id"]
    lookup = "query($id: ID!) { node(id: $id) { id } }"
    assert devstore.gql(lookup, {"id": gid})["data"]["node"] == {"id": gid}
    identifier = {"ownerId": "gid://shopify/Customer/1", "namespace": "clv", "key": "segment"}
    devstore.gql(
        "mutation($m: [MetafieldIdentifierInput!]!) { metafieldsDelete(metafields: $m) "
        "{ deletedMetafields { key } } }",
        {"m": [identifier]},
    )
    assert devstore.gql(lookup, {"id": gid})["data"]["node"] is None


@pytest.mark.parametrize(
    ("key", "created"), [("s", False), ("se", True), ("s" * 64, True), ("s" * 65, False)]
)
def test_metafield_definition_key_is_2_to_64_characters(
    devstore: LiveDevStore, key: str, created: bool
) -> None:
    definition = {"name": "Segment", "namespace": "clv", "key": key}
    definition |= {"type": "single_line_text_field", "ownerType": "CUSTOMER"}
    payload = devstore.gql(DEFINE, {"definition": definition})["data"]["metafieldDefinitionCreate"]
    assert (payload["createdDefinition"] is not None) is created
    assert [e["field"] for e in payload["userErrors"]] == (
        [] if created else [["definition", "key"]]
    )
