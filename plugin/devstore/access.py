"""What a token may read: its access scopes, and the orders they let it see.

Shopify's Order object (Admin GraphQL 2025-10 to 2026-10): "Only the last 60 days' worth of
orders from a store are accessible from the Order object by default. If you want to access older
records, then you need to request access to all orders": the `read_all_orders` scope, granted
with `read_orders` (changelog of 2018-07-09, "Apps now need Shopify approval to read orders
older than 60 days"). The documentation names no date field for the window; the store puts it
on the order's creation (`createdAt`), the date an order is older by, and counts the 60 days
back from its own "now" (`DevStoreState.now`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from plugin.devstore.config import READ_ALL_ORDERS
from plugin.devstore.gid import format_gid
from plugin.devstore.models import Order
from plugin.devstore.state import format_datetime

__all__ = ["ORDER_WINDOW", "READ_ALL_ORDERS", "app_installation", "order_visible", "orders_from"]

ORDER_WINDOW = timedelta(days=60)  # what Shopify serves of the orders without READ_ALL_ORDERS

_DESCRIPTIONS = {
    "read_orders": "Read orders, transactions, and fulfillments",
    "read_all_orders": "Read all orders, not only the last 60 days'",
    "read_customers": "Read customer details and customer groups",
    "write_customers": "Modify customer details and customer groups",
    "read_products": "Read products, variants, and collections",
    "write_products": "Modify products, variants, and collections",
}


def orders_from(scopes: Collection[str], now: datetime) -> str | None:
    """The earliest `createdAt` of an order a token with `scopes` may read, in the store's
    DateTime form (which compares as text), or None when it may read them all."""
    return None if READ_ALL_ORDERS in scopes else format_datetime(now - ORDER_WINDOW)


def order_visible(order: Order, start: str | None) -> bool:
    """Whether an order created at `order.created_at` is inside a window starting at `start`
    (`orders_from`; None: every order is)."""
    return start is None or order.created_at >= start


def app_installation(app_id: int, scopes: Collection[str]) -> dict[str, Any]:
    """`currentAppInstallation`: the token's app and the scopes the merchant granted it."""
    return {
        "__typename": "AppInstallation",
        "id": format_gid("AppInstallation", app_id),
        "accessScopes": [
            {"handle": handle, "description": _DESCRIPTIONS.get(handle, handle)}
            for handle in scopes
        ],
    }
