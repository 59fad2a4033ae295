"""The ledger read as arrays for the models, and scores written back in bulk.

A shop can hold millions of orders: rows are read straight into numpy arrays (dates as days
since the epoch, computed by the database; money as the stored integer count of 1/10,000; on
SQLite the lines as text, a column at a time), and scores are written with binary COPY on
PostgreSQL and one executemany on SQLite, never row by row through the ORM.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, compress, islice
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import BigInteger, ColumnElement, Engine, Float, and_, cast, func, select
from sqlalchemy import type_coerce as coerce
from sqlmodel import Session, col
from sqlmodel import select as model_select

from plugin.store.costs import held_costs
from plugin.store.db import driver_connection
from plugin.store.models import Customer, CustomerScore, ModelRun, Order, OrderLine
from plugin.store.types import MONEY_SCALE

_FETCH_ROWS = 200_000


@dataclass(frozen=True)
class LedgerArrays:
    """A shop's counted orders (one row each) and their product lines, as arrays."""

    order_customer: NDArray[np.int64]
    order_day: NDArray[np.float64]  # days since the Unix epoch, UTC
    order_amount: NDArray[np.float64]  # net, shop currency
    line_customer: NDArray[np.int64]
    line_product: NDArray[np.int64]
    line_day: NDArray[np.float64]
    line_quantity: NDArray[np.int64]  # units still held, after refunds
    # with costs=True: each order's cost of the goods it kept (`order_costs`); the units kept,
    # and those of variants without a cost
    order_cost: NDArray[np.float64] | None = None
    units_kept: int | None = None
    units_without_cost: int | None = None


def _epoch_days(engine: Engine, column: Any) -> ColumnElement[float]:
    if engine.dialect.name == "postgresql":
        # extract() gives a numeric; as a double (numeric to float8 rounds correctly, as the
        # driver's Decimal to float did) it comes in binary, without a Decimal per row
        return cast(func.extract("epoch", column) / 86400.0, Float)
    return coerce(func.julianday(column) - 2440587.5, Float)  # SQLite stores ISO text


def _fetch(engine: Engine, query: Any, width: int) -> NDArray[np.float64]:
    """The query's rows as a (rows x width) float array.

    Straight from the driver's cursor, in chunks: SQLAlchemy's Row objects would cost more than
    the database does. On PostgreSQL the cursor is a server-side (named) one, so the rows are
    not all held in the client at once.
    """
    statement, arguments = _compiled(engine, query)
    parts = []
    with driver_connection(engine) as raw:
        postgres = engine.dialect.name == "postgresql"
        # binary results: ints and doubles without parsing their text
        cursor = raw.cursor(name="clvsync_fetch", binary=True) if postgres else raw.cursor()
        with closing(cursor):  # a server cursor left open warns, even after an error
            cursor.execute(statement, arguments)
            while rows := cursor.fetchmany(_FETCH_ROWS):
                count = len(rows) * width
                flat = np.fromiter(chain.from_iterable(rows), dtype=np.float64, count=count)
                parts.append(flat.reshape(-1, width))
        raw.rollback()  # read-only; ends the transaction the driver opened
    return np.concatenate(parts) if parts else np.empty((0, width))


def _compiled(engine: Engine, query: Any) -> tuple[str, Any]:
    """The query's text and arguments for the driver's own cursor."""
    compiled = query.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    arguments: Any = compiled.params
    if compiled.positiontup is not None:  # qmark style (SQLite): positional parameters
        arguments = tuple(compiled.params[name] for name in compiled.positiontup)
    return str(compiled), arguments


