"""Replenishment intervals of consumables, learned from repeat buyers, and when a reorder is due.

The rule, per product:
1. A purchase less than one day after the customer's previous purchase of the same product
   belongs to that purchase (a second line, a split or corrected order, a forgotten item): no
   refill cycle is shorter than a day, and two orders minutes apart on either side of midnight
   are no more a refill than two on one afternoon. A run of such purchases is one purchase, on
   the day of its first, of all their units. A gap is the time between a customer's
   consecutive purchases of the product, in days (so at least one day), divided by the units of
   the earlier one: three bags bought at once last three times as long as one, so a buyer of
   three who comes back after 90 days is on the same 30-day cycle as a buyer of one who comes
   back after 30.
2. Each repeat buyer (a customer with at least one gap) speaks once, with the median of their
   own gaps: one wholesale buyer refilling weekly with sixty orders does not outvote nineteen
   customers on a 60-day cycle with one gap each, as pooling every gap would.
3. A product is a consumable when at least `replenishment_min_buyers` customers bought it again,
   and their medians are regular: (upper quartile - lower quartile) / median <=
   `replenishment_max_spread` (default 0.5), quartiles and median across the buyers. Refills on
   a cycle have a narrow spread (a cycle with 15% noise gives about 0.2 for buyers with one gap,
   less for those with several: 0.12-0.19 measured on generated stores); products bought again
   by chance have gaps as irregular as the customer's purchase process (1.6 for exponential
   gaps; 0.75 and more measured for generated non-consumables with 20+ repeat buyers, seeds 2-5
   and 8).
4. Its interval is the median across buyers of their median gaps, robust to the odd early or
   late purchase and to the odd buyer on a cycle of their own.

A customer's last purchase of a consumable, of u units, lasts u x the interval: it is due when
the days since that purchase reach reorder_grace x u x the interval, and stays due until
reorder_lapse x u x the interval (see `plugin.domain.flags`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from plugin.domain.scoring_types import FloatArray, IntArray, ProductPurchases, ScoringSettings

IndexArray = NDArray[np.intp]


@dataclass(frozen=True)
class ReorderStatus:
    """Per customer (aligned with the sorted customer ids asked for).

    `due`: a consumable is due; `due_day`: the earliest expected reorder day among the customer's
    consumables that have not lapsed (NaN if none); `product_id`, `last_day`, `interval_days`,
    `units`: the consumable behind the flag (the due one with the earliest reorder day, else the
    earliest upcoming one; -1 and NaN when none), with the day and units of its last purchase.
    """

    due: NDArray[np.bool_]
    due_day: FloatArray
    product_id: IntArray
    last_day: FloatArray
    interval_days: FloatArray
    units: FloatArray


@dataclass(frozen=True)
class _Gaps:
    """Every gap, grouped by (customer, product) pair: `pair` numbers the pairs 1, 2, ... in
    that order, so a buyer's gaps are one run of equal `pair`."""

    pair: IntArray
    product: IntArray
    gap: FloatArray


def validate_purchases(purchases: ProductPurchases) -> None:
    """Raise ValueError unless the arrays are 1-d, of one length, with finite days and (when
    given) quantities of at least one."""
    n = purchases.customer_id.shape
    quantity = purchases.quantity
    if (
        not (n == purchases.product_id.shape == purchases.day.shape)
        or len(n) != 1
        or (quantity is not None and quantity.shape != n)
    ):
        raise ValueError(
            "customer_id, product_id, day and quantity must be 1-d arrays of one length"
        )
    if not np.all(np.isfinite(purchases.day)):
        raise ValueError("purchase days must be finite")
    if quantity is not None and not np.all(quantity >= 1):
        raise ValueError("purchase quantities must be at least 1")


def _units(purchases: ProductPurchases) -> FloatArray:
    if purchases.quantity is None:
        return np.ones(purchases.day.shape, dtype=np.float64)
    return np.asarray(purchases.quantity, dtype=np.float64)


def _merge_runs(
    opens: NDArray[np.bool_], day: FloatArray, units: FloatArray
) -> tuple[NDArray[np.bool_], FloatArray]:
    """Rule 1 on rows sorted by (customer, product, day), `opens` marking each pair's first:
    which rows start a purchase, and each purchase's units (the sum over its rows)."""
    starts = opens | np.concatenate(([True], np.diff(day) >= 1.0))
    return starts, np.add.reduceat(units, np.flatnonzero(starts)) if units.size else units


