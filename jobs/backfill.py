"""Backfill: the shop's order history read from the Admin API into the ledger.

Webhooks only bring what happens after the app is installed. The backfill reads every order
(or those updated since a date) with one bulk query, `bulkOperationRunQuery` over `orders` with
their line items, and applies each one to the ledger as an order webhook is applied: an order is
versioned by `updatedAt`, and only a later stamp than the ledger holds replaces it, so a backfill
that meets orders already delivered by webhooks, or runs twice, changes nothing.

The bulk result lists each line item on its own line, with `__parentId`. Since API version
2026-01 it is not grouped (`groupObjects` defaults to false, and Shopify asks readers not to rely
on the order of lines): a line item may come anywhere in the file, before its order or after it.
The export is written to a temporary file as it downloads and never held whole in memory (a
large shop's runs to gigabytes): it is read once into an index, a SQLite file beside it that
holds where each order and line item is in the export, and the orders are read back through it
with their line items, one batch at a time.

Scheduled daily (`scheduled_backfill`), it reads the orders updated since its last successful
run began (less a day's overlap), or the whole history the first time: the periodic read through
the Admin API that catches the webhooks Shopify never delivered. A run that left an order out as
unreadable does not count as a start: the next one reads from where that run read, and so
reads the order again.

Shopify serves an app only the last 60 days of orders unless its token holds `read_all_orders`
(the Order object's reference, Admin GraphQL 2025-10 to 2026-10: "Only the last 60 days' worth
of orders from a store are accessible from the Order object by default. If you want to access
older records, then you need to request access to all orders"; it names no date field, and
older orders are simply left out of what `orders` returns). The app's own scopes lack it
(SHOPIFY.md), and a custom app's token has whatever the merchant ticked. So each run first
reads the token's scopes (`plugin.shopify.scopes`): with `read_all_orders` it reads as asked;
without, it still reads what the store serves, and its counts, its log and `clvsync backfill`
say from when the history was readable (the run's start less 60 days) and why. Such a run
leaves no gap in what the store would give (the scheduled push's wait for the first backfill
ends), but it read no whole history: the daily run does not start from it, so once the scope
is granted the next one reads the whole history (or from the last run made with the scope).

What the query reads is what the ledger keeps: ids, dates, amounts and products. The order's
`currentTotalPriceSet` already nets its refunds, so the refunds are read for their ids only and
recorded as reflected in the total (with no amount of their own). Customers get their ledger
row from their orders; a customer without an order has no figures to keep.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from jobs.context import JobContext
from jobs.shop_profile import read_shop_profile
from jobs.writeback import admin_client, marking_refused_token
from plugin.domain.ledger import OrderLine, OrderVersion, RefundRecord
from plugin.domain.ledger_values import checked_id, read_amount, read_moment, read_quantity
from plugin.shopify.bulk import BulkRunner, OnPoll
from plugin.shopify.client import AdminClient, QueryError
from plugin.shopify.gid import gid_number
from plugin.shopify.scopes import granted_scopes
from plugin.store import ledger
from plugin.store.db import contended
from plugin.store.models import JobRun, Shop

log = logging.getLogger(__name__)

APPLY_BATCH = 500  # orders per transaction
# A batch that PostgreSQL aborts for another transaction's sake (`contended`) is applied again,
# up to CONTENDED_ATTEMPTS attempts in all: after a pause of CONTENDED_PAUSE seconds, doubled
# before each further attempt, and jittered (0.5 to 1.5 times), so the two do not meet again.
CONTENDED_ATTEMPTS = 5
CONTENDED_PAUSE = 0.2
OVERLAP = timedelta(days=1)  # the scheduled run reads from this long before the last one began
READ_ALL_ORDERS = "read_all_orders"  # the scope without which Shopify serves ORDER_WINDOW only
ORDER_WINDOW = timedelta(days=60)

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
class OrderAccess:
    """How much of the shop's order history the store serves the token."""

    read_all_orders: bool | None  # the token holds the scope; None: its scopes were not read
    history_from: datetime | None  # served: the orders created since; None: every order


async def read_order_access(client: AdminClient, domain: str, now: datetime) -> OrderAccess:
    """The token's access to the orders, from its scopes (logged when it lacks read_all_orders;
    never the token). Scopes the store would not tell (the query refused, or an answer naming
    none) are unknown: the run still reads, but is not taken for a read of the whole history.
    A refused token is not passed over: it stops the run, as any call's."""
    window_start = now - ORDER_WINDOW
    try:
        scopes = await granted_scopes(client)
    except QueryError as exc:
        log.warning(
            "backfill %s: the token's access scopes were not read (%s): orders created before "
            "%s may be missing (Shopify serves them only with %s)",
            domain,
            exc,
            window_start.date().isoformat(),
            READ_ALL_ORDERS,
        )
        return OrderAccess(read_all_orders=None, history_from=window_start)
    if READ_ALL_ORDERS in scopes:
        return OrderAccess(read_all_orders=True, history_from=None)
    log.warning(
        "backfill %s: %s",
        domain,
        history_note({"read_all_orders": False, "history_from": window_start.isoformat()}),
    )
    return OrderAccess(read_all_orders=False, history_from=window_start)


