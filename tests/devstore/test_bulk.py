"""Bulk operations: query to JSONL, staged upload plus bulk mutation, polling, limits."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from plugin.devstore.config import DevStoreConfig
from tests.devstore.conftest import DevStoreFactory, LiveDevStore, make_state

RUN_QUERY = """
mutation Run($query: String!, $group: Boolean) {
  bulkOperationRunQuery(query: $query, groupObjects: $group) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}
"""
POLL = """
query Poll($id: ID!) {
  node(id: $id) { ... on BulkOperation { id status objectCount rootObjectCount url fileSize } }
}
"""
STAGE = """
mutation Stage($input: [StagedUploadInput!]!) {
  stagedUploadsCreate(input: $input) {
    stagedTargets { url resourceUrl parameters { name value } }
    userErrors { field message }
  }
}
"""
RUN_MUTATION = """
mutation RunMutation($mutation: String!, $path: String!) {
  bulkOperationRunMutation(mutation: $mutation, stagedUploadPath: $path) {
    bulkOperation { id status type }
    userErrors { field message code }
  }
}
"""
TAGS_ADD = (
    "mutation call($id: ID!, $tags: [String!]!) { tagsAdd(id: $id, tags: $tags) "
    "{ node { id } userErrors { message } } }"
)
BACKFILL = """
{ customers { edges { node { id orders { edges { node { id
  lineItems { edges { node { quantity product { id } } } } } } } } } } }
"""


def start_query(
    store: LiveDevStore, query: str, group_objects: bool | None = None
) -> dict[str, Any]:
    """Start a bulk query; `group_objects` None leaves the argument out (default false)."""
    variables: dict[str, Any] = {"query": query}
    if group_objects is not None:
        variables["group"] = group_objects
    payload: dict[str, Any] = store.gql(RUN_QUERY, variables)["data"]["bulkOperationRunQuery"]
    return payload


def poll_until_done(
    store: LiveDevStore, gid: str, timeout: float = 10.0
) -> tuple[dict[str, Any], list[str]]:
    """Poll node(id:) until the operation ends; return its last state and the statuses seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        operation: dict[str, Any] = store.gql(POLL, {"id": gid})["data"]["node"]
        if not seen or seen[-1] != operation["status"]:
            seen.append(operation["status"])
        if operation["status"] in ("COMPLETED", "FAILED", "CANCELED"):
            return operation, seen
        time.sleep(0.02)
    raise AssertionError(f"bulk operation {gid} did not finish: {seen}")


def download_jsonl(store: LiveDevStore, url: str) -> list[dict[str, Any]]:
    response = store.client.get(url)
    assert response.status_code == 200
    return [json.loads(line) for line in response.text.splitlines()]


def test_bulk_query_life_cycle_created_running_completed(devstore_factory: DevStoreFactory) -> None:
    # Given a bulk runner that waits before starting and between steps of two customers
    config = DevStoreConfig(
        bulk_start_delay_seconds=0.2, bulk_rows_per_step=2, bulk_step_delay_seconds=0.15
    )
    store = devstore_factory(make_state(customers=5), config)
    # When a bulk query starts and is polled
    started = start_query(store, "{ customers { edges { node { id } } } }")
    assert started["userErrors"] == []
    assert started["bulkOperation"]["status"] == "CREATED"
    operation, seen = poll_until_done(store, started["bulkOperation"]["id"])
    # Then it went CREATED -> RUNNING -> COMPLETED and counted five root objects
    assert seen == ["CREATED", "RUNNING", "COMPLETED"]
    assert operation["rootObjectCount"] == "5"
    assert operation["objectCount"] == "5"


def test_bulk_query_grouped_jsonl_has_child_lines_under_their_parent(
    devstore_factory: DevStoreFactory,
) -> None:
    # Given two customers with one order of one line each
    state = make_state(customers=2, products=2)
    store = devstore_factory(state)
    # When the backfill query runs in bulk with groupObjects: true
    started = start_query(store, BACKFILL, group_objects=True)
    operation, _ = poll_until_done(store, started["bulkOperation"]["id"])
    lines = download_jsonl(store, operation["url"])
    # Then each object is its own line, children pointing at their parent's id
    assert lines[:3] == [
        {"id": "gid://shopify/Customer/1"},
        {"id": "gid://shopify/Order/5010", "__parentId": "gid://shopify/Customer/1"},
        {
            "quantity": 2,
            "product": {"id": "gid://shopify/Product/1001"},
            "__parentId": "gid://shopify/Order/5010",
        },
    ]
    assert len(lines) == 6
    assert operation["objectCount"] == "6"
    assert int(operation["fileSize"]) == len(store.client.get(operation["url"]).content)


