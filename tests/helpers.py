"""Test helpers: signing like Shopify, payload builders, a live app on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from plugin.settings import Settings, load_settings
from plugin.store import shops
from plugin.store.models import CustomerScore, Order, OrderLine, Shop
from plugin.store.tokens import TokenCipher

SECRET = "test-secret-current"
PREVIOUS_SECRET = "test-secret-previous"
SHOP = "demo-shop.myshopify.com"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
_ids = itertools.count(1)


def score_row(shop_id: int | None, customer_id: int, run_id: int, tags: str = "") -> CustomerScore:
    """A customer's score row whose figures are all 1 (segment "new"), with its desired tags."""
    return CustomerScore(
        shop_id=shop_id, customer_id=customer_id, run_id=run_id, ledger_version=1, aov=1.0,
        trailing_12m_spend=1.0, historical_clv=1.0, p_alive=1.0, expected_purchases=1.0,
        expected_spend_per_order=1.0, predicted_clv=1.0, recency_score=1, frequency_score=1,
        monetary_score=1, segment="new", tags=tags,
    )  # fmt: skip


def make_settings(**env: str) -> Settings:
    values = {
        "CLVSYNC_ENV": "production",
        "SHOPIFY_API_KEY": "test-api-key",
        "SHOPIFY_API_SECRET": SECRET,
        "SHOPIFY_API_SECRET_PREVIOUS": PREVIOUS_SECRET,
        "TOKEN_ENCRYPTION_KEY": "Y2x2c3luYy10ZXN0LWFuZC1iZW5jaC1rZXktMzJieSE=",
        "APP_URL": "http://127.0.0.1",
        "CLVSYNC_WEBHOOK_MAX_BYTES": str(64 * 1024),
    }
    return load_settings({**values, **env}, env_file=None)


def sign(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def webhook_headers(
    body: bytes,
    topic: str,
    *,
    shop: str = SHOP,
    webhook_id: str | None = None,
    secret: str = SECRET,
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": sign(body, secret),
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-API-Version": "2026-10",
        "X-Shopify-Webhook-Id": webhook_id or f"wh-{next(_ids)}",
        "X-Shopify-Event-Id": f"ev-{next(_ids)}",
        "X-Shopify-Triggered-At": T0.isoformat(),
    }


def add_shop(engine: Engine, domain: str = SHOP, token: str = "shpat_test_token") -> Shop:
    cipher = TokenCipher(make_settings().token_encryption_key)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        return shops.add_shop(session, domain, token, cipher, T0 - timedelta(days=365))


def add_ledger_order(
    session: Session,
    shop_id: int,
    order_id: int,
    at: datetime,
    lines: list[tuple[int, str | None]],
    customer_id: int | None = 7,
    price_of: dict[int, Decimal] | None = None,
    *,
    counted: bool = True,
) -> None:
    """An order written straight into the ledger (no webhook), created, processed and updated
    at `at`, with one line per (product, product type), line ids order_id * 10 + i, each at its
    price in `price_of` (10 when not named)."""
    session.add(
        Order(
            shop_id=shop_id,
            order_id=order_id,
            customer_id=customer_id,
            created_at=at,
            processed_at=at,
            updated_at=at,
            version_digest="v",
            currency="USD",
            total=Decimal("10"),
            current_total=Decimal("10"),
            net_amount=Decimal("10"),
            counted=counted,
        )
    )
    for i, (product, kind) in enumerate(lines):
        session.add(
            OrderLine(
                shop_id=shop_id,
                order_id=order_id,
                line_id=order_id * 10 + i,
                product_id=product,
                product_type=kind,
                quantity=1,
                current_quantity=1,
                price=(price_of or {}).get(product, Decimal("10")),
                total_discount=Decimal("0"),
            )
        )


def money(amount: Decimal | str, currency: str = "USD") -> dict[str, Any]:
    value = str(amount)
    return {
        "shop_money": {"amount": value, "currency_code": currency},
        "presentment_money": {"amount": value, "currency_code": currency},
    }


def order_payload(
    order_id: int,
    *,
    customer_id: int | None = 501,
    total: str = "100.00",
    current_total: str | None = None,
    updated: int = 0,
    day: int = 0,
    cancelled: bool = False,
    financial_status: str = "paid",
    test: bool = False,
    refunds: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Shopify order payload (with the personal fields Shopify sends, to check they go)."""
    created = T0 + timedelta(days=day)
    customer = None
    if customer_id is not None:
        customer = {
            "id": customer_id,
            "email": "jane@example.com",
            "first_name": "Jane",
            "last_name": "Doe",
            "phone": "+15555550100",
        }
    return {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "email": "jane@example.com",
        "customer": customer,
        "billing_address": {"address1": "1 Main St", "name": "Jane Doe"},
        "shipping_address": {"address1": "1 Main St", "phone": "+15555550100"},
        "currency": "USD",
        "presentment_currency": "EUR",
        "total_price_set": money(total),
        "current_total_price_set": money(current_total or total),
        "financial_status": financial_status,
        "cancelled_at": (created + timedelta(hours=1)).isoformat() if cancelled else None,
        "created_at": created.isoformat(),
        "processed_at": created.isoformat(),
        "updated_at": (created + timedelta(minutes=updated)).isoformat(),
        "test": test,
        "source_name": "web",
        "refunds": refunds or [],
        "line_items": [
            {
                "id": order_id * 10 + 1,
                "product_id": 9001,
                "variant_id": 9101,
                "quantity": 1,
                "current_quantity": 1,
                "price": total,
                "price_set": money(total),
                "total_discount": "0.00",
                "sku": "SKU-1",
                "gift_card": False,
                "product_type": "Tea",
                "title": "Green tea",
                "name": "Green tea",
            },
        ],
    }


def refund_payload(refund_id: int, order_id: int, amount: str, *, day: int = 1) -> dict[str, Any]:
    return {
        "id": refund_id,
        "order_id": order_id,
        "created_at": (T0 + timedelta(days=day)).isoformat(),
        "note": "customer changed their mind",
        "refund_line_items": [],
        "transactions": [
            {"amount": amount, "currency": "USD", "kind": "refund", "status": "success"}
        ],
        "order_adjustments": [],
    }


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def enqueue(
    engine: Engine,
    topic: str,
    payload: dict[str, Any],
    webhook_id: str,
    shop: str = SHOP,
    *,
    triggered_at: datetime = T0,
) -> None:
    """Store a delivery in the inbox as the endpoint would (minimised), without HTTP, received
    at T0."""
    from plugin.store.inbox import Delivery, store_deliveries
    from webhooks.payloads import minimise

    delivery = Delivery(
        shop_domain=shop,
        webhook_id=webhook_id,
        topic=topic,
        event_id=None,
        triggered_at=triggered_at,
        api_version="2026-10",
        payload=json.dumps(minimise(topic, payload)),
    )
    store_deliveries(engine, [delivery], T0)
