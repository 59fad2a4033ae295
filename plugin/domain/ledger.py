"""The ledger's rules: what an order is worth, which version of it wins, what a customer adds up to.

Pure: records in, figures out. The webhook handlers map payloads to these records; the store
applies them and keeps the rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

ZERO = Decimal("0")


@dataclass(frozen=True)
class OrderLine:
    line_id: int
    product_id: int | None  # None for custom items
    variant_id: int | None
    quantity: int
    current_quantity: int  # after edits and refunds
    price: Decimal  # unit price, shop currency
    total_discount: Decimal
    gift_card: bool
    product_type: str | None
    sku: str | None


@dataclass(frozen=True)
class RefundRecord:
    refund_id: int
    order_id: int
    created_at: datetime
    lines_amount: Decimal  # refunded lines, taxes and adjustments, in shop money
    transactions_amount: Decimal | None  # money returned, in `transactions_currency`
    transactions_currency: str | None
    lines: tuple[tuple[int, int], ...]  # (line_id, quantity)


def refund_amount(
    lines_amount: Decimal,
    transactions_amount: Decimal | None,
    transactions_currency: str | None,
    shop_currency: str,
    presentment_currency: str | None,
) -> Decimal:
    """A refund's amount in shop currency.

    The successful refund transactions say what was actually returned, but in the currency the
    customer paid in; they are used when that is the shop's currency, or when it is not stated
    (whether Shopify states it is unconfirmed) and the order was paid in the shop's currency
    (its presentment currency is the shop's, or unknown). Otherwise the refunded lines'
    shop-money subtotals and taxes, with refunded adjustments, are used. Both currencies are
    the order's, so this is decided when the refund is netted from its order, whatever order
    the two arrived in.
    """
    if transactions_amount is None:
        return lines_amount
    stated = transactions_currency or presentment_currency
    return transactions_amount if stated in (None, shop_currency) else lines_amount


@dataclass(frozen=True)
class OrderVersion:
    """One delivery's view of an order. The newest `updated_at` wins; see `newer_than`."""

    order_id: int
    customer_id: int | None  # None for guest checkouts
    created_at: datetime
    processed_at: datetime
    updated_at: datetime
    currency: str  # the shop's currency
    presentment_currency: str | None
    total: Decimal  # total_price_set.shop_money: as first placed
    current_total: Decimal  # current_total_price_set.shop_money: after edits, refunds, cancels
    financial_status: str | None
    cancelled_at: datetime | None
    test: bool
    source_name: str | None
    refunds: tuple[RefundRecord, ...]  # the refunds this version already reflects
    lines: tuple[OrderLine, ...]
    digest: str  # of the payload: breaks ties between versions with the same updated_at


def newer_than(candidate: tuple[datetime, str], stored: tuple[datetime, str]) -> bool:
    """Whether a version (updated_at, digest) replaces the stored one.

    Later `updated_at` wins. Two versions stamped with the same instant are ordered by payload
    digest: arbitrary, but the same whatever order they arrive in, so the ledger does not depend
    on delivery order.
    """
    return candidate > stored


# Financial statuses of an order that brought no money: fully refunded, payment voided, or
# authorized and never captured before the authorization expired.
NO_MONEY_STATUSES = frozenset({"refunded", "voided", "expired"})


def order_net_amount(
    current_total: Decimal,
    *,
    cancelled: bool,
    financial_status: str | None,
    unreflected_refunds: Iterable[Decimal],
) -> Decimal:
    """What an order is worth to the customer's value, in shop currency.

    `current_total` (current_total_price_set.shop_money) already reflects the edits, refunds and
    cancellation known when that version was sent; refunds delivered since (by refunds/create,
    before an orders/updated catches up) are subtracted here. Cancelled and fully refunded
    orders are worth zero, as are orders whose payment was voided or whose authorization
    expired uncaptured (`NO_MONEY_STATUSES`: no money came in, cancelled or not), and no order
    is worth less than zero.
    """
    if cancelled or financial_status in NO_MONEY_STATUSES:
        return ZERO
    net = current_total - sum(unreflected_refunds, ZERO)
    return max(net, ZERO)


def order_counts(net_amount: Decimal, *, cancelled: bool, financial_status: str | None) -> bool:
    """An order counts as a purchase when it was not cancelled, fully refunded or left unpaid
    (`NO_MONEY_STATUSES`) and kept value."""
    return not cancelled and financial_status not in NO_MONEY_STATUSES and net_amount > ZERO


@dataclass(frozen=True)
class CustomerTotals:
    orders: int
    net_spend: Decimal
    first_order_at: datetime | None
    last_order_at: datetime | None


def customer_totals(counted_orders: Iterable[tuple[datetime, Decimal]]) -> CustomerTotals:
    """Orders, net spend and first/last order date over a customer's counted (date, net) orders."""
    count, spend = 0, ZERO
    first: datetime | None = None
    last: datetime | None = None
    for placed_at, net in counted_orders:
        count += 1
        spend += net
        first = placed_at if first is None or placed_at < first else first
        last = placed_at if last is None or placed_at > last else last
    return CustomerTotals(orders=count, net_spend=spend, first_order_at=first, last_order_at=last)