def test_bulk_query_ungrouped_by_default_scatters_children_deterministically(
    devstore_factory: DevStoreFactory,
) -> None:
    # Given 40 customers with three orders each, read 15 customers per step
    config = DevStoreConfig(bulk_rows_per_step=15)
    store = devstore_factory(make_state(customers=40, orders_per_customer=3), config)
    query = "{ customers { edges { node { id orders { edges { node { id } } } } } } }"
    grouped = download_jsonl(
        store,
        poll_until_done(store, start_query(store, query, True)["bulkOperation"]["id"])[0]["url"],
    )
    # When the same query runs without groupObjects (2026-01 on: false), then with false
    runs = []
    for group in (None, False):
        operation, _ = poll_until_done(
            store, start_query(store, query, group)["bulkOperation"]["id"]
        )
        runs.append(download_jsonl(store, operation["url"]))
    # Then each holds the same lines as the grouped file, in another order
    for lines in runs:
        assert sorted(map(json.dumps, lines)) == sorted(map(json.dumps, grouped))
        assert lines != grouped
    # And some children come before their parent, some after a later parent
    lines = runs[0]
    position = {line["id"]: n for n, line in enumerate(lines)}
    children = [
        (n, position[line["__parentId"]]) for n, line in enumerate(lines) if "__parentId" in line
    ]
    assert any(n < parent for n, parent in children)
    assert any(
        any("__parentId" not in other for other in lines[parent + 1 : n])
        for n, parent in children
        if n > parent
    )
    # And a second store with the same seed writes the first run's file again
    again = devstore_factory(make_state(customers=40, orders_per_customer=3), config)
    poll_until_done(again, start_query(again, query, True)["bulkOperation"]["id"])
    operation, _ = poll_until_done(again, start_query(again, query)["bulkOperation"]["id"])
    assert download_jsonl(again, operation["url"]) == lines


def test_bulk_query_nested_connection_without_parent_id_is_invalid(devstore: LiveDevStore) -> None:
    query = "{ orders { edges { node { name lineItems { edges { node { id quantity } } } } } } }"
    payload = start_query(devstore, query)
    assert payload["bulkOperation"] is None
    assert payload["userErrors"] == [
        {
            "field": ["query"],
            "message": "The parent 'node' field for a nested connection must select the 'id' "
            "field.",
            "code": "INVALID",
        }
    ]


def test_bulk_query_reads_past_the_250_page_limit(devstore_factory: DevStoreFactory) -> None:
    store = devstore_factory(make_state(customers=600, products=1, orders_per_customer=0))
    started = start_query(store, "{ customers { edges { node { id } } } }")
    operation, _ = poll_until_done(store, started["bulkOperation"]["id"])
    lines = download_jsonl(store, operation["url"])
    assert [line["id"] for line in lines] == [f"gid://shopify/Customer/{n}" for n in range(1, 601)]


def test_bulk_query_without_connection_is_invalid(devstore: LiveDevStore) -> None:
    payload = start_query(devstore, "{ shop { name } }")
    assert payload["bulkOperation"] is None
    assert payload["userErrors"][0]["code"] == "INVALID"


def test_bulk_query_beyond_concurrency_limit_is_in_progress(
    devstore_factory: DevStoreFactory,
) -> None:
    config = DevStoreConfig(max_concurrent_bulk_operations=1, bulk_start_delay_seconds=0.5)
    store = devstore_factory(config=config)
    first = start_query(store, "{ customers { edges { node { id } } } }")
    second = start_query(store, "{ products { edges { node { id } } } }")
    assert first["userErrors"] == []
    assert second["userErrors"][0]["code"] == "OPERATION_IN_PROGRESS"
    assert first["bulkOperation"]["id"] in second["userErrors"][0]["message"]


def stage_and_upload(store: LiveDevStore, lines: list[dict[str, Any]], method: str = "POST") -> str:
    """stagedUploadsCreate, then upload the JSONL to the target like Shopify's docs show."""
    body = store.gql(
        STAGE,
        {
            "input": [
                {
                    "resource": "BULK_MUTATION_VARIABLES",
                    "filename": "vars.jsonl",
                    "mimeType": "text/jsonl",
                    "httpMethod": method,
                }
            ]
        },
    )
    target = body["data"]["stagedUploadsCreate"]["stagedTargets"][0]
    params = {item["name"]: item["value"] for item in target["parameters"]}
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    if method == "POST":
        files = {"file": ("vars.jsonl", content, "text/jsonl")}
        response = httpx.post(target["url"], data=params, files=files)
        assert response.status_code == 201, response.text
    else:
        response = httpx.put(target["url"], content=content)
        assert response.status_code == 200, response.text
    return str(params["key"])


