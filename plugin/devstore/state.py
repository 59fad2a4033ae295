"""The dev store's in-memory state for one shop, loaded from Shopify REST/webhook-shaped dicts."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from plugin.devstore.gid import format_gid
from plugin.devstore.models import (
    DEFAULT_TIME_ZONE,
    BulkOperation,
    Customer,
    LineItem,
    Metafield,
    MetafieldDefinition,
    Money,
    Order,
    Product,
    Refund,
    Variant,
)

Payload = Mapping[str, Any]
# Shopify's ProductStatus (UNLISTED since 2025-10, the oldest version this store serves)
PRODUCT_STATUSES = ("ACTIVE", "ARCHIVED", "DRAFT", "UNLISTED")
ChangeListener = Callable[[str, dict[str, Any]], None]


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_datetime(moment: datetime) -> str:
    """Shopify's DateTime form: ISO 8601 in UTC with a trailing Z, whole seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalise_datetime(value: str | None) -> str | None:
    """Accept any ISO 8601 timestamp (webhooks carry offsets) and store Shopify's UTC form."""
    if value is None:
        return None
    return format_datetime(datetime.fromisoformat(value.replace("Z", "+00:00")))


def split_tag_string(tags: str | Iterable[str] | None) -> list[str]:
    """REST payloads carry tags as one comma-separated string; webhooks and tests may pass lists."""
    if tags is None:
        return []
    items = [tags] if isinstance(tags, str) else list(tags)
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


class SortedIds:
    """Ids in ascending order for cursor pagination; appends stay O(1) for increasing ids."""

    def __init__(self) -> None:
        self._ids: list[int] = []
        self._members: set[int] = set()
        self._dirty = False

    def add(self, item_id: int) -> None:
        if item_id in self._members:
            return
        self._members.add(item_id)
        if self._ids and item_id < self._ids[-1]:
            self._dirty = True
        self._ids.append(item_id)

    def remove(self, item_id: int) -> None:
        if item_id in self._members:
            self._members.discard(item_id)
            self._ids.remove(item_id)

    def ordered(self) -> list[int]:
        if self._dirty:
            self._ids.sort()
            self._dirty = False
        return self._ids

    def index_after(self, item_id: int) -> int:
        return bisect.bisect_right(self.ordered(), item_id)

    def __len__(self) -> int:
        return len(self._ids)


