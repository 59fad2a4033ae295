"""Co-purchase statistics: frequently bought together and bundle candidates.

Association rules (Agrawal, Imielinski & Swami 1993; Brin et al. 1997 for lift) over baskets:
N baskets (orders within the size cap), n(A) baskets with product A, n(AB) baskets with both A
and B, each product counted once per basket whatever its quantity. support(A, B) = n(AB);
confidence P(B | A) = n(AB) / n(A); lift(A, B) = P(B | A) / P(B) = n(AB) N / (n(A) n(B)),
symmetric, 1 when A and B are bought independently. For a triple, lift = n(ABC) N^2 /
(n(A) n(B) n(C)); a triple is only a bundle when each product joins the pair of the other two
well above chance: min over its splits of n(ABC) N / (n(XY) n(Z)) >= the bundle lift, so a pair
that sells well together does not drag unrelated third products into bundles.

Two more tests, for frequently bought together and bundles alike:
- Customers, not baskets: the baskets with the pair (or triple) must come from enough distinct
  customers (fbt_min_customers, bundle_min_customers; each guest order counts as one), so that
  one subscriber ordering the same two products every month makes no pattern for the shop.
- Above chance by a margin that noise rarely reaches: independent purchases pass a support of
  5 and a lift of 1.2 by luck (6 pairs, lifts 1.6-3.4, in 300 random orders of three of 38
  products; thousands of pairs in a large catalogue). Independence predicts
  E = n(A) n(B) / N baskets with both (for a triple, the largest n(XY) n(Z) / N over its
  splits), and `chance_bound`(support, E) must be <= signal_max_chance, the test the next
  products already apply to their sequence and co-purchase counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from numpy.typing import NDArray

from plugin.domain.recommendations_baskets import (
    Baskets,
    BoolArray,
    chance_bound,
    count_keys,
    distinct,
    member,
    pairs_within,
    rank_in_group,
)
from plugin.domain.recommendations_types import (
    NO_PRODUCT,
    BundleCandidates,
    ProductLinks,
    RecommendationSettings,
)
from plugin.domain.scoring_types import FloatArray, IntArray


@dataclass(frozen=True)
class PairCounts:
    """Basket counts: `baskets` N, `product_baskets` n(A) per dense product; the pairs a < b with
    n(ab) >= `floor` as dense `left`, `right`, `together`, sorted by (left, right), and the
    distinct `customers` among their baskets (a guest order counting as one)."""

    baskets: int
    product_baskets: IntArray
    left: IntArray
    right: IntArray
    together: IntArray
    customers: IntArray


@dataclass(frozen=True)
class Links:
    """Ranked partner rows in dense product indices (see ProductLinks for the columns)."""

    anchor: IntArray
    partner: IntArray
    rank: IntArray
    support: IntArray
    confidence: FloatArray
    lift: FloatArray

    def with_ids(self, product_ids: IntArray) -> ProductLinks:
        return ProductLinks(
            product_id=product_ids[self.anchor],
            partner_id=product_ids[self.partner],
            rank=self.rank,
            support=self.support,
            confidence=self.confidence,
            lift=self.lift,
        )


def counted_items(baskets: Baskets) -> tuple[IntArray, IntArray]:
    """The items of the baskets within the size cap, and those baskets' sizes."""
    keep = np.repeat(baskets.counted, baskets.size)
    return baskets.item[keep], baskets.size[baskets.counted]


def count_pairs(baskets: Baskets, floor: int) -> PairCounts:
    """n(A) for every product, and n(AB) and its customers for every pair bought together in
    >= floor baskets."""
    item, size = counted_items(baskets)
    n = baskets.n_products
    left, right = pairs_within(size)
    occurrence = item[left] * n + item[right]
    keys, together = count_keys(occurrence)
    frequent = together >= floor
    keys, together = keys[frequent], together[frequent]
    buyer = np.repeat(baskets.buyers()[baskets.counted], size)[left]
    return PairCounts(
        baskets=int(size.size),
        product_baskets=np.bincount(item, minlength=n).astype(np.int64),
        left=keys // n,
        right=keys % n,
        together=together,
        customers=_distinct_buyers(keys, occurrence, buyer),
    )


