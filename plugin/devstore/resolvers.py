"""Resolvers for the query side: root fields, connections and computed object fields."""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError

from plugin.devstore.access import app_installation, order_visible
from plugin.devstore.context import BulkWindow, ResolveContext
from plugin.devstore.gid import InvalidGidError, format_gid, parse_gid
from plugin.devstore.models import (
    GID_TYPES,
    BulkOperation,
    Customer,
    LineItem,
    Metafield,
    Money,
    Order,
    Product,
    Refund,
    Variant,
)
from plugin.devstore.pagination import PageArgs, connection
from plugin.devstore.search_query import compile_query
from plugin.devstore.state import DevStoreState, SortedIds

if TYPE_CHECKING:
    from plugin.devstore.context import Info

Resolver = Callable[..., Any]
Visible = Callable[[Any], bool]

# Sort keys the store honours (others fall back to ID order); cursors stay record ids.
SORT_ATTRIBUTES: dict[str, str | None] = {
    "ID": None,
    "CREATED_AT": "created_at",
    "UPDATED_AT": "updated_at",
    "PROCESSED_AT": "processed_at",
    "TITLE": "title",
    "PRODUCT_TYPE": "product_type",
    "VENDOR": "vendor",
}


def ctx(info: Info) -> ResolveContext:
    context = info.context
    assert isinstance(context, ResolveContext)
    return context


@lru_cache(maxsize=512)
def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


MAX_INPUT_ARRAY = 250


def ensure_input_size(name: str, items: list[Any]) -> None:
    """Every array argument of Shopify's API is capped at 250 items, before anything runs."""
    if len(items) > MAX_INPUT_ARRAY:
        raise GraphQLError(
            f"The input array size of {len(items)} is greater than the maximum allowed of "
            f"{MAX_INPUT_ARRAY}.",
            extensions={"code": "MAX_INPUT_SIZE_EXCEEDED", "argumentName": name},
        )


def default_field_resolver(source: Any, info: Info, **_: Any) -> Any:
    """Dicts by key; records by snake_case attribute; `id` as a GID; `legacyResourceId` the int."""
    name = info.field_name
    if isinstance(source, Mapping):
        return source.get(name)
    if name == "id" and type(source) in GID_TYPES:
        return format_gid(GID_TYPES[type(source)], source.id)
    if name == "legacyResourceId":
        return source.id
    return getattr(source, snake_case(name), None)


def resolve_node_type(value: Any, *_: Any) -> str | None:
    if isinstance(value, Mapping):
        return str(value.get("__typename"))
    return GID_TYPES.get(type(value))


def parse_id_argument(value: str) -> tuple[str, int]:
    """Shopify answers a malformed GID with a top-level coercion error, not a null."""
    try:
        return parse_gid(value)
    except InvalidGidError as error:
        raise GraphQLError(
            f"Invalid global id '{value}'",
            extensions={"code": "argumentLiteralsIncompatible", "typeName": "CoercionError"},
        ) from error


def find_node(context: ResolveContext, gid: str) -> object | None:
    type_name, legacy_id = parse_id_argument(gid)
    if type_name == "Shop":
        return shop_value(context.state) if legacy_id == 1 else None
    return _readable(context, context.state.find(type_name, legacy_id))


def _readable(context: ResolveContext, found: object | None) -> object | None:
    """`found`, unless it is an order older than the token may read (Shopify: not found)."""
    if isinstance(found, Order) and not order_visible(found, context.orders_from):
        return None
    return found


def shop_value(state: DevStoreState) -> dict[str, Any]:
    return {
        "__typename": "Shop",
        "id": format_gid("Shop", 1),
        "name": state.name,
        "myshopifyDomain": state.domain,
        "currencyCode": state.currency_code,
        "ianaTimezone": state.time_zone,
    }


def _typed_lookup(type_name: str) -> Resolver:
    def resolve(_: Any, info: Info, id: str) -> object | None:
        found_type, legacy_id = parse_id_argument(id)
        if found_type != type_name:
            return None
        return _readable(ctx(info), ctx(info).state.find(type_name, legacy_id))

    return resolve


def resolve_node(_: Any, info: Info, id: str) -> object | None:
    return find_node(ctx(info), id)


