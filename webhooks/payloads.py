"""Webhook payloads: what is kept of them, and how they map to ledger records.

`minimise` runs at ingestion, before anything is written: it keeps only the ids, dates, amounts
and product fields the ledger needs, so names, emails, phones and addresses never reach the
database. The `parse_*` functions run in the processor and raise PayloadError with a message
that says which field is wrong.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from plugin.domain import ledger_values
from plugin.domain.ledger import OrderLine, OrderVersion, RefundRecord

ORDER_TOPICS = frozenset({"orders/create", "orders/updated", "orders/paid", "orders/cancelled"})

_MONEY_SET = ("shop_money", "presentment_money")
_ORDER_FIELDS = (
    "id",
    "currency",
    "presentment_currency",
    "total_price",
    "current_total_price",
    "total_price_set",
    "current_total_price_set",
    "financial_status",
    "cancelled_at",
    "created_at",
    "processed_at",
    "updated_at",
    "test",
    "source_name",
)
_LINE_FIELDS = (
    "id",
    "product_id",
    "variant_id",
    "quantity",
    "current_quantity",
    "price",
    "price_set",
    "total_discount",
    "sku",
    "gift_card",
    "product_type",
)
_REFUND_FIELDS = ("id", "order_id", "created_at")
_REFUND_LINE_FIELDS = ("line_item_id", "quantity", "subtotal_set", "total_tax_set")
_TRANSACTION_FIELDS = ("amount", "currency", "kind", "status")
_ADJUSTMENT_FIELDS = ("amount", "amount_set", "kind")
_CUSTOMER_FIELDS = ("id", "created_at", "updated_at", "state")


class PayloadError(ValueError):
    """A payload lacks a field the ledger needs, or has it in a shape that cannot be read."""


def _pick(source: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(source, Mapping):
        return {}
    return {k: source[k] for k in fields if k in source}


def _pick_all(source: Any, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    return [_pick(item, fields) for item in source] if isinstance(source, list) else []


def _minimise_refund(refund: Any) -> dict[str, Any]:
    kept = _pick(refund, _REFUND_FIELDS)
    if isinstance(refund, Mapping):
        kept["refund_line_items"] = _pick_all(refund.get("refund_line_items"), _REFUND_LINE_FIELDS)
        kept["transactions"] = _pick_all(refund.get("transactions"), _TRANSACTION_FIELDS)
        kept["order_adjustments"] = _pick_all(refund.get("order_adjustments"), _ADJUSTMENT_FIELDS)
    return kept


def _minimise_order(payload: Mapping[str, Any]) -> dict[str, Any]:
    kept = _pick(payload, _ORDER_FIELDS)
    customer = payload.get("customer")
    kept["customer"] = {"id": customer.get("id")} if isinstance(customer, Mapping) else None
    kept["line_items"] = _pick_all(payload.get("line_items"), _LINE_FIELDS)
    refunds = payload.get("refunds")
    kept["refunds"] = [_minimise_refund(r) for r in refunds] if isinstance(refunds, list) else []
    return kept


def _minimise_compliance(payload: Mapping[str, Any]) -> dict[str, Any]:
    kept = _pick(payload, ("shop_id", "shop_domain", "orders_requested", "orders_to_redact"))
    customer = payload.get("customer")
    if isinstance(customer, Mapping):
        kept["customer"] = {"id": customer.get("id")}
    request = payload.get("data_request")
    if isinstance(request, Mapping):
        kept["data_request"] = {"id": request.get("id")}
    return kept


def minimise(topic: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a payload this app keeps, by topic. Never raises: parsing comes later."""
    if topic in ORDER_TOPICS:
        return _minimise_order(payload)
    if topic == "refunds/create":
        return _minimise_refund(payload)
    if topic in ("customers/create", "customers/update", "customers/delete"):
        return _pick(payload, _CUSTOMER_FIELDS)
    if topic in ("customers/data_request", "customers/redact", "shop/redact"):
        return _minimise_compliance(payload)
    if topic == "app/uninstalled":
        return _pick(payload, ("id", "domain", "myshopify_domain", "currency"))
    return {}


# --- parsing into ledger records ---------------------------------------------------------


def parse_time(value: Any, field: str) -> datetime:
    """`ledger_values.read_moment` (1970 to 2200; no zone: UTC), PayloadError naming `field`."""
    try:
        return ledger_values.read_moment(value)
    except ValueError as exc:
        raise PayloadError(f"{field}: {exc}") from None


def _optional_time(value: Any, field: str) -> datetime | None:
    return None if value is None else parse_time(value, field)


def _decimal(value: Any, field: str) -> Decimal:
    """`ledger_values.read_amount` (finite, in range), PayloadError naming `field`."""
    try:
        return ledger_values.read_amount(value)
    except ValueError as exc:
        raise PayloadError(f"{field}: {exc}") from None


def _quantity(value: Any, field: str) -> int:
    """`ledger_values.read_quantity` (whole, 0 to 2^31-1), PayloadError naming `field`."""
    try:
        return ledger_values.read_quantity(value)
    except ValueError as exc:
        raise PayloadError(f"{field}: {exc}") from None