def history_note(counts: Mapping[str, Any]) -> str | None:
    """What a run's counts say of the history it could not read, in a line (None: nothing,
    the store served it every order asked for)."""
    start = counts.get("history_from")
    if start is None or counts.get("read_all_orders") is True:
        return None
    day = datetime.fromisoformat(str(start)).date().isoformat()
    if counts.get("read_all_orders") is None:
        return (
            f"history read from {day} at least: the token's access scopes could not be read, "
            f"and Shopify serves only the last 60 days of orders without {READ_ALL_ORDERS}"
        )
    return (
        f"history read from {day} only: the token lacks {READ_ALL_ORDERS}, and Shopify "
        "serves only the last 60 days of orders without it"
    )


@dataclass(frozen=True)
class BackfillCounts:
    since: str | None  # orders updated since then were read; None: all of them
    # the ledger has every order the store served up to the run's start (see
    # last_backfill_start), but those it rejected as unreadable (orders_rejected), which the
    # next daily run reads again
    covers_all: bool
    # the token holds read_all_orders (None: its scopes could not be read); without it the
    # store served only the orders created from history_from (the run's start less 60 days)
    read_all_orders: bool | None
    history_from: str | None
    orders_read: int
    orders_applied: int  # newer than what the ledger held (or new)
    orders_unchanged: int  # the ledger already held this version or a newer one
    test_orders_skipped: int
    orders_rejected: int  # unreadable: logged with the reason, the rest goes on
    seconds: float


Progress = Callable[[int, int], None]  # (orders done, orders read)


def orders_query(since: datetime | None) -> str:
    """The bulk query: every order, or those updated since `since`. Shopify's search syntax
    wants a date value quoted (single or double quotes): `updated_at:>='2026-03-01T12:00:00Z'`."""
    filter_ = ""
    if since is not None:
        stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        search = f"updated_at:>='{stamp}'"
        filter_ = f"(query: {json.dumps(search)})"
    return f"{{ orders{filter_} {{ edges {{ node {{ {_ORDER_FIELDS} }} }} }} }}"


class OrderIndex:
    """A bulk export's orders, each with its line items, wherever in the file they came: the
    index holds where each line is in the export (offset and length), not its text."""

    def __init__(self, connection: sqlite3.Connection, export: Path) -> None:
        self._connection = connection
        self._export = export

    @property
    def orders(self) -> int:
        return int(self._connection.execute("SELECT count(*) FROM orders").fetchone()[0])

    @property
    def orphans(self) -> int:
        """Line items of an order the export does not hold: not something Shopify writes."""
        query = "SELECT count(*) FROM items WHERE order_id NOT IN (SELECT id FROM orders)"
        return int(self._connection.execute(query).fetchone()[0])

    def read(self) -> Iterator[tuple[dict[str, Any], list[Any]]]:
        """Each order with its line items, both in the order the export gave them."""
        rows = self._connection.execute(
            "SELECT o.rowid, o.at, o.size, i.at, i.size FROM orders o "
            "LEFT JOIN items i ON i.order_id = o.id ORDER BY o.rowid, i.rowid"
        )
        with self._export.open("rb") as export:

            def line(at: int, size: int) -> Any:
                export.seek(at)
                return json.loads(export.read(size))

            for _, group in itertools.groupby(rows, key=lambda row: row[0]):
                rows_of_order = list(group)
                items = [line(r[3], r[4]) for r in rows_of_order if r[3] is not None]
                yield line(rows_of_order[0][1], rows_of_order[0][2]), items


_INDEX_CHUNK = 10_000  # export lines per insert


def _index_key(gid: Any) -> int | str:
    """An order's key in the index: its number (a fraction of the GID's size), or the GID as
    text when it has none (read as it is; `order_version` names what is wrong with it)."""
    text = str(gid)
    number = text.rpartition("/")[2]
    return int(number) if number.isdigit() else text