def _distinct_buyers(keys: IntArray, occurrence: IntArray, buyer: IntArray) -> IntArray:
    """For each of `keys` (ascending, each among `occurrence`), how many distinct buyers its
    occurrences have. A (key, buyer) is one int64 by the key's position, not the key itself: a
    pair key runs to P * P, which times the buyers overflows at about a million products."""
    mine = member(occurrence, keys)
    slot = np.searchsorted(keys, occurrence[mine])
    span = int(buyer.max(initial=0)) + 1
    pairs = distinct(slot * span + buyer[mine]) // span
    return np.bincount(pairs, minlength=keys.size).astype(np.int64)


def pair_lift(counts: PairCounts) -> FloatArray:
    """lift(a, b) = n(ab) N / (n(a) n(b)) for every counted pair."""
    n_a = counts.product_baskets[counts.left].astype(np.float64)
    n_b = counts.product_baskets[counts.right].astype(np.float64)
    return np.asarray(counts.together * float(counts.baskets) / (n_a * n_b), dtype=np.float64)


def together_links(
    counts: PairCounts, recommendable: BoolArray, settings: RecommendationSettings
) -> Links:
    """Per anchor, the partners with n(AB) >= fbt_min_support from fbt_min_customers customers,
    lift >= fbt_min_lift and a count above chance (module docstring), ranked by lift, then
    confidence P(B | A), then product id; at most fbt_per_product each."""
    lift = pair_lift(counts)
    keep = (counts.together >= settings.fbt_min_support) & (lift >= settings.fbt_min_lift)
    keep &= counts.customers >= settings.fbt_min_customers
    keep &= chance_bound(counts.together, counts.together / lift) <= settings.signal_max_chance
    keep &= recommendable[counts.left] & recommendable[counts.right]
    left, right = counts.left[keep], counts.right[keep]
    together, lift = counts.together[keep], lift[keep]
    anchor = np.concatenate((left, right))
    partner = np.concatenate((right, left))
    support = np.concatenate((together, together))
    both_lift = np.concatenate((lift, lift))
    confidence = support / counts.product_baskets[anchor].astype(np.float64)
    order = np.lexsort((partner, -confidence, -both_lift, anchor))
    rank = rank_in_group(anchor[order])
    order, rank = order[rank < settings.fbt_per_product], rank[rank < settings.fbt_per_product]
    return Links(
        anchor[order], partner[order], rank, support[order], confidence[order], both_lift[order]
    )


def find_bundles(
    baskets: Baskets, counts: PairCounts, settings: RecommendationSettings
) -> BundleCandidates:
    """Pairs and triples of recommendable products in >= bundle_min_support baskets from
    bundle_min_customers customers, with lift (and, for triples, every split's lift) >=
    bundle_min_lift and a count above chance (module docstring); most baskets first, then lift,
    then product ids; at most bundle_max."""
    floor = counts.together >= settings.bundle_min_support
    floor &= counts.customers >= settings.bundle_min_customers
    floor &= baskets.recommendable[counts.left] & baskets.recommendable[counts.right]
    lift = pair_lift(counts)
    pair = floor & (lift >= settings.bundle_min_lift)
    pair &= chance_bound(counts.together, counts.together / lift) <= settings.signal_max_chance
    frequent = PairCounts(
        counts.baskets,
        counts.product_baskets,
        counts.left[floor],
        counts.right[floor],
        counts.together[floor],
        counts.customers[floor],
    )
    triples, triple_orders, triple_lift = _triples(baskets, frequent, settings)
    n_pairs = int(pair.sum())
    ids = np.full((n_pairs + triple_orders.size, 3), NO_PRODUCT, dtype=np.int64)
    ids[:n_pairs, 0], ids[:n_pairs, 1] = counts.left[pair], counts.right[pair]
    ids[n_pairs:] = triples
    orders = np.concatenate((counts.together[pair], triple_orders))
    lifts = np.concatenate((lift[pair], triple_lift))
    dense = ids.copy()
    ids = np.where(dense >= 0, baskets.product_ids[np.maximum(dense, 0)], NO_PRODUCT)
    order = np.lexsort((ids[:, 2], ids[:, 1], ids[:, 0], -lifts, -orders))[: settings.bundle_max]
    price = _combined_prices(baskets.price, dense[order])
    return BundleCandidates(ids[order], orders[order], lifts[order], price)


