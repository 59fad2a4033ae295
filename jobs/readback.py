"""Reading the store's state back for the reconcile: every customer's tags and the app's
metafields, and every product's status and the app's metafields, by pages or with one bulk
query. Of the namespace's metafields only the app's keys are taken: what else a merchant keeps
there is not the app's, and taken as its state the plan would delete it."""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from plugin.domain.writeback import CUSTOMER_METAFIELD_KEYS, PRODUCT_METAFIELD_KEYS, apps_tag
from plugin.shopify.bulk import BulkRunner, jsonl_lines
from plugin.shopify.client import AdminClient
from plugin.shopify.gid import gid, gid_number

READ_PAGE = 50  # customers per page (cost about 2 + 50 x 7 points)
PAGINATION_LIMIT = 25_000  # Shopify's pagination stops at this many objects

Found = dict[int, tuple[list[str], dict[str, str]]]  # customer -> (all tags, app metafields)
Held = dict[int, tuple[frozenset[str], dict[str, str]]]  # customer -> (app's tags, metafields)


class ReadBackError(RuntimeError):
    """The store's state could not be read back."""


class PastPagination(ReadBackError):
    """The store holds more objects than pagination reaches: read them with a bulk query."""


async def read_pages(client: AdminClient, namespace: str) -> Found:
    """Every customer's tags and the app's metafields, by pages; PastPagination when there are
    more than pagination reaches (the app may know few of a shop's many customers: only those
    with orders)."""
    query = (
        f"query Read($after: String, $ns: String!) {{ customers(first: {READ_PAGE}, "
        "after: $after) { pageInfo { hasNextPage endCursor } "
        f"nodes {{ id tags {_by_key(_CUSTOMER_KEYS)} }} }} }}"
    )
    found: Found = {}
    after: str | None = None
    while True:
        data = await client.execute(query, {"after": after, "ns": namespace})
        page = data["customers"]
        for node in page["nodes"]:
            found[gid_number(node["id"])] = (node["tags"], _values(node, _CUSTOMER_KEYS))
        if not page["pageInfo"]["hasNextPage"]:
            return found
        if len(found) >= PAGINATION_LIMIT:
            raise PastPagination(f"more than {PAGINATION_LIMIT} customers")
        after = page["pageInfo"]["endCursor"]


async def read_customers(client: AdminClient, namespace: str, customer_ids: Sequence[int]) -> Found:
    """These customers' tags and the app's metafields (each of its keys asked for by name), by
    id; a customer the store does not hold (deleted there) is not found."""
    query = (
        "query ReadCustomers($ids: [ID!]!, $ns: String!) { nodes(ids: $ids) "
        f"{{ ... on Customer {{ id tags {_by_key(_CUSTOMER_KEYS)} }} }} }}"
    )
    found: Found = {}
    async for node in _nodes(client, query, "Customer", customer_ids, namespace):
        found[gid_number(node["id"])] = (node["tags"], _values(node, _CUSTOMER_KEYS))
    return found


async def _nodes(
    client: AdminClient, query: str, kind: str, ids: Sequence[int], namespace: str
) -> AsyncIterator[dict[str, Any]]:
    """The nodes `query` (`nodes(ids: $ids)`, namespace `$ns`) reads of these objects of
    `kind`, READ_PAGE ids a call; an object the store does not hold gives none."""
    for start in range(0, len(ids), READ_PAGE):
        chunk = [gid(kind, object_id) for object_id in ids[start : start + READ_PAGE]]
        data = await client.execute(query, {"ids": chunk, "ns": namespace})
        for node in data.get("nodes") or []:
            if node and node.get("id"):
                yield node


_CUSTOMER_KEYS = sorted(CUSTOMER_METAFIELD_KEYS)
_PRODUCT_KEYS = sorted(PRODUCT_METAFIELD_KEYS)


def _by_key(keys: Sequence[str]) -> str:
    """A selection of the app's metafields in the namespace `$ns`, each key asked for by name
    (aliases k0, k1, ...): a page of `metafields(first: N)` could be filled by a merchant's own
    keys in the namespace and leave the app's out."""
    return " ".join(
        f"k{n}: metafield(namespace: $ns, key: {json.dumps(key)}) {{ value }}"
        for n, key in enumerate(keys)
    )


