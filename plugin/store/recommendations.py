"""Recommendations held per shop (product partners, bundle candidates, customers' next
products), the product metafields pushed for them (and those sent without an answer), the
products the store no longer has, and the product fields the merchant holds."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Engine, and_, delete, exists, insert, select, update
from sqlmodel import Session, col

from plugin.domain.writeback import COMPLEMENTARY_PRODUCTS, same_value
from plugin.store.db import insert_for, upsert
from plugin.store.ledger import hold_customers
from plugin.store.models import (
    BundleCandidate,
    CustomerRecommendation,
    GoneProduct,
    KeptProductField,
    Order,
    OrderLine,
    ProductRecommendation,
    ProductSync,
    Shop,
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
    """A product's partners by kind (best first), its metafields as last pushed, and the
    fields it holds a value of the merchant's in (left alone)."""

    product_id: int
    partners: dict[str, list[int]]
    pushed: dict[str, str]  # "namespace.key" -> value
    kept: frozenset[str] = frozenset()


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
        pushed = _pushed_products(session, shop_id)
        kept: dict[int, set[str]] = {}
        for product_id, name in session.execute(
            select(col(KeptProductField.product_id), col(KeptProductField.name)).where(
                col(KeptProductField.shop_id) == shop_id
            )
        ):
            kept.setdefault(product_id, set()).add(name)
    for product_id in sorted(set(partners) | set(pushed)):
        yield ProductHeld(
            product_id,
            partners.get(product_id, {}),
            pushed.get(product_id, {}),
            frozenset(kept.get(product_id, ())),
        )


def _pushed_products(
    session: Session, shop_id: int, only: Collection[int] | None = None
) -> dict[int, dict[str, str]]:
    """Each product's pushed values (of the products `only`, if given)."""
    query = select(col(ProductSync.product_id), col(ProductSync.metafields)).where(
        col(ProductSync.shop_id) == shop_id
    )
    if only is not None:
        query = query.where(col(ProductSync.product_id).in_(sorted(only)))
    return {product_id: json.loads(values) for product_id, values in session.execute(query)}


def record_product_metafields(
    engine: Engine,
    shop_id: int,
    held: dict[int, dict[str, str]],
    changes: Sequence[tuple[int, str, str, str | None, str]],
    *,
    via: str,
    job_run_id: int | None,
    now: datetime,
    answered: Mapping[int, Collection[str]] | None = None,
) -> None:
    """Products' metafields now confirmed in the store, and the audit rows
    (product id, name, action, value, reason), in one transaction, which also clears the
    unanswered values (`record_unanswered`, written before the call was sent) of the fields
    `answered` (by product: those whose values the store's answer took or refused). The
    products' other unanswered values stay so: only a read of the store settles them."""
    with Session(engine) as session, session.begin():
        _write_product_metafields(session, shop_id, held, changes, via, job_run_id, now)
        if answered:
            _clear_answered(session, shop_id, answered)


def _write_product_metafields(
    session: Session,
    shop_id: int,
    held: dict[int, dict[str, str]],
    changes: Sequence[tuple[int, str, str, str | None, str]],
    via: str,
    job_run_id: int | None,
    now: datetime,
) -> None:
    statement = upsert(session, ProductSync, ["shop_id", "product_id"], ("metafields", "pushed_at"))
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


Unanswered = dict[str, str | None]  # "namespace.key" -> the value sent (None: a delete)


def record_unanswered(
    engine: Engine, shop_id: int, values: Mapping[int, Mapping[str, str | None]]
) -> None:
    """Values about to be sent to these products (None: a delete), which the store may apply
    without the app learning of it: added to those already unanswered (a later value of a
    field replaces an earlier one). `record_product_metafields` clears those the store's
    answer settles; the next push reads back the products still holding some before it plans
    (`unanswered_products`). A product with no pushed values yet gets an empty record."""
    if not values:
        return
    with Session(engine) as session, session.begin():
        before = _unanswered(session, shop_id, values.keys())
        rows = [
            {
                "shop_id": shop_id,
                "product_id": product_id,
                "metafields": "{}",
                "pushed_at": None,
                "unanswered": json.dumps({**before.get(product_id, {}), **sent}, sort_keys=True),
            }
            for product_id, sent in sorted(values.items())
        ]
        session.execute(
            upsert(session, ProductSync, ["shop_id", "product_id"], ["unanswered"]), rows
        )