class DevStoreState:
    """One shop's customers, products, orders, tags, metafields, bulk operations and uploads."""

    def __init__(
        self,
        domain: str = "devstore.myshopify.com",
        name: str = "Dev Store",
        currency_code: str = "USD",
        now: Callable[[], datetime] = utc_now,
        time_zone: str = DEFAULT_TIME_ZONE,
    ) -> None:
        self.domain = domain
        self.name = name
        self.currency_code = currency_code
        self.time_zone = time_zone  # IANA, as the admin's general settings set it
        self.now = now
        self.customers: dict[int, Customer] = {}
        self.products: dict[int, Product] = {}
        self.variants: dict[int, Variant] = {}
        self.orders: dict[int, Order] = {}
        self.orders_by_customer: dict[int, list[int]] = {}
        self.customer_ids = SortedIds()
        self.product_ids = SortedIds()
        self.order_ids = SortedIds()
        self.metafields_by_id: dict[int, Metafield] = {}
        self.metafield_definitions: dict[tuple[str, str, str], MetafieldDefinition] = {}
        self.bulk_operations: dict[int, BulkOperation] = {}
        self.bulk_results: dict[str, bytes] = {}
        self.staged_uploads: dict[str, bytes | None] = {}
        self._sequence = itertools.count(1)
        self._listeners: list[ChangeListener] = []

    def subscribe(self, listener: ChangeListener) -> None:
        """Call `listener(topic, payload)` when the API changes a record, where Shopify would
        send a webhook (tagsAdd on a customer: customers/update). For the webhook sender."""
        self._listeners.append(listener)

    def notify(self, topic: str, payload: dict[str, Any]) -> None:
        for listener in self._listeners:
            listener(topic, payload)

    def record_changed(self, record: Customer | Product | Order) -> None:
        """Bump updated_at and announce the change with the record's webhook payload."""
        record.updated_at = self.now_iso()
        if self._listeners:
            topic, payload = _change_event(record)
            self.notify(topic, payload)

    def next_id(self) -> int:
        """Ids for records the store creates itself (metafields, definitions, bulk operations)."""
        return next(self._sequence)

    def now_iso(self) -> str:
        return format_datetime(self.now())

    def load(
        self,
        *,
        products: Iterable[Payload] = (),
        customers: Iterable[Payload] = (),
        orders: Iterable[Payload] = (),
    ) -> None:
        for product in products:
            self.add_product(product)
        for customer in customers:
            self.add_customer(customer)
        for order in orders:
            self.add_order(order)

    def add_customer(self, payload: Payload) -> Customer:
        """Insert or replace a customer; tags come from the payload only when it has them."""
        customer_id = int(payload["id"])
        existing = self.customers.get(customer_id)
        created = normalise_datetime(payload.get("created_at")) or self.now_iso()
        customer = Customer(
            id=customer_id,
            created_at=created,
            updated_at=normalise_datetime(payload.get("updated_at")) or created,
            state=str(payload.get("state") or "enabled").upper(),
            tags=split_tag_string(payload["tags"])
            if "tags" in payload
            else (existing.tags if existing else []),
            metafields=existing.metafields if existing else None,
        )
        self.customers[customer_id] = customer
        self.customer_ids.add(customer_id)
        return customer

    def add_product(self, payload: Payload) -> Product:
        """Insert or replace a product; its status (REST's lower case or GraphQL's) comes from
        the payload when it has one, else stays as stored (ACTIVE for a new product)."""
        product_id = int(payload["id"])
        created = normalise_datetime(payload.get("created_at")) or self.now_iso()
        existing = self.products.get(product_id)
        status = payload.get("status") or (existing.status if existing else "ACTIVE")
        product = Product(
            id=product_id,
            title=str(payload.get("title", "")),
            product_type=str(payload.get("product_type") or ""),
            handle=str(payload.get("handle") or f"product-{product_id}"),
            vendor=str(payload.get("vendor") or self.name),
            created_at=created,
            updated_at=normalise_datetime(payload.get("updated_at")) or created,
            tags=split_tag_string(payload.get("tags")),
            variants=[_variant(product_id, raw) for raw in payload.get("variants") or []],
            status=product_status(str(status)),
            metafields=existing.metafields if existing else None,
        )
        for variant in product.variants:
            self.variants[variant.id] = variant
        self.products[product_id] = product
        self.product_ids.add(product_id)
        return product

    def add_order(self, payload: Payload) -> Order:
        """Insert or replace an order from the webhook order payload of SHOPIFY.md."""
        order = _order(payload, self.currency_code, len(self.orders))
        previous = self.orders.get(order.id)
        if previous is not None and previous.customer_id is not None:
            self.orders_by_customer[previous.customer_id].remove(order.id)
        self.orders[order.id] = order
        self.order_ids.add(order.id)
        if order.customer_id is not None:
            self.orders_by_customer.setdefault(order.customer_id, []).append(order.id)
        return order

    def set_product_status(self, product_id: int, status: str) -> Product:
        """The merchant sets a product's status in the admin (say, to DRAFT: it stays in the
        catalogue, unavailable to customers): updated_at moves, products/update is sent."""
        product = self.products[product_id]
        product.status = product_status(status)
        self.record_changed(product)
        return product

    def delete_customer(self, customer_id: int) -> None:
        """customers/delete: the customer goes; their orders stay, as in Shopify."""
        if self.customers.pop(customer_id, None) is not None:
            self.customer_ids.remove(customer_id)

    def find(self, type_name: str, legacy_id: int) -> object | None:
        """The record a GID points at, or None."""
        tables: dict[str, Mapping[int, object]] = {
            "Customer": self.customers,
            "Product": self.products,
            "ProductVariant": self.variants,
            "Order": self.orders,
            "Metafield": self.metafields_by_id,
            "BulkOperation": self.bulk_operations,
        }
        table = tables.get(type_name)
        return None if table is None else table.get(legacy_id)


def product_status(value: str) -> str:
    """A ProductStatus value from GraphQL's form or REST's lower case; ValueError otherwise."""
    status = value.upper()
    if status not in PRODUCT_STATUSES:
        raise ValueError(f"not a product status: {value!r} (one of {', '.join(PRODUCT_STATUSES)})")
    return status


