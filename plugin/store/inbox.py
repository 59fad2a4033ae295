"""The webhook inbox: durable, de-duplicated storage of verified events, and claiming them."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, or_
from sqlmodel import Session, col, select

from plugin.store.db import insert_for, is_postgres
from plugin.store.models import DONE, PARKED, PENDING, InboxEvent, Shop

# Topics a shop that is no longer installed still sends, and that must still be acted on.
COMPLIANCE_TOPICS = frozenset({"customers/data_request", "customers/redact", "shop/redact"})


class Stored(enum.Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    UNKNOWN_SHOP = "unknown_shop"
    NOT_INSTALLED = "not_installed"


@dataclass(frozen=True)
class Delivery:
    shop_domain: str
    webhook_id: str
    topic: str
    event_id: str | None
    triggered_at: datetime | None
    api_version: str | None
    payload: str  # minimised JSON


def store_deliveries(
    bind: Engine | Connection, deliveries: Sequence[Delivery], now: datetime
) -> list[Stored]:
    """Write verified deliveries to the inbox, once per (shop, webhook id), in ONE transaction
    committed before return (one fsync for the lot: see webhooks/writer.py).

    Deliveries for unknown shops, and for uninstalled shops except the compliance topics
    (shop/redact comes 48 hours after uninstalling), are not stored. The rest go in one
    statement, `ON CONFLICT DO NOTHING`, which returns the keys it inserted; a delivery whose
    key it did not return was already there. Of copies of one delivery in the batch, the first
    is the one stored, the others are duplicates.

    This is the path every webhook waits on, so it runs on a Core connection with statements
    built once: for a single delivery, an ORM session cost nearly four times the CPU. `bind` is
    an engine, or a connection outside any transaction (the inbox writer keeps one open).
    """
    with _transaction(bind) as connection:
        domains = sorted({d.shop_domain for d in deliveries})
        uninstalled = dict(connection.execute(_SHOP_STATES, {"domains": domains}).all())
        outcomes = [_refused(d, uninstalled) for d in deliveries]
        rows = [
            _row(d, now) for d, refused in zip(deliveries, outcomes, strict=True) if not refused
        ]
        if not rows:
            return [refused or Stored.DUPLICATE for refused in outcomes]
        inserted = set(connection.execute(_insert_new(connection), rows).all())
    stored: list[Stored] = []
    for delivery, refused in zip(deliveries, outcomes, strict=True):
        key = (delivery.shop_domain, delivery.webhook_id)
        stored.append(refused or (Stored.STORED if key in inserted else Stored.DUPLICATE))
        inserted.discard(key)  # a later copy in this batch is a duplicate
    return stored


@contextmanager
def _transaction(bind: Engine | Connection) -> Iterator[Connection]:
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            yield connection
    else:
        with bind.begin():
            yield bind


_SHOPS = Shop.__table__  # type: ignore[attr-defined]
_INBOX = InboxEvent.__table__  # type: ignore[attr-defined]
_SHOP_STATES = select(_SHOPS.c.domain, _SHOPS.c.uninstalled_at).where(
    _SHOPS.c.domain.in_(bindparam("domains", expanding=True))
)


_INSERTS_NEW: dict[str, Any] = {}  # per dialect, built once


def _insert_new(connection: Connection) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING the keys inserted, in the connection's SQL."""
    dialect = connection.dialect.name
    if dialect not in _INSERTS_NEW:
        _INSERTS_NEW[dialect] = (
            insert_for(connection)(_INBOX)
            .on_conflict_do_nothing(index_elements=["shop_domain", "webhook_id"])
            .returning(_INBOX.c.shop_domain, _INBOX.c.webhook_id)
        )
    return _INSERTS_NEW[dialect]