def _combined_prices(price: FloatArray, rows: IntArray) -> NDArray[np.object_]:
    """Each row's sum of its products' prices (dense, NO_PRODUCT for none), as a Decimal.

    Each price is taken as the shortest decimal that reads back as the same float (1.125 is
    1.125, a ledger price keeps its at most 4 places), and summed exactly: the sum has the
    places its prices have (a 3-decimal currency's 1.125 + 2.250 is 3.375, not 3.38), with no
    float rounding on a half cent.
    """
    sums = [
        sum((Decimal(repr(float(price[p]))) for p in row if p != NO_PRODUCT), Decimal(0))
        for row in rows.tolist()
    ]
    return np.array(sums, dtype=object)


def _triples(
    baskets: Baskets, frequent: PairCounts, settings: RecommendationSettings
) -> tuple[IntArray, IntArray, FloatArray]:
    """Triples (dense a < b < c, as rows), their baskets and lifts, that pass the bundle rule.

    Apriori: a triple in s baskets from c customers has each of its pairs in >= s baskets from
    >= c customers, so only baskets' pairs that are themselves frequent are extended by a later
    item of the same basket.
    """
    empty = (np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))
    if frequent.left.size < 3:
        return empty
    n = baskets.n_products
    pair_keys = frequent.left * n + frequent.right
    item, size = counted_items(baskets)
    left, right = pairs_within(size)
    is_frequent = member(item[left] * n + item[right], pair_keys)
    left, right = left[is_frequent], right[is_frequent]
    end = np.repeat(np.cumsum(size), size)
    later = end[right] - right - 1
    first = np.repeat(left, later)
    second = np.repeat(right, later)
    third = second + 1 + np.arange(first.size) - np.repeat(np.cumsum(later) - later, later)
    a, b, c = item[first], item[second], item[third]
    whole = member(a * n + c, pair_keys) & member(b * n + c, pair_keys)
    buyer = np.repeat(baskets.buyers()[baskets.counted], size)[first[whole]]
    rows, together, customers = _count_rows(a[whole], b[whole], c[whole], buyer)
    keep = (together >= settings.bundle_min_support) & (customers >= settings.bundle_min_customers)
    rows, together = rows[keep], together[keep]
    lift, split_lift = _triple_lifts(rows, together, frequent, pair_keys, n)
    keep = split_lift >= settings.bundle_min_lift
    # the split that independence explains best gives the largest expected count
    keep &= chance_bound(together, together / split_lift) <= settings.signal_max_chance
    return rows[keep], together[keep], lift[keep]


def _triple_lifts(
    rows: IntArray, together: IntArray, frequent: PairCounts, pair_keys: IntArray, n: int
) -> tuple[FloatArray, FloatArray]:
    total = float(frequent.baskets)
    single = frequent.product_baskets.astype(np.float64)
    a, b, c = rows[:, 0], rows[:, 1], rows[:, 2]
    pair_count = frequent.together.astype(np.float64)

    def of_pair(x: IntArray, y: IntArray) -> FloatArray:
        return np.asarray(pair_count[np.searchsorted(pair_keys, x * n + y)], dtype=np.float64)

    counts = together.astype(np.float64)
    lift = counts * total * total / (single[a] * single[b] * single[c])
    splits = np.minimum(
        np.minimum(
            counts * total / (of_pair(a, b) * single[c]),
            counts * total / (of_pair(a, c) * single[b]),
        ),
        counts * total / (of_pair(b, c) * single[a]),
    )
    return np.asarray(lift, dtype=np.float64), np.asarray(splits, dtype=np.float64)


def _count_rows(
    a: IntArray, b: IntArray, c: IntArray, buyer: IntArray
) -> tuple[IntArray, IntArray, IntArray]:
    """Distinct (a, b, c) rows, ascending, how often each occurs and from how many buyers."""
    if a.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros((0, 3), dtype=np.int64), empty, empty
    order = np.lexsort((buyer, c, b, a))
    a, b, c, buyer = a[order], b[order], c[order], buyer[order]
    new = np.concatenate(([True], (a[1:] != a[:-1]) | (b[1:] != b[:-1]) | (c[1:] != c[:-1])))
    new_buyer = new | np.concatenate(([True], buyer[1:] != buyer[:-1]))
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, a.size)).astype(np.int64)
    customers = np.add.reduceat(new_buyer.astype(np.int64), starts)
    return np.column_stack((a[starts], b[starts], c[starts])).astype(np.int64), counts, customers
