"""Compliance and life-cycle topics: redact, data request, uninstall."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from plugin.cli import main
from plugin.store import inbox, shops
from plugin.store.models import (
    Customer,
    DataRequest,
    InboxEvent,
    Order,
    OrderLine,
    Refund,
    Shop,
)
from plugin.store.tokens import TokenCipher
from tests.helpers import (
    SHOP,
    T0,
    add_shop,
    enqueue,
    make_settings,
    order_payload,
    refund_payload,
)
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


def uninstalled(domain: str) -> dict[str, object]:
    """app/uninstalled's payload: the shop, its primary domain being its own."""
    return {"id": 1, "domain": "shop.example.com", "myshopify_domain": domain}


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


def test_customers_redact_of_an_order_held_for_another_customer_refreshes_theirs(
    engine: Engine,
) -> None:
    # given order 1 held for customer 502 (its customer changed in Shopify), and order 2 of 501
    add_shop(engine)
    enqueue(engine, "orders/create", order_payload(1, customer_id=502), "o1")
    enqueue(engine, "orders/create", order_payload(2, customer_id=501), "o2")
    Processor(engine).drain()
    # when 501 is redacted, Shopify naming both orders as theirs
    redact = {"shop_domain": SHOP, "customer": {"id": 501}, "orders_to_redact": [1, 2]}
    enqueue(engine, "customers/redact", redact, "redact")
    assert Processor(engine).drain().by_outcome == {"done": 1}
    # then both orders are gone, and 502's figures say so, as a recomputation would
    assert count(engine, Order) == 0
    with Session(engine) as session:
        kept = session.exec(select(Customer).where(Customer.customer_id == 502)).one()
    assert (kept.orders, kept.net_spend, kept.last_order_at) == (0, 0, None)


def test_shop_redact_deletes_everything_of_that_shop_only(engine: Engine) -> None:
    # given two shops with data
    add_shop(engine, SHOP)
    add_shop(engine, OTHER)
    seed_two_customers(engine, SHOP)
    seed_two_customers(engine, OTHER)
    # when the first one uninstalls the app and is then redacted
    enqueue(engine, "app/uninstalled", uninstalled(SHOP), "bye")
    enqueue(engine, "shop/redact", {"shop_id": 1, "shop_domain": SHOP}, "shop-redact")
    assert Processor(engine).drain().by_outcome["done"] == 2
    # then nothing of it is left but the (empty) record of the redact event; the other is whole
    with Session(engine) as session:
        domains = session.exec(select(Shop.domain)).all()
        events = session.exec(select(InboxEvent).where(InboxEvent.shop_domain == SHOP)).all()
    assert domains == [OTHER]
    assert [(e.topic, e.payload) for e in events] == [("shop/redact", "{}")]  # the uninstall too
    assert count(engine, Order) == 3 and count(engine, Customer) == 2
    assert count(engine, Refund) == 1 and count(engine, OrderLine) == 3


def test_order_after_shop_redact_in_the_same_batch_is_dropped(engine: Engine) -> None:
    # given one batch: an order, the uninstall, the shop's redact, then another order of it
    add_shop(engine)
    enqueue(engine, "orders/create", order_payload(1, customer_id=501), "order-1")
    enqueue(engine, "app/uninstalled", uninstalled(SHOP), "bye")
    enqueue(engine, "shop/redact", {"shop_id": 1, "shop_domain": SHOP}, "shop-redact")
    enqueue(engine, "orders/create", order_payload(2, customer_id=502), "order-2")
    # when they are processed together
    assert Processor(engine).drain().by_outcome["done"] == 4
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
    enqueue(engine, "app/uninstalled", uninstalled(SHOP), "bye")
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


def last_errors(engine: Engine) -> list[str]:
    """The errors of the inbox events that failed."""
    with Session(engine) as session:
        query = select(InboxEvent.last_error).where(col(InboxEvent.last_error).is_not(None))
        return [str(error) for error in session.exec(query)]