def _refused(delivery: Delivery, uninstalled: dict[str, datetime | None]) -> Stored | None:
    """Why the delivery is not stored, or None."""
    if delivery.shop_domain not in uninstalled:
        return Stored.UNKNOWN_SHOP
    if uninstalled[delivery.shop_domain] is not None and delivery.topic not in COMPLIANCE_TOPICS:
        return Stored.NOT_INSTALLED
    return None


def _row(delivery: Delivery, now: datetime) -> dict[str, Any]:
    return {
        "shop_domain": delivery.shop_domain,
        "webhook_id": delivery.webhook_id,
        "topic": delivery.topic,
        "event_id": delivery.event_id,
        "triggered_at": delivery.triggered_at,
        "api_version": delivery.api_version,
        "received_at": now,
        "payload": delivery.payload,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
    }


def claim_due(session: Session, now: datetime, limit: int) -> list[InboxEvent]:
    """The oldest due pending events (at most `limit`), locked for this transaction.

    PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent processors take different rows, and a
    processor that dies releases its row with its connection. SQLite: the transaction already
    holds the database's write lock (BEGIN IMMEDIATE), so no one else can take it.
    """
    query = (
        select(InboxEvent)
        .where(InboxEvent.status == PENDING, InboxEvent.next_attempt_at <= now)
        .order_by(col(InboxEvent.id))
        .limit(limit)
    )
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    return list(session.exec(query))


def mark_done(event: InboxEvent, now: datetime) -> None:
    """Processed: the payload is dropped (the ledger has what it needs); the ids stay for de-dup."""
    event.status, event.processed_at, event.last_error = DONE, now, None
    event.attempts += 1
    event.payload = "{}"


def mark_failed(event: InboxEvent, error: str, now: datetime, max_attempts: int) -> bool:
    """Record a failed attempt: retry later with exponential backoff, or park. True if parked."""
    event.attempts += 1
    event.last_error = error[:2000]
    if event.attempts >= max_attempts:
        event.status = PARKED
        return True
    event.next_attempt_at = now + retry_delay(event.attempts)
    return False


# After losing a lock wait to another processor (PostgreSQL chose this event's statement to
# abort): tried again this soon, the attempt not counted, as nothing is wrong with the event.
CONTENDED_DELAY = timedelta(seconds=1)


def mark_contended(event: InboxEvent, error: str, now: datetime) -> None:
    """Record an attempt another processor's locks aborted: tried again after CONTENDED_DELAY,
    not counted towards parking (under load, two processors' batches abort events often)."""
    event.last_error = error[:2000]
    event.next_attempt_at = now + CONTENDED_DELAY


