"""`clvsync redact`: the operator's erasure of one customer, as Shopify's customers/redact does.

The same store function as the webhook's handler (`ledger.redact_customer`), in one transaction
of its own as the processor applies an event: the ledger's locks (PostgreSQL) and the single
write lock (SQLite) make it safe while `clvsync serve` or workers apply events meanwhile.

Unlike the webhook, it refuses an order given with --order that the ledger holds for another
customer unless told (--other-customers-orders): the erasure has no undo, and a mistyped id
would erase that customer's order for good.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import click
from sqlalchemy import Engine, func
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select

from plugin.cli_database import load_command_settings, one_line, open_store, shop_or_fail
from plugin.domain.ledger_values import MAX_ID
from plugin.store import ledger
from plugin.store.db import contended
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
    SyncChange,
)
from plugin.wording import counted

SHOPIFY_ID = click.IntRange(1, MAX_ID)  # as the webhooks' payloads take them
# PostgreSQL aborts one of two transactions that wait for each other (a processor's batch holds
# the inbox rows it claimed, which the redact deletes, and may wait for an order's lock that the
# redact holds). The processor applies an aborted event again; this command its transaction.
ATTEMPTS = 3
OTHER_ROWS = "scores, recommendations, pushed state and its audit, data requests"
ALLOW_OTHERS = "--other-customers-orders"

T = TypeVar("T")


@dataclass(frozen=True)
class Held:
    """What the store holds of a customer and of the orders named for them."""

    redacted: bool  # recorded as redacted already
    record: bool
    orders: int  # held for them
    others: tuple[tuple[int, int], ...]  # (order, customer): named by --order, held for another
    nobody: int  # orders named by --order and held for no customer
    unheld: int  # orders named by --order that the ledger does not hold
    lines: int
    refunds: int
    rows: int  # OTHER_ROWS
    unrecorded: int  # orders named by --order not recorded as redacted yet

    @property
    def anything(self) -> bool:
        counts = (self.orders, self.others, self.nobody, self.lines, self.refunds, self.rows)
        return self.record or any(counts)

    @property
    def nothing_to_do(self) -> bool:
        return self.redacted and not self.anything and not self.unrecorded


class OthersOrdersError(click.ClickException):
    """Orders named by --order that the ledger holds for another customer, not allowed."""

    def __init__(self, customer_id: int, others: Sequence[tuple[int, int]], *, now: bool) -> None:
        held = "is now held for" if now else "is held for"
        pairs = [
            f"order {order_id} {held if index == 0 else 'for'} customer {owner}"
            for index, (order_id, owner) in enumerate(others)
        ]
        them = "it" if len(others) == 1 else "them"
        super().__init__(
            f"{_listed(pairs)}, not {customer_id}: nothing erased; if Shopify's "
            f"orders_to_redact names {them}, give {ALLOW_OTHERS} too"
        )


def held_of(session: Session, shop_id: int, customer_id: int, order_ids: Sequence[int]) -> Held:
    """What `ledger.redact_customer` erases of the customer and the orders `order_ids` (the
    inbox's events aside)."""
    given = sorted(set(order_ids))
    theirs = set(
        session.exec(
            select(col(Order.order_id)).where(
                col(Order.shop_id) == shop_id, col(Order.customer_id) == customer_id
            )
        )
    )
    owners = _owners(session, shop_id, given)
    orders = sorted(theirs | set(given))
    return Held(
        redacted=bool(ledger.redacted(session, shop_id, ledger.CUSTOMER, [customer_id])),
        record=session.get(Customer, (shop_id, customer_id)) is not None,
        orders=len(theirs),
        others=tuple(
            (order_id, owner)
            for order_id, owner in sorted(owners.items())
            if owner is not None and owner != customer_id
        ),
        nobody=sum(owner is None for owner in owners.values()),
        unheld=len(set(given) - set(owners)),
        lines=_of_orders(session, OrderLine, shop_id, orders),
        refunds=_of_orders(session, Refund, shop_id, orders),
        rows=_other_rows(session, shop_id, customer_id),
        unrecorded=len(set(given) - ledger.redacted(session, shop_id, ledger.ORDER, given)),
    )


def _owners(session: Session, shop_id: int, order_ids: list[int]) -> dict[int, int | None]:
    """The customer each of the orders the ledger holds is held for (None: a guest's)."""
    owners: dict[int, int | None] = {}
    for low in range(0, len(order_ids), ledger.REFRESH_CHUNK):
        query = select(col(Order.order_id), col(Order.customer_id)).where(
            col(Order.shop_id) == shop_id,
            col(Order.order_id).in_(order_ids[low : low + ledger.REFRESH_CHUNK]),
        )
        owners.update(session.exec(query).all())
    return owners


def _of_orders(
    session: Session, table: type[OrderLine] | type[Refund], shop_id: int, order_ids: list[int]
) -> int:
    """The table's rows of these orders (a refund that came before its order is held alone)."""
    total = 0
    for low in range(0, len(order_ids), ledger.REFRESH_CHUNK):
        query = select(func.count()).where(
            col(table.shop_id) == shop_id,
            col(table.order_id).in_(order_ids[low : low + ledger.REFRESH_CHUNK]),
        )
        total += session.exec(query).one()
    return total


def _other_rows(session: Session, shop_id: int, customer_id: int) -> int:
    total = 0
    for table in (CustomerScore, CustomerRecommendation, CustomerSync, SyncChange, DataRequest):
        query = select(func.count()).where(
            col(table.shop_id) == shop_id, col(table.customer_id) == customer_id
        )
        total += session.exec(query).one()
    return total


def _listed(items: Sequence[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _ids(noun: str, ids: Sequence[int]) -> str:
    """ "order 3", "orders 3 and 4", "orders 3, 4 and 5"."""
    return f"{noun} {ids[0]}" if len(ids) == 1 else f"{noun}s {_listed([str(i) for i in ids])}"


def erased_text(held: Held) -> str:
    """What the redact erases: "their record, 2 orders (order 3 held for customer 502), 3 lines,
    1 refund and 4 other rows (...)"; the orders are always counted, and those named by
    --order held for another customer or for none are said."""
    orders = counted(held.orders + len(held.others) + held.nobody, "order")
    notes = [f"order {order_id} held for customer {owner}" for order_id, owner in held.others]
    if held.nobody:
        notes.append(f"{held.nobody} named by --order and held for no customer")
    if notes:
        orders += f" ({'; '.join(notes)})"
    parts = (["their record"] if held.record else []) + [orders]
    if held.lines:
        parts.append(counted(held.lines, "line"))
    if held.refunds:
        parts.append(counted(held.refunds, "refund"))
    if held.rows:
        parts.append(f"{counted(held.rows, 'other row')} ({OTHER_ROWS})")
    return _listed(parts)


def prompt_text(domain: str, customer_id: int, held: Held) -> str:
    before = " (redacted before)" if held.redacted else ""
    if held.anything:
        return (
            f"Erase customer {customer_id} of {domain}{before}: {erased_text(held)}, "
            "and record them as redacted?"
        )
    return (
        f"Nothing is held for customer {customer_id} of {domain}{before}. Record them as "
        "redacted, so that no later webhook or backfill stores them?"
    )


def summary_lines(domain: str, customer_id: int, held: Held, recorded: int) -> list[str]:
    """What was erased, what was not held, whose figures were refreshed, and what was recorded
    (`recorded`: the orders recorded as redacted now, which were not before)."""
    lines = [
        f"erased customer {customer_id} of {domain}: {erased_text(held)}"
        if held.anything
        else f"nothing was held for customer {customer_id} of {domain}"
    ]
    if held.unheld:
        verb = "was" if held.unheld == 1 else "were"
        lines.append(f"{counted(held.unheld, 'order')} named by --order {verb} not held")
    for owner in sorted({owner for _, owner in held.others}):
        theirs = _ids("order", [o for o, c in held.others if c == owner])
        lines.append(f"refreshed customer {owner}'s figures, without {theirs}")
    if not held.redacted:
        also = f" and {counted(recorded, 'order')}" if recorded else ""
        return [
            *lines,
            f"recorded customer {customer_id}{also} as redacted: no webhook or backfill "
            "applied later stores them again",
        ]
    more = f"; {counted(recorded, 'more order')} recorded now" if recorded else ""
    return [*lines, f"customer {customer_id} was recorded as redacted before{more}"]


def redact_now(
    engine: Engine, domain: str, customer_id: int, order_ids: Sequence[int], *, allow_others: bool
) -> tuple[str, Held, int]:
    """Redact the customer in one transaction, as the processor applies customers/redact: the
    shop's domain, what was held (read in the same transaction, before), and how many orders
    were recorded as redacted that were not before. Raises `OthersOrdersError`, with nothing
    changed, if an order of `order_ids` is held for another customer and not `allow_others`."""
    at = datetime.now(UTC)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        shop = shop_or_fail(session, domain)  # again: it may have been redacted meanwhile
        assert shop.id is not None
        # The orders' locks first, as the redact takes them (an order changes customer only
        # under its lock): who the named orders are held for cannot change from this check to
        # their deletion. Their customers' locks are the redact's own, taken after these.
        # An order of theirs committed before the redact reads them is erased but not counted;
        # the orders recorded as redacted are counted after it, exactly.
        theirs = session.exec(
            select(col(Order.order_id)).where(
                col(Order.shop_id) == shop.id, col(Order.customer_id) == customer_id
            )
        )
        ledger.lock_orders(session, shop.id, sorted({*theirs, *order_ids}))
        held = held_of(session, shop.id, customer_id, order_ids)
        if held.others and not allow_others:
            # an order that changed customer since the question was asked
            raise OthersOrdersError(customer_id, held.others, now=True)
        ledger.redact_customer(session, shop.id, customer_id, list(order_ids), at=at)
        recorded = session.exec(
            select(func.count()).where(
                col(Redaction.shop_id) == shop.id,
                col(Redaction.kind) == ledger.ORDER,
                col(Redaction.redacted_at) == at,
            )
        ).one()
    return shop.domain, held, recorded


def retried(work: Callable[[], T]) -> T:
    """`work`, done again if PostgreSQL chose its transaction to abort (`contended`); any
    other database error, or the last, as one line."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return work()
        except DBAPIError as exc:
            if attempt == ATTEMPTS or not contended(exc):
                raise click.ClickException(f"database error: {one_line(exc.orig)}") from None
    raise AssertionError("unreachable")


@click.command()
@click.option("--shop", "domain", required=True, help="The shop's NAME.myshopify.com domain.")
@click.option(
    "--customer",
    "customer_id",
    type=SHOPIFY_ID,
    required=True,
    metavar="ID",
    help="The customer's id.",
)
@click.option(
    "--order",
    "order_ids",
    type=SHOPIFY_ID,
    multiple=True,
    metavar="ID",
    help="An order of theirs the ledger may not tie to them (Shopify's orders_to_redact); "
    "repeat for each. One the ledger holds for another customer is refused, unless "
    f"{ALLOW_OTHERS} is given.",
)
@click.option(
    ALLOW_OTHERS,
    "allow_others",
    is_flag=True,
    help="Erase too the orders given with --order that the ledger holds for another customer "
    "(Shopify's orders_to_redact may name them), for good, and refresh that customer's figures.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
def redact(
    domain: str, customer_id: int, order_ids: tuple[int, ...], allow_others: bool, yes: bool
) -> None:
    """Erase a customer of the shop, as Shopify's customers/redact webhook does, and record
    them as redacted.

    For an erasure request that reaches the operator outside Shopify, or a customer redacted
    before migration 0008 (not recorded then, so a backfill stores them again). Deletes their
    record, the orders the ledger holds for them and those given with --order (with their
    lines and refunds), their scores, recommendations, pushed state and its audit, data
    requests, and the inbox's events naming them; records the customer and those orders as
    redacted, so that no webhook or backfill applied later stores them again. Safe to run
    again, and while `clvsync serve` or workers run. There is no undo.

    An order given with --order that the ledger holds for another customer is refused, with
    nothing erased (a mistyped id would erase that customer's order for good), unless
    --other-customers-orders is given: then it is erased and recorded as redacted too, the
    prompt and the summary name it and its customer, and that customer's figures are
    refreshed. Orders given with --order that the ledger holds for no customer, or does not
    hold, are taken as they are (the summary counts them).

    It changes nothing in Shopify. The tags and metafields the app wrote on the customer stay
    in the store, and the app, having forgotten what it pushed to them, never removes them:
    Shopify's own erasure of the customer does. For a customer the store keeps, remove the
    app's tags (under its prefix) and metafields (its namespace) in the Shopify admin.
    """
    settings = load_command_settings()
    with open_store(settings) as engine:
        with Session(engine, expire_on_commit=False) as session:
            shop = shop_or_fail(session, domain)
            shop_id, shown = shop.id, shop.domain
            assert shop_id is not None
            held = retried(lambda: held_of(session, shop_id, customer_id, order_ids))
        if held.others and not allow_others:
            raise OthersOrdersError(customer_id, held.others, now=False)
        if held.nothing_to_do:
            click.echo(
                f"customer {customer_id} of {shown} was redacted before and nothing of them is "
                "held: nothing to do"
            )
            return
        # asked outside any transaction: the operator may take their time
        if not yes and not click.confirm(prompt_text(shown, customer_id, held)):
            click.echo("not confirmed: nothing erased", err=True)
            raise SystemExit(1)
        shown, held, recorded = retried(
            lambda: redact_now(engine, domain, customer_id, order_ids, allow_others=allow_others)
        )
    for line in summary_lines(shown, customer_id, held, recorded):
        click.echo(line)