def _values(node: Mapping[str, Any], keys: Sequence[str]) -> dict[str, str]:
    """The values `_by_key` read, by key (a key the owner does not hold left out)."""
    return {key: node[f"k{n}"]["value"] for n, key in enumerate(keys) if node.get(f"k{n}")}


async def read_in_bulk(bulk: BulkRunner, namespace: str) -> Found:
    with tempfile.TemporaryDirectory(prefix="clvsync-readback-") as scratch:
        export = Path(scratch) / "customers.jsonl"
        outcome = await bulk.query(
            "{ customers { edges { node { id tags "
            f"metafields(namespace: {json.dumps(namespace)}) "
            "{ edges { node { key value } } } } } } }",
            into=export,
        )
        if outcome.status != "COMPLETED":
            raise ReadBackError(f"the read-back bulk query ended {outcome.status}")
        # read in a worker thread: a large shop's export would hold up the event loop
        return await anyio.to_thread.run_sync(_found_in, export)


def _found_in(export: Path) -> Found:
    """Each customer's tags and metafields. The export is not grouped (API 2026-01 on): a
    metafield may come before its customer or anywhere after it."""
    found: Found = {}
    for line in jsonl_lines(export):
        if "__parentId" in line:  # a metafield
            owner = found.setdefault(gid_number(line["__parentId"]), ([], {}))
            if line["key"] in CUSTOMER_METAFIELD_KEYS:
                owner[1][line["key"]] = line["value"]
        else:
            found.setdefault(gid_number(line["id"]), ([], {}))[0].extend(line["tags"])
    return found


def owned_state(found: Found, prefix: str, pushed: Mapping[int, Iterable[str]]) -> Held:
    """The app's part of what was read: its tags under the prefix (`apps_tag`: the prefix and
    one of its tag names, so a merchant's own tag that begins with the prefix is not taken), or
    tags it pushed before (under an older prefix), and its metafields.

    Whether Shopify tells tags apart by case is not documented. Where it does not, a tag the
    app adds beside one differing only in case is kept in the store's spelling, so the app would
    find its tag missing and add it again at every reconcile. A tag is therefore also the app's
    when it differs only in case from one the app pushed that the store does not hold as
    pushed: the plan then removes it and adds the app's spelling. Where Shopify does tell them
    apart, the app's tag is there as pushed, and a merchant's variant of it is left alone."""
    held: Held = {}
    for customer_id, (tags, values) in found.items():
        before = set(pushed.get(customer_id, ()))
        respelled = {tag.lower() for tag in before.difference(tags)}
        held[customer_id] = (
            frozenset(
                t for t in tags if apps_tag(prefix, t) or t in before or t.lower() in respelled
            ),
            values,
        )
    return held


ProductFound = dict[int, dict[str, str]]  # product -> "namespace.key" -> value
AVAILABLE = "ACTIVE"  # the one ProductStatus whose products customers can find and buy


@dataclass
class ProductRead:
    """What a read of the store's products found: each product's values (products with none
    left out), every product it read (the whole catalogue), and those available to customers
    (`seen`: ACTIVE).

    A product the merchant set to DRAFT, ARCHIVED or UNLISTED is still in the catalogue but not
    available (UNLISTED: Shopify leaves it out of search and of its own recommendations), so it
    is not `seen`: recorded gone, it is named in no list the app pushes until a read sees it
    ACTIVE again. Its own values are read all the same: they are what the store holds, and
    taken as none they would be sent again, or the complementary products the app wrote there
    taken for the merchant's."""

    values: ProductFound = field(default_factory=dict)
    seen: set[int] = field(default_factory=set)
    found: set[int] = field(default_factory=set)

    def add(self, product_id: int, status: str, values: Mapping[str, str]) -> None:
        """A product read, with its status and values."""
        self.found.add(product_id)
        if status == AVAILABLE:
            self.seen.add(product_id)
        self.add_values(product_id, values)

    def add_values(self, product_id: int, values: Mapping[str, str]) -> None:
        if values:
            self.values.setdefault(product_id, {}).update(values)


def _extra_field(extra: tuple[str, str] | None) -> str:
    """The one field read besides the app's namespace (e.g. Shopify's complementary products).
    No alias: whether bulk queries take aliases is not documented."""
    if extra is None:
        return ""
    return f"metafield(namespace: {json.dumps(extra[0])}, key: {json.dumps(extra[1])}) {{ value }}"