def test_bulk_mutation_from_staged_upload_applies_every_line(devstore: LiveDevStore) -> None:
    # Given a staged JSONL of three tagsAdd variable sets
    lines = [
        {"id": f"gid://shopify/Customer/{n}", "tags": ["clv:champions", f"clv:n{n}"]}
        for n in (1, 2, 3)
    ]
    path = stage_and_upload(devstore, lines)
    # When the bulk mutation runs to completion
    started = devstore.gql(RUN_MUTATION, {"mutation": TAGS_ADD, "path": path})
    payload = started["data"]["bulkOperationRunMutation"]
    assert payload["userErrors"] == []
    assert payload["bulkOperation"]["type"] == "MUTATION"
    operation, _ = poll_until_done(devstore, payload["bulkOperation"]["id"])
    # Then every customer got its tags and the result file has one line per input line
    assert devstore.state.customers[2].tags == ["clv:champions", "clv:n2"]
    results = download_jsonl(devstore, operation["url"])
    assert [line["__lineNumber"] for line in results] == [0, 1, 2]
    assert results[0]["data"]["tagsAdd"] == {
        "node": {"id": "gid://shopify/Customer/1"},
        "userErrors": [],
    }
    current = devstore.gql("{ currentBulkOperation(type: MUTATION) { id status } }")
    assert current["data"]["currentBulkOperation"]["id"] == payload["bulkOperation"]["id"]


def test_bulk_mutation_upload_by_put_also_works(devstore: LiveDevStore) -> None:
    path = stage_and_upload(devstore, [{"id": "gid://shopify/Customer/4", "tags": ["x"]}], "PUT")
    started = devstore.gql(RUN_MUTATION, {"mutation": TAGS_ADD, "path": path})
    poll_until_done(devstore, started["data"]["bulkOperationRunMutation"]["bulkOperation"]["id"])
    assert devstore.state.customers[4].tags == ["x"]


def test_bulk_mutation_line_errors_are_reported_per_line(devstore: LiveDevStore) -> None:
    path = stage_and_upload(
        devstore,
        [{"id": "gid://shopify/Customer/999", "tags": ["x"]}, {"id": "nope", "tags": ["x"]}],
    )
    started = devstore.gql(RUN_MUTATION, {"mutation": TAGS_ADD, "path": path})
    operation, _ = poll_until_done(
        devstore, started["data"]["bulkOperationRunMutation"]["bulkOperation"]["id"]
    )
    first, second = download_jsonl(devstore, operation["url"])
    assert first["data"]["tagsAdd"]["userErrors"] == [{"message": "Customer does not exist"}]
    assert second["errors"][0]["message"] == "Invalid global id 'nope'"


def test_bulk_mutation_with_unknown_upload_path_is_no_such_file(devstore: LiveDevStore) -> None:
    started = devstore.gql(RUN_MUTATION, {"mutation": TAGS_ADD, "path": "tmp/nope/vars.jsonl"})
    payload = started["data"]["bulkOperationRunMutation"]
    assert payload["bulkOperation"] is None
    assert payload["userErrors"][0]["code"] == "NO_SUCH_FILE"


def test_bulk_mutation_of_a_query_is_invalid_mutation(devstore: LiveDevStore) -> None:
    path = stage_and_upload(devstore, [{"id": "gid://shopify/Customer/1"}])
    started = devstore.gql(RUN_MUTATION, {"mutation": "{ shop { name } }", "path": path})
    payload = started["data"]["bulkOperationRunMutation"]
    assert payload["userErrors"][0]["code"] == "INVALID_MUTATION"


def test_staged_upload_to_a_key_never_issued_is_refused(devstore: LiveDevStore) -> None:
    response = httpx.post(
        f"{devstore.base_url}/staged-uploads",
        data={"key": "tmp/forged"},
        files={"file": ("vars.jsonl", b"{}\n", "text/jsonl")},
    )
    assert response.status_code == 400


def test_bulk_query_with_search_filter_spans_steps(devstore_factory: DevStoreFactory) -> None:
    # Given 9 customers of whom the even ones were updated recently, read 2 per step
    state = make_state(customers=9, orders_per_customer=0)
    for customer_id in range(2, 10, 2):
        state.customers[customer_id].updated_at = "2025-09-01T00:00:00Z"
    store = devstore_factory(state, DevStoreConfig(bulk_rows_per_step=2))
    # When a filtered bulk query runs
    started = start_query(
        store, '{ customers(query: "updated_at:>=2025-08-01") { edges { node { id } } } }'
    )
    operation, _ = poll_until_done(store, started["bulkOperation"]["id"])
    # Then exactly the matching customers come back, once each
    ids = [line["id"] for line in download_jsonl(store, operation["url"])]
    assert ids == [f"gid://shopify/Customer/{n}" for n in (2, 4, 6, 8)]


