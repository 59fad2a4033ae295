"""The processor applying events to the ledger: versions, refunds, cancellations, aggregates."""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session, SQLModel, col, select

from plugin.domain.ledger import CustomerTotals, RefundRecord
from plugin.store import ledger
from plugin.store.inbox import retry_delay
from plugin.store.models import (
    DONE,
    PARKED,
    PENDING,
    Customer,
    InboxEvent,
    Order,
    OrderLine,
    Redaction,
    Refund,
    Shop,
)
from plugin.store.scores import load_baskets
from tests.helpers import SHOP, T0, add_shop, enqueue, order_payload, refund_payload
from webhooks.gate import IngestGate
from webhooks.handlers import HANDLERS
from webhooks.payloads import minimise, parse_order
from webhooks.processor import GROUP_MIN, Outcome, Processor


def process(engine: Engine, group_min: int = GROUP_MIN) -> None:
    counts = Processor(engine, group_min=group_min).drain()
    assert counts.by_outcome["done"] == counts.total, counts


def customer(engine: Engine, customer_id: int = 501) -> Customer | None:
    with Session(engine) as session:
        return session.exec(select(Customer).where(Customer.customer_id == customer_id)).first()


def order(engine: Engine, order_id: int) -> Order | None:
    with Session(engine) as session:
        return session.exec(select(Order).where(Order.order_id == order_id)).first()


@pytest.fixture
def shop_engine(engine: Engine) -> Engine:
    add_shop(engine)
    return engine


def test_order_create_counts_toward_customer_totals(shop_engine: Engine) -> None:
    enqueue(shop_engine, "orders/create", order_payload(1, total="120.50"), "a")
    process(shop_engine)
    stored = customer(shop_engine)
    assert stored is not None
    assert (stored.orders, stored.net_spend) == (1, Decimal("120.50"))
    assert stored.first_order_at == stored.last_order_at == T0


def test_order_stale_version_after_newer_is_ignored(shop_engine: Engine) -> None:
    # given an edit (updated later, total 80) delivered before the original (total 100)
    enqueue(shop_engine, "orders/updated", order_payload(1, current_total="80.00", updated=5), "b")
    enqueue(shop_engine, "orders/create", order_payload(1, updated=0), "a")
    process(shop_engine)
    # then the newer version stands
    stored = order(shop_engine, 1)
    assert stored is not None and stored.net_amount == Decimal("80.00")


def test_refund_before_order_update_is_netted_once(shop_engine: Engine) -> None:
    # given an order of 100, a refund of 30, then the order version that reflects the refund
    refund = refund_payload(71, 1, "30.00")
    enqueue(shop_engine, "orders/create", order_payload(1), "a")
    enqueue(shop_engine, "refunds/create", refund, "b")
    process(shop_engine)
    assert customer(shop_engine).net_spend == Decimal("70.00")  # type: ignore[union-attr]
    enqueue(
        shop_engine,
        "orders/updated",
        order_payload(
            1,
            current_total="70.00",
            updated=10,
            financial_status="partially_refunded",
            refunds=[refund],
        ),
        "c",
    )
    process(shop_engine)
    # then the refund is subtracted once, not twice
    assert customer(shop_engine).net_spend == Decimal("70.00")  # type: ignore[union-attr]


def test_refund_of_unstated_currency_on_an_order_paid_in_another_is_netted_in_shop_money(
    shop_engine: Engine,
) -> None:
    # given an order of 100 USD paid in EUR, and a refund whose transaction of 45 (EUR) states
    # no currency, of a line whose shop-money subtotal is 50 USD
    refund = refund_payload(71, 1, "45.00")
    del refund["transactions"][0]["currency"]
    refund["refund_line_items"] = [
        {
            "line_item_id": 11,
            "quantity": 1,
            "subtotal_set": {"shop_money": {"amount": "50.00", "currency_code": "USD"}},
        }
    ]
    enqueue(shop_engine, "orders/create", order_payload(1), "a")
    enqueue(shop_engine, "refunds/create", refund, "b")
    # when it is processed
    process(shop_engine)
    # then the shop-money lines are netted, not the transaction's amount in another currency
    assert customer(shop_engine).net_spend == Decimal("50.00")  # type: ignore[union-attr]