def load_ledger(
    engine: Engine, shop_id: int, customer_ids: Sequence[int] | None = None, costs: bool = False
) -> LedgerArrays:
    """Counted orders with a customer (all, or only `customer_ids`'s), and their lines; with
    `costs`, each order's cost of goods too (`order_costs`).

    Lines exclude gift cards, custom items and fully refunded lines. Ids pass through float64,
    exact below 2**53 (Shopify's ids are about 2**43). Orders come sorted by (customer, day,
    amount), the scorer's canonical order (the database sorts them faster than numpy, by the
    customer index), and lines in their order's place, so the scorer finds them sorted already.
    The shop's lines are read on their own and matched to their orders here: a join in the
    database visits one of the two tables in random order, on SQLite ten times slower than the
    two plain reads.
    """
    counted = and_(
        col(Order.shop_id) == shop_id, col(Order.counted), col(Order.customer_id).is_not(None)
    )
    if customer_ids is not None:
        counted = and_(counted, col(Order.customer_id).in_(list(customer_ids)))
    day = _epoch_days(engine, Order.processed_at)
    orders_query = (
        select(
            col(Order.customer_id), day, coerce(Order.net_amount, BigInteger), col(Order.order_id)
        )
        .where(counted)
        .order_by(col(Order.customer_id), col(Order.processed_at), col(Order.net_amount))
    )
    lines_query = _lines_query(engine, shop_id, counted, customer_ids is None, costs)
    width = 4 if costs else 3
    if engine.dialect.name == "postgresql":
        # Both at once, on two connections: the server sorts the orders and scans the lines
        # while this process converts what has come (half the time of one after the other).
        # Not on SQLite: its driver lets go of the GIL at every row, and two threads trading it
        # row by row take longer than the two reads in turn.
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(_fetch, engine, lines_query, width)
            orders = _fetch(engine, orders_query, 4)
            lines = pending.result()
    else:
        orders = _fetch(engine, orders_query, 4)
        whole = customer_ids is None
        text = _concatenated(engine, lines_query, orders[:, 3]) if whole else None
        lines = _fetch(engine, lines_query, width) if text is None else text
    row, product, quantity, *variant = _lines_of_orders(orders[:, 3], lines)
    cost, without = None, None
    if costs:
        cost, without = order_costs(
            held_costs(engine, shop_id), row, variant[0], quantity, len(orders)
        )
    return LedgerArrays(
        order_customer=orders[:, 0].astype(np.int64),
        order_day=np.ascontiguousarray(orders[:, 1]),
        order_amount=orders[:, 2] / 10**MONEY_SCALE,
        line_customer=orders[row, 0].astype(np.int64),
        line_product=product,
        line_day=orders[row, 1],
        line_quantity=quantity,
        order_cost=cost,
        units_kept=int(quantity.sum()) if costs else None,
        units_without_cost=without,
    )


def order_costs(
    costs: dict[int, int],
    row: NDArray[np.intp],
    variant: NDArray[np.int64],
    quantity: NDArray[np.int64],
    orders: int,
) -> tuple[NDArray[np.float64], int]:
    """Each order's cost of the goods it kept: over its lines (their order's `row`), the units
    still held x the variant's cost per item (`costs`, the store's current ones); a line of a
    variant without a cost counts none. With it, the units kept of variants without a cost:
    what the figure leaves out."""
    held = np.fromiter(costs, dtype=np.int64, count=len(costs))
    unit = np.fromiter(costs.values(), dtype=np.float64, count=len(costs))
    by_variant = np.argsort(held)
    held, unit = held[by_variant], unit[by_variant]
    at = np.searchsorted(held, variant)
    known = at < held.size
    known[known] = held[at[known]] == variant[known]
    line_cost = np.zeros(variant.size)
    line_cost[known] = unit[at[known]] * quantity[known]
    cost = np.bincount(row, weights=line_cost, minlength=orders) / 10**MONEY_SCALE
    return cost, int(quantity[~known].sum())


def _lines_query(
    engine: Engine, shop_id: int, counted: ColumnElement[bool], whole: bool, variants: bool = False
) -> Any:
    """(order id, product id, current quantity) of the kept lines, and with `variants` their
    variant id (0 for none): of the whole shop, or of the counted orders."""
    columns: list[Any] = [
        col(OrderLine.order_id),
        col(OrderLine.product_id),
        col(OrderLine.current_quantity),
    ]
    if variants:  # never NULL: group_concat would leave it out, and the columns fall apart
        columns.append(func.coalesce(col(OrderLine.variant_id), 0))
    query = select(*columns).where(
        col(OrderLine.shop_id) == shop_id,
        col(OrderLine.product_id).is_not(None),
        col(OrderLine.current_quantity) > 0,
        col(OrderLine.gift_card).is_(False),
    )
    if not whole:
        return query.where(col(OrderLine.order_id).in_(select(col(Order.order_id)).where(counted)))
    if engine.dialect.name == "sqlite":
        # Unordered, SQLite picks the product index and visits the table in random order, ten
        # times slower: ordered by the primary key, it reads the shop's lines in one sweep.
        query = query.order_by(col(OrderLine.order_id), col(OrderLine.line_id))
    return query