def _gaps(purchases: ProductPurchases, as_of_day: float) -> _Gaps:
    customer = np.asarray(purchases.customer_id, dtype=np.int64)
    product = np.asarray(purchases.product_id, dtype=np.int64)
    day = np.asarray(purchases.day, dtype=np.float64)
    units = _units(purchases)
    keep = day <= as_of_day
    if not np.all(keep):
        customer, product, day, units = customer[keep], product[keep], day[keep], units[keep]
    del keep
    if day.size < 2:
        empty = np.zeros(0, dtype=np.int64)
        return _Gaps(empty, empty, np.zeros(0))
    order, opens = _order_by_customer_product_day(customer, product, day)
    del customer  # from here a pair is told apart by `opens`; intermediates are freed early
    product, day, units = product[order], day[order], units[order]
    del order
    pair = np.cumsum(opens)
    new_purchase, units = _merge_runs(opens, day, units)
    pair, product, day = pair[new_purchase], product[new_purchase], day[new_purchase]
    follows = pair[1:] == pair[:-1]
    per_unit = (day[1:] - day[:-1]) / units[:-1]
    return _Gaps(pair[1:][follows], product[1:][follows], per_unit[follows])


def _order_by_customer_product_day(
    customer: IntArray, product: IntArray, day: FloatArray
) -> tuple[IndexArray, NDArray[np.bool_]]:
    """The permutation sorting rows by (customer, product, day), and in that order whether
    each row starts a new (customer, product) pair.

    Order lines come from the database sorted by customer and day; then a stable sort on one
    integer key (customer run, product rank) keeps the days in order, 30x faster than a
    three-key lexsort on millions of lines. A shop has few products: their ranks come from a
    sample's distinct ids, checked against every row.
    """
    if customer.size > 1:
        dc = np.diff(customer)
        in_order = np.all((dc > 0) | ((dc == 0) & (np.diff(day) >= 0)))
        if in_order:
            rank = _product_rank(product)
            key = np.concatenate(([0], np.cumsum(dc != 0))) * (int(rank.max()) + 1) + rank
            del dc, rank
            order = np.asarray(np.argsort(key, kind="stable"), dtype=np.intp)
            key = key[order]
            return order, np.concatenate(([True], key[1:] != key[:-1]))
    order = np.asarray(np.lexsort((day, product, customer)), dtype=np.intp)
    c, p = customer[order], product[order]
    return order, np.concatenate(([True], (c[1:] != c[:-1]) | (p[1:] != p[:-1])))


