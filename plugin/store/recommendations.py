"""Recommendations held per shop (product partners, bundle candidates, customers' next
products), and the product metafields pushed for them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from plugin.store.db import is_postgres
from plugin.store.ledger import hold_customers
from plugin.store.models import (
    BundleCandidate,
    CustomerRecommendation,
    ProductRecommendation,
    ProductSync,
    SyncChange,
)

_CHUNK = 5000


@dataclass(frozen=True)
class Partner:
    product_id: int
    kind: str  # "fbt" | "upsell"
    rank: int
    other_product_id: int
    support: int
    confidence: float | None
    lift: float | None


@dataclass(frozen=True)
class Bundle:
    product_ids: tuple[int, ...]
    orders: int
    lift: float
    combined_price: Decimal


def replace_recommendations(
    engine: Engine,
    shop_id: int,
    partners: Iterable[Partner],
    bundles: Sequence[Bundle],
    next_products: Iterable[tuple[int, Sequence[int]]],
) -> None:
    """The shop's recommendations, all replaced in one transaction.

    Customers the shop no longer holds (redacted while these were computed) get none; the
    others' rows are held until the commit, before anything is deleted, as
    `ledger.hold_customers` explains.
    """
    next_products = [(customer, ids) for customer, ids in next_products if ids]
    with Session(engine) as session, session.begin():
        held = hold_customers(session, shop_id, [customer for customer, _ in next_products])
        for table in (ProductRecommendation, BundleCandidate, CustomerRecommendation):
            session.execute(delete(table).where(col(table.shop_id) == shop_id))
        _insert(
            session,
            ProductRecommendation,
            ({"shop_id": shop_id, **vars(partner)} for partner in partners),
        )
        _insert(
            session,
            BundleCandidate,
            (
                {
                    "shop_id": shop_id,
                    "rank": rank,
                    "product_ids": " ".join(map(str, bundle.product_ids)),
                    "orders": bundle.orders,
                    "lift": bundle.lift,
                    "combined_price": bundle.combined_price,
                }
                for rank, bundle in enumerate(bundles, start=1)
            ),
        )
        _insert(
            session,
            CustomerRecommendation,
            (
                {"shop_id": shop_id, "customer_id": customer, "product_ids": json.dumps(list(ids))}
                for customer, ids in next_products
                if customer in held
            ),
        )


def _insert(session: Session, table: type, rows: Iterable[dict[str, object]]) -> None:
    batch: list[dict[str, object]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == _CHUNK:
            session.execute(insert(table), batch)
            batch = []
    if batch:
        session.execute(insert(table), batch)


def bundle_candidates(session: Session, shop_id: int) -> list[BundleCandidate]:
    query = select(BundleCandidate).where(col(BundleCandidate.shop_id) == shop_id)
    return [row for (row,) in session.execute(query.order_by(col(BundleCandidate.rank)))]


@dataclass(frozen=True)
class ProductHeld:
    """A product's partners by kind (best first) and its metafields as last pushed."""

    product_id: int
    partners: dict[str, list[int]]
    pushed: dict[str, str]  # "namespace.key" -> value


def product_state(engine: Engine, shop_id: int) -> Iterator[ProductHeld]:
    """Every product with recommendations or pushed metafields, in product id order."""
    with Session(engine) as session:
        partners: dict[int, dict[str, list[int]]] = {}
        query = (
            select(
                col(ProductRecommendation.product_id),
                col(ProductRecommendation.kind),
                col(ProductRecommendation.other_product_id),
            )
            .where(col(ProductRecommendation.shop_id) == shop_id)
            .order_by(col(ProductRecommendation.product_id), col(ProductRecommendation.rank))
        )
        for product_id, kind, other in session.execute(query):
            partners.setdefault(product_id, {}).setdefault(kind, []).append(other)
        pushed = {
            product_id: json.loads(values)
            for product_id, values in session.execute(
                select(col(ProductSync.product_id), col(ProductSync.metafields)).where(
                    col(ProductSync.shop_id) == shop_id
                )
            )
        }
    for product_id in sorted(set(partners) | set(pushed)):
        yield ProductHeld(product_id, partners.get(product_id, {}), pushed.get(product_id, {}))


def record_product_metafields(
    engine: Engine,
    shop_id: int,
    held: dict[int, dict[str, str]],
    changes: Sequence[tuple[int, str, str, str | None, str]],
    *,
    via: str,
    job_run_id: int | None,
    now: datetime,
) -> None:
    """Products' metafields now confirmed in the store, and the audit rows
    (product id, name, action, value, reason), in one transaction."""
    with Session(engine) as session, session.begin():
        insert_ = postgresql.insert if is_postgres(session) else sqlite.insert
        statement = insert_(ProductSync)
        statement = statement.on_conflict_do_update(
            index_elements=["shop_id", "product_id"],
            set_={name: statement.excluded[name] for name in ("metafields", "pushed_at")},
        )
        rows = [
            {
                "shop_id": shop_id,
                "product_id": product_id,
                "metafields": json.dumps(values, sort_keys=True),
                "pushed_at": now,
            }
            for product_id, values in held.items()
        ]
        if rows:
            session.execute(statement, rows)
        session.add_all(
            SyncChange(
                shop_id=shop_id,
                product_id=product_id,
                kind="metafield",
                name=name,
                action=action,
                value=value,
                reason=reason,
                via=via,
                job_run_id=job_run_id,
                applied_at=now,
            )
            for product_id, name, action, value, reason in changes
        )


def record_product_read_back(
    engine: Engine, shop_id: int, found: dict[int, dict[str, str]], now: datetime
) -> int:
    """Replace the products' pushed metafields with what a reconcile read from the store (a
    product read with none has none); how many products had drifted."""
    with Session(engine) as session, session.begin():
        held = {
            product_id: json.loads(values)
            for product_id, values in session.execute(
                select(col(ProductSync.product_id), col(ProductSync.metafields)).where(
                    col(ProductSync.shop_id) == shop_id
                )
            )
        }
        drifted = [p for p in set(held) | set(found) if held.get(p, {}) != found.get(p, {})]
    record_product_metafields(
        engine,
        shop_id,
        {product_id: found.get(product_id, {}) for product_id in drifted},
        [],
        via="reconcile",
        job_run_id=None,
        now=now,
    )
    return len(drifted)
