"""Reading Shopify's payloads: ids must be ids; what refunds and orders are read as."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from plugin.domain.ledger_values import MAX_ID
from tests.helpers import SHOP, T0, money, order_payload, refund_payload
from webhooks.payloads import ORDER_TOPICS, PayloadError, minimise, parse_order, parse_refund


@pytest.mark.parametrize("bad", [0, -7, "-7", MAX_ID + 1, str(MAX_ID + 1), "7a", 7.0, True])
def test_an_order_id_that_is_no_shopify_id_is_refused_naming_the_field(bad: Any) -> None:
    # given an order whose id is zero, negative, past the ledger's BIGINT, or not a number
    payload = order_payload(1001)
    payload["id"] = bad
    # when it is read, then it is refused as a payload, naming the field (not by the database,
    # which would fail the whole batch the event came in)
    with pytest.raises(PayloadError, match=r"^id: "):
        parse_order(payload)


@pytest.mark.parametrize("field", ["id", "order_id"])
def test_a_refund_naming_an_order_past_bigint_is_refused(field: str) -> None:
    payload = refund_payload(3001, 1001, "5.00")
    payload[field] = MAX_ID + 1
    with pytest.raises(PayloadError, match=rf"^{field}: "):
        parse_refund(payload)


def test_the_largest_id_is_read() -> None:
    payload = order_payload(1001)
    payload["id"] = str(MAX_ID)
    payload["line_items"][0]["product_id"] = MAX_ID
    order = parse_order(payload)
    assert order.order_id == MAX_ID and order.lines[0].product_id == MAX_ID


@pytest.mark.parametrize(
    ("moment", "taken"),
    [
        ("1970-01-01T00:00:00Z", True),
        ("2199-12-31T23:59:59-05:00", False),  # 2200 in UTC
        ("2199-12-31T23:59:59Z", True),
        ("2200-01-01T00:00:00Z", False),
        ("1969-12-31T23:59:59Z", False),
        ("9999-12-31T12:00:00Z", False),
    ],
)
def test_an_order_dated_outside_1970_to_2200_is_refused_naming_the_field(
    moment: str, taken: bool
) -> None:
    # given an order processed at a moment near or past the bounds (a bogus year 9999 order
    # stopped every rescore and refit of a shop with a time zone)
    payload = order_payload(1001)
    payload["processed_at"] = moment
    # when it is read, then it is taken, or refused as a payload naming the field
    if taken:
        assert parse_order(payload).processed_at.isoformat().startswith(moment[:4])
    else:
        with pytest.raises(PayloadError, match=r"^processed_at: .* not between 1970 and 2200"):
            parse_order(payload)


@pytest.mark.parametrize(
    ("amount", "taken"),
    [
        ("1000000000000", True),
        ("-1000000000000", True),
        ("1000000000000.01", False),
        ("-1000000000000.01", False),
        ("1e30", False),
    ],
)
def test_an_amount_past_10_to_the_12_is_refused_naming_the_field(amount: str, taken: bool) -> None:
    # given an order whose total is near or past the bound (1e30 overflowed the ledger's
    # column when stored, and failed every order stored with it)
    payload = order_payload(1001, total=amount)
    # when it is read, then it is taken, or refused as a payload naming the field
    if taken:
        assert str(parse_order(payload).total) == amount
    else:
        with pytest.raises(PayloadError, match=r"^total_price_set.shop_money.amount: .* at most"):
            parse_order(payload)


@pytest.mark.parametrize("bad", [True, None, [1]])
def test_an_amount_that_is_no_number_is_refused_naming_the_field(bad: Any) -> None:
    # given an order whose total is a bool (Decimal would read True as a word), null or a list
    payload = order_payload(1001)
    payload["total_price_set"]["shop_money"]["amount"] = bad
    # when it is read, then it is refused saying what came
    with pytest.raises(PayloadError) as refused:
        parse_order(payload)
    field = "total_price_set.shop_money.amount"
    assert str(refused.value) == f"{field}: expected a decimal amount, got {bad!r}"


@pytest.mark.parametrize(
    ("quantity", "read"),
    [(3, 3), (2.0, 2), ("4", 4), (0, 0), (2**31 - 1, 2**31 - 1)],
)
def test_a_whole_quantity_is_read(quantity: Any, read: int) -> None:
    payload = order_payload(1001)
    payload["line_items"][0]["quantity"] = quantity
    payload["line_items"][0]["current_quantity"] = quantity
    line = parse_order(payload).lines[0]
    assert (line.quantity, line.current_quantity) == (read, read)


@pytest.mark.parametrize("bad", [True, 1.5, "1.5", -1, 2**31, "NaN", [1]])
@pytest.mark.parametrize("field", ["quantity", "current_quantity"])
def test_a_quantity_that_is_no_whole_number_in_range_is_refused_naming_the_field(
    bad: Any, field: str
) -> None:
    # given a line whose quantity is a bool, a fraction (read as 1 before), negative, or past
    # the ledger's INTEGER column (which refused it when stored)
    payload = order_payload(1001)
    payload["line_items"][0][field] = bad
    with pytest.raises(PayloadError, match=rf"^line_items\[0\]\.{field}: "):
        parse_order(payload)


def test_a_refund_line_quantity_must_be_whole() -> None:
    payload = refund_payload(3001, 1001, "5.00")
    payload["refund_line_items"] = [{"line_item_id": 9001, "quantity": 0.5}]
    with pytest.raises(PayloadError, match=r"^refund_line_items.quantity: not a whole number"):
        parse_refund(payload)


# --- what a refund and an order are read as ---------------------------------------------------


def test_only_successful_refund_transactions_count() -> None:
    # given a refund's transactions: one returned, one that failed, one whose status is not
    # given (counted: whether Shopify gives it is unconfirmed), and a sale that is no refund
    payload = refund_payload(3001, 1001, "30.00")
    payload["transactions"] += [
        {"amount": "30.00", "currency": "USD", "kind": "refund", "status": "failure"},
        {"amount": "5.00", "currency": "USD", "kind": "refund"},
        {"amount": "50.00", "currency": "USD", "kind": "sale", "status": "success"},
    ]
    refund = parse_refund(payload)
    assert (refund.transactions_amount, refund.transactions_currency) == (Decimal("35.00"), "USD")


def test_refund_transactions_in_two_currencies_give_no_amount_of_their_own() -> None:
    # given a refund returned partly in the shop's currency and partly in another
    payload = refund_payload(3001, 1001, "30.00")
    payload["transactions"].append(
        {"amount": "10.00", "currency": "EUR", "kind": "refund", "status": "success"}
    )
    # then its transactions say nothing: its lines are netted instead (`refund_amount`)
    refund = parse_refund(payload)
    assert (refund.transactions_amount, refund.transactions_currency) == (None, None)


def test_a_refunds_lines_count_with_their_taxes_and_its_shipping_refund() -> None:
    # given a refunded line of 20.00 with 2.00 of tax, and 5.00 of shipping refunded (an order
    # adjustment, which Shopify sends as a negative amount)
    payload = refund_payload(3001, 1001, "27.00")
    payload["refund_line_items"] = [
        {
            "line_item_id": 10011,
            "quantity": 1,
            "subtotal_set": money("20.00"),
            "total_tax_set": money("2.00"),
        }
    ]
    payload["order_adjustments"] = [{"kind": "shipping_refund", "amount_set": money("-5.00")}]
    assert parse_refund(payload).lines_amount == Decimal("27.00")


def test_a_line_without_a_current_quantity_is_taken_as_unedited() -> None:
    payload = order_payload(1001)
    payload["line_items"][0] |= {"quantity": 3}
    del payload["line_items"][0]["current_quantity"]
    line = parse_order(payload).lines[0]
    assert (line.quantity, line.current_quantity) == (3, 3)


def test_an_order_without_updated_at_is_versioned_by_its_creation() -> None:
    payload = order_payload(1001, day=3)
    del payload["updated_at"]
    order = parse_order(payload)
    assert order.updated_at == order.created_at == T0 + timedelta(days=3)


def test_a_lines_product_type_and_sku_are_cut_to_their_columns() -> None:
    payload = order_payload(1001)
    payload["line_items"][0] |= {"product_type": "T" * 300, "sku": "S" * 300}
    line = parse_order(payload).lines[0]
    assert (line.product_type, line.sku) == ("T" * 255, "S" * 255)


@pytest.mark.parametrize("bad", [None, "US", "USDX", 840])
def test_an_order_without_a_three_letter_currency_is_refused_naming_the_field(bad: Any) -> None:
    payload = order_payload(1001)
    payload["currency"] = bad
    with pytest.raises(PayloadError, match=r"^currency: expected the shop's 3-letter currency"):
        parse_order(payload)


def test_an_orders_digest_does_not_depend_on_the_order_of_its_keys() -> None:
    # given the same order with its keys, and its lines' keys, the other way round
    payload = order_payload(1001)
    turned = dict(reversed(payload.items()))
    turned["line_items"] = [dict(reversed(line.items())) for line in payload["line_items"]]
    # then both are the same version (the digest breaks ties of updated_at)
    assert parse_order(turned).digest == parse_order(payload).digest


# --- what is kept of a payload (`minimise`) reads as the whole payload ------------------------


def full_refund() -> dict[str, Any]:
    """A refund with every kind of field the ledger reads: a taxed line, a shipping refund, a
    transaction returned, one that failed, one without a status and a sale."""
    payload = refund_payload(3001, 1001, "30.00")
    payload["transactions"] += [
        {"amount": "30.00", "currency": "USD", "kind": "refund", "status": "failure"},
        {"amount": "5.00", "currency": "USD", "kind": "refund"},
        {"amount": "50.00", "currency": "USD", "kind": "sale", "status": "success"},
    ]
    payload["refund_line_items"] = [
        {
            "line_item_id": 10011,
            "quantity": 1,
            "subtotal_set": money("20.00"),
            "total_tax_set": money("2.00"),
            "line_item": {"title": "Green tea", "name": "Green tea"},
        }
    ]
    payload["order_adjustments"] = [{"kind": "shipping_refund", "amount_set": money("-5.00")}]
    return payload


def test_what_is_kept_of_a_refund_reads_as_the_whole_refund() -> None:
    payload = full_refund()
    refund = parse_refund(minimise("refunds/create", payload))
    assert refund == parse_refund(payload)
    assert (refund.lines_amount, refund.transactions_amount) == (Decimal("27.00"), Decimal("35.00"))


@pytest.mark.parametrize("topic", sorted(ORDER_TOPICS))
def test_what_is_kept_of_an_order_reads_as_the_whole_order(topic: str) -> None:
    # given an order with a refund in it, a discounted line and a gift card line, processed
    # a day after it was created
    payload = order_payload(1001, refunds=[full_refund()])
    payload["processed_at"] = (T0 + timedelta(days=1)).isoformat()
    payload["line_items"][0]["total_discount"] = "3.00"
    gift = payload["line_items"][0] | {"id": 10012, "gift_card": True, "sku": None}
    payload["line_items"].append(gift)
    # when what is kept of it is read, then it reads as the whole (but for the digest, which
    # is of what is kept)
    order = parse_order(minimise(topic, payload))
    assert replace(order, digest="") == replace(parse_order(payload), digest="")
    line, gift_line = order.lines
    assert (line.total_discount, line.sku, gift_line.gift_card) == (Decimal("3.00"), "SKU-1", True)
    assert (order.source_name, order.processed_at) == ("web", T0 + timedelta(days=1))
    assert order.refunds[0].transactions_amount == Decimal("35.00")


@pytest.mark.parametrize("topic", ["customers/data_request", "customers/redact"])
def test_a_compliance_request_keeps_its_ids_and_nothing_of_the_customer_but_the_id(
    topic: str,
) -> None:
    # given Shopify's example request, with the customer's email and phone
    orders = "orders_requested" if topic == "customers/data_request" else "orders_to_redact"
    payload = {
        "shop_id": 954889,
        "shop_domain": SHOP,
        orders: [299938, 280263],
        "customer": {"id": 191167, "email": "john@example.com", "phone": "555-625-1199"},
        "data_request": {"id": 9999, "note": "sent by email"},
    }
    if topic == "customers/redact":
        del payload["data_request"]
    # then what is kept is its ids alone
    expected = {"shop_id": 954889, "shop_domain": SHOP, orders: [299938, 280263]}
    expected["customer"] = {"id": 191167}
    if topic == "customers/data_request":
        expected["data_request"] = {"id": 9999}
    assert minimise(topic, payload) == expected