def _extra_value(node: Mapping[str, Any], extra: tuple[str, str] | None) -> dict[str, str]:
    field = node.get("metafield")
    return {".".join(extra): field["value"]} if extra and field else {}


async def read_product_pages(
    client: AdminClient, namespace: str, extra: tuple[str, str] | None = None
) -> ProductRead:
    """Every product's status and metafields in the app's namespace (and the one `extra`
    field), by pages; PastPagination when the catalogue is larger than pagination reaches."""
    query = (
        f"query ReadProducts($after: String, $ns: String!) {{ products(first: {READ_PAGE}, "
        "after: $after) { pageInfo { hasNextPage endCursor } nodes { id status "
        f"{_by_key(_PRODUCT_KEYS)} {_extra_field(extra)} }} }} }}"
    )
    read = ProductRead()
    after: str | None = None
    while True:
        data = await client.execute(query, {"after": after, "ns": namespace})
        page = data["products"]
        for node in page["nodes"]:
            read.add(
                gid_number(node["id"]), node["status"], _product_values(node, namespace, extra)
            )
        if not page["pageInfo"]["hasNextPage"]:
            return read
        if len(read.found) >= PAGINATION_LIMIT:
            raise PastPagination(f"more than {PAGINATION_LIMIT} products")
        after = page["pageInfo"]["endCursor"]


async def read_products(
    client: AdminClient,
    namespace: str,
    product_ids: Sequence[int],
    extra: tuple[str, str] | None = None,
) -> ProductRead:
    """What `read_product_pages` reads, of these products alone, by id (each of the app's keys
    asked for by name); a product the store does not hold (deleted there) is not `found`."""
    query = (
        "query ReadProductsById($ids: [ID!]!, $ns: String!) { nodes(ids: $ids) "
        f"{{ ... on Product {{ id status {_by_key(_PRODUCT_KEYS)} {_extra_field(extra)} }} }} }}"
    )
    read = ProductRead()
    async for node in _nodes(client, query, "Product", product_ids, namespace):
        read.add(gid_number(node["id"]), node["status"], _product_values(node, namespace, extra))
    return read


def _product_values(
    node: Mapping[str, Any], namespace: str, extra: tuple[str, str] | None
) -> dict[str, str]:
    """A product node's values read by `_by_key` and `_extra_field`, by "namespace.key"."""
    values = {f"{namespace}.{key}": value for key, value in _values(node, _PRODUCT_KEYS).items()}
    return values | _extra_value(node, extra)


async def read_products_in_bulk(
    bulk: BulkRunner, namespace: str, extra: tuple[str, str] | None = None
) -> ProductRead:
    """What `read_product_pages` reads, with one bulk query: for a catalogue of any size."""
    with tempfile.TemporaryDirectory(prefix="clvsync-readback-") as scratch:
        export = Path(scratch) / "products.jsonl"
        outcome = await bulk.query(
            f"{{ products {{ edges {{ node {{ id status {_extra_field(extra)} "
            f"metafields(namespace: {json.dumps(namespace)}) "
            "{ edges { node { key value } } } } } } }",
            into=export,
        )
        if outcome.status != "COMPLETED":
            raise ReadBackError(f"the products' read-back bulk query ended {outcome.status}")
        return await anyio.to_thread.run_sync(_products_in, export, namespace, extra)


def _products_in(export: Path, namespace: str, extra: tuple[str, str] | None) -> ProductRead:
    """The products and their values; a metafield's line may come before its product's (the
    export is not grouped, see `_found_in`)."""
    read = ProductRead()
    parts: dict[int, dict[str, str]] = {}
    for line in jsonl_lines(export):
        if "__parentId" in line:  # a metafield
            owner = parts.setdefault(gid_number(line["__parentId"]), {})
            if line["key"] in PRODUCT_METAFIELD_KEYS:
                owner[f"{namespace}.{line['key']}"] = line["value"]
        else:
            read.add(gid_number(line["id"]), line["status"], _extra_value(line, extra))
    for product_id, values in parts.items():
        if product_id in read.found:
            read.add_values(product_id, values)
    return read