_CONCATENATED_ORDERS = 500_000  # orders whose lines one group_concat reads (some 12 MB of text)


def _concatenated(
    engine: Engine,
    lines_query: Any,
    order_id: NDArray[np.float64],
    per_range: int = _CONCATENATED_ORDERS,
) -> NDArray[np.float64] | None:
    """The shop's lines (the columns of `lines_query`) on SQLite, read as text: a
    group_concat of each column per range of order ids, parsed by numpy, instead of a tuple of
    ints per line (half the time for ten million lines).

    None when SQLite did not keep the query's order (the order ids of a range not ascending),
    which the lines must have: then the caller reads them row by row.
    """
    bounds = np.unique(order_id)[per_range::per_range].tolist()
    parts = []
    # no Session: on SQLite it would take the write lock
    with driver_connection(engine) as raw:
        cursor = raw.cursor()
        for low, high in zip([None, *bounds], [*bounds, None], strict=True):
            ranged = lines_query
            if low is not None:
                ranged = ranged.where(col(OrderLine.order_id) >= int(low))
            if high is not None:
                ranged = ranged.where(col(OrderLine.order_id) < int(high))
            ranged = ranged.subquery()
            concatenated = select(*(func.group_concat(column) for column in ranged.c))
            cursor.execute(*_compiled(engine, concatenated))
            texts = cursor.fetchone()
            if texts is None or texts[0] is None:  # no lines in the range
                continue
            columns = [np.fromstring(text, dtype=np.int64, sep=",") for text in texts]
            orders = columns[0]
            if len({column.size for column in columns}) > 1 or np.any(orders[1:] < orders[:-1]):
                return None
            parts.append(np.stack(columns, axis=1, dtype=np.float64))
        cursor.close()
        raw.rollback()
    return np.concatenate(parts) if parts else np.empty((0, len(lines_query.selected_columns)))


def _lines_of_orders(
    order_id: NDArray[np.float64], lines: NDArray[np.float64]
) -> list[NDArray[Any]]:
    """For the lines (order id, product id, current quantity[, variant id]) of a counted order:
    the row of their order in `order_id`, ascending (stable, so lines keep their order within
    an order), then their other columns as ints, in that order."""
    if order_id.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return [np.zeros(0, dtype=np.intp)] + [empty] * (lines.shape[1] - 1)
    by_id = np.argsort(order_id, kind="stable")
    at = np.minimum(np.searchsorted(order_id[by_id], lines[:, 0]), order_id.size - 1)
    found = order_id[by_id[at]] == lines[:, 0]
    row = by_id[at[found]]
    order = np.argsort(row, kind="stable")
    kept = np.flatnonzero(found)[order]
    columns = [lines[kept, c].astype(np.int64) for c in range(1, lines.shape[1])]
    return [np.asarray(row[order], dtype=np.intp), *columns]


@dataclass(frozen=True)
class BasketArrays:
    """Counted orders' product lines (guest orders included, customer -1), as arrays, and each
    product's type as last seen on a line that has one."""

    order_id: NDArray[np.int64]
    customer_id: NDArray[np.int64]
    product_id: NDArray[np.int64]
    day: NDArray[np.float64]
    quantity: NDArray[np.int64]
    unit_price: NDArray[np.float64]
    product_types: dict[int, str | None]


def _line_of_its_order() -> ColumnElement[bool]:
    return and_(
        col(OrderLine.shop_id) == col(Order.shop_id), col(OrderLine.order_id) == col(Order.order_id)
    )


def load_baskets(engine: Engine, shop_id: int) -> BasketArrays:
    """The shop's baskets for the recommendations: lines still held (current quantity above
    zero) of counted orders, without gift cards or custom items."""
    kept = and_(
        col(Order.shop_id) == shop_id,
        col(Order.counted),
        col(OrderLine.product_id).is_not(None),
        col(OrderLine.current_quantity) > 0,
        col(OrderLine.gift_card).is_(False),
    )
    rows = _fetch(
        engine,
        select(
            col(Order.order_id),
            func.coalesce(col(Order.customer_id), -1),
            col(OrderLine.product_id),
            _epoch_days(engine, Order.processed_at),
            col(OrderLine.current_quantity),
            coerce(OrderLine.price, BigInteger),
        )
        .join(OrderLine, _line_of_its_order())
        .where(kept),
        6,
    )
    return BasketArrays(
        order_id=rows[:, 0].astype(np.int64),
        customer_id=rows[:, 1].astype(np.int64),
        product_id=rows[:, 2].astype(np.int64),
        day=rows[:, 3],
        quantity=rows[:, 4].astype(np.int64),
        unit_price=rows[:, 5] / 10**MONEY_SCALE,
        product_types=_latest_product_types(engine, shop_id),
    )