def test_signed_bodies_sent_again_under_a_deleting_topic_or_another_shop_delete_nothing(
    engine: Engine,
) -> None:
    # given two installed shops with data. Shopify signs the body but not the headers, so a
    # captured signed body verifies under any X-Shopify-Topic or X-Shopify-Shop-Domain.
    add_shop(engine, SHOP)
    add_shop(engine, OTHER)
    seed_two_customers(engine, SHOP)
    # when an order's body comes as shop/redact and app/uninstalled, and the other shop's
    # customer redact comes under this shop's domain
    order = order_payload(1, customer_id=501)
    enqueue(engine, "shop/redact", order, "replay-1")
    enqueue(engine, "app/uninstalled", order, "replay-2")
    theirs = {"shop_domain": OTHER, "customer": {"id": 501}, "orders_to_redact": [1]}
    enqueue(engine, "customers/redact", theirs, "replay-3")
    drained = Processor(engine).drain()
    # then none acts: each is held back as not this shop's payload, and the data is whole
    assert drained.by_outcome == {"retry": 3}
    errors = last_errors(engine)
    with Session(engine) as session:
        shop = session.exec(select(Shop).where(Shop.domain == SHOP)).one()
    assert len(errors) == 3 and all("not this shop's payload" in str(e) for e in errors)
    assert shop.uninstalled_at is None and shop.access_token_encrypted is not None
    assert count(engine, Customer, customer_id=501) == 1 and count(engine, Order) == 3


def test_compliance_bodies_sent_again_under_another_compliance_topic_do_nothing(
    engine: Engine,
) -> None:
    # given a shop with data, uninstalled (so a shop/redact of its own would act)
    add_shop(engine, SHOP)
    seed_two_customers(engine, SHOP)
    with Session(engine) as session, session.begin():
        session.exec(select(Shop)).one().uninstalled_at = T0
    # when a data request's signed body comes again as customers/redact, a redact's as a data
    # request, and a customer's redact as shop/redact
    request = {"shop_domain": SHOP, "customer": {"id": 501}, "orders_requested": [1, 2]}
    request |= {"data_request": {"id": 9}}
    redact = {"shop_domain": SHOP, "customer": {"id": 501}, "orders_to_redact": [1, 2]}
    enqueue(engine, "customers/redact", request, "replay-1")
    enqueue(engine, "customers/data_request", redact, "replay-2")
    enqueue(engine, "shop/redact", redact, "replay-3")
    drained = Processor(engine).drain()
    # then none acts: each is held back as not that topic's payload, and the data is whole
    assert drained.by_outcome == {"retry": 3}
    errors = last_errors(engine)
    with Session(engine) as session:
        requests = session.exec(select(DataRequest)).all()
    assert len(errors) == 3 and all("payload (" in str(e) for e in errors), errors
    assert count(engine, Customer, customer_id=501) == 1 and count(engine, Order) == 3
    assert requests == []


# Each key of another compliance topic's payload that a topic's never has (SHOPIFY.md)
FOREIGN_KEYS = [
    ("customers/data_request", "orders_to_redact"),
    ("customers/redact", "data_request"),
    ("customers/redact", "orders_requested"),
    ("shop/redact", "customer"),
    ("shop/redact", "data_request"),
    ("shop/redact", "orders_requested"),
    ("shop/redact", "orders_to_redact"),
]


@pytest.mark.parametrize(("topic", "key"), FOREIGN_KEYS)
def test_one_key_of_another_compliance_topic_holds_a_body_back(
    engine: Engine, topic: str, key: str
) -> None:
    # given an uninstalled shop with data (so its own shop/redact would act), and a topic's
    # payload with one key added that only another topic's payload has
    add_shop(engine, SHOP)
    seed_two_customers(engine, SHOP)
    with Session(engine) as session, session.begin():
        session.exec(select(Shop)).one().uninstalled_at = T0
    payload: dict[str, object] = {
        "customers/data_request": {"customer": {"id": 501}, "data_request": {"id": 9}},
        "customers/redact": {"customer": {"id": 501}, "orders_to_redact": [1]},
        "shop/redact": {"shop_id": 1},
    }[topic] | {"shop_domain": SHOP}
    payload[key] = {"id": 501} if key in ("customer", "data_request") else [1]
    # when it is processed, then it is held back for that key, and nothing is done
    enqueue(engine, topic, payload, "foreign")
    assert Processor(engine).drain().by_outcome == {"retry": 1}
    assert last_errors(engine) == [
        f"PayloadError: not a {topic} payload (it has {key}): nothing done"
    ]
    assert count(engine, Customer, customer_id=501) == 1 and count(engine, Order) == 3
    assert count(engine, DataRequest) == 0