def unanswered_products(engine: Engine, shop_id: int) -> dict[int, Unanswered]:
    """The products with values sent without an answer (`record_unanswered`), and those values."""
    with Session(engine) as session:
        return _unanswered(session, shop_id)


def _unanswered(
    session: Session, shop_id: int, only: Collection[int] | None = None
) -> dict[int, Unanswered]:
    query = select(col(ProductSync.product_id), col(ProductSync.unanswered)).where(
        col(ProductSync.shop_id) == shop_id, col(ProductSync.unanswered).is_not(None)
    )
    if only is not None:
        query = query.where(col(ProductSync.product_id).in_(sorted(only)))
    return {product_id: json.loads(sent) for product_id, sent in session.execute(query)}


def record_product_read_back(
    engine: Engine,
    shop_id: int,
    found: dict[int, dict[str, str]],
    now: datetime,
    *,
    namespace: str,
    shared: str | None = None,
    only: Collection[int] | None = None,
) -> int:
    """Replace the products' pushed metafields in the app's namespace with what was read from
    the store: its whole catalogue (a reconcile), or the products `only` (read by id, see
    `jobs.product_push`; the others are left as they are). A product read with none has none.
    How many products had drifted.

    `shared`, a field outside the namespace that was read too (Shopify's complementary
    products), is the app's only on the products it is recorded as pushed to or sent a value
    without an answer (`record_unanswered`), and only while it holds what the app wrote (or
    that list less some products: a store may drop a deleted one). Anywhere else, or once the
    merchant has changed it, a value found is the merchant's: it is kept (left alone by every
    later push) and never taken as the app's, or the next push would delete or replace it; a
    kept field found empty is the app's to fill again. Recorded values of fields that were not
    read stay as they are (the app's complementary values when the shop no longer asks for
    them: the push deletes them).

    The products' unanswered values are settled in the same transaction: cleared, but for a
    complementary-products value when that field was not read (the next push's read-back reads
    it)."""
    with Session(engine) as session, session.begin():
        held = _pushed_products(session, shop_id, only)
        unanswered = _unanswered(session, shop_id, only)
        replaced: dict[int, dict[str, str]] = {}
        found_kept: set[int] = set()
        products = set(held) | set(found) if only is None else set(only)
        for product_id in products:
            recorded, read = held.get(product_id, {}), found.get(product_id, {})
            values = {k: v for k, v in recorded.items() if not _was_read(k, namespace, shared)}
            values |= {k: v for k, v in read.items() if k.rpartition(".")[0] == namespace}
            if shared is not None and shared in read:
                written = (recorded.get(shared), unanswered.get(product_id, {}).get(shared))
                if any(w is not None and _still_ours(w, read[shared]) for w in written):
                    values[shared] = read[shared]
                else:
                    found_kept.add(product_id)
            if values != recorded:
                replaced[product_id] = values
        if shared is not None:
            _replace_kept(session, shop_id, shared, found_kept, now, only)
        _write_product_metafields(session, shop_id, replaced, [], "reconcile", None, now)
        _settle_unanswered(
            session, shop_id, {p: sent for p, sent in unanswered.items() if p in products}, shared
        )
    return len(replaced)


def _settle_unanswered(
    session: Session, shop_id: int, unanswered: dict[int, Unanswered], shared: str | None
) -> None:
    """Clear the unanswered values of products just read; an unanswered value of Shopify's
    complementary products stays if that field was not read (the shop no longer asks for it,
    and the next push's read-back reads it then: taken now as settled, a value the app wrote
    there would never be deleted). Others in no field read (an older namespace's) no read
    would ever settle."""
    _write_unanswered(
        session,
        shop_id,
        {
            product_id: {
                k: v for k, v in sent.items() if k == COMPLEMENTARY_PRODUCTS and shared is None
            }
            for product_id, sent in unanswered.items()
        },
    )


