"""Compliance and life-cycle topics: redact, data request, uninstall."""

from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from plugin.cli import main
from plugin.store import inbox
from plugin.store.models import (
    Customer,
    DataRequest,
    InboxEvent,
    Order,
    OrderLine,
    Refund,
    Shop,
)
from tests.helpers import SHOP, T0, add_shop, enqueue, make_settings, order_payload, refund_payload
from webhooks.processor import Processor

OTHER = "other-shop.myshopify.com"


def cli_env(url: str) -> dict[str, str]:
    settings = make_settings()
    return {
        "CLVSYNC_ENV": "production",
        "DATABASE_URL": url,
        "SHOPIFY_API_KEY": settings.api_key,
        "SHOPIFY_API_SECRET": settings.api_secret,
        "TOKEN_ENCRYPTION_KEY": settings.token_encryption_key,
    }


def seed_two_customers(engine: Engine, shop: str = SHOP) -> None:
    enqueue(engine, "orders/create", order_payload(1, customer_id=501), f"{shop}-1", shop)
    enqueue(engine, "orders/create", order_payload(2, customer_id=501, day=9), f"{shop}-2", shop)
    enqueue(engine, "refunds/create", refund_payload(71, 2, "5.00"), f"{shop}-3", shop)
    enqueue(engine, "orders/create", order_payload(3, customer_id=502), f"{shop}-4", shop)
    Processor(engine).drain()


def count(engine: Engine, table: type, **where: object) -> int:
    with Session(engine) as session:
        query = select(func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(getattr(table, column) == value)
        return int(session.exec(query).one())


def test_customers_redact_deletes_exactly_that_customer(engine: Engine) -> None:
    # given two customers with orders, a refund and a data request
    add_shop(engine)
    seed_two_customers(engine)
    request = {
        "shop_domain": SHOP,
        "customer": {"id": 501, "email": "jane@example.com"},
        "data_request": {"id": 9},
    }
    enqueue(engine, "customers/data_request", request, "dr")
    redact = {
        "shop_id": 1,
        "shop_domain": SHOP,
        "customer": {"id": 501, "email": "x@y.z"},
        "orders_to_redact": [1, 2],
    }
    # when customer 501 is redacted
    enqueue(engine, "customers/redact", redact, "redact")
    assert Processor(engine).drain().by_outcome["done"] == 2
    # then nothing of 501 is left, and all of 502 is
    assert count(engine, Customer, customer_id=501) == 0
    assert count(engine, Order, customer_id=501) == 0
    assert count(engine, OrderLine) == 1 and count(engine, Refund) == 0
    assert count(engine, DataRequest) == 0
    assert count(engine, Customer, customer_id=502) == 1
    assert count(engine, Order, customer_id=502) == 1


def test_shop_redact_deletes_everything_of_that_shop_only(engine: Engine) -> None:
    # given two shops with data
    add_shop(engine, SHOP)
    add_shop(engine, OTHER)
    seed_two_customers(engine, SHOP)
    seed_two_customers(engine, OTHER)
    # when the first one is redacted
    enqueue(engine, "shop/redact", {"shop_id": 1, "shop_domain": SHOP}, "shop-redact")
    assert Processor(engine).drain().by_outcome["done"] == 1
    # then nothing of it is left but the (empty) record of the redact event; the other is whole
    with Session(engine) as session:
        domains = session.exec(select(Shop.domain)).all()
        events = session.exec(select(InboxEvent).where(InboxEvent.shop_domain == SHOP)).all()
    assert domains == [OTHER]
    assert [(e.topic, e.payload) for e in events] == [("shop/redact", "{}")]
    assert count(engine, Order) == 3 and count(engine, Customer) == 2
    assert count(engine, Refund) == 1 and count(engine, OrderLine) == 3


def test_order_after_shop_redact_in_the_same_batch_is_dropped(engine: Engine) -> None:
    # given one batch: an order, the shop's redact, then another order of that shop
    add_shop(engine)
    enqueue(engine, "orders/create", order_payload(1, customer_id=501), "order-1")
    enqueue(engine, "shop/redact", {"shop_id": 1, "shop_domain": SHOP}, "shop-redact")
    enqueue(engine, "orders/create", order_payload(2, customer_id=502), "order-2")
    # when they are processed together
    assert Processor(engine).drain().by_outcome["done"] == 3
    # then the shop and its first order are gone, and the later order was not kept for it
    with Session(engine) as session:
        assert session.exec(select(Shop)).all() == []
    assert count(engine, Order) == 0 and count(engine, Customer) == 0


def test_data_request_report_lists_exactly_what_is_held(engine: Engine, migrated_url: str) -> None:
    # given a customer with two orders (one partly refunded), and a data request for them
    add_shop(engine)
    seed_two_customers(engine)
    enqueue(
        engine,
        "customers/data_request",
        {"shop_domain": SHOP, "customer": {"id": 501}, "data_request": {"id": 9}},
        "dr",
    )
    Processor(engine).drain()
    # when the operator exports that customer's report
    result = CliRunner().invoke(
        main, ["export", "--shop", SHOP, "--customer", "501"], env=cli_env(migrated_url)
    )
    # then it holds their record, orders, lines, refund and the request, and nothing else
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["customer"]["customer_id"] == 501
    assert report["customer"]["net_spend"] == "195.00"
    assert [o["order_id"] for o in report["orders"]] == [1, 2]
    assert [line["order_id"] for line in report["order_lines"]] == [1, 2]
    assert [r["refund_id"] for r in report["refunds"]] == [71]
    assert [r["request_id"] for r in report["data_requests"]] == ["9"]
    assert "jane" not in result.stdout.lower()


def test_app_uninstalled_discards_token_and_stops_ingestion(engine: Engine) -> None:
    # given an installed shop that uninstalls the app
    add_shop(engine)
    enqueue(engine, "app/uninstalled", {"id": 1, "domain": SHOP}, "bye")
    Processor(engine).drain()
    with Session(engine) as session:
        shop = session.exec(select(Shop)).one()
    assert shop.uninstalled_at == T0 and shop.access_token_encrypted is None
    # then order webhooks are no longer stored, but the compliance topics still are
    order = inbox.Delivery(SHOP, "late-order", "orders/create", None, None, "2026-10", "{}")
    redact = inbox.Delivery(SHOP, "redact", "shop/redact", None, None, "2026-10", "{}")
    assert inbox.store_deliveries(engine, [order, redact], T0) == [
        inbox.Stored.NOT_INSTALLED,
        inbox.Stored.STORED,
    ]
