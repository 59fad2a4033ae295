"""The dev store's records: slotted classes, so 100,000 customers stay light in memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import ClassVar

from plugin.devstore.gid import format_gid

# A shop's time zone unless told otherwise: not UTC, so that what depends on the shop's days is
# exercised (8 pm in New York is already the next day in UTC)
DEFAULT_TIME_ZONE = "America/New_York"


@dataclass(slots=True)
class Metafield:
    id: int
    owner_gid: str
    owner_type: str
    namespace: str
    key: str
    value: str
    type: str
    created_at: str
    updated_at: str
    graphql_type: ClassVar[str] = "Metafield"


@dataclass(slots=True)
class MetafieldDefinition:
    id: int
    name: str
    namespace: str
    key: str
    type: str
    owner_type: str
    description: str | None
    graphql_type: ClassVar[str] = "MetafieldDefinition"


@dataclass(slots=True)
class Customer:
    id: int
    created_at: str
    updated_at: str
    state: str
    tags: list[str]
    # Metafields are rare until the app pushes: None saves a dict per customer.
    metafields: dict[tuple[str, str], Metafield] | None = None
    graphql_type: ClassVar[str] = "Customer"


@dataclass(slots=True)
class Variant:
    id: int
    product_id: int
    price: Decimal
    title: str
    sku: str | None
    cost: Decimal | None = None  # its inventory item's unitCost ("Cost per item"), if set
    graphql_type: ClassVar[str] = "ProductVariant"


@dataclass(slots=True)
class Product:
    id: int
    title: str
    product_type: str
    handle: str
    vendor: str
    created_at: str
    updated_at: str
    tags: list[str]
    variants: list[Variant]
    status: str = "ACTIVE"  # ProductStatus: ACTIVE, ARCHIVED, DRAFT or UNLISTED
    metafields: dict[tuple[str, str], Metafield] | None = None
    graphql_type: ClassVar[str] = "Product"


@dataclass(slots=True)
class Money:
    amount: Decimal
    currency_code: str


@dataclass(slots=True)
class LineItem:
    id: int
    product_id: int | None
    variant_id: int | None
    title: str
    quantity: int
    current_quantity: int
    price: Decimal
    sku: str | None = None
    is_gift_card: bool = False
    total_discount: Decimal = Decimal(0)
    # In the order's presentment currency (price_set / total_discount_set presentment_money);
    # None when the payload gave none: the shop amounts stand in.
    presentment: Money | None = None
    presentment_discount: Money | None = None
    graphql_type: ClassVar[str] = "LineItem"


@dataclass(slots=True)
class Order:
    id: int
    name: str
    customer_id: int | None
    created_at: str
    processed_at: str
    updated_at: str
    cancelled_at: str | None
    test: bool
    currency_code: str
    presentment_currency_code: str
    current_total_shop: Decimal
    current_total_presentment: Decimal
    line_items: list[LineItem]
    total_shop: Decimal | None = None
    total_presentment: Decimal | None = None
    financial_status: str | None = None
    source_name: str | None = None
    tags: list[str] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)
    metafields: dict[tuple[str, str], Metafield] | None = None
    graphql_type: ClassVar[str] = "Order"


@dataclass(slots=True)
class Refund:
    id: int
    created_at: str
    graphql_type: ClassVar[str] = "Refund"


@dataclass(slots=True)
class BulkOperation:
    id: int
    type: str  # QUERY or MUTATION
    query: str
    created_at: str
    status: str = "CREATED"
    completed_at: str | None = None
    error_code: str | None = None
    object_count: int = 0
    root_object_count: int = 0
    file_size: int | None = None
    url: str | None = None
    partial_data_url: str | None = None
    graphql_type: ClassVar[str] = "BulkOperation"

    @property
    def gid(self) -> str:
        return format_gid("BulkOperation", self.id)


GID_TYPES: dict[type, str] = {
    Customer: "Customer",
    Product: "Product",
    Variant: "ProductVariant",
    Order: "Order",
    LineItem: "LineItem",
    Refund: "Refund",
    Metafield: "Metafield",
    MetafieldDefinition: "MetafieldDefinition",
    BulkOperation: "BulkOperation",
}