def _clear_answered(
    session: Session, shop_id: int, answered: Mapping[int, Collection[str]]
) -> None:
    """The products' unanswered values less those of the fields `answered`."""
    unanswered = _unanswered(session, shop_id, answered.keys())
    _write_unanswered(
        session,
        shop_id,
        {
            product_id: {k: v for k, v in sent.items() if k not in answered[product_id]}
            for product_id, sent in unanswered.items()
        },
    )


def _write_unanswered(session: Session, shop_id: int, left: Mapping[int, Unanswered]) -> None:
    """Each product's unanswered values replaced by those `left` (none: cleared)."""
    settled = []
    for product_id, sent in left.items():
        if not sent:
            settled.append(product_id)
            continue
        session.execute(
            update(ProductSync)
            .where(col(ProductSync.shop_id) == shop_id, col(ProductSync.product_id) == product_id)
            .values(unanswered=json.dumps(sent, sort_keys=True))
        )
    for start in range(0, len(settled), _CHUNK):
        session.execute(
            update(ProductSync)
            .where(
                col(ProductSync.shop_id) == shop_id,
                col(ProductSync.product_id).in_(sorted(settled)[start : start + _CHUNK]),
            )
            .values(unanswered=None)
        )


def _still_ours(written: str, read: str) -> bool:
    """Whether a product list read back is the one the app wrote, or that list with some of
    its products dropped (in the same order)."""
    if same_value(written, read):
        return True
    try:
        ours, theirs = json.loads(written), json.loads(read)
    except ValueError:
        return False
    if not (isinstance(ours, list) and isinstance(theirs, list)):
        return False
    left = iter(ours)
    return all(item in left for item in theirs)  # a subsequence: `in` consumes the iterator


def _was_read(name: str, namespace: str, shared: str | None) -> bool:
    return name == shared or name.rpartition(".")[0] == namespace


def _replace_kept(
    session: Session,
    shop_id: int,
    name: str,
    product_ids: set[int],
    now: datetime,
    within: Collection[int] | None = None,
) -> None:
    """The products holding a value of the merchant's in field `name` are these, no others
    (of the products `within`, if given)."""
    query = select(col(KeptProductField.product_id)).where(
        col(KeptProductField.shop_id) == shop_id, col(KeptProductField.name) == name
    )
    if within is not None:
        query = query.where(col(KeptProductField.product_id).in_(sorted(within)))
    known = {product_id for (product_id,) in session.execute(query)}
    cleared = known - product_ids
    if cleared:
        session.execute(
            delete(KeptProductField).where(
                col(KeptProductField.shop_id) == shop_id,
                col(KeptProductField.name) == name,
                col(KeptProductField.product_id).in_(sorted(cleared)),
            )
        )
    _insert(
        session,
        KeptProductField,
        (
            {"shop_id": shop_id, "product_id": product_id, "name": name, "found_at": now}
            for product_id in sorted(product_ids - known)
        ),
    )


def record_kept_fields(
    engine: Engine, shop_id: int, fields: Iterable[tuple[int, str]], now: datetime
) -> None:
    """Fields (product, "namespace.key") found holding a value the app did not write: left
    alone from now on."""
    with Session(engine) as session, session.begin():
        rows = [
            {"shop_id": shop_id, "product_id": product_id, "name": name, "found_at": now}
            for product_id, name in fields
        ]
        if rows:
            session.execute(insert_for(session)(KeptProductField).on_conflict_do_nothing(), rows)


def kept_fields(engine: Engine, shop_id: int) -> int:
    """How many product fields hold a value of the merchant's that the app leaves alone."""
    with Session(engine) as session:
        query = select(col(KeptProductField.product_id)).where(
            col(KeptProductField.shop_id) == shop_id
        )
        return len(session.execute(query).all())