@contextlib.contextmanager
def order_index(export: Path) -> Iterator[OrderIndex]:
    """Index the export (one pass, `_INDEX_CHUNK` lines at a time) in a SQLite file beside it,
    deleted on leaving: each order's id and each line item's order id, with where the line
    is in the export: about a sixth of the export's size on disk (25 MB for a 154 MB export of
    200,000 orders), where the lines' text took more than the export itself."""
    path = export.with_name(export.name + ".index")
    connection = sqlite3.connect(path)
    try:
        connection.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
            "CREATE TABLE orders (id PRIMARY KEY, at INTEGER, size INTEGER);"
            "CREATE TABLE items (order_id NOT NULL, at INTEGER, size INTEGER);"
        )
        at = 0
        with export.open("rb") as lines:
            while chunk := list(itertools.islice(lines, _INDEX_CHUNK)):
                orders, items = [], []
                for raw in chunk:
                    start, at = at, at + len(raw)
                    if not raw.strip():
                        continue
                    line = json.loads(raw)
                    parent = line.get("__parentId")
                    if parent is None:
                        orders.append((_index_key(line.get("id")), start, len(raw)))
                    else:
                        items.append((_index_key(parent), start, len(raw)))
                # an order listed twice is read once, as first listed (with the line items of
                # both listings: `order_version` takes each line item once)
                connection.executemany("INSERT OR IGNORE INTO orders VALUES (?, ?, ?)", orders)
                connection.executemany("INSERT INTO items VALUES (?, ?, ?)", items)
        connection.execute("CREATE INDEX items_by_order ON items (order_id)")
        connection.commit()
        yield OrderIndex(connection, export)
    finally:
        connection.close()
        path.unlink(missing_ok=True)


# Each value is checked as a webhook's is (`ledger_values`): one the ledger cannot hold, read
# unchecked, would fail its whole batch in the database, and with it the run.
def _gid_id(value: Any, field: str) -> int:
    try:
        return checked_id(gid_number(value))
    except ValueError as exc:
        raise OrderDataError(f"{field}: {exc}") from None


def _optional_gid(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise OrderDataError(f"{field}: expected an object with an id, got {value!r}")
    return _gid_id(value.get("id"), f"{field}.id")


def _time(value: Any, field: str) -> datetime:
    """A DateTime of the Admin API, which always states its zone (1970 to 2200)."""
    try:
        return read_moment(value, zone_required=True)
    except ValueError as exc:
        raise OrderDataError(f"{field}: {exc}") from None


def _shop_money(value: Any, field: str) -> Decimal:
    money = value.get("shopMoney") if isinstance(value, Mapping) else None
    if not isinstance(money, Mapping) or money.get("amount") is None:
        raise OrderDataError(f"{field}.shopMoney.amount: missing")
    try:
        return read_amount(money["amount"])
    except ValueError as exc:
        raise OrderDataError(f"{field}.shopMoney.amount: {exc}") from None


def _line(item: Mapping[str, Any], index: int) -> OrderLine:
    where = f"lineItems[{index}]"
    product = item.get("product")
    product_type = product.get("productType") if isinstance(product, Mapping) else None
    sku = item.get("sku")
    try:
        quantity = read_quantity(item.get("quantity"))
        current = read_quantity(item.get("currentQuantity", quantity))
    except ValueError as exc:
        raise OrderDataError(f"{where}: quantity and currentQuantity: {exc}") from None
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


def _distinct(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The line items, each id once, as first listed: an order the export lists twice is read
    once (`order_index`), but with every listing's line items, and a line item listed twice
    would be inserted twice (the ledger keys lines by order and id)."""
    first: dict[str, dict[str, Any]] = {}
    for item in items:
        first.setdefault(str(item.get("id")), dict(item))
    return list(first.values())


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
    lines = _distinct(items)
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
    with order_index(export) as index:
        return _apply_indexed(ctx, shop, index, progress)


def _apply_indexed(
    ctx: JobContext, shop: Shop, index: OrderIndex, progress: Progress | None
) -> dict[str, int]:
    read = index.orders
    log.info("backfill %s: %d orders read", shop.domain, read)
    if orphans := index.orphans:
        log.warning("backfill %s: %d line items without their order left out", shop.domain, orphans)
    counts = {"read": read, "applied": 0, "unchanged": 0, "test": 0, "rejected": 0, "erased": 0}
    orders = index.read()
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
        applied = _apply_batch(ctx, shop, versions)
        if applied is None:
            log.warning(
                "backfill %s stopped after %d of %d orders: the shop was erased meanwhile "
                "(shop/redact), and nothing more is kept for it",
                shop.domain,
                done,
                read,
            )
            counts["erased"] = 1
            break
        counts["test"] += tests
        counts["applied"] += applied
        counts["unchanged"] += len(versions) - tests - applied
        done += len(batch)
        if progress is not None:
            progress(done, read)
    return counts


def _apply_batch(ctx: JobContext, shop: Shop, versions: list[OrderVersion]) -> int | None:
    """Apply one batch of orders in a transaction of its own; how many were applied, or None
    if the shop is gone (erased by its shop/redact while the run went on).

    Each batch locks its orders, then their customers; a processor's transaction applying
    webhooks of the same customers holds locks from its earlier events, so on PostgreSQL the
    two can deadlock, and the one aborted may be the batch. The processor tries its events
    again; so does this, with the batch in a new transaction (CONTENDED_ATTEMPTS): the batch,
    not the run with its bulk query, is what the deadlock costs. A batch that fails as the
    shop is erased (on PostgreSQL its writes wait for the erasing transaction, then find the
    shop gone) is the shop's end too, not the batch's failure."""
    attempt = 0
    while True:
        attempt += 1
        try:
            with Session(ctx.engine, expire_on_commit=False) as session, session.begin():
                stored = session.get(Shop, shop.id)
                if stored is None:
                    return None
                return ledger.apply_order_batch(session, stored, versions)
        except SQLAlchemyError as exc:
            if attempt >= CONTENDED_ATTEMPTS or not contended(exc):
                if not _shop_held(ctx, shop):
                    return None
                raise
            pause = CONTENDED_PAUSE * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            log.info(
                "backfill %s: a batch of %d orders lost a lock wait to another transaction "
                "(attempt %d of %d), applied again in %.2f s: %s",
                shop.domain,
                len(versions),
                attempt,
                CONTENDED_ATTEMPTS,
                pause,
                (str(exc).splitlines() or [type(exc).__name__])[0],
            )
            time.sleep(pause)


def _shop_held(ctx: JobContext, shop: Shop) -> bool:
    with Session(ctx.engine) as session:
        return session.get(Shop, shop.id) is not None


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
    whole history the store serves), and whether the store served the token every order
    (`read_all_orders`; `history_from` when not)."""
    started = time.monotonic()
    client = admin_client(ctx, shop)
    runner = BulkRunner(client, ctx.http, sleep=ctx.sleep)
    with tempfile.TemporaryDirectory(prefix="clvsync-backfill-") as scratch:
        export = Path(scratch) / "orders.jsonl"
        async with marking_refused_token(ctx, shop):
            await read_shop_profile(ctx.engine, shop, client)
            access = await read_order_access(client, shop.domain, ctx.clock())
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
            covers_all=(since is None if covers_all is None else covers_all)
            and not counts["erased"],
            read_all_orders=access.read_all_orders,
            history_from=None if access.history_from is None else access.history_from.isoformat(),
            orders_read=counts["read"],
            orders_applied=counts["applied"],
            orders_unchanged=counts["unchanged"],
            test_orders_skipped=counts["test"],
            orders_rejected=counts["rejected"],
            seconds=round(time.monotonic() - started, 3),
        )
    )