def resolve_nodes(_: Any, info: Info, ids: list[str]) -> list[object | None]:
    ensure_input_size("ids", ids)
    return [find_node(ctx(info), gid) for gid in ids]


def resolve_shop(_: Any, info: Info) -> dict[str, Any]:
    return shop_value(ctx(info).state)


def resolve_current_app_installation(_: Any, info: Info) -> dict[str, Any]:
    context = ctx(info)
    return app_installation(context.app_id, context.access_scopes)


def _root_connection(
    ids: SortedIds,
    table: Mapping[int, Any],
    info: Info,
    kwargs: dict[str, Any],
    visible: Visible | None = None,
) -> dict[str, Any]:
    """A root connection: filtered by `query` (and to the records the token may read,
    `visible`), and read window by window inside bulk queries."""
    context = ctx(info)
    window = context.bulk_window
    if window is not None:
        return _bulk_step(ids, table, window, kwargs.get("query"), visible)
    keys = _filtered(ids.ordered(), table, kwargs.get("query"), visible)
    args = PageArgs.from_kwargs(kwargs)
    sort_attribute = SORT_ATTRIBUTES.get(kwargs.get("sortKey") or "ID")
    if sort_attribute is None:
        return connection(keys, table.__getitem__, args, unlimited=context.in_bulk)
    ordered = sorted(keys, key=lambda key: (getattr(table[key], sort_attribute), key))
    return connection(ordered, table.__getitem__, args, is_sorted=False, unlimited=context.in_bulk)


def _filtered(
    keys: Sequence[int], table: Mapping[int, Any], query: str | None, visible: Visible | None = None
) -> Sequence[int]:
    predicates = [p for p in (visible, compile_query(query)) if p is not None]
    if not predicates:
        return keys
    return [key for key in keys if all(p(table[key]) for p in predicates)]


def _bulk_step(
    ids: SortedIds,
    table: Mapping[int, Any],
    window: BulkWindow,
    query: str | None,
    visible: Visible | None,
) -> dict[str, Any]:
    """The next `window.size` root objects of a bulk query, from keys filtered once per run."""
    if window.keys is None:
        window.keys = list(_filtered(ids.ordered(), table, query, visible))
    start = _index_after(window.keys, window.after_id)
    window.served_ids = window.keys[start : start + window.size]
    return connection(window.served_ids, table.__getitem__, PageArgs(), unlimited=True)


def _index_after(keys: Sequence[int], after_id: int) -> int:
    return bisect.bisect_right(keys, after_id)


def resolve_customers(_: Any, info: Info, **kwargs: Any) -> dict[str, Any]:
    state = ctx(info).state
    return _root_connection(state.customer_ids, state.customers, info, kwargs)


def resolve_products(_: Any, info: Info, **kwargs: Any) -> dict[str, Any]:
    state = ctx(info).state
    return _root_connection(state.product_ids, state.products, info, kwargs)


def _orders_visible(context: ResolveContext) -> Visible | None:
    """The orders the token may read (None: all of them): Shopify serves a token without
    read_all_orders only the last 60 days' (plugin.devstore.access)."""
    start = context.orders_from
    return None if start is None else lambda order: order_visible(order, start)


def resolve_orders(_: Any, info: Info, **kwargs: Any) -> dict[str, Any]:
    context = ctx(info)
    state = context.state
    visible = _orders_visible(context)
    return _root_connection(state.order_ids, state.orders, info, kwargs, visible)


def resolve_metafield_definitions(
    _: Any, info: Info, ownerType: str, **kwargs: Any
) -> dict[str, Any]:
    state = ctx(info).state
    wanted = [
        definition
        for definition in state.metafield_definitions.values()
        if definition.owner_type == ownerType
        and kwargs.get("namespace") in (None, definition.namespace)
        and kwargs.get("key") in (None, definition.key)
    ]
    table = {definition.id: definition for definition in wanted}
    return connection(sorted(table), table.__getitem__, PageArgs.from_kwargs(kwargs))


resolve_bulk_operation = _typed_lookup("BulkOperation")


def resolve_current_bulk_operation(
    _: Any,
    info: Info,
    type: str = "QUERY",
) -> BulkOperation | None:
    operations = [op for op in ctx(info).state.bulk_operations.values() if op.type == type]
    return max(operations, key=lambda op: op.id, default=None)


# --- object fields -------------------------------------------------------------------------