_IDS_PER_QUERY = 5000


def _latest_product_types(engine: Engine, shop_id: int) -> dict[int, str | None]:
    """Each product's type on its latest line (by its order's processed_at, then order id, then
    line id) that names one: a merchant who retypes a product is followed, and a line without a
    type (an empty or missing product_type, as on some edited or imported orders) leaves the
    known one alone.

    A product has few types in its life: one aggregate over the lines alone gives each (product,
    type) pair's last order (by id) and line; then only those orders' times are read, and the
    latest pair per product is picked here. A window over every line joined to its order sorted
    the whole shop (16.6 s against 5.5 s for 2.4 million lines on SQLite). (A type's latest line
    is taken to be in its highest-id order: Shopify's ids grow as orders are created.)"""
    pairs_query = (
        select(
            col(OrderLine.product_id),
            col(OrderLine.product_type),
            func.max(OrderLine.order_id),
            func.max(OrderLine.line_id),
        )
        .where(
            col(OrderLine.shop_id) == shop_id,
            col(OrderLine.product_id).is_not(None),
            col(OrderLine.product_type).is_not(None),
            col(OrderLine.product_type) != "",
        )
        .group_by(col(OrderLine.product_id), col(OrderLine.product_type))
    )
    with Session(engine) as session:
        pairs = session.execute(pairs_query).all()
        order_ids = sorted({int(order) for _, _, order, _ in pairs})
        processed: dict[int, Any] = {}
        for low in range(0, len(order_ids), _IDS_PER_QUERY):
            chunk = order_ids[low : low + _IDS_PER_QUERY]
            processed.update(
                session.execute(
                    select(col(Order.order_id), col(Order.processed_at)).where(
                        col(Order.shop_id) == shop_id, col(Order.order_id).in_(chunk)
                    )
                ).all()
            )
    latest: dict[int, tuple[Any, int, int, str]] = {}
    for product, kind, order, line in pairs:
        seen = (processed.get(int(order)), int(order), int(line), kind)
        if int(product) not in latest or seen[:3] > latest[int(product)][:3]:
            latest[int(product)] = seen
    return {product: seen[3] for product, seen in latest.items()}


@dataclass(frozen=True)
class LedgerVersions:
    """The shop's customers' ledger versions as read at one moment (`read_ledger_versions`):
    read before the ledger itself, so that an order applied between the two reads leaves its
    customer's score stale, to be scored again, rather than marked as including it."""

    customer_id: NDArray[np.int64]  # sorted
    version: NDArray[np.int64]

    def of(self, customer_ids: NDArray[np.int64]) -> NDArray[np.int64]:
        """Each of `customer_ids`' version (0 for a customer without a row)."""
        known, versions = self.customer_id, self.version
        if known.size == 0:
            return np.zeros(customer_ids.size, dtype=np.int64)
        at = np.clip(np.searchsorted(known, customer_ids), 0, known.size - 1)
        return np.where(known[at] == customer_ids, versions[at], 0)


def read_ledger_versions(
    engine: Engine, shop_id: int, customer_ids: Sequence[int] | None = None
) -> LedgerVersions:
    """The shop's customers' versions (all, or only `customer_ids`')."""
    query = select(col(Customer.customer_id), col(Customer.ledger_version)).where(
        col(Customer.shop_id) == shop_id
    )
    if customer_ids is not None:
        query = query.where(col(Customer.customer_id).in_(list(customer_ids)))
    rows = _fetch(engine, query, 2)
    known, versions = rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64)
    order = np.argsort(known)
    return LedgerVersions(known[order], versions[order])


