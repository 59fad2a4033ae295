"""Per-customer next products, rule by rule: which orders a customer's history takes and how
they weigh, who counts as buying a product again, what counts as bought new, the order of due
consumables and of equal scores, and the exact ranking past the cut of popular products."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import plugin.domain.recommendations_next as ranking
from plugin.domain.recommendations import (
    OrderLines,
    ProductTable,
    RecommendationSettings,
    next_products,
    recommend,
)
from plugin.domain.recommendations_baskets import build_baskets
from plugin.domain.recommendations_next import customer_history
from tests.domain.recommendation_data import (
    THINGS,
    A,
    B,
    C,
    D,
    E,
    F,
    G,
    Order,
    guests,
    lines_of,
    picks,
)


def test_history_is_the_last_orders_within_the_cap_each_product_at_its_latest_weight() -> None:
    # given a customer's orders A; B; C and B; D; and, last, one over the size cap of 3
    orders: list[Order] = [
        (1, 1, 1.0, [A]), (2, 1, 2.0, [B]), (3, 1, 3.0, [C, B]), (4, 1, 4.0, [D]),
        (5, 1, 5.0, [E, F, G, A]),
    ]  # fmt: skip
    settings = RecommendationSettings(max_basket_products=3)
    baskets = build_baskets(lines_of(orders), THINGS, 10.0, settings)
    # when their history is taken (the last 3 orders, each older one weighing half the next)
    history = customer_history(baskets, settings)
    # then the oversized order is left out and so is A, four counted orders back; B weighs as
    # in its later order
    held = dict(zip(baskets.product_ids[history.item].tolist(), history.gain.tolist(), strict=True))
    assert held == {B: 0.5, C: 0.5, D: 1.0}


def test_bought_again_needs_enough_customers_who_bought_it_again_not_enough_owners() -> None:
    # given tea (A) bought twice by two customers and once by ten who never came back, and
    # a kettle (B) bought twice by three
    orders: list[Order] = []
    for c in (1, 2):
        orders += [(10 * c, c, 1.0, [A]), (10 * c + 1, c, 20.0, [A])]
    orders += [(100 + c, c, 1.0, [A]) for c in range(3, 13)]
    for c in (21, 22, 23):
        orders += [(10 * c, c, 1.0, [B]), (10 * c + 1, c, 20.0, [B])]
    # when the shop's products bought again are found (at least 3 customers by default)
    found = recommend(lines_of(orders), THINGS, 40.0, replenishment_days={})
    # then only the kettle is: the tea's twelve owners hold but two who bought it again
    assert found.bought_again.tolist() == [B]


@pytest.mark.parametrize(("guest_orders", "again"), [(3, [A]), (4, [])])
def test_bought_again_when_its_owners_buy_it_again_at_least_as_often_as_baskets_buy_it_new(
    guest_orders: int, again: list[int]
) -> None:
    # given three customers who bought tea (A), then tea, then a kettle (C), a day apart: their
    # later orders hold tea half the time; and guests who bought tea
    orders: list[Order] = []
    for c in (1, 2, 3):
        orders += [(10 * c, c, 1.0, [A]), (10 * c + 1, c, 3.0, [A]), (10 * c + 2, c, 5.0, [C])]
    orders += guests([[A]] * guest_orders, first_order=100)
    # when the products bought again are found
    found = recommend(lines_of(orders), THINGS, 40.0, replenishment_days={})
    # then tea is bought again while baskets buy it new no more often than that: 6 of 12 with
    # three guests (exactly as often), 7 of 13 with four
    assert found.bought_again.tolist() == again


@pytest.mark.parametrize(("gap", "again"), [(1.0, [A]), (0.5, [])])
def test_buying_again_counts_an_order_from_a_day_after_the_last(
    gap: float, again: list[int]
) -> None:
    # given three customers who bought tea, and tea again `gap` days later
    orders: list[Order] = []
    for c in (1, 2, 3):
        orders += [(10 * c, c, 1.0, [A]), (10 * c + 1, c, 1.0 + gap, [A])]
    # when the products bought again are found
    found = recommend(lines_of(orders), THINGS, 40.0, replenishment_days={})
    # then an order a whole day later buys it again; one half a day later is the same purchase
    assert found.bought_again.tolist() == again


def test_products_bought_new_only_in_baskets_over_the_cap_rank_as_never_bought() -> None:
    # given ten guest orders of A with three more products (over the cap of 3), three of G
    # alone, and a newcomer who bought B
    orders = guests([[A, C, D, E]] * 10 + [[G]] * 3, first_order=100)
    orders += [(200, 1, 1.0, [B])]
    settings = RecommendationSettings(max_basket_products=3)
    # when the newcomer's next products are ranked
    result = next_products(lines_of(orders), THINGS, 40.0, settings, replenishment_days={})
    # then G, bought new in three counted baskets, comes first; the rest, bought new in none
    # (or owned), follow by product id
    assert picks(result, 1) == [G, A, C, D, E]


def test_due_consumables_come_earliest_reorder_day_first_whatever_their_ids() -> None:
    # given a customer who bought coffee (A, every 30 days) on day 100 and tea (B, every 20)
    # on day 105
    orders: list[Order] = [(1, 1, 100.0, [A]), (2, 1, 105.0, [B])]
    intervals = {A: 30.0, B: 20.0}
    # when their next products are ranked on day 126, both due
    result = next_products(lines_of(orders), THINGS, 126.0, replenishment_days=intervals)
    # then the tea, expected on day 125, comes before the coffee, expected on day 130
    assert picks(result, 1)[:2] == [B, A]
    assert result.reorder_day[0, :2].tolist() == [125.0, 130.0]


def test_a_due_consumable_off_the_product_table_is_not_offered() -> None:
    # given a customer whose coffee (A, every 30 days) is due, but the shop no longer sells it
    orders: list[Order] = [(1, 1, 100.0, [A])]
    on_sale = ProductTable(
        np.array([B, C], dtype=np.int64), np.array(["Thing"] * 2), np.full(2, 10.0)
    )
    # when their next products are ranked
    result = next_products(lines_of(orders), on_sale, 135.0, replenishment_days={A: 30.0})
    # then the coffee is not offered, and nothing has a reorder day
    assert picks(result, 1) == [B, C]
    assert np.isnan(result.reorder_day).all()


def test_equal_scores_go_to_the_lower_product_id() -> None:
    # given five guest orders each of E, C and F, and a newcomer who bought A
    orders = [*guests([[F]] * 5 + [[C]] * 5 + [[E]] * 5, first_order=100), (200, 1, 1.0, [A])]
    # when the newcomer's next products are ranked
    result = next_products(lines_of(orders), THINGS, 40.0, replenishment_days={})
    # then the three, bought new as often, come by product id, before those bought new by none
    assert picks(result, 1) == [C, E, F, B, D]


def random_shop(seed: int) -> tuple[OrderLines, ProductTable]:
    """300 customers with 1-3 orders among 30 products, popularity falling in steps (products
    of one step equally likely), a first order of 1-11 products, so that many customers own
    most of the popular ones; 100 guest orders; coffee (1) and tea (2) consumables."""
    rng = np.random.default_rng(seed)
    weight = np.repeat([4.0, 2.0, 1.0], 10)
    weight /= weight.sum()
    orders: list[Order] = []
    for customer in range(1, 301):
        for k in range(int(rng.integers(1, 4))):
            size = int(rng.integers(1, 12)) if k == 0 else int(rng.integers(1, 4))
            basket = rng.choice(30, size=size, replace=False, p=weight) + 1
            orders.append((len(orders) + 1, customer, float(10 * k + rng.integers(0, 9)), basket))
    for _ in range(100):
        basket = rng.choice(30, size=int(rng.integers(1, 4)), replace=False, p=weight) + 1
        orders.append((len(orders) + 1, -1, float(rng.integers(0, 30)), basket))
    ids = np.arange(1, 31, dtype=np.int64)
    return lines_of(orders), ProductTable(ids, np.array(["t"] * 30), np.full(30, 10.0))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ranking_with_a_narrow_popular_cut_is_the_exact_ranking(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a shop of many products of equal popularity and customers owning many of them
    lines, table = random_shop(seed)
    settings = RecommendationSettings(max_basket_products=12)
    intervals = {1: 30.0, 2: 20.0}
    # when the customers are ranked against every product at once, and against the 13 most
    # popular first (widening for those whose last pick a product past the cut may beat)
    wide = next_products(lines, table, 60.0, settings, replenishment_days=intervals)
    monkeypatch.setattr(ranking, "ROWS_PER_CUSTOMER_BUDGET", 1)
    narrow = next_products(lines, table, 60.0, settings, replenishment_days=intervals)
    # then both rank alike
    assert np.array_equal(narrow.product_id, wide.product_id)
    assert np.array_equal(narrow.reorder_day, wide.reorder_day, equal_nan=True)


def test_ranked_again_wider_when_a_product_past_the_cut_may_take_the_last_slot() -> None:
    # given the first product past the cut (dense 3, popularity 0.25), and six customers' last
    # picks: none; a due consumable scoring less; scores below, equal (with a higher id, then a
    # lower one) and above
    signals = SimpleNamespace(popularity=np.array([0.5, 0.4, 0.3, 0.25]))
    last = ranking._Ranked(
        item=np.array([[-1], [7], [8], [9], [2], [5]]),
        due_day=np.array([[np.nan], [130.0], [np.nan], [np.nan], [np.nan], [np.nan]]),
        score=np.array([[np.nan], [0.1], [0.2], [0.25], [0.25], [0.3]]),
    )
    # when it is asked which of them a product past the cut could beat
    beaten = ranking._may_be_beaten(signals, last, 3)  # type: ignore[arg-type]
    # then the empty slot, the lower score and the tie lost to the lower id
    assert beaten.tolist() == [True, False, True, True, False, False]


def test_a_product_offered_again_scores_its_owners_share_whatever_their_history_points_to() -> None:
    # given 30 customers who bought a kettle (B), then tea (A), then tea again; 75 who bought
    # C, then D, and 75 F, then G; and customer 999, who bought tea, then 20 orders of E, then a
    # kettle
    orders: list[Order] = []
    for c in range(1, 31):
        orders += [(10 * c, c, 1.0, [B]), (10 * c + 1, c, 10.0, [A]), (10 * c + 2, c, 20.0, [A])]
    for c in range(31, 181):
        first, then = (C, D) if c <= 105 else (F, G)
        orders += [(10 * c, c, 1.0, [first]), (10 * c + 1, c, 10.0, [then])]
    orders += [(5000, 999, 1.0, [A]), (5099, 999, 200.0, [B])]
    orders += [(5000 + k, 999, 1.0 + 5 * k, [E]) for k in range(1, 21)]
    # when customer 999's next products are ranked
    result = recommend(lines_of(orders), THINGS, 300.0, replenishment_days={})
    # then tea, which its owners buy again, is offered back by customer 999's own share: none of
    # their 21 later orders held it, shrunk towards its owners' 30 of 51, (0 + 5 x 30/51) /
    # (21 + 5) = 0.11; not by tea's 31 new buyers in 412 baskets (0.08) plus the kettle's pull
    # towards tea in the next order, (30 - 30 x 60/231) / (30 + 50) = 0.28: C, D, F and G,
    # each bought new in 75 baskets (0.18), come first
    assert result.bought_again.tolist() == [A]
    assert picks(result.next_products, 999) == [C, D, F, G, A]