def parse_id(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PayloadError(f"{field}: expected a numeric id, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise PayloadError(f"{field}: not a numeric id: {value!r}") from None
    try:
        return ledger_values.checked_id(number)
    except ValueError as exc:
        raise PayloadError(f"{field}: {exc}") from None


def _optional_id(value: Any, field: str) -> int | None:
    return None if value is None else parse_id(value, field)


def _shop_money(payload: Mapping[str, Any], set_field: str, plain_field: str) -> Decimal:
    """`<set_field>.shop_money.amount`, or the older plain `<plain_field>` (shop currency)."""
    money_set = payload.get(set_field)
    if isinstance(money_set, Mapping) and isinstance(money_set.get("shop_money"), Mapping):
        return _decimal(money_set["shop_money"].get("amount"), f"{set_field}.shop_money.amount")
    if plain_field in payload:
        return _decimal(payload[plain_field], plain_field)
    raise PayloadError(f"{set_field}: missing")


def _line(item: Mapping[str, Any], index: int) -> OrderLine:
    where = f"line_items[{index}]"
    quantity = _quantity(item.get("quantity", 0), f"{where}.quantity")
    current = item.get("current_quantity")
    current = quantity if current is None else current  # absent or null: no edit known
    product_type = item.get("product_type")
    sku = item.get("sku")
    return OrderLine(
        line_id=parse_id(item.get("id"), f"{where}.id"),
        product_id=_optional_id(item.get("product_id"), f"{where}.product_id"),
        variant_id=_optional_id(item.get("variant_id"), f"{where}.variant_id"),
        quantity=quantity,
        current_quantity=_quantity(current, f"{where}.current_quantity"),
        price=_shop_money(item, "price_set", "price")
        if "price_set" in item or "price" in item
        else Decimal(0),
        total_discount=_decimal(item.get("total_discount") or "0", f"{where}.total_discount"),
        gift_card=bool(item.get("gift_card", False)),
        product_type=product_type[:255] if isinstance(product_type, str) else None,
        sku=sku[:255] if isinstance(sku, str) and sku else None,
    )


def _transactions_total(refund: Mapping[str, Any]) -> tuple[Decimal | None, str | None]:
    """The successful refund transactions' total and their currency (None if unstated)."""
    transactions = [
        t
        for t in refund.get("transactions", [])
        if t.get("kind") == "refund" and t.get("status") in ("success", None)
    ]
    currencies = {t.get("currency") for t in transactions}
    if not transactions or len(currencies) > 1:
        return None, None
    total = sum(
        (_decimal(t.get("amount"), "transactions.amount") for t in transactions), Decimal(0)
    )
    return total, currencies.pop()


def _lines_total(refund: Mapping[str, Any]) -> Decimal:
    """Refunded lines' subtotals and taxes in shop money, plus refunded order adjustments
    (shipping refunds, which Shopify sends as negative amounts)."""
    total = Decimal(0)
    for line in refund.get("refund_line_items", []):
        for money_set in ("subtotal_set", "total_tax_set"):
            if line.get(money_set) is not None:
                total += _shop_money(line, money_set, money_set)
    for adjustment in refund.get("order_adjustments", []):
        if "amount_set" in adjustment or "amount" in adjustment:
            total -= _shop_money(adjustment, "amount_set", "amount")
    return total


def parse_refund(payload: Mapping[str, Any]) -> RefundRecord:
    lines = tuple(
        (
            parse_id(item.get("line_item_id"), "refund_line_items.line_item_id"),
            _quantity(item.get("quantity", 0), "refund_line_items.quantity"),
        )
        for item in payload.get("refund_line_items", [])
    )
    transactions_amount, currency = _transactions_total(payload)
    return RefundRecord(
        refund_id=parse_id(payload.get("id"), "id"),
        order_id=parse_id(payload.get("order_id"), "order_id"),
        created_at=parse_time(payload.get("created_at"), "created_at"),
        lines_amount=_lines_total(payload),
        transactions_amount=transactions_amount,
        transactions_currency=currency if isinstance(currency, str) else None,
        lines=lines,
    )


def payload_digest(payload: Mapping[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_order(payload: Mapping[str, Any]) -> OrderVersion:
    """An order payload (any orders/* topic) as an OrderVersion, in shop currency."""
    currency = payload.get("currency")
    if not isinstance(currency, str) or len(currency) != 3:
        raise PayloadError(f"currency: expected the shop's 3-letter currency, got {currency!r}")
    created_at = parse_time(payload.get("created_at"), "created_at")
    customer = payload.get("customer")
    refunds = []
    for raw in payload.get("refunds") or []:
        raw = {"order_id": payload.get("id"), **raw}
        refunds.append(parse_refund(raw))
    presentment = payload.get("presentment_currency")
    return OrderVersion(
        order_id=parse_id(payload.get("id"), "id"),
        customer_id=_optional_id(customer.get("id"), "customer.id")
        if isinstance(customer, Mapping)
        else None,
        created_at=created_at,
        processed_at=_optional_time(payload.get("processed_at"), "processed_at") or created_at,
        updated_at=parse_time(payload.get("updated_at") or payload.get("created_at"), "updated_at"),
        currency=currency,
        presentment_currency=presentment if isinstance(presentment, str) else None,
        total=_shop_money(payload, "total_price_set", "total_price"),
        current_total=_shop_money(payload, "current_total_price_set", "current_total_price"),
        financial_status=payload.get("financial_status"),
        cancelled_at=_optional_time(payload.get("cancelled_at"), "cancelled_at"),
        test=bool(payload.get("test", False)),
        source_name=payload.get("source_name"),
        refunds=tuple(refunds),
        lines=tuple(_line(item, i) for i, item in enumerate(payload.get("line_items") or [])),
        digest=payload_digest(payload),
    )
