"""Frequently bought together and bundles, rule by rule: the bounds that admit a pair or a
triple (lift, customers, chance), the order of equal partners and bundles, and how a triple's
splits and customers are counted."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plugin.domain.recommendations import (
    NO_PRODUCT,
    OrderLines,
    ProductTable,
    RecommendationSettings,
    bundle_candidates,
    frequently_bought_together,
)
from plugin.domain.recommendations_baskets import chance_bound

A, B, C, D, E = 1, 2, 3, 4, 5
TABLE = ProductTable(
    np.arange(1, 6, dtype=np.int64), np.array(["Thing"] * 5), np.full(5, 10.0, dtype=np.float64)
)
# pairs from one basket and one customer up, at any lift, the chance bound off
ANY_PAIR = RecommendationSettings(
    fbt_min_support=1, fbt_min_customers=1, fbt_min_lift=0.0, signal_max_chance=1.0
)
NO_CHANCE_BOUND = RecommendationSettings(signal_max_chance=1.0)


def baskets_of(baskets: list[list[int]], customer: int = -1) -> OrderLines:
    """One order per basket, all from `customer` (-1: each a guest's)."""
    rows = [(o + 1, p) for o, basket in enumerate(baskets) for p in basket]
    return OrderLines(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.full(len(rows), customer, dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.ones(len(rows)),
        np.ones(len(rows), dtype=np.int64),
        np.full(len(rows), 10.0),
    )


def customers_of(orders: list[tuple[int, list[int]]]) -> OrderLines:
    """One order per (customer, basket), a day apart."""
    rows = [(o + 1, c, p) for o, (c, basket) in enumerate(orders) for p in basket]
    return OrderLines(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.array([r[2] for r in rows], dtype=np.int64),
        np.array([float(r[0]) for r in rows]),
        np.ones(len(rows), dtype=np.int64),
        np.full(len(rows), 10.0),
    )


def bundle_rows(bundles: object) -> list[tuple[int, ...]]:
    return [
        tuple(int(p) for p in row if p != NO_PRODUCT)
        for row in bundles.product_ids  # type: ignore[attr-defined]
    ]


def test_a_pair_exactly_at_the_minimum_lift_is_bought_together() -> None:
    # given A with B in 3 of 10 baskets, A in 5, B in 3: lift 3 x 10 / (5 x 3) = 2
    lines = baskets_of([[A, B]] * 3 + [[A]] * 2 + [[C]] * 5)
    # when the minimum lift is 2, then B is A's partner
    at_two = RecommendationSettings(
        fbt_min_support=1, fbt_min_customers=1, fbt_min_lift=2.0, signal_max_chance=1.0
    )
    assert frequently_bought_together(lines, TABLE, 2.0, at_two).partners_of(A) == (B,)


def test_partners_of_equal_lift_rank_by_confidence_then_by_product_id() -> None:
    # given C always bought with A (4 baskets) and B too (2 baskets): the same lift, 10 / 6,
    # but C in 4 of A's 6 baskets and B in 2
    by_confidence = baskets_of([[A, C]] * 4 + [[A, B]] * 2 + [[D]] * 4)
    assert frequently_bought_together(by_confidence, TABLE, 2.0, ANY_PAIR).partners_of(A) == (C, B)
    # and given B and C each in 3 of A's 6 baskets, always with A: the lower id first
    even = baskets_of([[A, C]] * 3 + [[A, B]] * 3 + [[D]] * 4)
    assert frequently_bought_together(even, TABLE, 2.0, ANY_PAIR).partners_of(A) == (B, C)


def test_bundles_need_exactly_their_minimum_of_customers() -> None:
    # given customers 1-3 who each bought A, B and C together twice, among 12 guest orders of D
    orders = [(c, [A, B, C]) for c in (1, 2, 3) for _ in range(2)] + [(-1, [D])] * 12
    lines = customers_of(orders)
    # when bundles need 6 orders from 3 customers, then the pairs and the triple are bundles
    three = RecommendationSettings(
        bundle_min_support=6, bundle_min_customers=3, signal_max_chance=1.0
    )
    found = bundle_candidates(lines, TABLE, 100.0, three)
    assert sorted(bundle_rows(found)) == [(A, B), (A, B, C), (A, C), (B, C)]
    # and with 4 customers needed, none is
    four = RecommendationSettings(
        bundle_min_support=6, bundle_min_customers=4, signal_max_chance=1.0
    )
    assert bundle_rows(bundle_candidates(lines, TABLE, 100.0, four)) == []


def test_a_triple_needs_its_own_customers_not_its_pairs() -> None:
    # given customer 9 who bought A, B and C together 12 times, and 15 guests each of A with
    # B, A with C and B with C
    orders = [(9, [A, B, C])] * 12 + [(-1, [A, B]), (-1, [A, C]), (-1, [B, C])] * 15
    orders += [(-1, [D])] * 300
    # when bundles are sought (10 orders from 5 customers)
    rows = bundle_rows(bundle_candidates(customers_of(orders), TABLE, 1000.0, NO_CHANCE_BOUND))
    # then the pairs are bundles (27 orders from 16 customers); the triple, of one, is not,
    # though C joins A-B at 12 x 357 / (27 x 42) = 3.8 times its own rate
    assert sorted(rows) == [(A, B), (A, C), (B, C)]


def test_a_pair_no_more_frequent_than_chance_explains_is_no_bundle() -> None:
    # given A with B in 10 of 80 guest orders and each in 20: lift 2, but independent
    # purchases give 5 such baskets on average, and 10 with a chance above 1e-4
    lines = baskets_of([[A, B]] * 10 + [[A]] * 10 + [[B]] * 10 + [[C]] * 50)
    assert bundle_rows(bundle_candidates(lines, TABLE, 2.0)) == []
    # and ten times the orders, the same shares, make it one
    lines = baskets_of(([[A, B]] * 10 + [[A]] * 10 + [[B]] * 10 + [[C]] * 50) * 10)
    assert bundle_rows(bundle_candidates(lines, TABLE, 2.0)) == [(A, B)]


def test_a_triple_is_above_chance_by_the_split_that_explains_it_best() -> None:
    # given A with B in 20 of 80 guest orders, C in 20 of them, half with A and B: C joins A-B
    # at twice its own rate (split lift 10 x 80 / (20 x 20) = 2), which 5 baskets would give on
    # average (chance of 10 above 1e-4), though full independence would give 1.25
    lines = baskets_of([[A, B, C]] * 10 + [[A, B]] * 10 + [[C]] * 10 + [[D]] * 50)
    # when bundles are sought, then A-B is one and A-B-C is not
    assert bundle_rows(bundle_candidates(lines, TABLE, 2.0)) == [(A, B)]


def test_bundles_of_equal_orders_and_lift_come_by_product_ids() -> None:
    # given C with D and A with B, each in 10 of 40 guest orders
    lines = baskets_of([[C, D]] * 10 + [[A, B]] * 10 + [[E]] * 20)
    # then A-B comes first
    found = bundle_candidates(lines, TABLE, 2.0, NO_CHANCE_BOUND)
    assert bundle_rows(found) == [(A, B), (C, D)]


def test_a_triple_whose_three_pairs_are_the_only_frequent_ones_is_found() -> None:
    # given A, B and C together in 12 guest orders and D alone in 12
    lines = baskets_of([[A, B, C]] * 12 + [[D]] * 12)
    # then the triple is a bundle with its three pairs
    rows = bundle_rows(bundle_candidates(lines, TABLE, 2.0, NO_CHANCE_BOUND))
    assert sorted(rows) == [(A, B), (A, B, C), (A, C), (B, C)]


def test_a_triple_is_left_out_when_its_lowest_product_joins_the_other_two_by_chance() -> None:
    # given B with C in 20 of 40 guest orders, A in half of all of them, whatever else: A
    # joins B-C at its own rate (split lift 10 x 40 / (20 x 20) = 1), while B and C each join
    # the other with A at twice theirs
    lines = baskets_of([[A, B, C]] * 10 + [[B, C]] * 10 + [[A]] * 10 + [[D]] * 10)
    rules = RecommendationSettings(bundle_min_support=5, bundle_min_lift=1.5, signal_max_chance=1.0)
    # then B-C is a bundle and A-B-C is not
    rows = bundle_rows(bundle_candidates(lines, TABLE, 2.0, rules))
    assert (B, C) in rows
    assert (A, B, C) not in rows


def test_a_customer_of_two_triples_counts_once_for_each() -> None:
    # given customers 1-5 who bought A, B and C together twice, and customers 5-9 A, B and D
    orders = [(c, [A, B, C]) for c in (1, 2, 3, 4, 5) for _ in range(2)]
    orders += [(c, [A, B, D]) for c in (5, 6, 7, 8, 9) for _ in range(2)]
    orders += [(-1, [E])] * 20
    # when bundles are sought (10 orders from 5 customers)
    rows = bundle_rows(bundle_candidates(customers_of(orders), TABLE, 100.0, NO_CHANCE_BOUND))
    # then both triples are bundles, customer 5 counting for each
    assert (A, B, C) in rows
    assert (A, B, D) in rows


@pytest.mark.parametrize(("observed", "expected"), [(10, 2.0), (30, 12.5), (3, 0.6)])
def test_chance_bound_is_the_chernoff_bound_of_the_poisson_tail(
    observed: int, expected: float
) -> None:
    bound = float(chance_bound(np.array([observed]), np.array([expected]))[0])
    by_hand = math.exp(-expected) * (math.e * expected / observed) ** observed
    assert bound == pytest.approx(by_hand, rel=1e-12)


def test_chance_bound_of_a_count_at_or_below_its_expectation_is_one() -> None:
    assert chance_bound(np.array([2, 5, 0]), np.array([2.0, 7.5, 0.0])).tolist() == [1.0] * 3
