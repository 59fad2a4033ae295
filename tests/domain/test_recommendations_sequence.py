"""Sequence statistics, rule by rule: what customers buy in their next order (the followers the
next products draw on), and upsell."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from plugin.domain.recommendations import (
    OrderLines,
    ProductTable,
    RecommendationSettings,
    upsell,
)
from plugin.domain.recommendations_baskets import build_baskets
from plugin.domain.recommendations_sequence import next_order_followers
from tests.domain.recommendation_data import THINGS, A, B, C, D, E, F, G

# followers from 3 order pairs, shrunk as if 2 more pairs had been seen, the chance bound off
LOOSE = RecommendationSettings(
    sequence_min_support=3, sequence_prior_orders=2.0, signal_max_chance=1.0
)


def lines_of_histories(histories: list[list[list[int]]]) -> OrderLines:
    """Each history is one customer's orders, 10 days apart, the customer numbered from 1."""
    rows = [
        (c, k, p)
        for c, history in enumerate(histories, start=1)
        for k, basket in enumerate(history)
        for p in basket
    ]
    return OrderLines(
        np.array([1000 * c + k for c, k, _ in rows], dtype=np.int64),
        np.array([c for c, _, _ in rows], dtype=np.int64),
        np.array([p for _, _, p in rows], dtype=np.int64),
        np.array([1.0 + 10.0 * k for _, k, _ in rows]),
        np.ones(len(rows), dtype=np.int64),
        np.full(len(rows), 10.0),
    )


def followers(
    histories: list[list[list[int]]],
    settings: RecommendationSettings = LOOSE,
    table: ProductTable = THINGS,
) -> dict[int, list[tuple[int, float]]]:
    """Each product's followers (product id, gain), best first."""
    baskets = build_baskets(lines_of_histories(histories), table, 1000.0, settings)
    found = next_order_followers(baskets, settings)
    ids = baskets.product_ids
    table_of: dict[int, list[tuple[int, float]]] = {}
    for a, b, gain in zip(found.source, found.target, found.gain, strict=True):
        table_of.setdefault(int(ids[a]), []).append((int(ids[b]), float(gain)))
    return table_of


# 15 order pairs: A -> B 4 times, A -> C 3, C -> A 3, D -> D 3, E -> B 2
SEQUENCES = (
    [[[A], [B]]] * 4 + [[[A], [C]]] * 3 + [[[C], [A]]] * 3 + [[[D], [D]]] * 3 + [[[E], [B]]] * 2
)


def test_followers_by_hand_gain_over_the_next_orders_base_rate() -> None:
    # when the followers of 15 order pairs are found
    found = followers(SEQUENCES)
    # then gain = (n(a -> b) - n(a) q(b)) / (n(a) + 2), q(b) the share of next orders with b:
    # A -> C (3 - 7 x 3/15) / 9 before A -> B (4 - 7 x 6/15) / 9; C -> A (3 - 3 x 3/15) / 5;
    # E -> B has 2 pairs, short of 3; D -> D is no follower of its own
    assert found.keys() == {A, C}
    assert found[A] == [(C, pytest.approx(1.6 / 9)), (B, pytest.approx(1.2 / 9))]
    assert found[C] == [(A, pytest.approx(2.4 / 5))]


def test_followers_need_a_count_chance_rarely_reaches() -> None:
    # when the same pairs are held to the default chance bound (1e-4), then none is a follower:
    # C -> A's 3 pairs against 0.6 expected have a bound of 0.09
    assert followers(SEQUENCES, replace(LOOSE, signal_max_chance=1e-4)) == {}


def test_a_product_every_next_order_holds_follows_nothing() -> None:
    # given 6 customers who bought A and then B, and 3 who bought C and then B
    found = followers([[[A], [B]]] * 6 + [[[C], [B]]] * 3)
    # then B, in every next order, gains nothing after either
    assert found == {}


def test_followers_of_equal_gain_go_to_the_lower_id_up_to_the_neighbors_kept() -> None:
    # given A followed by C in 3 next orders and by B in 3, among 12 order pairs
    histories = [[[A], [C]]] * 3 + [[[A], [B]]] * 3 + [[[D], [E]]] * 6
    # then both follow A, B first; with one neighbour kept, B alone
    assert [b for b, _ in followers(histories)[A]] == [B, C]
    assert [b for b, _ in followers(histories, replace(LOOSE, sequence_neighbors=1))[A]] == [B]


