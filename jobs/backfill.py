"""Backfill: the shop's order history read from the Admin API into the ledger.

Webhooks only bring what happens after the app is installed. The backfill reads every order
(or those updated since a date) with one bulk query, `bulkOperationRunQuery` over `orders` with
their line items, and applies each one to the ledger as an order webhook is applied: an order is
versioned by `updatedAt`, and only a later stamp than the ledger holds replaces it, so a backfill
that meets orders already delivered by webhooks, or runs twice, changes nothing.

The bulk result lists each line item on its own line after its order, with `__parentId`. It is
written to a temporary file as it downloads and read twice, never held whole in memory (a large
shop's export runs to gigabytes): once to count the orders and find any whose line items do not
follow it directly (Shopify writes them so, but only promises "after"), then to apply each order
as soon as its line items are read, the scattered ones (normally none) gathered and applied last.

Scheduled daily (`scheduled_backfill`), it reads the orders updated since its last successful
run began (less a day's overlap), or the whole history the first time: the periodic read through
the Admin API that catches the webhooks Shopify never delivered.

What the query reads is what the ledger keeps: ids, dates, amounts and products. The order's
`currentTotalPriceSet` already nets its refunds, so the refunds are read for their ids only and
recorded as reflected in the total (with no amount of their own). Customers get their ledger
row from their orders; a customer without an order has no figures to keep.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import anyio
from sqlmodel import Session, col, select

from jobs.context import JobContext
from jobs.writeback import admin_client
from plugin.domain.ledger import OrderLine, OrderVersion, RefundRecord
from plugin.shopify.bulk import BulkRunner, OnPoll, jsonl_lines
from plugin.shopify.gid import gid_number
from plugin.store import ledger
from plugin.store.models import JobRun, Shop

log = logging.getLogger(__name__)

APPLY_BATCH = 500  # orders per transaction
OVERLAP = timedelta(days=1)  # the scheduled run reads from this long before the last one began

_ORDER_FIELDS = """
id customer { id } createdAt processedAt updatedAt cancelledAt test sourceName
displayFinancialStatus currencyCode presentmentCurrencyCode
totalPriceSet { shopMoney { amount currencyCode } }
currentTotalPriceSet { shopMoney { amount currencyCode } }
refunds { id createdAt }
lineItems { edges { node {
  id quantity currentQuantity isGiftCard sku
  product { id productType } variant { id }
  originalUnitPriceSet { shopMoney { amount } }
  totalDiscountSet { shopMoney { amount } }
} } }
"""


class BackfillError(RuntimeError):
    """The store's order history could not be read."""


class OrderDataError(ValueError):
    """An order from the store lacks a field the ledger needs, or has it in a wrong shape."""


@dataclass(frozen=True)
class BackfillCounts:
    since: str | None  # orders updated since then were read; None: all of them
    covers_all: bool  # the ledger has every order up to the run's start (see last_backfill_start)
    orders_read: int
    orders_applied: int  # newer than what the ledger held (or new)
    orders_unchanged: int  # the ledger already held this version or a newer one
    test_orders_skipped: int
    orders_rejected: int  # unreadable: logged with the reason, the rest goes on
    seconds: float


Progress = Callable[[int, int], None]  # (orders done, orders read)


def orders_query(since: datetime | None) -> str:
    """The bulk query: every order, or those updated since `since`."""
    filter_ = ""
    if since is not None:
        stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        filter_ = f"(query: {json.dumps(f'updated_at:>={stamp}')})"
    return f"{{ orders{filter_} {{ edges {{ node {{ {_ORDER_FIELDS} }} }} }} }}"


@dataclass(frozen=True)
class ExportShape:
    orders: int
    scattered: frozenset[str]  # orders whose line items do not all follow them directly


def export_shape(export: Path) -> ExportShape:
    """First pass over the export: how many orders, and which have line items elsewhere than
    right after them (Shopify writes them so; it only promises "after")."""
    orders, scattered, current = 0, set[str](), None
    for line in jsonl_lines(export):
        parent = line.get("__parentId")
        if parent is None:
            orders, current = orders + 1, line.get("id")
        elif parent != current:
            scattered.add(str(parent))
    return ExportShape(orders, frozenset(scattered))


def read_orders(
    export: Path, scattered: frozenset[str]
) -> Iterator[tuple[dict[str, Any], list[Any]]]:
    """Second pass: each order with its line items, as soon as they are all read; the scattered
    orders (normally none) are gathered and come last. Only those are held in memory."""
    gathered: dict[str, tuple[dict[str, Any], list[Any]]] = {}
    current: tuple[dict[str, Any], list[Any]] | None = None
    orphans = 0
    for line in jsonl_lines(export):
        parent = line.get("__parentId")
        if parent is None:
            if current is not None:
                yield current
            current = (line, [])
            if str(line.get("id")) in scattered:
                gathered[str(line.get("id"))], current = current, None
        elif parent in gathered:
            gathered[parent][1].append(line)
        elif current is not None and parent == current[0].get("id"):
            current[1].append(line)
        else:
            orphans += 1  # before its order, or of none: not what Shopify writes
    if current is not None:
        yield current
    yield from gathered.values()
    if orphans:
        log.warning("backfill: %d line items without an order before them left out", orphans)