def _metafields_of(owner: Any) -> dict[tuple[str, str], Metafield]:
    # Variants carry no metafields in this store; they answer with an empty connection.
    found: dict[tuple[str, str], Metafield] | None = getattr(owner, "metafields", None)
    return found or {}


def resolve_metafield(
    owner: Any, info: Info, key: str, namespace: str | None = None
) -> Metafield | None:
    return _metafields_of(owner).get((namespace or ctx(info).app_namespace, key))


def resolve_metafields(owner: Any, info: Info, **kwargs: Any) -> dict[str, Any]:
    namespace, keys = kwargs.get("namespace"), kwargs.get("keys")
    wanted = {
        field.id: field
        for (field_namespace, field_key), field in _metafields_of(owner).items()
        if namespace in (None, field_namespace)
        and (keys is None or f"{field_namespace}.{field_key}" in keys)
    }
    args = PageArgs.from_kwargs(kwargs)
    return connection(sorted(wanted), wanted.__getitem__, args, unlimited=ctx(info).in_bulk)


def resolve_customer_orders(customer: Customer, info: Info, **kwargs: Any) -> dict[str, Any]:
    state = ctx(info).state
    keys = sorted(state.orders_by_customer.get(customer.id, ()))
    keys = list(_filtered(keys, state.orders, kwargs.get("query"), _orders_visible(ctx(info))))
    args = PageArgs.from_kwargs(kwargs)
    return connection(keys, state.orders.__getitem__, args, unlimited=ctx(info).in_bulk)


def resolve_number_of_orders(customer: Customer, info: Info) -> int:
    return len(ctx(info).state.orders_by_customer.get(customer.id, ()))


def money(amount: Decimal, currency_code: str) -> dict[str, Any]:
    return {"amount": amount, "currencyCode": currency_code}


def resolve_amount_spent(customer: Customer, info: Info) -> dict[str, Any]:
    """What Shopify shows as amount spent: current totals of the customer's non-test orders."""
    state = ctx(info).state
    orders = (state.orders[key] for key in state.orders_by_customer.get(customer.id, ()))
    total = sum((order.current_total_shop for order in orders if not order.test), Decimal(0))
    return money(total, state.currency_code)


def resolve_price_range(product: Product, info: Info) -> dict[str, Any]:
    currency = ctx(info).state.currency_code
    prices = [variant.price for variant in product.variants] or [Decimal("0")]
    return {
        "minVariantPrice": money(min(prices), currency),
        "maxVariantPrice": money(max(prices), currency),
    }


def resolve_inventory_item(variant: Variant, info: Info) -> dict[str, Any]:
    """The variant's inventory item (one per variant; its id here is the variant's number) and
    its cost per item, null when the merchant has not set one."""
    cost = variant.cost
    currency = ctx(info).state.currency_code
    return {
        "id": format_gid("InventoryItem", variant.id),
        "unitCost": None if cost is None else money(cost, currency),
    }


def resolve_variants(product: Product, info: Info, **kwargs: Any) -> dict[str, Any]:
    table = {variant.id: variant for variant in product.variants}
    args = PageArgs.from_kwargs(kwargs)
    return connection(
        list(table), table.__getitem__, args, is_sorted=False, unlimited=ctx(info).in_bulk
    )


def resolve_variant_product(variant: Variant, info: Info) -> Product | None:
    return ctx(info).state.products.get(variant.product_id)


def resolve_line_items(order: Order, info: Info, **kwargs: Any) -> dict[str, Any]:
    table = {item.id: item for item in order.line_items}
    args = PageArgs.from_kwargs(kwargs)
    return connection(
        list(table), table.__getitem__, args, is_sorted=False, unlimited=ctx(info).in_bulk
    )


def resolve_line_item_product(item: LineItem, info: Info) -> Product | None:
    return None if item.product_id is None else ctx(info).state.products.get(item.product_id)


def resolve_line_item_variant(item: LineItem, info: Info) -> Variant | None:
    return None if item.variant_id is None else ctx(info).state.variants.get(item.variant_id)


def _money_bag(shop: Decimal, presentment: Money | None, info: Info) -> dict[str, Any]:
    """A MoneyBag: the shop amount, and the amount the buyer saw in the order's currency."""
    currency = ctx(info).state.currency_code
    seen = money(shop, currency)
    if presentment is not None:
        seen = money(presentment.amount, presentment.currency_code)
    return {"shopMoney": money(shop, currency), "presentmentMoney": seen}