def test_refund_after_a_version_that_reflects_an_earlier_one_nets_only_itself(
    shop_engine: Engine,
) -> None:
    # given an order of 100 whose version held reflects a first refund of 30 (current 70)
    first = refund_payload(71, 1, "30.00")
    reflected = order_payload(
        1, current_total="70.00", financial_status="partially_refunded", refunds=[first]
    )
    enqueue(shop_engine, "orders/updated", reflected, "a")
    process(shop_engine)
    # when a second refund of 20 comes, before any version that reflects it
    enqueue(shop_engine, "refunds/create", refund_payload(72, 1, "20.00", day=2), "b")
    process(shop_engine)
    # then only the second is netted from the current total: the first is in it already
    assert customer(shop_engine).net_spend == Decimal("50.00")  # type: ignore[union-attr]


@pytest.mark.parametrize("refund_first", [False, True])
def test_a_line_refunded_before_a_version_shows_it_is_no_longer_held(
    shop_engine: Engine, refund_first: bool
) -> None:
    # given an order of two lines, and a refund of the second that no version reflects yet,
    # arriving after the order or before it
    payload = order_payload(1)
    payload["line_items"].append(payload["line_items"][0] | {"id": 12, "product_id": 9002})
    refund = refund_payload(71, 1, "30.00")
    refund["refund_line_items"] = [{"line_item_id": 12, "quantity": 1}]
    events = [("orders/create", payload, "a"), ("refunds/create", refund, "b")]
    for topic, body, webhook_id in reversed(events) if refund_first else events:
        enqueue(shop_engine, topic, body, webhook_id)
        process(shop_engine)
    # then the refunded line no longer counts among the products bought (its amount is netted)
    with Session(shop_engine) as session:
        shop = session.exec(select(Shop)).one()
    assert shop.id is not None
    baskets = load_baskets(shop_engine, shop.id)
    assert (baskets.product_id.tolist(), baskets.quantity.tolist()) == ([9001], [1])
    # and once a version shows the refund, its lines are as it says
    payload["line_items"][1]["current_quantity"] = 0
    shown = payload | {"updated_at": (T0 + timedelta(minutes=5)).isoformat(), "refunds": [refund]}
    enqueue(shop_engine, "orders/updated", shown, "c")
    process(shop_engine)
    with Session(shop_engine) as session:
        held = {line.line_id: line.current_quantity for line in session.exec(select(OrderLine))}
    assert held == {11: 1, 12: 0}


@pytest.mark.parametrize("refund_first", [False, True])
def test_a_refund_of_more_units_than_a_line_holds_leaves_it_at_none(
    shop_engine: Engine, refund_first: bool
) -> None:
    # given an order of one unit, and a refund taking back three of it (as a refund of the
    # units an order edit removed already may read), after the order or before it
    refund = refund_payload(71, 1, "30.00")
    refund["refund_line_items"] = [{"line_item_id": 11, "quantity": 3}]
    events = [("orders/create", order_payload(1), "a"), ("refunds/create", refund, "b")]
    for topic, body, webhook_id in reversed(events) if refund_first else events:
        enqueue(shop_engine, topic, body, webhook_id)
        process(shop_engine)
    # then the line holds no unit, not a negative number of them
    with Session(shop_engine) as session:
        held = {line.line_id: line.current_quantity for line in session.exec(select(OrderLine))}
    assert held == {11: 0}


@pytest.mark.parametrize("orders", [1, GROUP_MIN])
def test_a_shops_currency_is_learnt_from_its_first_orders(shop_engine: Engine, orders: int) -> None:
    # given a shop whose currency is not known yet, and its first orders in euros, applied
    # one at a time or together
    with Session(shop_engine) as session:
        assert session.exec(select(Shop)).one().currency is None
    for n in range(1, orders + 1):
        enqueue(shop_engine, "orders/create", order_payload(n) | {"currency": "EUR"}, f"o{n}")
    process(shop_engine)
    # then the shop's currency is theirs
    with Session(shop_engine) as session:
        assert session.exec(select(Shop)).one().currency == "EUR"


def test_a_source_name_is_cut_to_its_column(shop_engine: Engine) -> None:
    enqueue(shop_engine, "orders/create", order_payload(1) | {"source_name": "s" * 300}, "a")
    process(shop_engine)
    assert order(shop_engine, 1).source_name == "s" * 255  # type: ignore[union-attr]


