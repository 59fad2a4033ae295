"""The recommendations job: a shop's baskets from the ledger, through the pure recommender
(`plugin.domain.recommendations`), into the store; the push sends them on (product metafields,
and each customer's recommended products)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import anyio
import numpy as np
from sqlalchemy import Engine

from jobs.context import JobContext
from jobs.recompute import shop_days
from jobs.shop_settings import recommendation_settings, scoring_settings
from plugin.domain.recommendations import (
    NO_PRODUCT,
    OrderLines,
    ProductLinks,
    ProductTable,
    recommend,
)
from plugin.store.models import Shop
from plugin.store.recommendations import (
    Bundle,
    Partner,
    gone_products,
    replace_recommendations,
)
from plugin.store.scores import BasketArrays, latest_full_run, load_baskets


def product_table(baskets: BasketArrays, gone: set[int] | None = None) -> ProductTable:
    """The products seen in the baskets, less those the store is known not to have (`gone`),
    each with its type and a price paid for it: the highest unit price among its lines in its
    latest order (by day, then order id).

    The latest order follows price changes; within it, two variants of the product (a small and
    a large bag) are one moment's prices, and the dearer one is taken, whatever order the
    database returned the lines in, so upsell and bundle prices never depend on row order.
    (The app holds no catalogue yet: a product never ordered is never recommended; one deleted
    from the store is, until a refused write or the reconcile's read of the products records
    it gone. A gone product still counts as evidence and as owned.)"""
    order = np.lexsort((baskets.unit_price, baskets.order_id, baskets.day, baskets.product_id))
    products = baskets.product_id[order]
    last = np.r_[products[1:] != products[:-1], True] if products.size else np.array([], bool)
    if gone:
        last &= ~np.isin(products, np.fromiter(gone, dtype=np.int64, count=len(gone)))
    ids = products[last]
    kinds = np.array([baskets.product_types.get(int(p)) for p in ids.tolist()], dtype=object)
    return ProductTable(ids, kinds, baskets.unit_price[order][last])


def _partners(links: ProductLinks, kind: str) -> list[Partner]:
    return [
        Partner(product, kind, rank + 1, partner, support, confidence, lift)
        for product, partner, rank, support, confidence, lift in zip(
            links.product_id.tolist(),
            links.partner_id.tolist(),
            links.rank.tolist(),
            links.support.tolist(),
            links.confidence.tolist(),
            links.lift.tolist(),
            strict=True,
        )
    ]


def compute_recommendations(engine: Engine, shop: Shop, as_of: datetime) -> dict[str, Any]:
    """Recompute and store the shop's recommendations; counts of what was found."""
    assert shop.id is not None
    started = time.perf_counter()
    settings, scoring = recommendation_settings(shop), scoring_settings(shop)
    baskets = load_baskets(engine, shop.id)
    line_days, as_of_day = shop_days(shop).up_to(baskets.day, as_of)
    lines = OrderLines(
        baskets.order_id,
        baskets.customer_id,
        baskets.product_id,
        line_days,
        baskets.quantity,
        baskets.unit_price,
    )
    run = latest_full_run(engine, shop.id)
    # the reorder-due flag's intervals, so that both agree on when a consumable is due
    intervals = None
    if run is not None:
        stored = json.loads(run.reference).get("replenishment_days") or {}
        intervals = {int(product): float(days) for product, days in stored.items()}
    products = product_table(baskets, gone_products(engine, shop.id))
    found = recommend(lines, products, as_of_day, settings, intervals, scoring)
    bundles = [
        Bundle(
            tuple(p for p in row if p != NO_PRODUCT),
            orders,
            lift,
            price,
        )
        for row, orders, lift, price in zip(
            found.bundles.product_ids.tolist(),
            found.bundles.orders.tolist(),
            found.bundles.lift.tolist(),
            found.bundles.combined_price.tolist(),
            strict=True,
        )
    ]
    nexts = found.next_products
    next_products = [
        (int(customer), nexts.picks_of(row))
        for row, customer in enumerate(nexts.customer_id.tolist())
    ]
    partners = _partners(found.frequently_bought_together, "fbt")
    partners += _partners(found.upsell, "upsell")
    replace_recommendations(engine, shop.id, partners, bundles, next_products)
    return {
        "order_lines": int(baskets.order_id.size),
        "products_with_partners": len({p.product_id for p in partners}),
        "bundle_candidates": len(bundles),
        "customers_with_next_products": sum(1 for _, picks in next_products if picks),
        "seconds": round(time.perf_counter() - started, 2),
    }


async def recommend_shop(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
    return await anyio.to_thread.run_sync(compute_recommendations, ctx.engine, shop, ctx.clock())