def _change_event(record: Customer | Product | Order) -> tuple[str, dict[str, Any]]:
    """The webhook topic and a minimal payload for a record the API changed (no contact data;
    customer payloads carry no tags since 2025-01)."""
    if isinstance(record, Customer):
        payload: dict[str, Any] = {
            "id": record.id,
            "admin_graphql_api_id": format_gid("Customer", record.id),
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "state": record.state.lower(),
        }
        return "customers/update", payload
    is_product = isinstance(record, Product)
    topic, type_name = ("products/update", "Product") if is_product else ("orders/updated", "Order")
    payload = {
        "id": record.id,
        "admin_graphql_api_id": format_gid(type_name, record.id),
        "updated_at": record.updated_at,
        "tags": ", ".join(record.tags),
    }
    if isinstance(record, Product):
        payload["status"] = record.status.lower()  # REST's form, as products/update carries it
    return topic, payload


def _variant(product_id: int, raw: Payload) -> Variant:
    return Variant(
        id=int(raw["id"]),
        product_id=product_id,
        price=Decimal(str(raw.get("price", "0"))),
        title=str(raw.get("title") or "Default Title"),
        sku=raw.get("sku"),
        cost=None if raw.get("cost") is None else Decimal(str(raw["cost"])),
    )


def _money(money_set: Payload | None, key: str, fallback_currency: str) -> tuple[Decimal, str]:
    money = (money_set or {}).get(key) or {}
    return Decimal(str(money.get("amount", "0"))), str(
        money.get("currency_code", fallback_currency)
    )


def _line_item(raw: Payload) -> LineItem:
    quantity = int(raw.get("quantity", 1))
    product_id = raw.get("product_id")
    variant_id = raw.get("variant_id")
    return LineItem(
        id=int(raw["id"]),
        product_id=None if product_id is None else int(product_id),
        variant_id=None if variant_id is None else int(variant_id),
        title=str(raw.get("title") or raw.get("name") or ""),
        quantity=quantity,
        current_quantity=int(raw.get("current_quantity", quantity)),
        price=Decimal(str(raw.get("price", "0"))),
        sku=raw.get("sku"),
        is_gift_card=bool(raw.get("gift_card", False)),
        total_discount=Decimal(str(raw.get("total_discount", "0"))),
        presentment=_presentment(raw.get("price_set")),
        presentment_discount=_presentment(raw.get("total_discount_set")),
    )


def _presentment(money_set: Payload | None) -> Money | None:
    money = (money_set or {}).get("presentment_money")
    if not money:
        return None
    return Money(Decimal(str(money["amount"])), str(money["currency_code"]))


def _order(payload: Payload, shop_currency: str, position: int) -> Order:
    order_id = int(payload["id"])
    customer = payload.get("customer")
    money_set = payload.get("current_total_price_set")
    shop_amount, shop_code = _money(money_set, "shop_money", shop_currency)
    presentment_amount, presentment_code = _money(money_set, "presentment_money", shop_code)
    if not (money_set or {}).get("presentment_money"):
        presentment_amount = shop_amount
    total_set = payload.get("total_price_set") or money_set
    total_shop, _ = _money(total_set, "shop_money", shop_code)
    total_presentment, _ = _money(total_set, "presentment_money", presentment_code)
    if not (total_set or {}).get("presentment_money"):
        total_presentment = total_shop
    status = payload.get("financial_status")
    created = normalise_datetime(payload.get("created_at")) or format_datetime(utc_now())
    return Order(
        id=order_id,
        name=str(payload.get("name") or f"#{1001 + position}"),
        customer_id=None if not customer else int(customer["id"]),
        created_at=created,
        processed_at=normalise_datetime(payload.get("processed_at")) or created,
        updated_at=normalise_datetime(payload.get("updated_at")) or created,
        cancelled_at=normalise_datetime(payload.get("cancelled_at")),
        test=bool(payload.get("test", False)),
        currency_code=shop_code,
        presentment_currency_code=presentment_code,
        current_total_shop=shop_amount,
        current_total_presentment=presentment_amount,
        line_items=[_line_item(raw) for raw in payload.get("line_items") or []],
        tags=split_tag_string(payload.get("tags")),
        refunds=[
            Refund(int(r["id"]), normalise_datetime(r.get("created_at")) or created)
            for r in payload.get("refunds") or []
        ],
        total_shop=total_shop,
        total_presentment=total_presentment,
        financial_status=None if status is None else str(status).upper(),
        source_name=payload.get("source_name"),
    )