def test_baskets_hold_only_products_bought_and_kept(shop_engine: Engine) -> None:
    # given an order with a product, a gift card and a custom item (no product id), and orders
    # of other products that were cancelled, fully refunded or voided
    first = order_payload(1)
    line = first["line_items"][0]
    first["line_items"] += [
        line | {"id": 12, "product_id": 9002, "gift_card": True},
        line | {"id": 13, "product_id": None},
    ]
    enqueue(shop_engine, "orders/create", first, "a")
    for order_id, changed in [
        (2, {"cancelled": True, "current_total": "0.00"}),
        (3, {"financial_status": "refunded"}),
        (4, {"financial_status": "voided"}),
    ]:
        payload = order_payload(order_id, day=order_id, **changed)  # type: ignore[arg-type]
        payload["line_items"][0]["product_id"] = 9000 + order_id
        enqueue(shop_engine, "orders/create", payload, f"o{order_id}")
    process(shop_engine)
    # then the recommendations' baskets hold the first order's product alone
    with Session(shop_engine) as session:
        shop_id = session.exec(select(Shop.id)).one()
    assert shop_id is not None
    baskets = load_baskets(shop_engine, shop_id)
    assert (baskets.order_id.tolist(), baskets.product_id.tolist()) == ([1], [9001])


def net_amount(engine: Engine, order_id: int) -> Decimal:
    with Session(engine) as session:
        return session.exec(
            select(col(Order.net_amount)).where(col(Order.order_id) == order_id)
        ).one()


@pytest.mark.parametrize(
    "kind", ["cancelled", "cancelled, total unchanged", "refunded", "voided", "expired"]
)
def test_cancelled_or_fully_refunded_order_counts_zero(shop_engine: Engine, kind: str) -> None:
    enqueue(shop_engine, "orders/create", order_payload(1, total="50.00"), "a")
    enqueue(shop_engine, "orders/create", order_payload(2, total="40.00", day=3), "b")
    if kind == "cancelled":
        changed = order_payload(
            2, total="40.00", day=3, updated=60, cancelled=True, current_total="0.00"
        )
    elif kind == "cancelled, total unchanged":  # cancelled with no refund: the total may stay
        changed = order_payload(2, total="40.00", day=3, updated=60, cancelled=True)
    else:
        changed = order_payload(2, total="40.00", day=3, updated=60, financial_status=kind)
    enqueue(shop_engine, "orders/updated", changed, "c")
    process(shop_engine)
    stored = customer(shop_engine)
    assert stored is not None
    assert (stored.orders, stored.net_spend) == (1, Decimal("50.00"))
    assert stored.last_order_at == T0
    assert net_amount(shop_engine, 2) == 0  # and the order itself is worth nothing


def test_refunds_past_what_is_left_of_an_order_leave_it_at_zero(shop_engine: Engine) -> None:
    # given two orders, and refunds of the second for more than its current total (delivered
    # before any version of it reflects them)
    enqueue(shop_engine, "orders/create", order_payload(1, total="50.00"), "a")
    enqueue(shop_engine, "orders/create", order_payload(2, total="40.00", day=3), "b")
    enqueue(shop_engine, "refunds/create", refund_payload(71, 2, "30.00", day=4), "c")
    enqueue(shop_engine, "refunds/create", refund_payload(72, 2, "25.00", day=5), "d")
    process(shop_engine)
    # then that order is worth nothing (not less), and the customer's figures are the first's
    stored = customer(shop_engine)
    assert stored is not None
    assert (stored.orders, stored.net_spend) == (1, Decimal("50.00"))
    assert net_amount(shop_engine, 2) == 0


def test_null_optional_amounts_read_as_absent(shop_engine: Engine) -> None:
    # given an order whose line has a null current_quantity and total_discount, and a refund
    # of it whose line has a null total_tax_set
    payload = order_payload(1)
    payload["line_items"][0] |= {"current_quantity": None, "total_discount": None}
    refund = refund_payload(71, 1, "30.00")
    subtotal = {"shop_money": {"amount": "30.00", "currency_code": "USD"}}
    refund["refund_line_items"] = [
        {"line_item_id": 11, "quantity": 1, "subtotal_set": subtotal, "total_tax_set": None}
    ]
    del refund["transactions"][0]["currency"]  # the lines are netted (see above)
    enqueue(shop_engine, "orders/create", payload, "a")
    enqueue(shop_engine, "refunds/create", refund, "b")
    # when processed, then both are applied, as if those fields were absent
    assert Processor(shop_engine).drain().by_outcome == {"done": 2}
    assert customer(shop_engine).net_spend == Decimal("70.00")  # type: ignore[union-attr]


def test_test_orders_are_ignored(shop_engine: Engine) -> None:
    enqueue(shop_engine, "orders/create", order_payload(1, test=True), "a")
    process(shop_engine)
    assert order(shop_engine, 1) is None and customer(shop_engine) is None


def test_guest_order_is_kept_for_product_statistics(shop_engine: Engine) -> None:
    enqueue(shop_engine, "orders/create", order_payload(1, customer_id=None), "a")
    process(shop_engine)
    stored = order(shop_engine, 1)
    assert stored is not None and stored.customer_id is None
    with Session(shop_engine) as session:
        lines = session.exec(select(OrderLine)).all()
    assert [(line.product_id, line.quantity) for line in lines] == [(9001, 1)]


