"""The rules a bulk query or bulk mutation is checked against, and what a finished one reports."""

from __future__ import annotations

import json
from typing import Any

import pytest

from plugin.devstore.config import DevStoreConfig
from tests.devstore.conftest import DevStoreFactory, LiveDevStore, make_state
from tests.devstore.test_bulk import (
    RUN_MUTATION,
    TAGS_ADD,
    download_jsonl,
    poll_until_done,
    stage_and_upload,
    start_query,
)

DONE = """
query Done($id: ID!) {
  node(id: $id) {
    ... on BulkOperation {
      status errorCode createdAt completedAt objectCount rootObjectCount url fileSize
    }
  }
}
"""
NO_PARENT_ID = "The parent 'node' field for a nested connection must select the 'id' field."


def finished(store: LiveDevStore, gid: str) -> dict[str, Any]:
    poll_until_done(store, gid)
    node: dict[str, Any] = store.gql(DONE, {"id": gid})["data"]["node"]
    return node


def run_mutation(store: LiveDevStore, mutation: str, path: str) -> dict[str, Any]:
    payload: dict[str, Any] = store.gql(RUN_MUTATION, {"mutation": mutation, "path": path})["data"][
        "bulkOperationRunMutation"
    ]
    return payload


@pytest.mark.parametrize(
    "query",
    [
        # `nodes` rather than `edges { node }`
        "{ orders { nodes { name lineItems { nodes { quantity } } } } }",
        # the nested connection inside a fragment spread, or an inline fragment
        "query { orders { edges { node { ...O } } } } "
        "fragment O on Order { name lineItems { edges { node { quantity } } } }",
        "{ orders { edges { node { ... on Order { name lineItems { edges { node { quantity } } } }"
        " } } } }",
        # an id under an alias writes no `id` for the children's `__parentId`
        "{ orders { edges { node { orderId: id lineItems { edges { node { quantity } } } } } } }",
        # two levels down: the customer has its id, the order has none
        "{ customers { edges { node { id orders { edges { node { name "
        "lineItems { edges { node { quantity } } } } } } } } } }",
    ],
    ids=["nodes", "fragment-spread", "inline-fragment", "aliased-id", "second-level"],
)
def test_bulk_query_finds_a_parent_without_its_id_wherever_it_is_written(
    devstore: LiveDevStore, query: str
) -> None:
    payload = start_query(devstore, query)
    assert payload["bulkOperation"] is None
    assert payload["userErrors"] == [
        {"field": ["query"], "message": NO_PARENT_ID, "code": "INVALID"}
    ]
    # And the same query with the parent's id runs
    fixed = query.replace("name lineItems", "id lineItems").replace("orderId: id", "id")
    assert start_query(devstore, fixed)["userErrors"] == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            'mutation { tagsAdd(id: "gid://shopify/Customer/1", tags: ["x"]) { node { id } } }',
            "Bulk queries must be queries.",
        ),
        (
            "{ customers { edges { node { id } } } products { edges { node { id } } } }",
            "Bulk queries must contain at least one connection.",
        ),
    ],
    ids=["a-mutation", "two-roots"],
)
def test_bulk_query_must_be_one_query_of_one_connection(
    devstore: LiveDevStore, query: str, message: str
) -> None:
    payload = start_query(devstore, query)
    assert payload["bulkOperation"] is None
    assert payload["userErrors"] == [{"field": ["query"], "message": message, "code": "INVALID"}]
    assert devstore.state.customers[1].tags == []


@pytest.mark.parametrize(
    "mutation",
    [
        # two mutation fields
        "mutation call($id: ID!, $tags: [String!]!) { a: tagsAdd(id: $id, tags: $tags) "
        "{ userErrors { message } } "
        "b: tagsRemove(id: $id, tags: $tags) { userErrors { message } } }",
        # a bulk operation cannot start another
        'mutation { bulkOperationRunQuery(query: "{ customers { edges { node '
        '{ id } } } }") { userErrors { message } } }',
    ],
    ids=["two-fields", "nested-bulk"],
)
def test_bulk_mutation_must_be_one_supported_mutation_field(
    devstore: LiveDevStore, mutation: str
) -> None:
    path = stage_and_upload(devstore, [{"id": "gid://shopify/Customer/1", "tags": ["x"]}])
    payload = run_mutation(devstore, mutation, path)
    assert payload["bulkOperation"] is None
    assert [error["code"] for error in payload["userErrors"]] == ["INVALID_MUTATION"]