def test_a_redact_names_its_shop_in_any_case_and_may_list_no_orders(engine: Engine) -> None:
    # given a customer with orders, and their redact naming the shop in capitals, with
    # orders_to_redact null
    add_shop(engine)
    seed_two_customers(engine)
    redact = {"shop_domain": SHOP.upper(), "customer": {"id": 501}, "orders_to_redact": None}
    enqueue(engine, "customers/redact", redact, "redact")
    # when it is processed, then the customer and their orders are gone, the other kept
    assert Processor(engine).drain().by_outcome == {"done": 1}
    assert count(engine, Customer, customer_id=501) == 0 and count(engine, Order) == 1


def test_a_redact_whose_orders_are_no_list_is_held_back(engine: Engine) -> None:
    add_shop(engine)
    seed_two_customers(engine)
    redact = {"shop_domain": SHOP, "customer": {"id": 501}, "orders_to_redact": "1,2"}
    enqueue(engine, "customers/redact", redact, "redact")
    assert Processor(engine).drain().by_outcome == {"retry": 1}
    assert last_errors(engine) == ["PayloadError: orders_to_redact: expected a list of order ids"]
    assert count(engine, Customer, customer_id=501) == 1 and count(engine, Order) == 3


def test_a_data_requests_id_is_cut_to_its_column(engine: Engine) -> None:
    add_shop(engine)
    request = {"shop_domain": SHOP, "customer": {"id": 501}, "data_request": {"id": "r" * 100}}
    enqueue(engine, "customers/data_request", request, "dr")
    assert Processor(engine).drain().by_outcome == {"done": 1}
    with Session(engine) as session:
        [kept] = session.exec(select(DataRequest)).all()
    assert (kept.customer_id, kept.request_id) == (501, "r" * 64)


def test_uninstall_is_dated_when_triggered_and_read_from_domain_without_myshopify_domain(
    engine: Engine,
) -> None:
    # given an app/uninstalled triggered an hour before it was received, whose
    # myshopify_domain is empty and whose domain is the shop's own
    add_shop(engine)
    payload = {"id": 1, "domain": SHOP, "myshopify_domain": None}
    enqueue(engine, "app/uninstalled", payload, "bye", triggered_at=T0 - timedelta(hours=1))
    # when it is processed, then the shop is uninstalled as of when it was triggered
    assert Processor(engine).drain().by_outcome == {"done": 1}
    with Session(engine) as session:
        shop = session.exec(select(Shop)).one()
    assert shop.uninstalled_at == T0 - timedelta(hours=1)
    assert shop.access_token_encrypted is None


def test_shop_redact_for_an_installed_shop_deletes_nothing_until_it_uninstalls(
    engine: Engine,
) -> None:
    # given an installed shop with data, and a shop/redact that arrives before its uninstall
    add_shop(engine)
    seed_two_customers(engine)
    enqueue(engine, "shop/redact", {"shop_id": 1, "shop_domain": SHOP}, "shop-redact")
    # when it is processed, then nothing is deleted and it waits to be tried again
    assert Processor(engine).drain().by_outcome == {"retry": 1}
    assert count(engine, Order) == 3 and count(engine, Shop) == 1
    # when the late app/uninstalled comes and the redact is tried again, then the shop goes
    enqueue(engine, "app/uninstalled", uninstalled(SHOP), "bye")
    Processor(engine).drain()
    with Session(engine) as session, session.begin():  # its backoff has passed
        for event in session.exec(select(InboxEvent).where(InboxEvent.status != "done")):
            event.next_attempt_at = T0
    assert Processor(engine).drain().by_outcome == {"done": 1}
    assert count(engine, Order) == 0 and count(engine, Shop) == 0


def test_uninstall_triggered_before_a_reinstall_keeps_the_new_token(engine: Engine) -> None:
    # given a shop uninstalled at T0 and installed again before that webhook was processed
    add_shop(engine)
    enqueue(engine, "app/uninstalled", uninstalled(SHOP), "bye")
    cipher = TokenCipher(make_settings().token_encryption_key)
    with Session(engine) as session, session.begin():
        shops.add_shop(session, SHOP, "shpat_new_token", cipher, T0 + timedelta(minutes=5))
    # when the uninstall is processed
    Processor(engine).drain()
    # then the shop stays installed with its new token
    with Session(engine) as session:
        shop = session.exec(select(Shop)).one()
    assert shop.uninstalled_at is None
    assert shop.access_token_encrypted is not None
    assert cipher.decrypt(shop.access_token_encrypted) == "shpat_new_token"