def test_customer_topics_keep_record_and_delete_marks_it(shop_engine: Engine) -> None:
    created = {
        "id": 501,
        "created_at": T0.isoformat(),
        "updated_at": T0.isoformat(),
        "state": "enabled",
        "email": "jane@example.com",
        "first_name": "Jane",
    }
    updated = {**created, "updated_at": (T0 + timedelta(days=1)).isoformat(), "state": "disabled"}
    enqueue(shop_engine, "customers/update", updated, "b")
    enqueue(shop_engine, "customers/create", created, "a")
    process(shop_engine)
    stored = customer(shop_engine)
    assert stored is not None and stored.state == "disabled" and stored.deleted_at is None
    # a deletion is dated when it was triggered (an hour before it was received, at T0)
    deleted = T0 - timedelta(hours=1)
    enqueue(shop_engine, "customers/delete", {"id": 501}, "c", triggered_at=deleted)
    process(shop_engine)
    assert customer(shop_engine).deleted_at == deleted  # type: ignore[union-attr]


def test_a_customer_record_without_a_creation_date_is_kept(shop_engine: Engine) -> None:
    record = {"id": 501, "created_at": None, "updated_at": T0.isoformat(), "state": "enabled"}
    enqueue(shop_engine, "customers/create", record, "a")
    process(shop_engine)
    stored = customer(shop_engine)
    assert stored is not None and (stored.created_at, stored.state) == (None, "enabled")


def test_customer_record_is_replaced_only_by_a_later_stamp(shop_engine: Engine) -> None:
    def deliver(webhook_id: str, updated: int | None, state: str) -> str | None:
        stamp = None if updated is None else (T0 + timedelta(days=updated)).isoformat()
        record = {"id": 501, "created_at": T0.isoformat(), "updated_at": stamp, "state": state}
        enqueue(shop_engine, "customers/update", record, webhook_id)
        process(shop_engine)
        return customer(shop_engine).state  # type: ignore[union-attr]

    # an unstamped record is kept while nothing stamped is held, and replaced by a stamped one
    assert deliver("a", None, "declined") == "declined"
    assert deliver("b", None, "invited") == "invited"
    assert deliver("c", 1, "enabled") == "enabled"
    # then neither a record stamped the same, nor an earlier one, nor an unstamped one replaces it
    assert deliver("d", 1, "disabled") == "enabled"
    assert deliver("e", 0, "disabled") == "enabled"
    assert deliver("f", None, "disabled") == "enabled"
    assert deliver("g", 2, "disabled") == "disabled"


@pytest.mark.parametrize("first", ["disabled", "enabled"])
def test_customer_records_stamped_the_same_keep_one_in_any_arrival_order(
    shop_engine: Engine, first: str
) -> None:
    # given two customers/update of one customer stamped the same, their states differing
    stamp = (T0 + timedelta(days=1)).isoformat()
    for n, state in enumerate([first, *({"disabled", "enabled"} - {first})]):
        record = {"id": 501, "created_at": T0.isoformat(), "updated_at": stamp, "state": state}
        enqueue(shop_engine, "customers/update", record, f"{n}")
        process(shop_engine)
    # then the record kept does not depend on which came first
    assert customer(shop_engine).state == "enabled"  # type: ignore[union-attr]