def stale_customers(engine: Engine, shop_id: int, limit: int, as_of: datetime) -> list[int]:
    """Customers whose score is older than their ledger, or missing while they have orders
    by `as_of` (a customer whose only orders are dated later has nothing to score yet)."""
    with Session(engine) as session:
        query = (
            select(col(Customer.customer_id))
            .outerjoin(
                CustomerScore,
                and_(
                    col(CustomerScore.shop_id) == col(Customer.shop_id),
                    col(CustomerScore.customer_id) == col(Customer.customer_id),
                ),
            )
            .where(
                col(Customer.shop_id) == shop_id,
                (
                    col(CustomerScore.ledger_version).is_(None)
                    & (col(Customer.orders) > 0)
                    & (col(Customer.first_order_at) <= as_of)
                )
                | (col(CustomerScore.ledger_version) != col(Customer.ledger_version)),
            )
            .order_by(col(Customer.customer_id))
            .limit(limit)
        )
        return [int(c) for c in session.execute(query).scalars()]


def day_stamps(days: NDArray[np.float64], postgres: bool) -> list[str | datetime | None]:
    """Days since the epoch as each database's writer takes a UTC moment: for SQLite text, for
    PostgreSQL's binary COPY a naive datetime (see SCORE_WIRE_TYPES); NaN is None."""
    missing = ~np.isfinite(days)
    moments = (np.where(missing, 0.0, days) * 86_400_000_000).astype("datetime64[us]")
    stamps: list[str | datetime | None]
    if postgres:
        stamps = moments.astype(object).tolist()
    else:
        stamps = np.char.replace(np.datetime_as_string(moments, unit="us"), "T", " ").tolist()
    for index in np.flatnonzero(missing).tolist():
        stamps[index] = None
    return stamps


SCORE_COLUMNS = (
    "shop_id", "customer_id", "run_id", "ledger_version", "aov", "mean_days_between_orders",
    "trailing_12m_spend", "historical_clv", "p_alive", "expected_purchases",
    "expected_next_order_at", "expected_spend_per_order", "predicted_clv", "recency_score",
    "frequency_score", "monetary_score", "segment", "reorder_due_at", "tags", "reasons",
)  # fmt: skip
# The columns' types on the wire of PostgreSQL's binary COPY, which the server stores as they
# come (no text to parse: a third less time than text COPY). The two moments go as `timestamp`
# from naive UTC datetimes: the very bytes of a timestamptz (microseconds since 2000-01-01 UTC),
# without an aware datetime per row.
SCORE_WIRE_TYPES = (
    "int8", "int8", "int8", "int4", "float8", "float8", "float8", "float8", "float8", "float8",
    "timestamp", "float8", "float8", "int4", "int4", "int4", "text", "timestamp", "text", "text",
)  # fmt: skip


class MissingShopError(LookupError):
    """Scores were to be written for a shop that does not exist (forgotten meanwhile)."""


def save_run(engine: Engine, run: ModelRun) -> int:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        session.add(run)
        session.flush()
        assert run.id is not None
        return run.id


def replace_scores(
    engine: Engine,
    shop_id: int,
    rows: Iterable[tuple[Any, ...]],
    customer_ids: Sequence[int] | None,
) -> None:
    """Replace the shop's scores (all of them, or `customer_ids`') by `rows`, in one transaction.

    Each row follows SCORE_COLUMNS, its moments from `day_stamps`. PostgreSQL takes them
    through binary COPY (SCORE_WIRE_TYPES). The table has no foreign key to the shop (checked
    row by row, it cost a third of the write): the shop is checked here, once, and held until
    the rows are in, so that a shop being forgotten meanwhile either waits for them (and
    deletes them) or is gone first (and nothing is written): MissingShopError.

    Rows of customers the shop no longer holds (redacted while the scores were computed) are
    left out, and the others' rows held until the commit, before anything is deleted, as
    `ledger.hold_customers` explains: one read of the shop's customers for a full replace,
    one per 500 customers otherwise.
    """
    postgres = engine.dialect.name == "postgresql"
    with driver_connection(engine) as raw:
        try:
            cursor = raw.cursor()
            mark = "%s" if postgres else "?"
            if not postgres:
                cursor.execute("BEGIN IMMEDIATE")  # the write lock: no one deletes the shop now
            hold = " FOR KEY SHARE" if postgres else ""
            cursor.execute(f"SELECT 1 FROM shops WHERE id = {mark}{hold}", (shop_id,))
            if cursor.fetchone() is None:
                raise MissingShopError(f"shop {shop_id} does not exist: no scores written")
            held = _hold_customers(cursor, postgres, shop_id, customer_ids)
            rows = _of_customers(rows, held)
            if customer_ids is None:
                cursor.execute(f"DELETE FROM customer_scores WHERE shop_id = {mark}", (shop_id,))
            else:
                for start in range(0, len(customer_ids), 500):
                    chunk = list(customer_ids[start : start + 500])
                    cursor.execute(
                        f"DELETE FROM customer_scores WHERE shop_id = {mark} AND customer_id IN "
                        f"({', '.join([mark] * len(chunk))})",
                        (shop_id, *chunk),
                    )
            columns = ", ".join(SCORE_COLUMNS)
            if postgres:
                binary = f"COPY customer_scores ({columns}) FROM STDIN (FORMAT BINARY)"
                with cursor.copy(binary) as copy:
                    copy.set_types(list(SCORE_WIRE_TYPES))
                    for row in rows:
                        copy.write_row(row)
            else:
                marks = ", ".join(["?"] * len(SCORE_COLUMNS))
                statement = f"INSERT INTO customer_scores ({columns}) VALUES ({marks})"
                cursor.executemany(statement, rows)  # sqlite3 takes iterators
            raw.commit()
        except BaseException:
            raw.rollback()
            raise