def gone_products(engine: Engine, shop_id: int) -> set[int]:
    """`products_gone` in a session of its own."""
    with Session(engine) as session:
        return products_gone(session, shop_id)


def products_gone(session: Session, shop_id: int) -> set[int]:
    """The products the store is known not to have or not to offer: recorded gone, and not
    named since by an order placed after that (customers could buy it then). An order placed
    before and updated since (fulfilled, refunded, edited) tells nothing: it still names a
    product the merchant set to draft or archived after it was placed (Shopify empties only a
    deleted product's id on its line items)."""
    gone, line = GoneProduct, OrderLine
    seen_later = and_(
        col(line.shop_id) == col(gone.shop_id),
        col(line.product_id) == col(gone.product_id),
        col(Order.shop_id) == col(line.shop_id),
        col(Order.order_id) == col(line.order_id),
        col(Order.created_at) > col(gone.gone_at),
    )
    query = select(col(gone.product_id)).where(
        col(gone.shop_id) == shop_id, ~exists().where(seen_later)
    )
    return {product_id for (product_id,) in session.execute(query)}


def record_gone(engine: Engine, shop_id: int, reasons: dict[int, str], now: datetime) -> None:
    """These products are gone from the store, as of `now`, for these reasons."""
    if not reasons:
        return
    with Session(engine) as session, session.begin():
        statement = upsert(session, GoneProduct, ["shop_id", "product_id"], ("gone_at", "reason"))
        rows = [
            {"shop_id": shop_id, "product_id": product_id, "gone_at": now, "reason": reason}
            for product_id, reason in sorted(reasons.items())
        ]
        session.execute(statement, rows)


NOT_AVAILABLE = "not among the store's active products (deleted, draft, archived or unlisted)"


def record_products_read(engine: Engine, shop_id: int, seen: set[int], now: datetime) -> int:
    """After a reconcile read the store's whole catalogue: the products it found available to
    customers (`seen`: ACTIVE) are there (no longer gone); the products the app recommends or
    pushes to that it did not find so are gone, whether deleted or set to draft, archived or
    unlisted (`seen` does not say which). How many of those the read did not find."""
    with Session(engine) as session, session.begin():
        back = sorted(_gone_ids(session, shop_id) & seen)
        if back:
            session.execute(
                delete(GoneProduct).where(
                    col(GoneProduct.shop_id) == shop_id, col(GoneProduct.product_id).in_(back)
                )
            )
        missing = _named_products(session, shop_id) - seen
    record_gone(engine, shop_id, dict.fromkeys(missing, NOT_AVAILABLE), now)
    return len(missing)


def _gone_ids(session: Session, shop_id: int) -> set[int]:
    query = select(col(GoneProduct.product_id)).where(col(GoneProduct.shop_id) == shop_id)
    return {product_id for (product_id,) in session.execute(query)}


def _named_products(session: Session, shop_id: int) -> set[int]:
    """Every product the app recommends (as a partner, to a customer) or pushes to."""
    named: set[int] = set()
    query = select(
        col(ProductRecommendation.product_id), col(ProductRecommendation.other_product_id)
    ).where(col(ProductRecommendation.shop_id) == shop_id)
    for product_id, other in session.execute(query):
        named |= {product_id, other}
    lists = select(col(CustomerRecommendation.product_ids)).where(
        col(CustomerRecommendation.shop_id) == shop_id
    )
    for (product_ids,) in session.execute(lists):
        named.update(json.loads(product_ids))
    return named | set(_pushed_products(session, shop_id))


def turn_off_complementary_products(engine: Engine, shop_id: int) -> None:
    """Set the shop's `complementary_products` setting to false (the store refuses the app's
    writes to that field)."""
    with Session(engine) as session, session.begin():
        shop = session.get(Shop, shop_id)
        if shop is None:
            return
        settings = json.loads(shop.settings or "{}")
        settings["complementary_products"] = False
        shop.settings = json.dumps(settings, sort_keys=True)