def test_a_follower_off_the_product_table_is_not_kept() -> None:
    # given A followed by B in 3 of 9 next orders (C after C in the others), and B no longer
    # sold
    on_sale = ProductTable(np.array([A, C], dtype=np.int64), np.array(["t", "t"]), np.ones(2))
    histories = [[[A], [B]]] * 3 + [[[C], [C]]] * 6
    # then B follows A while sold, and not now
    assert followers(histories).keys() == {A}
    assert followers(histories, table=on_sale) == {}


def test_an_order_over_the_size_cap_breaks_the_sequence() -> None:
    # given 3 customers who bought A, then C, D, E and F together, then B (and 6 customers
    # who bought G twice)
    histories = [[[A], [C, D, E, F], [B]]] * 3 + [[[G], [G]]] * 6
    # when baskets of 4 products count, then A leads to C-F and C-F to B
    four = replace(LOOSE, max_basket_products=4)
    assert followers(histories, four).keys() == {A, C, D, E, F}
    # and when the cap is 3, the big order is no one's next order, nor followed by one
    assert followers(histories, replace(LOOSE, max_basket_products=3)) == {}


# ---- upsell ------------------------------------------------------------------------------------

BREWERS = ProductTable(
    np.array([A, B, C, D, E, F, G], dtype=np.int64),
    np.array(["Brewers", "Brewers", "Brewers", "Brewers", "Mugs", "Mugs", "Mugs"]),
    np.array([25.0, 27.5, 50.0, 50.0, 5.0, 6.0, 7.0]),
)
MIN_THREE = RecommendationSettings(upsell_min_support=3)


def test_upsell_at_exactly_the_price_ratio() -> None:
    # given three customers who bought brewer A (25.00) and then B (27.50): 1.1 times its price
    links = upsell(lines_of_histories([[[A], [B]]] * 3), BREWERS, 100.0, MIN_THREE)
    # then B is A's upsell (1.1 x 25.00 is 27.50, though not in floating point)
    assert links.partners_of(A) == (B,)


def test_upsell_counts_the_customers_last_order_with_the_pricier_product() -> None:
    # given three customers who bought brewer C, then A, then C again
    links = upsell(lines_of_histories([[[C], [A], [C]]] * 3), BREWERS, 100.0, MIN_THREE)
    # then C is A's upsell: they went on to buy it after A
    assert links.partners_of(A) == (C,)


def test_upsell_leaves_out_orders_over_the_size_cap() -> None:
    # given three customers who bought A, and later C with three mugs
    histories = [[[A], [C, E, F, G]]] * 3
    # then C is A's upsell while orders of 4 products count, and not when the cap is 3
    assert upsell(lines_of_histories(histories), BREWERS, 100.0, MIN_THREE).partners_of(A) == (C,)
    capped = RecommendationSettings(upsell_min_support=3, max_basket_products=3)
    assert upsell(lines_of_histories(histories), BREWERS, 100.0, capped).partners_of(A) == ()


def test_upsell_of_equal_customers_go_to_the_lower_id_up_to_the_number_kept() -> None:
    # given three customers who bought A and then D, and three A and then C, both at 50.00
    histories = [[[A], [D]]] * 3 + [[[A], [C]]] * 3
    assert upsell(lines_of_histories(histories), BREWERS, 100.0, MIN_THREE).partners_of(A) == (C, D)
    one = RecommendationSettings(upsell_min_support=3, upsell_per_product=1)
    assert upsell(lines_of_histories(histories), BREWERS, 100.0, one).partners_of(A) == (C,)


def test_upsell_lift_is_over_the_share_of_customers_who_bought_the_upsell() -> None:
    # given three customers who bought A and then C, three who bought A alone and four who
    # bought E alone: 10 customers
    histories = [[[A], [C]]] * 3 + [[[A]]] * 3 + [[[E]]] * 4
    links = upsell(lines_of_histories(histories), BREWERS, 100.0, MIN_THREE)
    # then C's confidence is 3 of A's 6 buyers, and its lift that over the 3 of 10 who own C
    assert links.confidence.tolist() == [pytest.approx(0.5)]
    assert links.lift.tolist() == [pytest.approx(0.5 / 0.3)]


def test_upsell_product_types_differing_only_in_spaces_are_one_type() -> None:
    # given the brewers typed "Brewers" and " Brewers "
    table = ProductTable(
        np.array([A, C], dtype=np.int64), np.array(["Brewers", " Brewers "]), np.array([25.0, 50.0])
    )
    links = upsell(lines_of_histories([[[A], [C]]] * 3), table, 100.0, MIN_THREE)
    assert links.partners_of(A) == (C,)