# Customers the shop holds (not redacted), their rows locked until the commit (see
# `ledger.hold_customers`); the `{ids}` are the chunk's marks, or empty for the whole shop.
_HELD_CUSTOMERS = (
    "SELECT customer_id FROM customers c WHERE c.shop_id = {mark}{ids} AND NOT EXISTS "
    "(SELECT 1 FROM redactions r WHERE r.shop_id = c.shop_id AND r.kind = 'customer' "
    "AND r.item_id = c.customer_id){hold}"
)
_ROW_CHUNK = 10_000  # rows checked against the held customers at once


def _hold_customers(
    cursor: Any, postgres: bool, shop_id: int, customer_ids: Sequence[int] | None
) -> NDArray[np.int64]:
    """The customers (all the shop's, or of `customer_ids`) the shop holds, sorted."""
    mark = "%s" if postgres else "?"
    hold = " FOR KEY SHARE" if postgres else ""
    found: list[int] = []
    if customer_ids is None:
        cursor.execute(_HELD_CUSTOMERS.format(mark=mark, ids="", hold=hold), (shop_id,))
        while rows := cursor.fetchmany(_FETCH_ROWS):
            found += (customer for (customer,) in rows)
    for start in range(0, len(customer_ids or ()), 500):
        chunk = list((customer_ids or ())[start : start + 500])
        ids = f" AND c.customer_id IN ({', '.join([mark] * len(chunk))})"
        cursor.execute(_HELD_CUSTOMERS.format(mark=mark, ids=ids, hold=hold), (shop_id, *chunk))
        found += (customer for (customer,) in cursor.fetchall())
    return np.sort(np.array(found, dtype=np.int64))


def _of_customers(
    rows: Iterable[tuple[Any, ...]], held: NDArray[np.int64]
) -> Iterator[tuple[Any, ...]]:
    """The rows (customer id second) of the `held` customers, checked a chunk at a time."""
    iterator = iter(rows)
    while chunk := list(islice(iterator, _ROW_CHUNK)):
        ids = np.fromiter((row[1] for row in chunk), dtype=np.int64, count=len(chunk))
        at = np.minimum(np.searchsorted(held, ids), max(held.size - 1, 0))
        kept = (held[at] == ids) if held.size else np.zeros(ids.size, dtype=bool)
        yield from compress(chunk, kept.tolist())


def latest_full_run(engine: Engine, shop_id: int) -> ModelRun | None:
    with Session(engine, expire_on_commit=False) as session:
        return session.exec(
            model_select(ModelRun)
            .where(ModelRun.shop_id == shop_id, ModelRun.kind == "full")
            .order_by(col(ModelRun.id).desc())
            .limit(1)
        ).first()


# json.dumps with these options builds an encoder on every call: a million reasons would pay it
_ENCODER = json.JSONEncoder(sort_keys=True, default=float)


def to_json(value: Any) -> str:
    """`json.dumps(value, sort_keys=True, default=float)`, with one shared encoder."""
    return _ENCODER.encode(value)


def as_datetime(days: float) -> datetime:
    """Days since the epoch as an aware UTC datetime."""
    from datetime import UTC, timedelta

    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=days)