def test_bulk_limit_of_five_starts_with_2026_01(devstore_factory: DevStoreFactory) -> None:
    store = devstore_factory(config=DevStoreConfig(bulk_start_delay_seconds=5))
    store.version = "2026-01"
    query = "{ customers { edges { node { id } } } }"
    started = [start_query(store, query) for _ in range(6)]
    assert [bool(payload["bulkOperation"]) for payload in started] == [True] * 5 + [False]


def test_bulk_query_counts_root_objects_apart_from_all_objects(
    devstore_factory: DevStoreFactory,
) -> None:
    # Given three customers with two orders each, read two customers per step
    store = devstore_factory(
        make_state(customers=3, orders_per_customer=2), DevStoreConfig(bulk_rows_per_step=2)
    )
    query = "{ customers { edges { node { id orders { edges { node { id } } } } } } }"
    operation = finished(store, start_query(store, query)["bulkOperation"]["id"])
    # Then the customers are the root objects, customers and orders all the objects
    assert (operation["rootObjectCount"], operation["objectCount"]) == ("3", "9")


def test_bulk_operation_reports_when_it_completed(devstore: LiveDevStore) -> None:
    started = start_query(devstore, "{ customers { edges { node { id } } } }")
    gid = started["bulkOperation"]["id"]
    operation = finished(devstore, gid)
    assert operation["status"] == "COMPLETED"
    assert operation["completedAt"] is not None
    assert operation["completedAt"] >= operation["createdAt"]
    assert operation["errorCode"] is None


def test_bulk_query_without_results_completes_without_a_file(
    devstore_factory: DevStoreFactory,
) -> None:
    # Given a search that matches no customer (Shopify: no objects, so no url)
    store = devstore_factory(make_state(customers=3, orders_per_customer=0))
    query = '{ customers(query: "updated_at:>=2099-01-01") { edges { node { id } } } }'
    operation = finished(store, start_query(store, query)["bulkOperation"]["id"])
    assert operation["status"] == "COMPLETED"
    assert (operation["url"], operation["fileSize"], operation["objectCount"]) == (None, None, "0")


def test_bulk_query_that_breaks_while_running_fails_with_an_error_code(
    devstore_factory: DevStoreFactory,
) -> None:
    # Given a customer whose record breaks a non-null field (as a fault inside Shopify would)
    state = make_state(customers=2, orders_per_customer=0)
    state.customers[2].created_at = None  # type: ignore[assignment]
    store = devstore_factory(state)
    query = "{ customers { edges { node { id createdAt } } } }"
    operation = finished(store, start_query(store, query)["bulkOperation"]["id"])
    # Then the operation fails with Shopify's code for it, without a file or a completion time
    assert (operation["status"], operation["errorCode"]) == ("FAILED", "INTERNAL_SERVER_ERROR")
    assert (operation["url"], operation["completedAt"]) == (None, None)


def test_bulk_mutation_numbers_lines_across_steps_and_counts_them(
    devstore_factory: DevStoreFactory,
) -> None:
    # Given five lines run two at a time, the fourth of them not JSON
    store = devstore_factory(config=DevStoreConfig(bulk_rows_per_step=2))
    tags = [{"id": f"gid://shopify/Customer/{n}", "tags": ["x"]} for n in (1, 2, 3, 4)]
    lines = [*map(json.dumps, tags[:3]), "{not json", json.dumps(tags[3])]
    content = "".join(line + "\n" for line in lines)
    path = stage_and_upload(store, [])
    store.state.staged_uploads[path] = content.encode()
    operation = finished(store, run_mutation(store, TAGS_ADD, path)["bulkOperation"]["id"])
    results = download_jsonl(store, operation["url"])
    # Then each result carries the number of its line, the bad one an error of its own
    assert [result["__lineNumber"] for result in results] == [0, 1, 2, 3, 4]
    assert results[3] == {"errors": [{"message": "Invalid JSON on this line."}], "__lineNumber": 3}
    assert store.state.customers[4].tags == ["x"]
    assert (operation["rootObjectCount"], operation["objectCount"]) == ("5", "5")