def retry_delay(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s ... doubling after each failed attempt, at most an hour."""
    return timedelta(seconds=min(5 * 2 ** (attempts - 1), 3600))


def parked_ids(session: Session, shop_domain: str | None = None) -> list[int]:
    """The parked events (of the shop, or of every shop), oldest first."""
    query = select(InboxEvent.id).where(InboxEvent.status == PARKED)
    if shop_domain is not None:
        query = query.where(InboxEvent.shop_domain == shop_domain)
    return [event_id for event_id in session.exec(query.order_by(col(InboxEvent.id))) if event_id]


def claim_parked(
    session: Session, ids: Sequence[int], now: datetime, max_attempts: int
) -> list[InboxEvent]:
    """Those of `ids` still parked, locked for this transaction and given one more attempt (a
    failure parks them again): taken out of the parked ones in the transaction that runs them,
    so that a processor never claims them meanwhile."""
    query = (
        select(InboxEvent)
        .where(col(InboxEvent.id).in_(ids), InboxEvent.status == PARKED)
        .order_by(col(InboxEvent.id))
        .with_for_update()
    )
    events = list(session.exec(query))
    for event in events:
        event.status, event.attempts, event.next_attempt_at = PENDING, max_attempts - 1, now
    return events


def prune_done(session: Session, shop_domain: str, before: datetime) -> int:
    """Delete the shop's processed events received before `before` (their payloads are already
    empty; only the ids were kept, for de-duplication); how many."""
    table = InboxEvent.__table__  # type: ignore[attr-defined]
    result = session.connection().execute(
        table.delete().where(
            table.c.shop_domain == shop_domain,
            table.c.status == DONE,
            table.c.received_at < before,
        )
    )
    return int(result.rowcount or 0)


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.exec(select(InboxEvent.status, func.count()).group_by(InboxEvent.status))
    return {status: count for status, count in rows}


_MENTION_CHUNK = 100  # ids per LIKE query of `forget_customer`


def forget_customer(
    session: Session, shop_domain: str, customer_id: int, order_ids: Iterable[int]
) -> set[int]:
    """Delete the shop's inbox rows, whatever their status, that name the customer or one of
    their orders: orders/* of that customer or with one of `order_ids`, refunds of one of those
    orders, customers/* (record, delete, data request, redact) of that customer. Orders of the
    customer found only here count as theirs (their refunds go too); all their orders' ids are
    returned.

    Rows this session holds as objects are kept: the processor's claimed batch, the event being
    processed among them. The processor marks each done (which empties its payload), and a row
    deleted under it would fail the whole batch; the redact's tombstones make the ledger skip
    the others. Rows are found with LIKE on the ids' digits, among the shop's rows only, and
    confirmed by reading their JSON.
    """
    keep = {o.id for o in session.identity_map.values() if isinstance(o, InboxEvent)}
    orders = set(order_ids)
    doomed: set[int] = set()
    searched: set[int] = set()
    ids = {customer_id} | orders
    while ids:  # an order of theirs found here: its refunds are searched for next
        searched |= ids
        for row_id, topic, payload in _mentioning(session, shop_domain, ids):
            if row_id in keep or row_id in doomed:
                continue
            customer, order, refunded = _named(topic, payload)
            if customer == customer_id and order is not None:
                orders.add(order)
            if customer == customer_id or order in orders or refunded in orders:
                doomed.add(row_id)
        ids = orders - searched
    table = InboxEvent.__table__  # type: ignore[attr-defined]
    listed = sorted(doomed)
    for low in range(0, len(listed), 500):
        session.connection().execute(table.delete().where(table.c.id.in_(listed[low : low + 500])))
    return orders


def _mentioning(session: Session, shop_domain: str, ids: Iterable[int]) -> list[Any]:
    """(id, topic, payload) of the shop's rows whose payload has one of `ids`' digits."""
    table = InboxEvent.__table__  # type: ignore[attr-defined]
    wanted = sorted(ids)
    rows: list[Any] = []
    for low in range(0, len(wanted), _MENTION_CHUNK):
        chunk = wanted[low : low + _MENTION_CHUNK]
        query = table.select().with_only_columns(table.c.id, table.c.topic, table.c.payload)
        query = query.where(
            table.c.shop_domain == shop_domain,
            or_(*(table.c.payload.like(f"%{i}%") for i in chunk)),
        )
        rows += session.connection().execute(query).all()
    return rows


def _named(topic: str, payload: str) -> tuple[int | None, int | None, int | None]:
    """The customer, the order and the refunded order a stored payload names (None if not)."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None
    customer = data.get("customer")
    customer_id = _id(customer.get("id")) if isinstance(customer, dict) else None
    if topic.startswith("orders/"):
        return customer_id, _id(data.get("id")), None
    if topic.startswith("refunds/"):
        return None, None, _id(data.get("order_id"))
    if topic.startswith("customers/"):  # records carry their id; compliance topics `customer`
        return customer_id if isinstance(customer, dict) else _id(data.get("id")), None, None
    return None, None, None


def _id(value: Any) -> int | None:
    """A numeric id as Shopify sends it (a number, its digits, or a GID), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.rsplit("/", 1)[-1].isdigit():
        return int(value.rsplit("/", 1)[-1])
    return None