def test_staged_upload_with_a_key_that_is_not_utf8_is_refused(devstore: LiveDevStore) -> None:
    body = (
        b'--XX\r\nContent-Disposition: form-data; name="key"\r\n\r\n\xff\xfe\r\n'
        b'--XX\r\nContent-Disposition: form-data; name="file"; filename="v.jsonl"\r\n\r\n{}\r\n'
        b"--XX--\r\n"
    )
    response = httpx.post(
        f"{devstore.base_url}/staged-uploads",
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=XX"},
    )
    assert response.status_code == 400


def test_bulk_limits_are_five_queries_and_five_mutations_at_once(
    devstore_factory: DevStoreFactory,
) -> None:
    # Given operations that stay CREATED for a while
    store = devstore_factory(config=DevStoreConfig(bulk_start_delay_seconds=5))
    query = "{ customers { edges { node { id } } } }"
    # When six queries and six mutations start (API 2026-10)
    queries = [start_query(store, query) for _ in range(6)]
    mutations = []
    for _ in range(6):
        path = stage_and_upload(store, [{"id": "gid://shopify/Customer/1", "tags": ["x"]}])
        started = store.gql(RUN_MUTATION, {"mutation": TAGS_ADD, "path": path})
        mutations.append(started["data"]["bulkOperationRunMutation"])
    # Then five of each run side by side (Shopify's guides: five queries, five mutations)
    assert [bool(q["bulkOperation"]) for q in queries] == [True] * 5 + [False]
    assert [bool(m["bulkOperation"]) for m in mutations] == [True] * 5 + [False]
    assert queries[5]["userErrors"][0]["code"] == "OPERATION_IN_PROGRESS"
    assert mutations[5]["userErrors"][0]["code"] == "OPERATION_IN_PROGRESS"


def test_bulk_limit_before_2026_01_is_one_of_each_type(devstore_factory: DevStoreFactory) -> None:
    store = devstore_factory(config=DevStoreConfig(bulk_start_delay_seconds=5))
    store.version = "2025-10"
    query = "{ customers { edges { node { id } } } }"
    first, second = start_query(store, query), start_query(store, query)
    path = stage_and_upload(store, [{"id": "gid://shopify/Customer/1", "tags": ["x"]}])
    mutation = store.gql(RUN_MUTATION, {"mutation": TAGS_ADD, "path": path})
    assert first["bulkOperation"] is not None
    assert second["userErrors"][0]["code"] == "OPERATION_IN_PROGRESS"
    assert mutation["data"]["bulkOperationRunMutation"]["bulkOperation"] is not None


def test_bulk_query_exports_each_products_status_beside_its_metafields(
    devstore_factory: DevStoreFactory,
) -> None:
    # Given three products, one a draft holding a metafield, read one per step
    state = make_state(customers=1, products=3)
    state.set_product_status(1001, "DRAFT")
    store = devstore_factory(state, DevStoreConfig(bulk_rows_per_step=1))
    store.gql(
        "mutation($m: [MetafieldsSetInput!]!) { metafieldsSet(metafields: $m) "
        "{ userErrors { message } } }",
        {
            "m": [
                {
                    "ownerId": "gid://shopify/Product/1001",
                    "namespace": "clv",
                    "key": "upsell",
                    "type": "list.product_reference",
                    "value": '["gid://shopify/Product/1000"]',
                }
            ]
        },
    )
    # When the products and their metafields are exported in bulk
    started = start_query(
        store,
        '{ products { edges { node { id status metafields(namespace: "clv") '
        "{ edges { node { key value } } } } } } }",
    )
    operation, _ = poll_until_done(store, started["bulkOperation"]["id"])
    lines = download_jsonl(store, operation["url"])
    # Then each product's line carries its status, the draft's metafield its own line
    products = [line for line in lines if "__parentId" not in line]
    assert products == [
        {"id": "gid://shopify/Product/1000", "status": "ACTIVE"},
        {"id": "gid://shopify/Product/1001", "status": "DRAFT"},
        {"id": "gid://shopify/Product/1002", "status": "ACTIVE"},
    ]
    assert [line for line in lines if "__parentId" in line] == [
        {
            "key": "upsell",
            "value": '["gid://shopify/Product/1000"]',
            "__parentId": "gid://shopify/Product/1001",
        }
    ]