def _gid_id(value: Any, field: str) -> int:
    try:
        return gid_number(value)
    except ValueError as exc:
        raise OrderDataError(f"{field}: {exc}") from None


def _optional_gid(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise OrderDataError(f"{field}: expected an object with an id, got {value!r}")
    return _gid_id(value.get("id"), f"{field}.id")


def _time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise OrderDataError(f"{field}: expected a date-time, got {value!r}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise OrderDataError(f"{field}: not a date-time: {value!r}") from None
    if moment.tzinfo is None:
        raise OrderDataError(f"{field}: no time zone in {value!r}")
    return moment.astimezone(UTC)


def _shop_money(value: Any, field: str) -> Decimal:
    try:
        amount = value["shopMoney"]["amount"]
        return Decimal(str(amount))
    except (KeyError, TypeError, InvalidOperation):
        raise OrderDataError(f"{field}.shopMoney.amount: missing or not a number") from None


def _line(item: Mapping[str, Any], index: int) -> OrderLine:
    where = f"lineItems[{index}]"
    product = item.get("product")
    product_type = product.get("productType") if isinstance(product, Mapping) else None
    sku = item.get("sku")
    quantity = item.get("quantity")
    current = item.get("currentQuantity", quantity)
    if not isinstance(quantity, int) or not isinstance(current, int):
        raise OrderDataError(f"{where}: quantity and currentQuantity must be whole numbers")
    return OrderLine(
        line_id=_gid_id(item.get("id"), f"{where}.id"),
        product_id=_optional_gid(product, f"{where}.product"),
        variant_id=_optional_gid(item.get("variant"), f"{where}.variant"),
        quantity=quantity,
        current_quantity=current,
        price=_shop_money(item.get("originalUnitPriceSet"), f"{where}.originalUnitPriceSet"),
        total_discount=_shop_money(item["totalDiscountSet"], f"{where}.totalDiscountSet")
        if item.get("totalDiscountSet") is not None
        else Decimal(0),
        gift_card=bool(item.get("isGiftCard", False)),
        product_type=product_type[:255] if isinstance(product_type, str) and product_type else None,
        sku=sku[:255] if isinstance(sku, str) and sku else None,
    )


def _refund(order_id: int, refund: Any, index: int) -> RefundRecord:
    """A refund the order's current total already nets: its id and date, no amount of its own."""
    if not isinstance(refund, Mapping):
        raise OrderDataError(f"refunds[{index}]: expected an object, got {refund!r}")
    return RefundRecord(
        refund_id=_gid_id(refund.get("id"), f"refunds[{index}].id"),
        order_id=order_id,
        created_at=_time(refund.get("createdAt"), f"refunds[{index}].createdAt"),
        lines_amount=Decimal(0),
        transactions_amount=None,
        transactions_currency=None,
        lines=(),
    )


def order_version(node: Mapping[str, Any], items: Iterable[Mapping[str, Any]]) -> OrderVersion:
    """An order of the bulk result (and its line items) as the ledger takes it."""
    order_id = _gid_id(node.get("id"), "id")
    current = node.get("currentTotalPriceSet")
    shop_money = current.get("shopMoney") if isinstance(current, Mapping) else None
    currency = shop_money.get("currencyCode") if isinstance(shop_money, Mapping) else None
    currency = currency or node.get("currencyCode")
    if not isinstance(currency, str) or len(currency) != 3:
        raise OrderDataError(f"currency: expected the shop's 3-letter currency, got {currency!r}")
    created_at = _time(node.get("createdAt"), "createdAt")
    status = node.get("displayFinancialStatus")
    presentment = node.get("presentmentCurrencyCode")
    lines = [dict(item) for item in items]
    refunds = tuple(_refund(order_id, r, i) for i, r in enumerate(node.get("refunds") or []))
    canonical = json.dumps({"order": node, "lines": lines}, sort_keys=True, default=str)
    return OrderVersion(
        order_id=order_id,
        customer_id=_optional_gid(node.get("customer"), "customer"),
        created_at=created_at,
        processed_at=_time(node["processedAt"], "processedAt")
        if node.get("processedAt")
        else created_at,
        updated_at=_time(node.get("updatedAt") or node.get("createdAt"), "updatedAt"),
        currency=currency,
        presentment_currency=presentment if isinstance(presentment, str) else None,
        total=_shop_money(node.get("totalPriceSet") or current, "totalPriceSet"),
        current_total=_shop_money(current, "currentTotalPriceSet"),
        # the REST payloads' spelling (lower case), which the ledger's rules read
        financial_status=status.lower() if isinstance(status, str) else None,
        cancelled_at=_time(node["cancelledAt"], "cancelledAt") if node.get("cancelledAt") else None,
        test=bool(node.get("test", False)),
        source_name=node.get("sourceName") if isinstance(node.get("sourceName"), str) else None,
        refunds=refunds,
        lines=tuple(_line(item, i) for i, item in enumerate(lines)),
        digest=hashlib.sha256(canonical.encode()).hexdigest(),
    )


def apply_orders(
    ctx: JobContext,
    shop: Shop,
    export: Path,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Apply the export's orders to the ledger, APPLY_BATCH per transaction; counts by outcome."""
    shape = export_shape(export)
    log.info("backfill %s: %d orders read", shop.domain, shape.orders)
    counts = {"read": shape.orders, "applied": 0, "unchanged": 0, "test": 0, "rejected": 0}
    orders = read_orders(export, shape.scattered)
    done = 0
    while batch := list(itertools.islice(orders, APPLY_BATCH)):
        versions = []
        for node, items in batch:
            try:
                versions.append(order_version(node, items))
            except OrderDataError as exc:
                which = node.get("id")
                log.error("backfill %s: order %s left out: %s", shop.domain, which, exc)
                counts["rejected"] += 1
        tests = sum(v.test for v in versions)
        with Session(ctx.engine, expire_on_commit=False) as session, session.begin():
            stored = session.get(Shop, shop.id)
            assert stored is not None
            applied = ledger.apply_order_batch(session, stored, versions)
        counts["test"] += tests
        counts["applied"] += applied
        counts["unchanged"] += len(versions) - tests - applied
        done += len(batch)
        if progress is not None:
            progress(done, shape.orders)
    return counts


async def backfill_shop(
    ctx: JobContext,
    shop: Shop,
    run_id: int | None,
    *,
    since: datetime | None = None,
    covers_all: bool | None = None,
    progress: Progress | None = None,
    reading: OnPoll | None = None,
) -> dict[str, Any]:
    """Read the shop's orders (updated since `since`, or all) and apply them to the ledger;
    `reading` hears how the bulk query is going, `progress` how the applying is. The counts
    say whether the run leaves no gap behind it (`covers_all`: by default, when it read the
    whole history)."""
    started = time.monotonic()
    client = admin_client(ctx, shop)
    runner = BulkRunner(client, ctx.http, sleep=ctx.sleep)
    with tempfile.TemporaryDirectory(prefix="clvsync-backfill-") as scratch:
        export = Path(scratch) / "orders.jsonl"
        outcome = await runner.query(orders_query(since), into=export, on_poll=reading)
        if outcome.status != "COMPLETED":
            raise BackfillError(
                f"the orders bulk query ended {outcome.status}"
                + (f" ({outcome.error_code})" if outcome.error_code else "")
            )
        counts = await anyio.to_thread.run_sync(apply_orders, ctx, shop, export, progress)
    return vars(
        BackfillCounts(
            since=None if since is None else since.isoformat(),
            covers_all=since is None if covers_all is None else covers_all,
            orders_read=counts["read"],
            orders_applied=counts["applied"],
            orders_unchanged=counts["unchanged"],
            test_orders_skipped=counts["test"],
            orders_rejected=counts["rejected"],
            seconds=round(time.monotonic() - started, 3),
        )
    )


def last_backfill_start(session: Session, shop_id: int) -> datetime | None:
    """When the shop's last successful backfill that left no gap behind it began (the whole
    history, or the daily run from the one before): None if there was none. A run asked for
    `--since` a date covers only from there, so the daily run never starts from it."""
    runs = session.exec(
        select(JobRun.started_at, JobRun.counts)
        .where(JobRun.shop_id == shop_id, JobRun.job == "backfill", JobRun.outcome == "ok")
        .order_by(col(JobRun.id).desc())
    )
    return next((start for start, counts in runs if json.loads(counts).get("covers_all")), None)


async def scheduled_backfill(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
    """The daily backfill: orders updated since the last gapless one began, less OVERLAP; the
    whole history the first time."""
    assert shop.id is not None
    shop_id = shop.id

    def since() -> datetime | None:
        with Session(ctx.engine) as session:
            last = last_backfill_start(session, shop_id)
        return None if last is None else last - OVERLAP

    start = await anyio.to_thread.run_sync(since)
    return await backfill_shop(ctx, shop, run_id, since=start, covers_all=True)