def _product_rank(product: IntArray) -> IntArray:
    """Each row's product as 0..k-1 (k distinct products), in product id order.

    The distinct ids of a sample, completed with those of the rows the sample missed (a few
    rare products): a sort of those rows only, not of every row.
    """
    products = np.unique(product[:: max(1, product.size // 100_000)])
    rank = np.minimum(np.searchsorted(products, product), products.size - 1)
    missed = products[rank] != product
    if np.any(missed):
        products = np.union1d(products, product[missed])
        rank = np.searchsorted(products, product)
    return np.asarray(rank, dtype=np.int64)


def _group_quantile(
    values: FloatArray, starts: IndexArray, counts: IndexArray, q: float
) -> FloatArray:
    """Linear-interpolation quantile q of each group of `values` (sorted within groups)."""
    position = (counts - 1) * q
    low = np.floor(position).astype(np.intp)
    high = np.minimum(low + 1, counts - 1)
    fraction = position - low
    return np.asarray(
        values[starts + low] * (1.0 - fraction) + values[starts + high] * fraction,
        dtype=np.float64,
    )


def learn_replenishment(
    purchases: ProductPurchases, as_of_day: float, settings: ScoringSettings
) -> dict[int, float]:
    """Product id -> replenishment interval in days, for the products that pass the rule above."""
    validate_purchases(purchases)
    gaps = _gaps(purchases, as_of_day)
    if gaps.gap.size == 0:
        return {}
    # each buyer's median gap (gaps are grouped by pair already; sort them within it)
    order = np.lexsort((gaps.gap, gaps.pair))
    pair, gap = gaps.pair[order], gaps.gap[order]
    _, starts, counts = np.unique(pair, return_index=True, return_counts=True)
    buyer_median = _group_quantile(gap, starts, counts, 0.5)
    buyer_product = gaps.product[order][starts]
    # then the median and quartiles of those, per product
    order = np.lexsort((buyer_median, buyer_product))
    product, typical = buyer_product[order], buyer_median[order]
    products, starts, buyers = np.unique(product, return_index=True, return_counts=True)
    median = _group_quantile(typical, starts, buyers, 0.5)
    spread = _group_quantile(typical, starts, buyers, 0.75) - _group_quantile(
        typical, starts, buyers, 0.25
    )
    regular = spread <= settings.replenishment_max_spread * median
    keep = (buyers >= settings.replenishment_min_buyers) & regular
    return {int(p): float(m) for p, m in zip(products[keep], median[keep], strict=True)}


def reorder_status(
    purchases: ProductPurchases | None,
    customer_ids: IntArray,
    intervals: dict[int, float],
    as_of_day: float,
    settings: ScoringSettings,
    lead: float = 0.0,
) -> ReorderStatus:
    """Which of `customer_ids` (sorted) have a consumable due, and since when (rule above); with
    a `lead`, as seen that share of what each last purchase lasts after `as_of_day` (the
    next products' look ahead, `RecommendationSettings.reorder_lead`)."""
    n = customer_ids.size
    status = ReorderStatus(
        np.zeros(n, dtype=np.bool_),
        np.full(n, np.nan),
        np.full(n, -1, dtype=np.int64),
        np.full(n, np.nan),
        np.full(n, np.nan),
        np.full(n, np.nan),
    )
    if purchases is None or not intervals or n == 0:
        return status
    validate_purchases(purchases)
    known = np.array(sorted(intervals), dtype=np.int64)
    known_days = np.array([intervals[int(p)] for p in known], dtype=np.float64)
    product = np.asarray(purchases.product_id, dtype=np.int64)
    customer = np.asarray(purchases.customer_id, dtype=np.int64)
    day = np.asarray(purchases.day, dtype=np.float64)
    slot = np.minimum(np.searchsorted(known, product), known.size - 1)
    position = np.minimum(np.searchsorted(customer_ids, customer), n - 1)
    keep = (known[slot] == product) & (customer_ids[position] == customer) & (day <= as_of_day)
    return _status_of_pairs(
        position[keep],
        product[keep],
        day[keep],
        _units(purchases)[keep],
        known_days[slot[keep]],
        as_of_day,
        settings,
        lead,
        n,
    )


def _status_of_pairs(
    who: IndexArray,
    product: IntArray,
    day: FloatArray,
    units: FloatArray,
    interval: FloatArray,
    as_of_day: float,
    settings: ScoringSettings,
    lead: float,
    n: int,
) -> ReorderStatus:
    # The last purchase (rule 1) of each (customer, product): sort by day within pairs, merge
    # the runs, keep the last.
    order = np.lexsort((day, product, who))
    who, product, day, interval = who[order], product[order], day[order], interval[order]
    opens = np.concatenate(([True], (who[1:] != who[:-1]) | (product[1:] != product[:-1])))
    starts, units = _merge_runs(opens[: who.size], day, units[order])
    who, product, day, interval = who[starts], product[starts], day[starts], interval[starts]
    last = np.append((who[1:] != who[:-1]) | (product[1:] != product[:-1]), True)[: who.size]
    who, product, day, interval = who[last], product[last], day[last], interval[last]
    units = units[last]
    lasts = units * interval  # what the last purchase lasts
    waited = as_of_day + lead * lasts - day
    active = waited < settings.reorder_lapse * lasts
    who, product, day, interval = who[active], product[active], day[active], interval[active]
    units, lasts, waited = units[active], lasts[active], waited[active]
    due = waited >= settings.reorder_grace * lasts
    expected = day + lasts
    due_day = np.full(n, np.nan)
    np.fmin.at(due_day, who, expected)
    is_due = np.zeros(n, dtype=np.bool_)
    is_due[who[due]] = True
    # The pair behind the flag: due pairs first, then the earliest expected reorder day.
    rank = np.lexsort((product, expected, ~due, who))
    chosen = rank[np.unique(who[rank], return_index=True)[1]]
    product_id = np.full(n, -1, dtype=np.int64)
    last_day, interval_days, last_units = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    product_id[who[chosen]] = product[chosen]
    last_day[who[chosen]] = day[chosen]
    interval_days[who[chosen]] = interval[chosen]
    last_units[who[chosen]] = units[chosen]
    return ReorderStatus(is_due, due_day, product_id, last_day, interval_days, last_units)