def test_failing_event_is_retried_with_backoff_then_parked(
    shop_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an order payload the ledger cannot read (no currency)
    payload = order_payload(1)
    del payload["currency"]
    enqueue(shop_engine, "orders/create", payload, "bad")
    now = [T0]
    processor = Processor(shop_engine, max_attempts=3, clock=lambda: now[0])
    # when it fails: it waits 5 s, then 10 s, then it is parked with its error
    assert processor.process_one() is Outcome.RETRY
    assert processor.process_one() is None  # not due yet
    now[0] += timedelta(seconds=5)
    assert processor.process_one() is Outcome.RETRY
    now[0] += timedelta(seconds=10)
    assert processor.process_one() is Outcome.PARKED
    with Session(shop_engine) as session:
        event = session.exec(select(InboxEvent)).one()
    assert (event.status, event.attempts) == (PARKED, 3)
    assert "currency" in (event.last_error or "")


def test_retry_delay_doubles_up_to_an_hour() -> None:
    delays = [retry_delay(attempts).total_seconds() for attempts in range(1, 14)]
    assert delays == [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600]


# --- order independence -----------------------------------------------------------------


def _order_story(
    order_id: int, customer_id: int, steps: list[str]
) -> list[tuple[str, dict[str, Any]]]:
    """The webhooks one order's life sends, in the order Shopify would send them."""
    total = Decimal(10 * order_id + 5)
    events: list[tuple[str, dict[str, Any]]] = []
    refunds: list[dict[str, Any]] = []
    current, minute, cancelled, status = total, 0, False, "paid"
    base = {"customer_id": customer_id, "total": str(total), "day": order_id}
    events.append(("orders/create", order_payload(order_id, **base)))
    for step in steps:
        minute += 7
        if step == "refund" and current > 0 and not cancelled:
            amount = min(current, Decimal(4))
            refund = refund_payload(
                order_id * 100 + len(refunds), order_id, str(amount), day=order_id
            )
            refunds.append(refund)
            events.append(("refunds/create", refund))
            current -= amount
            status = "refunded" if current == 0 else "partially_refunded"
        elif step == "cancel" and not cancelled:
            cancelled, current = True, Decimal(0)
        elif step == "edit" and not cancelled and current > 2:
            current -= 2
        elif step == "move" and base["customer_id"] != 503:  # the order's customer changed
            base["customer_id"] = 503
        else:
            continue
        events.append(
            (
                "orders/cancelled" if step == "cancel" else "orders/updated",
                order_payload(
                    order_id,
                    **base,
                    current_total=str(current),
                    updated=minute,
                    cancelled=cancelled,
                    financial_status=status,
                    refunds=list(refunds),
                ),
            )
        )
    return events


def _snapshot(engine: Engine) -> dict[str, Any]:
    with Session(engine) as session:
        orders = {
            o.order_id: (o.customer_id, o.net_amount, o.counted, o.updated_at)
            for o in session.exec(select(Order))
        }
        refunds = {
            r.refund_id: (r.lines_amount, r.transactions_amount, r.reflected)
            for r in session.exec(select(Refund))
        }
        lines = {
            (line.order_id, line.line_id): (line.product_id, line.current_quantity, line.price)
            for line in session.exec(select(OrderLine))
        }
        customers = {  # the figures, then the record (customers/* topics)
            c.customer_id: (
                *(c.orders, c.net_spend, c.first_order_at, c.last_order_at),
                *(c.created_at, c.updated_at, c.state, c.deleted_at),
            )
            for c in session.exec(select(Customer))
        }
        redactions = {(r.kind, r.item_id) for r in session.exec(select(Redaction))}
        shop_id = session.exec(select(Order.shop_id)).first()
        recomputed = ledger.ledger_totals(session, shop_id) if shop_id is not None else {}
    kept = {cid: CustomerTotals(*row[:4]) for cid, row in customers.items()}
    assert kept == {
        cid: recomputed.get(cid, CustomerTotals(0, Decimal(0), None, None)) for cid in kept
    }
    # A customer an order no longer names keeps an empty row if a version naming them was
    # applied before the newer one came, and has none if it came too late: compared as absent.
    named = {row[0] for row in orders.values()}
    shown = {c: row for c, row in customers.items() if c in named or row[0] > 0 or any(row[4:])}
    return {
        "orders": orders,
        "lines": lines,
        "refunds": refunds,
        "customers": shown,
        "redactions": redactions,
    }


def _reset(engine: Engine) -> None:
    with engine.begin() as connection:
        for table in reversed(SQLModel.metadata.sorted_tables):
            connection.execute(table.delete())
    add_shop(engine)


Numbered = list[tuple[int, str, dict[str, Any]]]  # (webhook number, topic, payload)


def _deliver(
    engine: Engine, events: Numbered, *, one_at_a_time: bool = False, cut: int | None = None
) -> dict[str, Any]:
    """The ledger after the events are processed; with `cut`, in two waves: the events before
    it, then the others, so that the second wave's versions find their orders held."""
    _reset(engine)
    for wave in [events] if cut is None else [events[:cut], events[cut:]]:
        for webhook_id, topic, payload in wave:
            enqueue(engine, topic, payload, f"wh-{webhook_id}")
        if one_at_a_time:  # each event in a batch of its own: its handler alone, never a group's
            processor = Processor(engine)
            while (outcome := processor.process_one()) is not None:
                assert outcome is Outcome.DONE
        else:  # every batch's order webhooks applied together, however few
            with _no_group_falls_back():
                process(engine, group_min=1)
    return _snapshot(engine)


@contextmanager
def _no_group_falls_back() -> Iterator[None]:
    """Fails if a group of events failed together (then applied one at a time, which would
    hide a fault of the grouped path from a comparison of ledgers)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("webhooks.processor")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert not [r.getMessage() for r in records if "one at a time" in r.getMessage()]


def _arrivals(
    stories: list[tuple[int, list[str]]], data: st.DataObject
) -> tuple[Numbered, Numbered]:
    """The stories' webhooks numbered in the order Shopify sends them, and as they arrive:
    shuffled, some delivered twice (same webhook id)."""
    in_order = [
        event
        for order_id, (customer_id, steps) in enumerate(stories, start=1)
        for event in _order_story(order_id, customer_id, steps)
    ]
    numbered = [(i, topic, payload) for i, (topic, payload) in enumerate(in_order)]
    shuffled = data.draw(st.permutations(numbered))
    return numbered, shuffled + data.draw(st.lists(st.sampled_from(numbered), max_size=5))


stories = st.lists(
    st.tuples(
        st.sampled_from([501, 502]),
        st.lists(st.sampled_from(["refund", "edit", "cancel", "move"]), max_size=4),
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(stories=stories, data=st.data())
def test_ledger_any_delivery_order_with_duplicates_matches_in_order(
    engine: Engine, stories: list[tuple[int, list[str]]], data: st.DataObject
) -> None:
    # given the webhooks of a few orders' lives, numbered in the order Shopify sends them
    # when they arrive shuffled, with some delivered twice (same webhook id)
    numbered, arrived = _arrivals(stories, data)
    # then the ledger ends exactly as with in-order delivery
    assert _deliver(engine, arrived) == _deliver(engine, numbered)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(stories=stories, data=st.data())
def test_order_webhooks_applied_together_end_as_applied_one_at_a_time(
    engine: Engine, stories: list[tuple[int, list[str]]], data: st.DataObject
) -> None:
    # given the webhooks of a few orders' lives, shuffled, some delivered twice, arriving in two
    # waves (the second's versions find their orders held)
    _, arrived = _arrivals(stories, data)
    cut = data.draw(st.integers(0, len(arrived)))
    # when the processor applies each batch's order webhooks together, then the ledger ends as
    # when each event is applied alone, by its own handler
    grouped = _deliver(engine, arrived, cut=cut)
    assert grouped == _deliver(engine, arrived, one_at_a_time=True, cut=cut)


customer_events = st.lists(
    st.tuples(
        st.sampled_from([501, 502]),
        st.sampled_from(
            [
                "customers/create",
                "customers/update",
                "customers/delete",
                "customers/redact",
                "orders/create",
            ]
        ),
        st.one_of(st.none(), st.integers(0, 2)),  # updated_at: days after T0, or none
        st.sampled_from(["enabled", "disabled"]),
    ),
    min_size=1,
    max_size=12,
)


def _customer_event(
    number: int, customer_id: int, topic: str, updated: int | None, state: str
) -> tuple[int, str, dict[str, Any]]:
    if topic == "orders/create":
        return number, topic, order_payload(number + 1, customer_id=customer_id, day=number)
    if topic == "customers/delete":
        return number, topic, {"id": customer_id}
    if topic == "customers/redact":
        redact = {"shop_id": 1, "shop_domain": SHOP, "customer": {"id": customer_id}}
        return number, topic, {**redact, "orders_to_redact": []}
    stamp = None if updated is None else (T0 + timedelta(days=updated)).isoformat()
    record = {"id": customer_id, "created_at": T0.isoformat(), "updated_at": stamp}
    return number, topic, {**record, "state": state, "email": "jane@example.com"}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=customer_events, data=st.data())
def test_customer_webhooks_applied_together_end_as_applied_one_at_a_time(
    engine: Engine, events: list[tuple[int, str, int | None, str]], data: st.DataObject
) -> None:
    # given customer webhooks of two customers (records stamped or not, deletes, redacts) and
    # their orders, shuffled, some delivered twice, arriving in two waves
    numbered = [_customer_event(i, *event) for i, event in enumerate(events)]
    arrived = data.draw(st.permutations(numbered))
    arrived += data.draw(st.lists(st.sampled_from(numbered), max_size=3))
    cut = data.draw(st.integers(0, len(arrived)))
    # when the processor applies each batch's customer and order webhooks together, then the
    # ledger, the customers' records and the redactions end as when each is applied alone
    grouped = _deliver(engine, arrived, cut=cut)
    assert grouped == _deliver(engine, arrived, one_at_a_time=True, cut=cut)


@pytest.mark.parametrize("one_at_a_time", [False, True])
def test_same_stamp_version_in_a_group_is_weighed_as_alone(
    shop_engine: Engine, one_at_a_time: bool
) -> None:
    # given an order held, then a version of it stamped the same, whose digest is the greater,
    # in a batch with other orders' webhooks
    enqueue(shop_engine, "orders/create", order_payload(1, total="100.00"), "a")
    process(shop_engine)
    held = order(shop_engine, 1)
    assert held is not None
    later = next(
        version
        for total in range(1, 100)
        if (version := parse_order(minimise("orders/updated", order_payload(1, total=f"{total}"))))
        and version.digest > held.version_digest
    )
    enqueue(shop_engine, "orders/updated", order_payload(1, total=f"{later.total}"), "b")
    for other in range(2, GROUP_MIN + 1):  # enough for a group
        enqueue(shop_engine, "orders/create", order_payload(other), f"other-{other}")
    # when they are processed together, or each alone
    processor = Processor(shop_engine)
    if one_at_a_time:
        while processor.process_one() is not None:
            pass
    else:
        processor.drain()
    # then the same version wins either way: a webhook's same-stamp version is weighed by its
    # digest (the backfill's is the stored version read again, and kept as stored)
    stored = order(shop_engine, 1)
    assert stored is not None and stored.current_total == later.current_total


@pytest.mark.parametrize("position", [0, 3, 99])
def test_redact_in_a_batch_of_grouped_orders_ends_as_one_at_a_time(
    engine: Engine, position: int
) -> None:
    # given orders of two customers, enough for a group, and customer 501's redact among them
    # (first, in the middle or last), naming one order that is not among them
    events: list[tuple[int, str, dict[str, Any]]] = [
        (i, "orders/create", order_payload(i, customer_id=501 + i % 2, day=i))
        for i in range(1, GROUP_MIN + 3)
    ]
    redact = {
        "shop_id": 1,
        "shop_domain": SHOP,
        "customer": {"id": 501},
        "orders_to_redact": [1, 77],
    }
    events.insert(position, (0, "customers/redact", redact))

    def redactions() -> set[tuple[str, int]]:
        with Session(engine) as session:
            return {(r.kind, r.item_id) for r in session.exec(select(Redaction))}

    # when the processor applies the orders grouped, or each event alone
    grouped = _deliver(engine, events), redactions()
    alone = _deliver(engine, events, one_at_a_time=True), redactions()
    # then the ledger and the redactions remembered are the same, and nothing of 501 is held
    assert grouped == alone
    assert all(c != 501 for c in grouped[0]["customers"])
    assert ("customer", 501) in grouped[1] and ("order", 77) in grouped[1]


def test_order_webhook_at_fault_in_a_group_fails_alone(shop_engine: Engine) -> None:
    # given a group's worth of order webhooks in one batch, the second with no currency
    count = GROUP_MIN + 1
    for order_id in range(1, count + 1):
        payload = order_payload(order_id, updated=order_id)
        if order_id == 2:
            del payload["currency"]
        enqueue(
            shop_engine, "orders/paid" if order_id % 2 else "orders/create", payload, f"{order_id}"
        )
    # when they are processed, then only that one fails; the others are applied
    assert Processor(shop_engine).drain().by_outcome == {"done": count - 1, "retry": 1}
    assert [order_id for order_id in range(1, count + 1) if order(shop_engine, order_id)] == [
        order_id for order_id in range(1, count + 1) if order_id != 2
    ]
    assert customer(shop_engine).orders == count - 1  # type: ignore[union-attr]


def test_a_group_at_fault_is_applied_one_at_a_time_even_as_webhooks_keep_coming(
    shop_engine: Engine,
) -> None:
    # given a group of order webhooks, one at fault, and a webhook being stored all along
    count = GROUP_MIN + 1
    for order_id in range(1, count + 1):
        payload = order_payload(order_id)
        if order_id == 1:
            del payload["currency"]
        enqueue(shop_engine, "orders/create", payload, f"{order_id}")
    gate = IngestGate(serialise_writes=False)
    processor = Processor(shop_engine, gate=gate)
    with gate.storing():
        # when a batch is processed (it ends as soon as it can, for the webhook)
        outcomes = processor.process_batch(50)
    # then the group's events were applied one at a time before it ended: the one at fault
    # has its failure counted, the others are applied
    assert sorted(outcome.value for outcome in outcomes) == ["done"] * (count - 1) + ["retry"]
    assert customer(shop_engine).orders == count - 1  # type: ignore[union-attr]


def test_processors_running_at_once_apply_each_event_once_as_one_processor_would(
    engine: Engine,
) -> None:
    # given the webhooks of 30 orders' lives (versions, refunds, cancellations, a customer
    # changed) among three customers, and those customers' records, shuffled: events that
    # touch the same orders and customers, for processors to contend over
    rng = random.Random(7)
    steps = ["refund", "edit", "cancel", "move", "refund"]
    events = [
        event
        for order_id in range(1, 31)
        for event in _order_story(
            order_id, 501 + order_id % 3, rng.sample(steps, rng.randint(0, 4))
        )
    ]
    for customer_id in (501, 502, 503):
        for day in range(3):
            stamp = (T0 + timedelta(days=day)).isoformat()
            record = {"id": customer_id, "created_at": T0.isoformat(), "updated_at": stamp}
            events.append(("customers/update", {**record, "state": f"state-{day}"}))
    rng.shuffle(events)
    numbered = [(i, topic, payload) for i, (topic, payload) in enumerate(events)]
    _reset(engine)
    for webhook_id, topic, payload in numbered:
        enqueue(engine, topic, payload, f"wh-{webhook_id}")
    # when three processors drain the inbox at once, in small batches and groups
    start = threading.Barrier(3)
    outcomes: list[Counter[str]] = []

    def drain() -> None:
        start.wait()
        outcomes.append(Processor(engine, batch_size=8, group_min=2).drain().by_outcome)

    threads = [threading.Thread(target=drain, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(outcomes) == 3
    # (an event that lost a deadlock to another processor is retried once its time comes)
    later = Processor(engine, clock=lambda: datetime.now(UTC) + timedelta(hours=2)).drain()
    together = _snapshot(engine)
    # then each event was applied exactly once between them (no two took the same row), and
    # the ledger ends as when one processor applies each event alone
    assert sum(o["done"] for o in outcomes) + later.by_outcome["done"] == len(numbered)
    with Session(engine) as session:
        statuses = Counter(e.status for e in session.exec(select(InboxEvent)))
    assert statuses == {DONE: len(numbered)}
    assert together == _deliver(engine, numbered, one_at_a_time=True)


def test_ledger_events_are_applied_once_and_marked_done(shop_engine: Engine) -> None:
    enqueue(shop_engine, "orders/create", order_payload(1), "a")
    enqueue(shop_engine, "orders/create", order_payload(1), "a")  # same webhook id
    process(shop_engine)
    with Session(shop_engine) as session:
        events = session.exec(select(InboxEvent)).all()
    assert [(e.status, e.payload) for e in events] == [(DONE, "{}")]
    assert customer(shop_engine).orders == 1  # type: ignore[union-attr]


def test_processor_failing_handler_leaves_ledger_untouched(
    shop_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a handler that writes and then fails
    def half_done(session: Any, shop: Any, payload: Any, event: Any) -> None:
        HANDLERS["orders/paid"](session, shop, payload, event)
        raise RuntimeError("boom")

    monkeypatch.setitem(HANDLERS, "orders/create", half_done)
    enqueue(shop_engine, "orders/create", order_payload(1), "a")
    assert Processor(shop_engine).process_one() is Outcome.RETRY
    # then its writes were rolled back and the event waits for its retry
    assert order(shop_engine, 1) is None
    with Session(shop_engine) as session:
        assert session.exec(select(InboxEvent.status)).one() == PENDING
        assert session.exec(select(col(Customer.customer_id))).all() == []


@pytest.mark.parametrize("detail_from", ["refunds/create", "orders/updated"])
def test_a_refund_the_backfill_held_without_amounts_takes_them_from_a_webhook(
    engine: Engine, detail_from: str
) -> None:
    # given an order of 100.00 the backfill read with its current total of 70.00, listing a
    # refund by id and date alone (the bulk export gives no amounts)
    shop = add_shop(engine)
    version = parse_order(order_payload(1001, total="100.00", current_total="70.00"))
    bare = RefundRecord(3001, 1001, T0 + timedelta(days=1), Decimal(0), None, None, ())
    with Session(engine) as session, session.begin():
        ledger.apply_order_batch(session, shop, [replace(version, refunds=(bare,))])
    # when a webhook with the refund's amount comes after it
    refund = refund_payload(3001, 1001, "30.00")
    if detail_from == "refunds/create":
        enqueue(engine, "refunds/create", refund, "r-3001")
    else:
        updated = order_payload(
            1001, total="100.00", current_total="70.00", refunds=[refund], updated=1
        )
        enqueue(engine, "orders/updated", updated, "u-1001")
    assert Processor(engine).drain().by_outcome == {"done": 1}
    # then the refund held has its amount (the data-request report showed 0), and the
    # customer's figures are as they were: the order's total already netted it
    with Session(engine) as session:
        held = session.exec(select(Refund)).one()
        customer = session.exec(select(Customer)).one()
    assert (held.transactions_amount, held.transactions_currency) == (Decimal("30.00"), "USD")
    assert held.reflected and customer.net_spend == Decimal("70.00")
