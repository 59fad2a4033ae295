"""The ledger: orders, lines, refunds and customers, applied idempotently in any arrival order.

Every function runs inside the caller's transaction and never commits. Work on one order, and
on one customer's aggregates, is serialised with `lock_keys` (PostgreSQL advisory locks; SQLite
has a single writer anyway), always order before customer within an event, so an aggregate is
never computed from a stale view. A processor's batch holds its locks until it commits, so two
processors on PostgreSQL can still deadlock across events (A: order 1 then order 2; B: order 2
then customer of order 1): PostgreSQL aborts one event, which the processor tries again a
second later, not counted as a failure (`webhooks.processor`).

A customer redacted (customers/redact) is remembered, with their orders, as a `Redaction`:
nothing applied after it (a late delivery, a backfill) stores them again. Each check reads the
tombstones after taking the locks the redact takes, so it sees a redact that ran meanwhile.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, delete, exists, insert, or_, true
from sqlmodel import Session, SQLModel, col, select

from plugin.domain import ledger
from plugin.domain.ledger import CustomerTotals, OrderVersion, RefundRecord
from plugin.domain.writeback import METAFIELD_TYPES
from plugin.store import inbox
from plugin.store.db import insert_for, lock_keys
from plugin.store.models import (
    Customer,
    CustomerRecommendation,
    CustomerScore,
    CustomerSync,
    DataRequest,
    Order,
    OrderLine,
    Redaction,
    Refund,
    Shop,
    SyncChange,
)

REFRESH_CHUNK = 500  # customers per query of `refresh_customers` (bound parameters stay few)
CUSTOMER, ORDER = "customer", "order"  # the kinds of `Redaction`


def _lock_order(session: Session, shop_id: int, order_id: int) -> None:
    lock_keys(session, ("order", shop_id, order_id))


def _lock_customers(session: Session, shop_id: int, *customer_ids: int | None) -> None:
    lock_keys(session, *(("customer", shop_id, c) for c in customer_ids if c is not None))


def apply_order(
    session: Session, shop: Shop, version: OrderVersion, *, same_stamp_wins: bool = True
) -> bool:
    """Keep `version` if it is newer than the stored one; True when it was applied.

    With `same_stamp_wins` False, a version stamped with the stored one's `updated_at` is the
    same version seen another way (the backfill's read of an order a webhook delivered): kept
    as stored, whatever the digests say.

    A redacted order is never stored again, nor an order of a redacted customer, at all: such
    an order is remembered as redacted itself, and what was held of it (an earlier version of
    another customer's, refunds recorded ahead of it) is deleted.
    """
    assert shop.id is not None
    if version.test:
        return False  # test orders are never part of the ledger
    _lock_order(session, shop.id, version.order_id)
    stored = session.get(Order, (shop.id, version.order_id))
    if stored is not None and not _replaces(version, stored, same_stamp_wins=same_stamp_wins):
        return False
    previous_customer = stored.customer_id if stored is not None else None
    _lock_customers(session, shop.id, previous_customer, version.customer_id)
    order_gone, customer_gone = _redactions_of(session, shop.id, version)
    if order_gone:
        return False
    if customer_gone:
        _forget_orders(session, shop.id, [version.order_id])
        _remember(session, shop.id, ORDER, [version.order_id], datetime.now(UTC))
        refresh_customers(session, shop.id, [previous_customer])
        return False
    if shop.currency is None:
        shop.currency = version.currency
        session.add(shop)
    known = session.exec(
        select(Refund).where(Refund.shop_id == shop.id, Refund.order_id == version.order_id)
    ).all()
    if stored is not None:
        _delete_lines(session, shop.id, [version.order_id])
    order = stored or Order(shop_id=shop.id, order_id=version.order_id, **_version_fields(version))
    unreflected = _set_version(session, order, version, known)
    session.add_all(_line_rows(shop.id, version, unreflected))
    session.flush()
    refresh_customers(session, shop.id, {previous_customer, version.customer_id} - {None})
    return True


def _replaces(version: OrderVersion, stored: Order, *, same_stamp_wins: bool) -> bool:
    """Whether `version` takes the place of the stored one (`apply_order`)."""
    if not ledger.newer_than(
        (version.updated_at, version.digest), (stored.updated_at, stored.version_digest)
    ):
        return False
    return same_stamp_wins or version.updated_at != stored.updated_at


def _set_version(
    session: Session, order: Order, version: OrderVersion, known: Sequence[Refund]
) -> list[Refund]:
    """Give `order` the version's fields and net amount, given the refunds `known` for it; the
    version's refunds are recorded (`_record_reflected_refunds`). The refunds it does not
    reflect (netted from it)."""
    refunds = _record_reflected_refunds(session, order.shop_id, version, known)
    for name, value in _version_fields(version).items():
        setattr(order, name, value)
    unreflected = [r for r in refunds if not r.reflected]
    _set_net(order, unreflected)
    session.add(order)
    return unreflected


def _delete_lines(session: Session, shop_id: int, order_ids: Sequence[int]) -> None:
    for low in range(0, len(order_ids), REFRESH_CHUNK):
        session.execute(
            delete(OrderLine).where(
                col(OrderLine.shop_id) == shop_id,
                col(OrderLine.order_id).in_(order_ids[low : low + REFRESH_CHUNK]),
            )
        )


def apply_order_batch(
    session: Session,
    shop: Shop,
    versions: Sequence[OrderVersion],
    *,
    same_stamp_wins: bool = False,
) -> int:
    """Apply many orders' versions at once (the backfill, and the processor's batches of order
    webhooks); how many were applied.

    Every order's lock is taken first, then every customer's they touch (both sorted), so the
    batch's own locks come in one order (a processor's transaction holding others from earlier
    events can still wait for it, and lose: see the module's note). Orders the ledger does not
    hold yet, with no refund recorded ahead of them, are inserted with one statement per table;
    newer versions of held orders replace theirs with a few statements for the lot; and each
    customer touched is refreshed once. What is left goes through `apply_order`: a redacted
    order, or one of a redacted customer (skipped there), and an order not held whose refunds
    came first. With `same_stamp_wins` False a version stamped as the stored one is kept as
    stored (the same version read another way).
    """
    assert shop.id is not None
    newest: dict[int, OrderVersion] = {}  # an order read twice: its newest version
    for v in versions:
        seen = newest.get(v.order_id)
        if not v.test and (
            seen is None
            or ledger.newer_than((v.updated_at, v.digest), (seen.updated_at, seen.digest))
        ):
            newest[v.order_id] = v
    versions = list(newest.values())
    if not versions:
        return 0
    ids = [v.order_id for v in versions]
    lock_orders(session, shop.id, ids)
    held = {
        order.order_id: order
        for order in session.exec(
            select(Order).where(col(Order.shop_id) == shop.id, col(Order.order_id).in_(ids))
        )
    }
    refunded = set(
        session.exec(
            select(col(Refund.order_id)).where(
                col(Refund.shop_id) == shop.id, col(Refund.order_id).in_(ids)
            )
        )
    )
    customers = {v.customer_id for v in versions} | {o.customer_id for o in held.values()}
    _lock_customers(session, shop.id, *customers)
    gone = redacted(session, shop.id, CUSTOMER, customers)
    alone = (refunded - set(held)) | redacted(session, shop.id, ORDER, ids)
    alone |= {v.order_id for v in versions if v.customer_id in gone}
    if shop.currency is None:
        shop.currency = versions[0].currency
        session.add(shop)
    new = [v for v in versions if v.order_id not in alone and v.order_id not in held]
    _insert_new(session, shop.id, new)
    lineless = _without_lines(session, shop.id, list(held))
    replaced = [
        v
        for v in versions
        if v.order_id in held
        and v.order_id not in alone
        and (
            _replaces(v, held[v.order_id], same_stamp_wins=same_stamp_wins)
            or _restores_lines(v, held[v.order_id], lineless)
        )
    ]
    touched = {v.customer_id for v in new} | _replace_held(session, shop.id, held, replaced)
    applied = len(new) + len(replaced)
    for version in versions:
        if version.order_id in alone:
            applied += apply_order(session, shop, version, same_stamp_wins=same_stamp_wins)
    refresh_customers(session, shop.id, touched)
    return applied


def _without_lines(session: Session, shop_id: int, order_ids: Sequence[int]) -> set[int]:
    """Of the held orders `order_ids`, those with no line at all."""
    with_lines: set[int] = set()
    for low in range(0, len(order_ids), REFRESH_CHUNK):
        part = order_ids[low : low + REFRESH_CHUNK]
        with_lines.update(
            session.exec(
                select(col(OrderLine.order_id))
                .where(col(OrderLine.shop_id) == shop_id, col(OrderLine.order_id).in_(part))
                .distinct()
            )
        )
    return set(order_ids) - with_lines


def _restores_lines(version: OrderVersion, stored: Order, lineless: set[int]) -> bool:
    """Whether `version` brings back the lines of a held order that has none, in a version
    at least as new. Every Shopify order has a line, and every line is held (a refunded one
    with its quantity at zero): an order without any lost them. The backfill before df99e46
    left out the lines a bulk export gave before their order, and, the order's version held,
    no later read put them back."""
    return (
        version.order_id in lineless
        and bool(version.lines)
        and version.updated_at >= stored.updated_at
    )


def _replace_held(
    session: Session, shop_id: int, held: dict[int, Order], versions: Sequence[OrderVersion]
) -> set[int | None]:
    """Newer versions of held orders, written as `apply_order` writes each, with a few
    statements for the lot; the customers whose figures they change (old and new)."""
    if not versions:
        return set()
    ids = [v.order_id for v in versions]
    known: defaultdict[int, list[Refund]] = defaultdict(list)
    for low in range(0, len(ids), REFRESH_CHUNK):
        for refund in session.exec(
            select(Refund).where(
                Refund.shop_id == shop_id, col(Refund.order_id).in_(ids[low : low + REFRESH_CHUNK])
            )
        ):
            known[refund.order_id].append(refund)
    _delete_lines(session, shop_id, ids)
    touched: set[int | None] = set()
    lines: list[OrderLine] = []
    for version in versions:
        order = held[version.order_id]
        touched |= {order.customer_id, version.customer_id}
        unreflected = _set_version(session, order, version, known[version.order_id])
        lines += _line_rows(shop_id, version, unreflected)
    _insert_lines(session, lines)
    session.flush()
    return touched


def lock_orders(session: Session, shop_id: int, order_ids: Sequence[int]) -> None:
    """Hold these orders until the transaction ends, as every writer of them does."""
    lock_keys(session, *(("order", shop_id, o) for o in order_ids))


def _insert_new(session: Session, shop_id: int, versions: Sequence[OrderVersion]) -> None:
    """Orders the ledger does not hold, and no refund of which is recorded: their rows as
    `apply_order` would write them, in one statement per table."""
    if not versions:
        return
    orders = []
    for version in versions:
        order = Order(shop_id=shop_id, order_id=version.order_id, **_version_fields(version))
        _set_net(order, [])
        orders.append(order.model_dump())
    session.execute(insert(Order), orders)
    _insert_lines(session, [row for v in versions for row in _line_rows(shop_id, v)])
    refunds = [
        _refund_row(shop_id, refund, reflected=True).model_dump()
        for v in versions
        for refund in v.refunds
    ]
    if refunds:
        session.execute(insert(Refund), refunds)


def _version_fields(version: OrderVersion) -> dict[str, Any]:
    return {
        "customer_id": version.customer_id,
        "created_at": version.created_at,
        "processed_at": version.processed_at,
        "updated_at": version.updated_at,
        "version_digest": version.digest,
        "currency": version.currency,
        "presentment_currency": version.presentment_currency,
        "total": version.total,
        "current_total": version.current_total,
        "financial_status": version.financial_status,
        "cancelled_at": version.cancelled_at,
        "source_name": version.source_name[:255] if version.source_name else None,
        "net_amount": Decimal(0),  # set from the refunds by _set_net
    }


def _insert_lines(session: Session, lines: Sequence[OrderLine]) -> None:
    """The lines, in one statement."""
    if lines:
        session.execute(insert(OrderLine), [line.model_dump() for line in lines])


def _line_rows(
    shop_id: int, version: OrderVersion, unreflected: Sequence[Refund] = ()
) -> list[OrderLine]:
    """The version's lines, their current quantities less what the refunds it does not reflect
    yet took back (as its net amount is less their amounts): a line refunded whole is no longer
    held, for the product statistics, until a version shows it."""
    refunded = _refunded_quantities(json.loads(refund.lines) for refund in unreflected)
    return [
        OrderLine(
            shop_id=shop_id,
            order_id=version.order_id,
            line_id=line.line_id,
            product_id=line.product_id,
            variant_id=line.variant_id,
            product_type=line.product_type,
            sku=line.sku,
            quantity=line.quantity,
            current_quantity=max(line.current_quantity - refunded[line.line_id], 0),
            price=line.price,
            total_discount=line.total_discount,
            gift_card=line.gift_card,
        )
        for line in version.lines
    ]


def _refunded_quantities(refunds: Iterable[Iterable[Sequence[int]]]) -> Counter[int]:
    """The quantity of each order line the refunds took back, from each refund's (line id,
    quantity) pairs."""
    refunded: Counter[int] = Counter()
    for lines in refunds:
        for line_id, quantity in lines:
            refunded[line_id] += quantity
    return refunded


def _record_reflected_refunds(
    session: Session, shop_id: int, version: OrderVersion, rows: Sequence[Refund]
) -> list[Refund]:
    """The order's refunds (`rows`, those recorded for it, and the version's): those listed in
    this version are in its current total (reflected), the others are not (yet). Refunds first
    seen in this version are recorded."""
    listed = {r.refund_id for r in version.refunds}
    known = {row.refund_id: row for row in rows}
    for refund in version.refunds:
        if refund.refund_id not in known:
            known[refund.refund_id] = _refund_row(shop_id, refund, reflected=True)
            session.add(known[refund.refund_id])
        elif _fill_in(known[refund.refund_id], refund):
            session.add(known[refund.refund_id])
    for refund_id, row in known.items():
        if row.reflected != (refund_id in listed):
            row.reflected = refund_id in listed
            session.add(row)
    return list(known.values())


def _refund_row(shop_id: int, refund: RefundRecord, *, reflected: bool) -> Refund:
    return Refund(
        shop_id=shop_id,
        refund_id=refund.refund_id,
        order_id=refund.order_id,
        created_at=refund.created_at,
        lines_amount=refund.lines_amount,
        transactions_amount=refund.transactions_amount,
        transactions_currency=refund.transactions_currency,
        lines=json.dumps([list(pair) for pair in refund.lines]),
        reflected=reflected,
    )


def _is_placeholder(row: Refund) -> bool:
    """A refund the backfill recorded from an order's list of refunds, which gives only its id
    and date (the order's current total nets it): no amount, no lines."""
    return row.lines == "[]" and row.transactions_amount is None and not row.lines_amount


def _fill_in(row: Refund, refund: RefundRecord) -> bool:
    """Give a reflected placeholder the amounts and lines a webhook's record of the same refund
    has (for the data-request report; the order's total already nets it, so no figure moves).
    Whether it changed."""
    if not (row.reflected and _is_placeholder(row)):
        return False
    if not (refund.lines or refund.lines_amount or refund.transactions_amount is not None):
        return False
    filled = _refund_row(row.shop_id, refund, reflected=True)
    row.lines_amount, row.lines = filled.lines_amount, filled.lines
    row.transactions_amount = filled.transactions_amount
    row.transactions_currency = filled.transactions_currency
    return True


def _fill_in_placeholders(session: Session, shop_id: int, refunds: Sequence[RefundRecord]) -> None:
    """`_fill_in` for the held refunds among `refunds` (known already: a backfill came first)."""
    if not refunds:
        return
    by_id = {r.refund_id: r for r in refunds}
    held = session.exec(
        select(Refund).where(
            col(Refund.shop_id) == shop_id,
            col(Refund.refund_id).in_(sorted(by_id)),
            col(Refund.reflected).is_(True),
            col(Refund.transactions_amount).is_(None),
        )
    )
    for row in held:
        if _fill_in(row, by_id[row.refund_id]):
            session.add(row)


def apply_refund(session: Session, shop: Shop, refund: RefundRecord) -> bool:
    """Record a refund (once); net it from its order if the order does not reflect it yet.
    A refund of a redacted order is not recorded."""
    return apply_refunds(session, shop, [refund]) == 1


def apply_refunds(session: Session, shop: Shop, refunds: Sequence[RefundRecord]) -> int:
    """`apply_refund` for each refund, with a few statements for the lot; how many were
    recorded. The orders' locks first, then their customers' (the ledger's order)."""
    assert shop.id is not None
    fresh: dict[int, RefundRecord] = {}
    for refund in refunds:
        fresh.setdefault(refund.refund_id, refund)
    order_ids = sorted({r.order_id for r in fresh.values()})
    lock_orders(session, shop.id, order_ids)
    known = set(
        session.exec(
            select(col(Refund.refund_id)).where(
                col(Refund.shop_id) == shop.id, col(Refund.refund_id).in_(sorted(fresh))
            )
        )
    )
    _fill_in_placeholders(session, shop.id, [fresh[r] for r in sorted(known)])
    gone = redacted(session, shop.id, ORDER, order_ids)
    new = [r for r in fresh.values() if r.refund_id not in known and r.order_id not in gone]
    if not new:
        return 0
    rows = [_refund_row(shop.id, r, reflected=False).model_dump() for r in new]
    session.execute(insert(Refund), rows)
    netted = sorted({r.order_id for r in new})
    orders = session.exec(
        select(Order).where(col(Order.shop_id) == shop.id, col(Order.order_id).in_(netted))
    ).all()
    _lock_customers(session, shop.id, *(o.customer_id for o in orders))
    unreflected: defaultdict[int, list[Refund]] = defaultdict(list)
    query = select(Refund).where(
        col(Refund.shop_id) == shop.id,
        col(Refund.order_id).in_(netted),
        col(Refund.reflected).is_(False),
    )
    for row in session.exec(query):
        unreflected[row.order_id].append(row)
    for order in orders:
        _set_net(order, unreflected[order.order_id])
        session.add(order)
    _take_back_lines(session, shop.id, [o.order_id for o in orders], new)
    session.flush()
    refresh_customers(session, shop.id, {o.customer_id for o in orders})
    return len(new)


def _take_back_lines(
    session: Session, shop_id: int, order_ids: Sequence[int], refunds: Sequence[RefundRecord]
) -> None:
    """The held orders' lines, less what the refunds (new, not reflected yet) took back, as
    `_line_rows` writes them for a version that does not reflect them."""
    refunded = _refunded_quantities(refund.lines for refund in refunds)
    if not order_ids or not refunded:
        return
    query = select(OrderLine).where(
        col(OrderLine.shop_id) == shop_id,
        col(OrderLine.order_id).in_(order_ids),
        col(OrderLine.line_id).in_(sorted(refunded)),
    )
    for line in session.exec(query):
        line.current_quantity = max(line.current_quantity - refunded[line.line_id], 0)
        session.add(line)


def _set_net(order: Order, unreflected: Sequence[Refund]) -> None:
    cancelled = order.cancelled_at is not None
    order.net_amount = ledger.order_net_amount(
        order.current_total,
        cancelled=cancelled,
        financial_status=order.financial_status,
        unreflected_refunds=[_refund_amount(r, order) for r in unreflected],
    )
    order.counted = ledger.order_counts(
        order.net_amount, cancelled=cancelled, financial_status=order.financial_status
    )


def _refund_amount(refund: Refund, order: Order) -> Decimal:
    return ledger.refund_amount(
        refund.lines_amount,
        refund.transactions_amount,
        refund.transactions_currency,
        order.currency,
        order.presentment_currency,
    )


def refresh_customers(session: Session, shop_id: int, customer_ids: Iterable[int | None]) -> None:
    """Recompute customers' aggregates from their counted orders (creating the rows of new
    ones), reading orders and customers with one query each per REFRESH_CHUNK customers."""
    ids = sorted({c for c in customer_ids if c is not None})
    counted: dict[int, list[tuple[datetime, Decimal]]] = {c: [] for c in ids}
    held: dict[int, Customer] = {}
    for low in range(0, len(ids), REFRESH_CHUNK):
        chunk = ids[low : low + REFRESH_CHUNK]
        orders = session.exec(
            select(col(Order.customer_id), col(Order.processed_at), col(Order.net_amount)).where(
                Order.shop_id == shop_id, col(Order.customer_id).in_(chunk), col(Order.counted)
            )
        )
        for customer_id, processed_at, net in orders:
            assert customer_id is not None  # selected by it
            counted[customer_id].append((processed_at, net))
        rows = session.exec(
            select(Customer).where(
                Customer.shop_id == shop_id, col(Customer.customer_id).in_(chunk)
            )
        )
        held.update((row.customer_id, row) for row in rows)
    for customer_id in ids:
        totals = ledger.customer_totals(counted[customer_id])
        customer = held.get(customer_id) or Customer(shop_id=shop_id, customer_id=customer_id)
        customer.orders, customer.net_spend = totals.orders, totals.net_spend
        customer.first_order_at = totals.first_order_at
        customer.last_order_at = totals.last_order_at
        customer.ledger_version = (customer.ledger_version or 0) + 1  # its scores are now stale
        session.add(customer)


def upsert_customer(
    session: Session, shop_id: int, customer_id: int, fields: dict[str, Any]
) -> bool:
    """Keep a customer's record (created_at, updated_at, state) if newer than the stored one,
    and never a redacted customer's."""
    return upsert_customers(session, shop_id, [(customer_id, fields)]) == 1


def upsert_customers(
    session: Session, shop_id: int, records: Sequence[tuple[int, dict[str, Any]]]
) -> int:
    """`upsert_customer` for each (customer id, fields) in turn, with a few statements for the
    lot; how many records were kept (see `_replaces_record` for which)."""
    ids = sorted({customer_id for customer_id, _ in records})
    _lock_customers(session, shop_id, *ids)
    gone = redacted(session, shop_id, CUSTOMER, ids)
    held: dict[int, Customer] = {}
    for low in range(0, len(ids), REFRESH_CHUNK):
        query = select(Customer).where(
            Customer.shop_id == shop_id,
            col(Customer.customer_id).in_(ids[low : low + REFRESH_CHUNK]),
        )
        held.update((row.customer_id, row) for row in session.exec(query))
    kept = 0
    for customer_id, fields in records:
        customer = held.get(customer_id)
        if customer_id in gone or (customer is not None and not _replaces_record(fields, customer)):
            continue
        customer = held.setdefault(customer_id, Customer(shop_id=shop_id, customer_id=customer_id))
        customer.created_at = fields.get("created_at") or customer.created_at
        customer.updated_at, customer.state = fields.get("updated_at"), fields.get("state")
        session.add(customer)
        kept += 1
    return kept


def _replaces_record(fields: dict[str, Any], held: Customer) -> bool:
    """Whether a customer record replaces the one held: a later `updated_at`, or one where the
    held record has none. Between records stamped the same (or neither stamped), the greater
    (state, created_at) wins, so that the same one is kept in any arrival order."""
    stamp, held_stamp = fields.get("updated_at"), held.updated_at
    if stamp == held_stamp:
        new = _record_key(fields.get("state"), fields.get("created_at"))
        return new > _record_key(held.state, held.created_at)
    return held_stamp is None or (stamp is not None and bool(stamp > held_stamp))


def _record_key(state: str | None, created_at: datetime | None) -> tuple[str, str]:
    return state or "", created_at.isoformat() if created_at is not None else ""


def mark_customer_deleted(session: Session, shop_id: int, customer_id: int, at: datetime) -> None:
    """The customer is deleted in the store: marked so (its orders stay, for the shop's
    figures), and its pushed state dropped, as the store holds nothing of theirs any more: the
    push sends a deleted customer nothing (values and tag changes the store would refuse, or
    deletions audited as if taken off it). A read that finds the customer in the store after
    all takes the mark off, and the push sends them their state again."""
    _lock_customers(session, shop_id, customer_id)
    if redacted(session, shop_id, CUSTOMER, [customer_id]):
        return  # nothing is held for them, and no record of them is made again
    # FOR UPDATE: waits for a writer of pushed state that holds the row (`hold_customers`)
    # to commit, so that the delete below sees what it wrote
    customer = session.get(Customer, (shop_id, customer_id), with_for_update=True) or Customer(
        shop_id=shop_id, customer_id=customer_id
    )
    customer.deleted_at = customer.deleted_at or at
    session.add(customer)
    session.execute(
        delete(CustomerSync).where(
            col(CustomerSync.shop_id) == shop_id, col(CustomerSync.customer_id) == customer_id
        )
    )


def redact_customer(
    session: Session,
    shop_id: int,
    customer_id: int,
    order_ids: list[int],
    *,
    at: datetime | None = None,
) -> None:
    """Delete everything held for the customer: record, scores, recommendations, pushed state
    and its audit trail, orders (theirs and `order_ids`), lines, refunds, data requests, and
    the shop's inbox rows that name them (`inbox.forget_customer`); and remember the customer
    and those orders as redacted, so that nothing applied later stores them again.

    The orders' locks, then the customer's (the ledger's order), and the customer's row is
    deleted first: the writers of scores, recommendations and pushed state hold the rows of the
    customers they write (`hold_customers`) until they commit, so a redact either waits for
    such a writer and then deletes what it wrote, or is seen by it, which then writes nothing
    for the customer.
    """
    at = at or datetime.now(UTC)
    named = sorted(set(_orders_of(session, shop_id, customer_id)) | set(order_ids))
    lock_orders(session, shop_id, named)
    # orders_to_redact may name an order the ledger holds for another customer (its customer
    # changed): that customer's figures are refreshed once the order is gone.
    _lock_customers(session, shop_id, customer_id, *_owners(session, shop_id, named))
    session.execute(
        delete(Customer).where(
            col(Customer.shop_id) == shop_id, col(Customer.customer_id) == customer_id
        )
    )
    doomed = set(_orders_of(session, shop_id, customer_id)) | set(order_ids)  # as now locked
    shop = session.get(Shop, shop_id)
    if shop is not None:
        doomed = inbox.forget_customer(session, shop.domain, customer_id, doomed)
    others = _owners(session, shop_id, doomed) - {customer_id}
    _forget_orders(session, shop_id, sorted(doomed))
    refresh_customers(session, shop_id, others)
    session.execute(
        delete(DataRequest).where(
            col(DataRequest.shop_id) == shop_id, col(DataRequest.customer_id) == customer_id
        )
    )
    for held in (CustomerScore, CustomerRecommendation, CustomerSync, SyncChange):
        session.execute(
            delete(held).where(col(held.shop_id) == shop_id, col(held.customer_id) == customer_id)
        )
    _remember(session, shop_id, CUSTOMER, [customer_id], at)
    _remember(session, shop_id, ORDER, doomed, at)


def _orders_of(session: Session, shop_id: int, customer_id: int) -> list[int]:
    return list(
        session.exec(
            select(Order.order_id).where(Order.shop_id == shop_id, Order.customer_id == customer_id)
        )
    )


def _owners(session: Session, shop_id: int, order_ids: Iterable[int]) -> set[int]:
    """The customers the ledger holds these orders for."""
    wanted, owners = sorted(set(order_ids)), set()
    for low in range(0, len(wanted), REFRESH_CHUNK):
        owners |= set(
            session.exec(
                select(Order.customer_id).where(
                    Order.shop_id == shop_id,
                    col(Order.order_id).in_(wanted[low : low + REFRESH_CHUNK]),
                    col(Order.customer_id).is_not(None),
                )
            )
        )
    return {c for c in owners if c is not None}


def _forget_orders(session: Session, shop_id: int, order_ids: Sequence[int]) -> None:
    """Delete the orders with their lines and refunds."""
    for low in range(0, len(order_ids), REFRESH_CHUNK):
        chunk = order_ids[low : low + REFRESH_CHUNK]
        for table in (OrderLine, Refund, Order):
            session.execute(
                delete(table).where(col(table.shop_id) == shop_id, col(table.order_id).in_(chunk))
            )


def _remember(
    session: Session, shop_id: int, kind: str, item_ids: Iterable[int], at: datetime
) -> None:
    """Record the ids as redacted (once: a redact may be processed twice)."""
    rows = [
        {"shop_id": shop_id, "kind": kind, "item_id": item, "redacted_at": at}
        for item in sorted(set(item_ids))
    ]
    if not rows:
        return
    statement = insert_for(session)(Redaction).on_conflict_do_nothing(
        index_elements=["shop_id", "kind", "item_id"]
    )
    for low in range(0, len(rows), REFRESH_CHUNK):
        session.execute(statement, rows[low : low + REFRESH_CHUNK])


def _redactions_of(session: Session, shop_id: int, version: OrderVersion) -> tuple[bool, bool]:
    """Whether the version's order, and whether its customer, were redacted (one query: it
    runs for every order applied)."""
    wanted = and_(col(Redaction.kind) == ORDER, col(Redaction.item_id) == version.order_id)
    if version.customer_id is not None:
        wanted = or_(
            wanted,
            and_(col(Redaction.kind) == CUSTOMER, col(Redaction.item_id) == version.customer_id),
        )
    query = select(col(Redaction.kind)).where(col(Redaction.shop_id) == shop_id, wanted)
    kinds = set(session.exec(query))
    return ORDER in kinds, CUSTOMER in kinds


def redacted(session: Session, shop_id: int, kind: str, item_ids: Iterable[int | None]) -> set[int]:
    """Which of the ids (customers' or orders', by `kind`) were redacted."""
    wanted = sorted({i for i in item_ids if i is not None})
    found: set[int] = set()
    for low in range(0, len(wanted), REFRESH_CHUNK):
        query = select(col(Redaction.item_id)).where(
            Redaction.shop_id == shop_id,
            Redaction.kind == kind,
            col(Redaction.item_id).in_(wanted[low : low + REFRESH_CHUNK]),
        )
        found.update(session.exec(query))
    return found


HOLD_CHUNK = 5000  # customers per query of `hold_customers`


def hold_customers(
    session: Session, shop_id: int, customer_ids: Iterable[int], *, alive: bool = False
) -> set[int]:
    """Which of the customers the shop still holds (a row in `customers`, not redacted; with
    `alive`, not marked deleted either), their rows held until the transaction ends; one query
    per HOLD_CHUNK customers.

    For the writers of what is kept per customer (scores, recommendations, pushed state), in
    the transaction of their write, before it touches any row: they write only the customers
    returned. On PostgreSQL the rows are locked FOR KEY SHARE: `redact_customer`, which deletes
    the customer's row first, waits for the writer to commit and then deletes what it wrote;
    a redact committed, or under way, before the lock is seen (the lock waits for it). So does
    `mark_customer_deleted`, which takes the row FOR UPDATE, for the writers of pushed state
    (`alive`): a deleted customer has none. A key share lock does not wait for, nor hold up,
    the ledger's updates of the customer's figures.
    SQLite: the write transaction already holds the database's only write lock.
    """
    wanted = sorted(set(customer_ids))
    found: set[int] = set()
    tombstone = exists().where(
        col(Redaction.shop_id) == col(Customer.shop_id),
        col(Redaction.kind) == CUSTOMER,
        col(Redaction.item_id) == col(Customer.customer_id),
    )
    for low in range(0, len(wanted), HOLD_CHUNK):
        query = (
            select(col(Customer.customer_id))
            .where(
                col(Customer.shop_id) == shop_id,
                col(Customer.customer_id).in_(wanted[low : low + HOLD_CHUNK]),
                ~tombstone,
                col(Customer.deleted_at).is_(None) if alive else true(),
            )
            .with_for_update(read=True, key_share=True)
        )
        found.update(session.exec(query))
    return found


# --- reading ------------------------------------------------------------------------------


def ledger_totals(session: Session, shop_id: int) -> dict[int, CustomerTotals]:
    """Every customer's totals recomputed from the raw ledger (orders and refunds) alone.

    Used to check the aggregates kept current by `refresh_customers`, which must equal these.
    """
    unreflected: dict[int, list[Refund]] = defaultdict(list)
    for refund in session.exec(
        select(Refund).where(Refund.shop_id == shop_id, col(Refund.reflected).is_(False))
    ):
        unreflected[refund.order_id].append(refund)
    counted: dict[int, list[tuple[datetime, Decimal]]] = defaultdict(list)
    orders = session.exec(select(Order).where(Order.shop_id == shop_id))
    for order in orders:
        cancelled = order.cancelled_at is not None
        net = ledger.order_net_amount(
            order.current_total,
            cancelled=cancelled,
            financial_status=order.financial_status,
            unreflected_refunds=[_refund_amount(r, order) for r in unreflected[order.order_id]],
        )
        if order.customer_id is None:
            continue
        counted.setdefault(order.customer_id, [])
        if ledger.order_counts(net, cancelled=cancelled, financial_status=order.financial_status):
            counted[order.customer_id].append((order.processed_at, net))
    return {customer: ledger.customer_totals(rows) for customer, rows in counted.items()}


def iter_customers(
    session: Session, shop_id: int
) -> Iterator[tuple[Customer, CustomerScore | None, CustomerSync | None]]:
    """The shop's customers (not deleted ones) with their scores and pushed state if any, in
    customer id order."""
    query = (
        select(Customer, CustomerScore, CustomerSync)
        .outerjoin(
            CustomerScore,
            (col(CustomerScore.shop_id) == col(Customer.shop_id))
            & (col(CustomerScore.customer_id) == col(Customer.customer_id)),
        )
        .outerjoin(
            CustomerSync,
            (col(CustomerSync.shop_id) == col(Customer.shop_id))
            & (col(CustomerSync.customer_id) == col(Customer.customer_id)),
        )
        .where(Customer.shop_id == shop_id, col(Customer.deleted_at).is_(None))
        .order_by(col(Customer.customer_id))
        .execution_options(yield_per=1000)
    )
    yield from session.exec(query)


def customer_report(session: Session, shop_id: int, customer_id: int) -> dict[str, Any] | None:
    """Everything held for one customer (for a customers/data_request), or None if nothing.

    Each row's fields come in the table's order, and what a column holds as text (JSON, or
    tags separated by spaces) comes as the lists and objects it holds: tags sorted, and a
    list metafield's value (JSON text, as Shopify takes it) as its list.
    """
    customer = session.get(Customer, (shop_id, customer_id))
    orders = session.exec(
        select(Order)
        .where(Order.shop_id == shop_id, Order.customer_id == customer_id)
        .order_by(col(Order.order_id))
    ).all()
    if customer is None and not orders:
        return None
    order_ids = [o.order_id for o in orders]
    lines = session.exec(
        select(OrderLine)
        .where(OrderLine.shop_id == shop_id, col(OrderLine.order_id).in_(order_ids))
        .order_by(col(OrderLine.order_id), col(OrderLine.line_id))
    ).all()
    refunds = session.exec(
        select(Refund)
        .where(Refund.shop_id == shop_id, col(Refund.order_id).in_(order_ids))
        .order_by(col(Refund.refund_id))
    ).all()
    score = session.get(CustomerScore, (shop_id, customer_id))
    requests = session.exec(
        select(DataRequest).where(
            DataRequest.shop_id == shop_id, DataRequest.customer_id == customer_id
        )
    ).all()
    synced = session.get(CustomerSync, (shop_id, customer_id))
    recommended = session.get(CustomerRecommendation, (shop_id, customer_id))
    changes = session.exec(
        select(SyncChange)
        .where(SyncChange.shop_id == shop_id, SyncChange.customer_id == customer_id)
        .order_by(col(SyncChange.id))
    ).all()
    shop_only = {"shop_id"}
    return {
        "customer": _public(customer, shop_only) if customer else None,
        "scores": _scores_held(score) if score else None,
        "pushed": _pushed_held(synced) if synced else None,
        "recommended": _public(
            recommended, shop_only, product_ids=json.loads(recommended.product_ids)
        )
        if recommended
        else None,
        "changes_pushed": [
            _public(
                c,
                {"shop_id", "id"},
                value=_metafield_value(c.name, c.value) if c.kind == "metafield" else c.value,
            )
            for c in changes
        ],
        "orders": [_public(o, {"shop_id", "version_digest"}) for o in orders],
        "order_lines": [_public(line, shop_only) for line in lines],
        "refunds": [_public(r, shop_only, lines=json.loads(r.lines)) for r in refunds],
        "data_requests": [_public(r, {"shop_id", "id"}) for r in requests],
    }


def _scores_held(score: CustomerScore) -> dict[str, Any]:
    tags = sorted(score.tags.split())
    return _public(score, {"shop_id"}, tags=tags, reasons=json.loads(score.reasons))


def _pushed_held(synced: CustomerSync) -> dict[str, Any]:
    metafields = json.loads(synced.metafields)
    blocked = synced.blocked_tags
    return _public(
        synced,
        {"shop_id"},
        tags=sorted(json.loads(synced.tags)),
        metafields={key: _metafield_value(key, value) for key, value in metafields.items()},
        blocked_tags=None if blocked is None else sorted(json.loads(blocked)),
    )


def _public(row: SQLModel, exclude: set[str], **held: Any) -> dict[str, Any]:
    """The row's fields but `exclude`, in the table's order; `held` replaces a text column
    with what it holds."""
    fields = type(row).model_fields
    return {name: held.get(name, getattr(row, name)) for name in fields if name not in exclude}


def _metafield_value(key: str, value: str | None) -> Any:
    """A metafield value as held: a list type's JSON text as its list, any other as its text."""
    if value is None or not METAFIELD_TYPES.get(key, "").startswith("list."):
        return value
    try:
        items = json.loads(value)
    except ValueError:
        return value  # not what the app sends: shown as held
    return items if isinstance(items, list) else value
