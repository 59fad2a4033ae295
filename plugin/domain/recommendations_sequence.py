"""Sequence statistics over each customer's orders: upsell and what customers buy next.

Orders of a customer are in (day, order id) order; baskets over the size cap and guest orders
take no part. Counts are customers (upsell) or pairs of consecutive orders (next-order
transitions); every rule is in the docstring of the function that applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plugin.domain.recommendations_baskets import (
    UNTYPED,
    Baskets,
    argsort_keys,
    chance_bound,
    count_keys,
    distinct,
    pairs_within,
    rank_in_group,
    run_starts,
)
from plugin.domain.recommendations_together import Links
from plugin.domain.recommendations_types import RecommendationSettings
from plugin.domain.scoring_types import FloatArray, IntArray


@dataclass(frozen=True)
class Followers:
    """Per dense product a (ascending), its followers b and gains, best first (see
    `next_order_followers`)."""

    source: IntArray
    target: IntArray
    gain: FloatArray


@dataclass(frozen=True)
class _Ownership:
    """One row per (customer, product) of the customers' counted baskets, sorted by customer,
    then product: the first and last basket (global basket index) with the product."""

    customer: IntArray
    item: IntArray
    first: IntArray
    last: IntArray


def _ownership(baskets: Baskets) -> _Ownership:
    basket = baskets.item_basket()
    keep = (baskets.customer[basket] >= 0) & baskets.counted[basket]
    basket, item = basket[keep], baskets.item[keep]
    customer = baskets.customer[basket]
    # Baskets are sorted by customer, so the key is sorted by customer and a stable sort on it
    # keeps each (customer, product)'s baskets in time order.
    key = customer * baskets.n_products + item
    order = np.argsort(key, kind="stable")
    key, basket = key[order], basket[order]
    starts = run_starts(key)
    ends = np.append(starts[1:], key.size)[: starts.size] - 1
    return _Ownership(
        customer=key[starts] // baskets.n_products,
        item=key[starts] % baskets.n_products,
        first=basket[starts],
        last=basket[ends],
    )


def upsell_links(baskets: Baskets, settings: RecommendationSettings) -> Links:
    """Per product A with a type, the pricier products B of the same type that customers who
    bought A went on to buy in a later order, on a later day (at least a day after their first
    order with A).

    B qualifies when price(B) > price(A) and price(B) >= upsell_min_price_ratio x price(A)
    (current prices, shop currency; the first rule keeps two free products from being each
    other's upsell) and at least upsell_min_support customers bought A and then B in a later
    order (their first order with A comes before their last order with B). Ranked by that number
    of customers, then product id; at most upsell_per_product. `confidence` is that number over
    the customers who bought A; `lift` is confidence over the share of all customers who bought
    B.

    Each customer's products of one type are paired only with the pricier ones; a customer who
    owns more than max_basket_products products of one type (a reseller, a staff or test
    account, as with an oversized basket) takes no part, though they still count among the
    buyers. So a customer's products give at most max_basket_products / 2 pairs each, and the
    pairs grow with the order lines, not with the square of a catalogue someone bought whole.
    """
    own = _ownership(baskets)
    n = baskets.n_products
    buyers = np.bincount(own.item, minlength=n).astype(np.float64)
    n_customers = float(distinct(own.customer).size)
    typed = baskets.type_code[own.item] != UNTYPED
    customer, item = own.customer[typed], own.item[typed]
    first, last = own.first[typed], own.last[typed]
    group = customer * (int(baskets.type_code.max(initial=0)) + 1) + baskets.type_code[item]
    # by (customer and type, price, product): each product's pricier partners come after it;
    # one integer key (the products' price ranks), not a three-key lexsort: upsell took 2.0 s
    # of the 1,000,000-order bench with the lexsort, 0.7 s with this
    by_price = np.empty(n, dtype=np.int64)
    by_price[np.lexsort((np.arange(n), baskets.price))] = np.arange(n)
    order = argsort_keys(group * n + by_price[item])
    group, item, first, last = group[order], item[order], first[order], last[order]
    _, size = count_keys(group)
    small = size <= settings.max_basket_products
    mine = np.repeat(small, size)
    item, first, last = item[mine], first[mine], last[mine]
    low, high = pairs_within(size[small])
    price = baskets.price
    step_up = price[item[high]] > price[item[low]]
    # at least the ratio as a merchant reckons it: 1.1 x 25.00 is 27.50, where the float
    # product is 27.500000000000004. The slack, 1e-12 of the price, undoes only float error: a
    # price of 4 places under a million below a ratio of a decimal or two times another price
    # is below it by 1e-6 at least, 1e-12 of a million
    threshold = settings.upsell_min_price_ratio * price[item[low]] * (1 - 1e-12)
    step_up &= price[item[high]] >= threshold
    # a second checkout minutes after the first is one purchase, not going on to buy (the
    # replenishment rule 1 merges purchases less than a day apart in the same way)
    later = baskets.day[last[high]] >= baskets.day[first[low]] + 1
    keep = step_up & later & baskets.recommendable[item[high]]
    keys, support = count_keys(item[low[keep]] * n + item[high[keep]])
    enough = support >= settings.upsell_min_support
    keys, support = keys[enough], support[enough]
    anchor, partner = keys // n, keys % n
    order = np.lexsort((partner, -support, anchor))
    anchor, partner, support = anchor[order], partner[order], support[order]
    rank = rank_in_group(anchor)
    top = rank < settings.upsell_per_product
    confidence = support / buyers[anchor]
    lift = confidence / (buyers[partner] / max(n_customers, 1.0))
    return Links(anchor[top], partner[top], rank[top], support[top], confidence[top], lift[top])


def next_order_followers(baskets: Baskets, settings: RecommendationSettings) -> Followers:
    """What customers buy in the order after one with product a: a first-order Markov chain
    on consecutive orders of the same customer.

    Over the T pairs (order t, next order t + 1): n(a) pairs with a in order t, m(b) pairs with
    b in order t + 1, n(a -> b) pairs with both. The base rate of b is q(b) = m(b) / T; the
    chance of b after a, shrunk towards it with a prior of k = sequence_prior_orders pairs, is
    (n(a -> b) + k q(b)) / (n(a) + k), and the gain is that minus q(b):
    (n(a -> b) - n(a) q(b)) / (n(a) + k), in probability of b being in the next order. A
    follower b != a needs n(a -> b) >= sequence_min_support and a count that independent
    purchases rarely reach: `chance_bound`(n(a -> b), n(a) q(b)) <= signal_max_chance. It must
    be recommendable; each a keeps its sequence_neighbors largest gains (ties by product id).
    """
    src, dst = _consecutive_orders(baskets)
    n = baskets.n_products
    pairs = src.size
    from_count = np.bincount(_items_of(baskets, src), minlength=n).astype(np.float64)
    to_count = np.bincount(_items_of(baskets, dst), minlength=n).astype(np.float64)
    a, b = _item_pairs(baskets, src, dst)
    keys, together = count_keys(a * n + b)
    a, b = keys // n, keys % n
    base = to_count[b] / max(pairs, 1)
    expected = from_count[a] * base
    gain = (together - expected) / (from_count[a] + settings.sequence_prior_orders)
    keep = (together >= settings.sequence_min_support) & (a != b)
    keep &= chance_bound(together, expected) <= settings.signal_max_chance
    keep &= (gain > 0) & baskets.recommendable[b]
    a, b, gain = a[keep], b[keep], gain[keep]
    order = np.lexsort((b, -gain, a))
    a, b, gain = a[order], b[order], gain[order]
    top = rank_in_group(a) < settings.sequence_neighbors
    return Followers(a[top], b[top], gain[top])


def _consecutive_orders(baskets: Baskets) -> tuple[IntArray, IntArray]:
    """Basket indices (t, t + 1) of consecutive orders of one customer, both within the cap."""
    customer = baskets.customer
    same = (customer[1:] == customer[:-1]) & (customer[1:] >= 0)
    same &= baskets.counted[1:] & baskets.counted[:-1]
    src = np.flatnonzero(same).astype(np.int64)
    return src, src + 1


def _items_of(baskets: Baskets, basket: IntArray) -> IntArray:
    """The items of the given baskets, basket after basket."""
    size = baskets.size[basket]
    offset = np.arange(int(size.sum()), dtype=np.int64) - np.repeat(np.cumsum(size) - size, size)
    return np.asarray(baskets.item[np.repeat(baskets.start[basket], size) + offset], np.int64)


def _item_pairs(baskets: Baskets, src: IntArray, dst: IntArray) -> tuple[IntArray, IntArray]:
    """(a, b) for every item a of basket src[p] and item b of basket dst[p], over all p."""
    src_size, dst_size = baskets.size[src], baskets.size[dst]
    a_pos = np.repeat(baskets.start[src], src_size)
    a_pos += np.arange(a_pos.size, dtype=np.int64) - np.repeat(
        np.cumsum(src_size) - src_size, src_size
    )
    fan = np.repeat(dst_size, src_size)  # each item of order t meets every item of order t + 1
    a = np.repeat(baskets.item[a_pos], fan)
    b_start = np.repeat(np.repeat(baskets.start[dst], src_size), fan)
    b_pos = b_start + np.arange(a.size, dtype=np.int64) - np.repeat(np.cumsum(fan) - fan, fan)
    return a, baskets.item[b_pos]