def resolve_line_item_price(item: LineItem, info: Info) -> dict[str, Any]:
    return _money_bag(item.price, item.presentment, info)


def resolve_line_item_discount(item: LineItem, info: Info) -> dict[str, Any]:
    return _money_bag(item.total_discount, item.presentment_discount, info)


def resolve_order_refunds(order: Order, _: Info, first: int | None = None) -> list[Refund]:
    return order.refunds if first is None else order.refunds[: max(first, 0)]


def resolve_order_customer(order: Order, info: Info) -> Customer | None:
    return None if order.customer_id is None else ctx(info).state.customers.get(order.customer_id)


def resolve_order_total(order: Order, _: Info) -> dict[str, Any]:
    return {
        "shopMoney": money(order.current_total_shop, order.currency_code),
        "presentmentMoney": money(order.current_total_presentment, order.presentment_currency_code),
    }


def resolve_order_original_total(order: Order, _: Info) -> dict[str, Any]:
    shop = order.current_total_shop if order.total_shop is None else order.total_shop
    presentment = order.total_presentment
    return {
        "shopMoney": money(shop, order.currency_code),
        "presentmentMoney": money(
            shop if presentment is None else presentment, order.presentment_currency_code
        ),
    }


def compare_digest(field: Metafield) -> str:
    return hashlib.sha256(f"{field.type}\x00{field.value}".encode()).hexdigest()


def resolve_compare_digest(field: Metafield, _: Info) -> str:
    return compare_digest(field)


def resolve_json_value(field: Metafield, _: Info) -> Any:
    try:
        return json.loads(field.value)
    except ValueError:
        return field.value


def resolve_metafield_definition(field: Metafield, info: Info) -> object | None:
    key = (field.owner_type, field.namespace, field.key)
    return ctx(info).state.metafield_definitions.get(key)


def resolve_definition_type(definition: Any, _: Info) -> dict[str, str]:
    return {"name": definition.type}


QUERY_RESOLVERS: dict[str, dict[str, Resolver]] = {
    "QueryRoot": {
        "shop": resolve_shop,
        "currentAppInstallation": resolve_current_app_installation,
        "node": resolve_node,
        "nodes": resolve_nodes,
        "customer": _typed_lookup("Customer"),
        "customers": resolve_customers,
        "product": _typed_lookup("Product"),
        "products": resolve_products,
        "order": _typed_lookup("Order"),
        "orders": resolve_orders,
        "metafieldDefinitions": resolve_metafield_definitions,
        "bulkOperation": resolve_bulk_operation,
        "currentBulkOperation": resolve_current_bulk_operation,
    },
    "Customer": {
        "orders": resolve_customer_orders,
        "numberOfOrders": resolve_number_of_orders,
        "amountSpent": resolve_amount_spent,
        "metafield": resolve_metafield,
        "metafields": resolve_metafields,
    },
    "Product": {
        "priceRangeV2": resolve_price_range,
        "variants": resolve_variants,
        "metafield": resolve_metafield,
        "metafields": resolve_metafields,
    },
    "ProductVariant": {
        "product": resolve_variant_product,
        "inventoryItem": resolve_inventory_item,
        "metafield": resolve_metafield,
        "metafields": resolve_metafields,
    },
    "Order": {
        "customer": resolve_order_customer,
        "currentTotalPriceSet": resolve_order_total,
        "totalPriceSet": resolve_order_original_total,
        "displayFinancialStatus": lambda order, _: order.financial_status,
        "lineItems": resolve_line_items,
        "refunds": resolve_order_refunds,
        "metafield": resolve_metafield,
        "metafields": resolve_metafields,
    },
    "LineItem": {
        "product": resolve_line_item_product,
        "variant": resolve_line_item_variant,
        "originalUnitPriceSet": resolve_line_item_price,
        "totalDiscountSet": resolve_line_item_discount,
    },
    "Metafield": {
        "compareDigest": resolve_compare_digest,
        "jsonValue": resolve_json_value,
        "definition": resolve_metafield_definition,
    },
    "MetafieldDefinition": {"type": resolve_definition_type},
}