def last_backfill_start(
    session: Session, shop_id: int, *, complete: bool = False
) -> datetime | None:
    """When the shop's last successful backfill that left no gap behind it began (the whole
    history, or the daily run from the one before): None if there was none. A run asked for
    `--since` a date covers only from there, so the daily run never starts from it.

    With `complete`, only a run that also rejected no order as unreadable, and whose token
    held read_all_orders: the daily run reads from there, so that an order a run left out is
    read again by the next one, and by each after it until a run reads it, and a run the
    store served only the last 60 days is never where a read with the scope starts (runs
    recorded before the scope was read say nothing of it, and count as without). (Without
    `complete`, either still counts as having read the shop's history, all the store would
    give: the scheduled push waits only for that, and would wait for good behind one order no
    release can read, or for a scope the merchant may never grant.)"""
    runs = session.exec(
        select(JobRun.started_at, JobRun.counts)
        .where(JobRun.shop_id == shop_id, JobRun.job == "backfill", JobRun.outcome == "ok")
        .order_by(col(JobRun.id).desc())
    )
    for start, text in runs:
        counts = json.loads(text)
        if counts.get("covers_all") and (not complete or _read_all(counts)):
            return start
    return None


def _read_all(counts: Mapping[str, Any]) -> bool:
    """Whether the run was served every order it asked for and could read each one."""
    return counts.get("read_all_orders") is True and not counts.get("orders_rejected")


async def scheduled_backfill(
    ctx: JobContext,
    shop: Shop,
    run_id: int | None,
    *,
    progress: Progress | None = None,
    reading: OnPoll | None = None,
) -> dict[str, Any]:
    """The daily backfill: orders updated since the last gapless one that rejected none, with
    read_all_orders, began, less OVERLAP; the whole history the first time, and until a run
    has read every order (`progress` and `reading` as for `backfill_shop`)."""
    assert shop.id is not None
    shop_id = shop.id

    def since() -> datetime | None:
        with Session(ctx.engine) as session:
            last = last_backfill_start(session, shop_id, complete=True)
        return None if last is None else last - OVERLAP

    start = await anyio.to_thread.run_sync(since)
    return await backfill_shop(
        ctx, shop, run_id, since=start, covers_all=True, progress=progress, reading=reading
    )
