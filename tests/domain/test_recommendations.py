"""Recommendations on hand-made baskets with known answers, and their properties (Hypothesis)."""

from __future__ import annotations

import tracemalloc
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugin.domain.recommendations import (
    NO_PRODUCT,
    OrderLines,
    ProductTable,
    Recommendations,
    RecommendationSettings,
    bundle_candidates,
    frequently_bought_together,
    next_products,
    recommend,
    upsell,
)
from plugin.domain.replenishment import reorder_status
from plugin.domain.scoring_types import ProductPurchases, ScoringSettings
from tests.domain.recommendation_data import Order, guests, lines_of, picks

LOOSE = RecommendationSettings(fbt_min_support=1, fbt_min_lift=0.0, bundle_min_support=1)
# Hand-made baskets are too few for any count to clear the chance bound of frequently bought
# together and bundles: the tests of support, lift and ranking turn it off (signal_max_chance
# 1.0), and a support of 2 baskets asks for 2 customers, not 3; the tests of those rules
# themselves use the defaults.


def table_of(products: dict[int, tuple[str, float]]) -> ProductTable:
    ids = sorted(products)
    return ProductTable(
        np.array(ids, dtype=np.int64),
        np.array([products[i][0] for i in ids]),
        np.array([products[i][1] for i in ids], dtype=np.float64),
    )


# pairs of 2 baskets from 2 customers, at any lift, with the chance bound off
PAIRS_OF_TWO = RecommendationSettings(
    fbt_min_support=2, fbt_min_customers=2, fbt_min_lift=0.0, signal_max_chance=1.0
)
A, B, C, D, E = 11, 12, 13, 14, 15
TEN_BASKETS = [[A, B], [A, B], [A, B, C], [A, C], [B], [C], [D], [D], [A], [B, D]]
CATALOGUE = table_of({p: ("Thing", 10.0) for p in (A, B, C, D, E)})


def rows_of(links: object, product: int) -> list[tuple[int, int, float, float]]:
    """(partner, support, confidence, lift) of one product's links, in rank order."""
    mine = links.product_id == product  # type: ignore[attr-defined]
    return [
        (int(p), int(s), float(c), float(lift))
        for p, s, c, lift in zip(
            links.partner_id[mine],  # type: ignore[attr-defined]
            links.support[mine],  # type: ignore[attr-defined]
            links.confidence[mine],  # type: ignore[attr-defined]
            links.lift[mine],  # type: ignore[attr-defined]
            strict=True,
        )
    ]


# ---- frequently bought together ------------------------------------------------------------


def test_frequently_bought_together_ten_baskets_support_confidence_lift_by_hand() -> None:
    # given 10 baskets: n(A) = 5, n(B) = 5, n(C) = 3, n(AB) = 3, n(AC) = 2, n(BC) = 1
    lines = lines_of(guests(TEN_BASKETS))
    # when pairs need 2 baskets and any lift
    links = frequently_bought_together(
        lines,
        CATALOGUE,
        2.0,
        PAIRS_OF_TWO,
    )
    # then A's partners rank by lift: C (2 x 10 / (5 x 3) = 1.33) before B (3 x 10 / 25 = 1.2),
    # with confidence P(C | A) = 2/5 and P(B | A) = 3/5; C's partner A has P(A | C) = 2/3
    assert rows_of(links, A) == [
        (C, 2, pytest.approx(0.4), pytest.approx(4 / 3)),
        (B, 3, pytest.approx(0.6), pytest.approx(1.2)),
    ]
    assert rows_of(links, B) == [(A, 3, pytest.approx(0.6), pytest.approx(1.2))]
    assert rows_of(links, C) == [(A, 2, pytest.approx(2 / 3), pytest.approx(4 / 3))]
    assert links.partners_of(D) == ()
    assert links.rank[links.product_id == A].tolist() == [0, 1]


def test_frequently_bought_together_pair_below_min_support_is_left_out() -> None:
    # given the ten baskets (A and C together twice, A and B three times)
    lines = lines_of(guests(TEN_BASKETS))
    # when pairs need 3 baskets
    links = frequently_bought_together(
        lines,
        CATALOGUE,
        2.0,
        RecommendationSettings(fbt_min_support=3, fbt_min_lift=0.0, signal_max_chance=1.0),
    )
    # then only A-B is left
    assert links.partners_of(A) == (B,)
    assert links.partners_of(C) == ()


def test_frequently_bought_together_lines_with_nothing_left_are_left_out() -> None:
    # given the ten baskets, where every line of C has nothing left (refunded or removed)
    lines = lines_of(guests(TEN_BASKETS))
    lines.quantity[lines.product_id == C] = 0
    # when pairs need 2 baskets and any lift
    links = frequently_bought_together(
        lines,
        CATALOGUE,
        2.0,
        PAIRS_OF_TWO,
    )
    # then C is nobody's partner, as if it had not been bought
    assert links.partners_of(A) == (B,)
    assert links.partners_of(C) == ()


def test_frequently_bought_together_lift_below_threshold_is_left_out() -> None:
    # given the ten baskets (lift 1.2 for A-B, 1.33 for A-C) and a threshold of 1.25
    lines = lines_of(guests(TEN_BASKETS))
    found = frequently_bought_together(
        lines,
        CATALOGUE,
        2.0,
        RecommendationSettings(
            fbt_min_support=2, fbt_min_customers=2, fbt_min_lift=1.25, signal_max_chance=1.0
        ),
    )
    # then only A-C is left
    assert found.partners_of(A) == (C,)


def test_frequently_bought_together_basket_over_the_cap_is_skipped() -> None:
    # given the ten baskets plus one of 4 distinct products, and a cap of 3 products
    big = guests([[A, C, D, E]], first_order=100)
    capped = RecommendationSettings(
        fbt_min_support=2,
        fbt_min_customers=2,
        fbt_min_lift=0.0,
        max_basket_products=3,
        signal_max_chance=1.0,
    )
    # when counted with and without the big basket
    with_big = frequently_bought_together(
        lines_of(guests(TEN_BASKETS) + big), CATALOGUE, 2.0, capped
    )
    without = frequently_bought_together(lines_of(guests(TEN_BASKETS)), CATALOGUE, 2.0, capped)
    # then the big basket changes nothing (N stays 10; A-C stays at 2 baskets)
    assert rows_of(with_big, A) == rows_of(without, A)
    # and with a cap of 4 it counts: 11 baskets, n(A) = 6, n(C) = 4, A-C in 3 of them
    counted = frequently_bought_together(
        lines_of(guests(TEN_BASKETS) + big),
        CATALOGUE,
        2.0,
        RecommendationSettings(
            fbt_min_support=2,
            fbt_min_customers=2,
            fbt_min_lift=0.0,
            max_basket_products=4,
            signal_max_chance=1.0,
        ),
    )
    assert rows_of(counted, A) == [
        (C, 3, pytest.approx(0.5), pytest.approx(3 * 11 / (6 * 4))),
        (B, 3, pytest.approx(0.5), pytest.approx(3 * 11 / (6 * 5))),
    ]


def test_frequently_bought_together_duplicate_lines_and_quantities_count_once() -> None:
    # given each basket's lines twice, with quantity 3
    baskets = guests(TEN_BASKETS)
    doubled = [(o, c, d, products + products) for o, c, d, products in baskets]
    # then the pairs are those of the single lines
    once = frequently_bought_together(lines_of(baskets), CATALOGUE, 2.0, PAIRS_OF_TWO)
    twice = frequently_bought_together(lines_of(doubled, quantity=3), CATALOGUE, 2.0, PAIRS_OF_TWO)
    assert rows_of(once, A) == rows_of(twice, A)


def test_frequently_bought_together_at_most_ten_partners_best_lift_first() -> None:
    # given X bought with each of 12 partners in 2 baskets, partner i also alone in i baskets,
    # so that lift falls with i
    x = 1
    partners = list(range(100, 112))
    baskets = [[x, p] for p in partners for _ in range(2)]
    baskets += [[p] for i, p in enumerate(partners) for _ in range(i)]
    table = table_of({p: ("Thing", 5.0) for p in [x, *partners]})
    # when at most 10 per product
    links = frequently_bought_together(
        lines_of(guests(baskets)),
        table,
        2.0,
        PAIRS_OF_TWO,
    )
    # then X keeps the 10 with the highest lift, best first
    assert links.partners_of(x) == tuple(partners[:10])
    assert np.all(np.diff(links.lift[links.product_id == x]) < 0)


def test_frequently_bought_together_product_off_the_table_is_never_a_partner() -> None:
    # given the ten baskets and a table without C
    table = table_of({p: ("Thing", 10.0) for p in (A, B, D, E)})
    links = frequently_bought_together(
        lines_of(guests(TEN_BASKETS)),
        table,
        2.0,
        PAIRS_OF_TWO,
    )
    # then C appears nowhere, though its baskets still count (lift of A-B stays 1.2)
    assert C not in links.partner_id.tolist() + links.product_id.tolist()
    assert rows_of(links, A) == [(B, 3, pytest.approx(0.6), pytest.approx(1.2))]


# ---- bundles ---------------------------------------------------------------------------------


def test_bundle_candidates_pair_and_triple_above_chance_with_combined_price() -> None:
    # given A+B+C together in 10 baskets, A+B alone together in 2 more, D in every basket
    # (popular, so nothing with D is above chance) and 10 baskets of D alone
    baskets = [[A, B, C, D]] * 10 + [[A, B, D]] * 2 + [[D]] * 10
    table = table_of({A: ("x", 10.0), B: ("x", 20.5), C: ("x", 1.25), D: ("x", 3.0)})
    rules = RecommendationSettings(
        bundle_min_support=10, bundle_min_lift=1.5, signal_max_chance=1.0
    )
    # when bundles are sought
    bundles = bundle_candidates(lines_of(guests(baskets)), table, 2.0, rules)
    found = {
        tuple(int(p) for p in row if p != NO_PRODUCT): (int(n), float(lift), float(price))
        for row, n, lift, price in zip(
            bundles.product_ids, bundles.orders, bundles.lift, bundles.combined_price, strict=True
        )
    }
    # then A-B (12 of 22 baskets: lift 12 x 22 / (12 x 12) = 1.83), A-C, B-C (10 baskets, lift
    # 10 x 22 / (12 x 10) = 1.83) and A-B-C (lift 10 x 22^2 / (12 x 12 x 10) = 3.36; every
    # split 1.83) are in, nothing with D (lift 1); most orders first
    assert set(found) == {(A, B), (A, C), (B, C), (A, B, C)}
    assert found[(A, B)] == (12, pytest.approx(22 / 12), pytest.approx(30.5))
    assert found[(A, B, C)] == (10, pytest.approx(10 * 22**2 / (12 * 12 * 10)), 31.75)
    assert int(bundles.orders[0]) == 12
    assert np.all(np.diff(bundles.orders) <= 0)


def test_bundle_candidates_triple_whose_third_product_is_no_better_than_chance_is_left_out() -> (
    None
):
    # given A+B in 20 baskets, E in half of all 40 baskets whatever else is in them
    baskets = [[A, B, E]] * 10 + [[A, B]] * 10 + [[E]] * 10 + [[C]] * 10
    rules = RecommendationSettings(bundle_min_support=5, bundle_min_lift=1.5, signal_max_chance=1.0)
    bundles = bundle_candidates(lines_of(guests(baskets)), CATALOGUE, 2.0, rules)
    # then A-B is a bundle but A-B-E is not (E joins A-B at exactly its own rate), though its
    # lift against full independence is 10 x 40^2 / (20 x 20 x 20) = 2
    rows = {tuple(int(p) for p in r if p != NO_PRODUCT) for r in bundles.product_ids}
    assert (A, B) in rows
    assert (A, B, E) not in rows


@pytest.mark.parametrize(
    ("prices", "combined"),
    [((1.125, 2.25), "3.375"), ((0.335, 0.67), "1.005"), ((19.99, 0.01), "20.00")],
)
def test_bundle_candidates_combined_price_is_the_exact_decimal_sum(
    prices: tuple[float, float], combined: str
) -> None:
    # given A+B in 12 of 24 baskets, priced in a 3-decimal currency or on a half cent
    baskets = [[A, B]] * 12 + [[C]] * 12
    table = table_of({A: ("x", prices[0]), B: ("x", prices[1]), C: ("x", 1.0)})
    rules = RecommendationSettings(signal_max_chance=1.0)
    # when bundles are sought
    bundles = bundle_candidates(lines_of(guests(baskets)), table, 2.0, rules)
    # then the pair's combined price is the Decimal sum, with the prices' places
    assert bundles.combined_price.tolist() == [Decimal(combined)]
    assert isinstance(bundles.combined_price[0], Decimal)


def random_baskets(first_order: int, customers: int) -> list[Order]:
    """One order of three of products 3..40, drawn at random, for each of `customers`."""
    rng = np.random.default_rng(0)
    return [
        (first_order + c, 1000 + c, float(rng.integers(0, 360)), rng.choice(38, 3, False) + 3)
        for c in range(customers)
    ]


def test_pair_from_one_customer_is_neither_bought_together_nor_a_bundle() -> None:
    # given one customer who ordered products 1 and 2 together every month for a year, among
    # 300 customers' random orders of other products
    one = [(m + 1, 42, 30.0 * m, [1, 2]) for m in range(12)]
    orders = one + random_baskets(100, 300)
    table = table_of({p: ("t", 10.0) for p in range(1, 41)})
    found = recommend(lines_of(orders), table, 400.0, replenishment_days={})
    # then the pair is no pattern of the shop's (12 baskets, 1 customer)
    assert found.frequently_bought_together.partners_of(1) == ()
    assert found.bundles.orders.size == 0
    # and it is when twelve guest orders bring it, or when a customer is allowed to
    guests_too = [(m + 1, -1, 30.0 * m, [1, 2]) for m in range(12)] + random_baskets(100, 300)
    found = recommend(lines_of(guests_too), table, 400.0, replenishment_days={})
    assert found.frequently_bought_together.partners_of(1) == (2,)
    assert found.bundles.product_ids[:, :2].tolist() == [[1, 2]]
    one_allowed = RecommendationSettings(fbt_min_customers=1, bundle_min_customers=1)
    found = recommend(lines_of(orders), table, 400.0, one_allowed, replenishment_days={})
    assert found.frequently_bought_together.partners_of(1) == (2,)


def test_pairs_of_independent_purchases_are_neither_bought_together_nor_bundles() -> None:
    # given 300 customers' orders of three products drawn at random from 38, where some pairs
    # reach 5 baskets and a lift over 1.2 by chance
    orders = random_baskets(1, 300)
    table = table_of({p: ("t", 10.0) for p in range(3, 41)})
    lucky = frequently_bought_together(
        lines_of(orders), table, 400.0, RecommendationSettings(signal_max_chance=1.0)
    )
    assert lucky.product_id.size > 0
    # when recommended with the chance bound, then no pair is found
    found = recommend(lines_of(orders), table, 400.0, replenishment_days={})
    assert found.frequently_bought_together.product_id.size == 0
    assert found.bundles.orders.size == 0


def test_bundle_triple_of_one_customer_is_left_out_though_its_pairs_are_in() -> None:
    # given one customer who ordered products 1, 2 and 3 together 12 times; guests who bought
    # each two of them, 6 orders per pair; and 300 customers' random orders of other products
    orders = [(k + 1, 42, 10.0 * k, [1, 2, 3]) for k in range(12)]
    pairs = [[1, 2], [1, 3], [2, 3]]
    orders += [(20 + i, -1, 5.0, pairs[i % 3]) for i in range(18)]
    orders += random_baskets(100, 300)
    table = table_of({p: ("t", 10.0) for p in range(1, 41)})
    # when bundles are sought
    rows = bundle_candidates(lines_of(orders), table, 400.0).product_ids.tolist()
    # then each pair is a bundle (18 orders from 7 customers) but the triple (12 orders from
    # one customer) is not
    assert sorted(rows) == [[1, 2, NO_PRODUCT], [1, 3, NO_PRODUCT], [2, 3, NO_PRODUCT]]


# ---- upsell ----------------------------------------------------------------------------------

B1, B2, B3, M1 = 21, 22, 23, 24
BREWERS = table_of({B1: ("Brewers", 40.0), B2: ("Brewers", 80.0), B3: ("Brewers", 42.0)})
UPSELL_TABLE = table_of(
    {B1: ("Brewers", 40.0), B2: ("Brewers", 80.0), B3: ("Brewers", 42.0), M1: ("Mugs", 90.0)}
)


def upsell_orders() -> list[Order]:
    orders: list[Order] = []
    for c in (1, 2, 3):  # B1, then a pricier brewer, a slightly pricier one and a mug later
        orders += [(10 * c, c, 1.0, [B1]), (10 * c + 1, c, 5.0, [B2, B3, M1])]
    orders += [(40, 4, 1.0, [B2]), (41, 4, 5.0, [B1])]  # downwards: not an upsell of B1
    orders += [(50, 5, 1.0, [B2]), (51, 5, 5.0, [B1])]  # B2 before B1: not "went on to buy"
    orders += [(60, 6, 1.0, [B1, B2])]  # the same order: not later
    return orders


def test_upsell_pricier_same_type_bought_later_ranked_by_customers() -> None:
    # given three customers who moved from B1 (40) to B2 (80) and B3 (42), and others who did
    # not move up, or not later
    links = upsell(
        lines_of(upsell_orders()), UPSELL_TABLE, 10.0, RecommendationSettings(upsell_min_support=3)
    )
    # then B1's upsell is B2 alone: 3 customers of the 6 who bought B1 (lift 0.5 / (6 / 6):
    # every customer bought B2); B3 is not 10% dearer and the mug is another type
    assert rows_of(links, B1) == [(B2, 3, pytest.approx(0.5), pytest.approx(0.5))]
    assert links.partners_of(B2) == ()


def test_upsell_below_min_support_is_left_out() -> None:
    links = upsell(
        lines_of(upsell_orders()), UPSELL_TABLE, 10.0, RecommendationSettings(upsell_min_support=4)
    )
    assert links.product_id.size == 0


def test_upsell_products_without_type_have_none() -> None:
    # given the same orders and a table where the brewers have no type
    table = table_of({B1: ("", 40.0), B2: ("", 80.0), B3: ("", 42.0), M1: ("Mugs", 90.0)})
    links = upsell(
        lines_of(upsell_orders()), table, 10.0, RecommendationSettings(upsell_min_support=1)
    )
    assert links.product_id.size == 0


def test_upsell_free_products_are_not_pricier_than_each_other() -> None:
    # given two free samples of one type, five customers moving from each to the other, and a
    # paid product that three of them bought after a sample
    free, other_free, paid = 41, 43, 42
    table = table_of({free: ("Sample", 0.0), other_free: ("Sample", 0.0), paid: ("Sample", 5.0)})
    orders: list[Order] = []
    for c in range(1, 11):
        first, then = (free, other_free) if c <= 5 else (other_free, free)
        orders += [(10 * c, c, 1.0, [first]), (10 * c + 1, c, 5.0, [then])]
        if c <= 3:
            orders += [(10 * c + 2, c, 9.0, [paid])]
    links = upsell(lines_of(orders), table, 10.0, RecommendationSettings(upsell_min_support=3))
    # then neither free product is the other's upsell (0 >= 1.1 x 0, but 0 is not pricier);
    # the paid product is both samples' upsell
    assert links.partners_of(free) == (paid,)
    assert links.partners_of(other_free) == (paid,)
    assert links.partners_of(paid) == ()


def test_upsell_customer_owning_more_products_of_a_type_than_a_basket_takes_no_part() -> None:
    # given three customers who moved from B1 to B2, and a fourth who did too but also owns a
    # third brewer: three products of one type, each bought in an order of its own
    orders: list[Order] = [
        (10 * c + k, c, 1.0 + k, [b]) for c in (1, 2, 3) for k, b in enumerate([B1, B2])
    ]
    orders += [(70, 7, 1.0, [B1]), (71, 7, 5.0, [B2]), (72, 7, 6.0, [B3])]
    # when upsell needs four customers and a customer may own two products of a type, then
    # B1 -> B2 has three customers (customer 7 is left out)
    capped = RecommendationSettings(upsell_min_support=4, max_basket_products=2)
    assert upsell(lines_of(orders), BREWERS, 10.0, capped).product_id.size == 0
    # and with a cap of three, customer 7 counts: four customers
    counted = RecommendationSettings(upsell_min_support=4, max_basket_products=3)
    assert upsell(lines_of(orders), BREWERS, 10.0, counted).partners_of(B1) == (B2,)


def test_upsell_one_customer_owning_a_whole_catalogue_stays_small_in_memory() -> None:
    # given one customer who bought 3,000 teas, 40 per order (within the basket cap)
    ids = np.arange(1, 3001, dtype=np.int64)
    order = (ids - 1) // 40 + 1
    prices = np.linspace(5.0, 100.0, ids.size)
    lines = OrderLines(
        order, np.full(ids.size, 7), ids, order.astype(np.float64), np.ones_like(ids), prices
    )
    table = ProductTable(ids, np.array(["Tea"] * ids.size), prices)
    # when upsell is computed, then memory stays far below the 4.5 million pairs' (gigabytes)
    tracemalloc.start()
    try:
        upsell(lines, table, 1e6)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20


# ---- next products ---------------------------------------------------------------------------

COFFEE, MUG, KETTLE, TEA = 31, 32, 33, 34
SHOP = table_of(
    {COFFEE: ("Coffee", 14.0), MUG: ("Mugs", 16.0), KETTLE: ("Kettles", 60.0), TEA: ("Tea", 9.0)}
)
INTERVALS = {COFFEE: 30.0}


def coffee_orders() -> list[Order]:
    # customers 1-4 last bought coffee on days 100, 120, 112 and 0; customer 1 also owns a mug
    orders: list[Order] = [(1, 1, 100.0, [COFFEE, MUG]), (2, 2, 120.0, [COFFEE])]
    orders += [(3, 3, 112.0, [COFFEE]), (4, 4, 0.0, [COFFEE]), (5, -1, 50.0, [KETTLE, TEA])]
    return orders


def test_next_products_owned_one_off_is_never_offered_again() -> None:
    # given customer 1 who owns a mug and the coffee
    result = next_products(lines_of(coffee_orders()), SHOP, 135.0, replenishment_days=INTERVALS)
    # then the mug is not among their picks
    assert MUG not in picks(result, 1)
    # and the guest order gave no customer row
    assert result.customer_id.tolist() == [1, 2, 3, 4]


def test_next_products_due_consumable_comes_back_first_with_its_reorder_day() -> None:
    # given coffee every 30 days and, as of day 135, purchases 35 (due), 15 (not yet), 23
    # (within the 0.3 x 30 = 9 days' lead) and 135 days ago (lapsed: 3 x 30 = 90)
    result = next_products(lines_of(coffee_orders()), SHOP, 135.0, replenishment_days=INTERVALS)
    # then coffee comes first for customers 1 and 3, at their expected reorder days
    assert picks(result, 1)[0] == COFFEE
    assert result.reorder_day[0, 0] == pytest.approx(130.0)
    assert picks(result, 3)[0] == COFFEE
    assert result.reorder_day[2, 0] == pytest.approx(142.0)
    # and not for customers 2 and 4; no other pick has a reorder day
    assert COFFEE not in picks(result, 2)
    assert COFFEE not in picks(result, 4)
    assert np.isfinite(result.reorder_day).sum() == 2


def test_next_products_without_lead_follow_the_reorder_due_flag_exactly() -> None:
    # given no lead
    result = next_products(
        lines_of(coffee_orders()),
        SHOP,
        135.0,
        RecommendationSettings(reorder_lead=0.0),
        replenishment_days=INTERVALS,
    )
    # then coffee comes back exactly for the customers the reorder-due flag holds due
    who = np.array([1, 2, 3, 4], dtype=np.int64)
    purchases = ProductPurchases(who, np.full(4, COFFEE), np.array([100.0, 120.0, 112.0, 0.0]))
    flag = reorder_status(purchases, who, INTERVALS, 135.0, ScoringSettings())
    offered = [COFFEE in picks(result, int(c)) for c in who]
    assert offered == flag.due.tolist() == [True, False, False, False]


def test_next_products_consumable_bought_by_the_bag_lasts_its_units() -> None:
    # given the same purchases of two bags each, and customer 6's two bags on day 90
    lines = lines_of([*coffee_orders(), (6, 6, 90.0, [COFFEE])], quantity=2)
    result = next_products(lines, SHOP, 135.0, replenishment_days=INTERVALS)
    # then customer 4's coffee (bought 135 days ago, lapsing after 2 x 3 x 30) is due: two
    # bags from day 0 are expected on day 60; customer 6's, expected on day 150, is seen 0.3 x
    # 60 days ahead; the others' last 60 days from their purchase
    assert COFFEE not in picks(result, 1) + picks(result, 2) + picks(result, 3)
    assert picks(result, 4)[0] == COFFEE
    assert result.reorder_day[3, 0] == pytest.approx(60.0)
    assert picks(result, 6)[0] == COFFEE
    assert result.reorder_day[4, 0] == pytest.approx(150.0)
    assert np.isfinite(result.reorder_day).sum() == 2


def test_next_products_customer_who_owns_everything_is_padded() -> None:
    # given a customer who bought every product but the coffee, which is not due
    orders: list[Order] = [(1, 1, 120.0, [COFFEE, MUG, KETTLE, TEA])]
    result = next_products(lines_of(orders), SHOP, 135.0, replenishment_days=INTERVALS)
    # then there is nothing to offer: the row is all padding
    assert result.product_id.tolist() == [[NO_PRODUCT] * 5]
    assert np.isnan(result.reorder_day).all()


def test_next_products_follow_what_customers_bought_next() -> None:
    # given 60 customers who bought a kettle and then tea in their next order, 120 who bought
    # coffee twice, 90 guest orders of a mug, and a newcomer with a kettle
    orders: list[Order] = []
    for c in range(1, 61):
        orders += [(2 * c, c, 1.0, [KETTLE]), (2 * c + 1, c, 20.0, [TEA])]
    for c in range(100, 220):
        orders += [(2 * c, c, 2.0, [COFFEE]), (2 * c + 1, c, 22.0, [COFFEE])]
    orders += guests([[MUG]] * 90, first_order=1000)
    orders += [(2000, 999, 30.0, [KETTLE])]
    result = next_products(lines_of(orders), SHOP, 40.0, replenishment_days={})
    # then the newcomer is offered tea before the more popular mug and coffee: of 451 baskets,
    # 60 bought tea new (0.13), 90 the mug (0.20) and 120 coffee (0.27), but tea follows a
    # kettle in 60 of 60 next orders against 60 of 180 overall, a gain of
    # (60 - 20) / (60 + 50) = 0.36
    assert picks(result, 999) == [TEA, COFFEE, MUG]


def test_next_products_rank_by_new_buyers_not_by_repeat_baskets() -> None:
    # given 20 customers who bought coffee four times each (80 baskets, 20 of them new buyers)
    # and 50 guests who bought a mug once, and a newcomer with a kettle
    orders: list[Order] = []
    for c in range(1, 21):
        orders += [(10 * c + k, c, 10.0 * k, [COFFEE]) for k in range(4)]
    orders += guests([[MUG]] * 50, first_order=1000)
    orders += [(2000, 999, 30.0, [KETTLE])]
    result = next_products(lines_of(orders), SHOP, 40.0, replenishment_days={})
    # then the mug, bought new 50 times, comes before the coffee, bought new 20 times
    assert picks(result, 999)[:2] == [MUG, COFFEE]


def test_next_products_offer_again_what_customers_buy_again_by_their_own_share() -> None:
    # given tea bought again by three customers (1 in 2 of 3 later orders, 2 in 1 of 3, 3 in 1
    # of 1), each of whose other orders held a kettle and nothing more, and 12 guest mugs
    orders: list[Order] = [
        (10, 1, 1.0, [TEA]), (11, 1, 5.0, [TEA]), (12, 1, 9.0, [KETTLE]), (13, 1, 13.0, [TEA]),
        (20, 2, 1.0, [TEA]), (21, 2, 5.0, [KETTLE]), (22, 2, 9.0, [KETTLE]), (23, 2, 13.0, [TEA]),
        (30, 3, 1.0, [TEA]), (31, 3, 5.0, [TEA]),
    ]  # fmt: skip
    orders += guests([[MUG]] * 12, first_order=1000)
    found = recommend(lines_of(orders), SHOP, 40.0, replenishment_days={})
    # then tea is bought again (4 later orders with it of 7, 0.57, against 3 of 22 baskets
    # buying it new); the kettle, bought again by one customer, is a one-off
    assert found.bought_again.tolist() == [TEA]
    result = found.next_products
    # and each tea drinker's own share, shrunk towards 4/7 as if 5 more orders had been seen,
    # ranks tea against the mug, bought new in 12 of 22 baskets (0.55): customer 1's
    # (2 + 5 x 4/7) / (3 + 5) = 0.61 and customer 3's (1 + 5 x 4/7) / (1 + 5) = 0.64 come
    # before it, customer 2's (1 + 5 x 4/7) / (3 + 5) = 0.48 after it
    assert picks(result, 1) == [TEA, MUG, COFFEE]
    assert picks(result, 2) == [MUG, TEA, COFFEE]
    # and no one is offered the kettle they own; customer 3, who has none, is (2 of 22 new)
    assert picks(result, 3) == [TEA, MUG, KETTLE, COFFEE]


def test_next_products_owners_buying_less_than_newcomers_make_a_one_off() -> None:
    # given 30 customers who bought a kettle and then two orders of tea, three of whom bought a
    # kettle again in a third order
    orders: list[Order] = []
    for c in range(1, 31):
        orders += [(10 * c, c, 1.0, [KETTLE]), (10 * c + 1, c, 5.0, [TEA])]
        orders += [(10 * c + 2, c, 9.0, [TEA])]
        if c <= 3:
            orders += [(10 * c + 3, c, 13.0, [KETTLE])]
    result = recommend(lines_of(orders), SHOP, 40.0, replenishment_days={})
    # then the kettle is a one-off: 3 of its owners' 63 later orders hold it (0.05), while
    # 30 of 93 baskets bought it new (0.32); tea, in 30 of its owners' 33 later orders, is not
    assert result.bought_again.tolist() == [TEA]
    assert all(KETTLE not in picks(result.next_products, c) for c in range(1, 31))


def test_next_products_many_customers_rank_past_the_popular_cut_exactly() -> None:
    # given 160,000 customers with one order each of P1..P15 (each product in 50% down to 22%
    # of them, so that only the 13 most popular are scored per customer at first), a product R
    # that four customers bought twice, and customer 1, who bought R once and then P1..P9
    rng = np.random.default_rng(1)
    popular = np.arange(101, 116, dtype=np.int64)
    r, many = 900, 160_000
    present = rng.random((many, popular.size)) < np.linspace(0.5, 0.22, popular.size)
    present[~present.any(axis=1), 0] = True
    who, which = np.nonzero(present)
    order_id = np.concatenate((who + 1, np.arange(8) + 200_001, np.arange(10) + 300_001))
    customer = np.concatenate((who + 100_000, [2, 2, 3, 3, 4, 4, 5, 5], np.ones(10)))
    product = np.concatenate((popular[which], np.full(8, r), [r], popular[:9]))
    day = np.concatenate((np.ones(who.size), np.tile([2.0, 3.0], 4), np.arange(2.0, 12.0)))
    lines = OrderLines(
        order_id.astype(np.int64),
        customer.astype(np.int64),
        product,
        day,
        np.ones(day.size, dtype=np.int64),
        np.full(day.size, 10.0),
    )
    ids = np.append(popular, r)
    table = ProductTable(ids, np.array(["t"] * ids.size), np.full(ids.size, 10.0))
    # when next products are ranked
    result = next_products(lines, table, 100.0, replenishment_days={})
    # then customer 1, owning the one-offs P1..P9, is offered P10..P14, each in over a fifth
    # of the baskets, not R, whose buy-again score is about 0.1 (0 of 9 later orders, shrunk
    # towards its owners' 4 of 13)
    assert picks(result, 1) == popular[9:14].tolist()


def test_next_products_lines_after_as_of_are_ignored() -> None:
    early = next_products(lines_of(coffee_orders()), SHOP, 135.0, replenishment_days=INTERVALS)
    later = [*coffee_orders(), (9, 1, 200.0, [KETTLE])]
    same = next_products(lines_of(later), SHOP, 135.0, replenishment_days=INTERVALS)
    assert np.array_equal(early.product_id, same.product_id)


def test_recommend_no_lines_gives_empty_results() -> None:
    # given no order lines at all
    result = recommend(lines_of([]), SHOP, 10.0, replenishment_days={})
    # then every result is empty
    assert result.frequently_bought_together.product_id.size == 0
    assert result.bundles.orders.size == 0
    assert result.upsell.product_id.size == 0
    assert result.next_products.customer_id.size == 0
    assert result.next_products.product_id.shape == (0, 5)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("fbt_min_support", 0),
        ("fbt_per_product", 0),
        ("fbt_per_product", 11),
        ("upsell_per_product", 11),
        ("max_basket_products", 1),
        ("bundle_min_lift", -1.0),
        ("upsell_min_price_ratio", 0.9),
        ("history_decay", 0.0),
        ("reorder_lead", 1.0),
        ("signal_max_chance", 0.0),
        ("next_products", 0),
    ],
)
def test_recommendation_settings_out_of_range_is_refused_by_name(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        RecommendationSettings(**{field: value})  # type: ignore[arg-type]


def test_order_lines_of_different_lengths_are_refused() -> None:
    lines = lines_of(guests(TEN_BASKETS))
    broken = OrderLines(
        lines.order_id[:-1],
        lines.customer_id,
        lines.product_id,
        lines.day,
        lines.quantity,
        lines.unit_price,
    )
    with pytest.raises(ValueError, match="one length"):
        recommend(broken, CATALOGUE, 2.0, replenishment_days={})


# ---- properties ------------------------------------------------------------------------------

PRODUCTS = list(range(1, 9))
PROPERTY_TABLE = table_of({p: ("odd" if p % 2 else "even", float(5 * p)) for p in PRODUCTS})
PROPERTY_INTERVALS = {1: 10.0, 2: 25.0}
PROPERTY_SETTINGS = RecommendationSettings(
    fbt_min_support=1,
    fbt_min_lift=0.0,
    fbt_per_product=10,  # 8 products: at most 7 partners, none left out
    bundle_min_support=1,
    bundle_min_lift=0.0,
    upsell_min_support=1,
    sequence_min_support=1,
    signal_max_chance=1.0,
    max_basket_products=5,
)
order_rows = st.lists(
    st.tuples(
        st.integers(-1, 5),
        st.integers(0, 60),
        st.lists(st.sampled_from(PRODUCTS), min_size=1, max_size=7),
    ),
    min_size=1,
    max_size=40,
)


def orders_of(rows: list[tuple[int, int, list[int]]]) -> list[Order]:
    return [(i + 1, c, float(d), products) for i, (c, d, products) in enumerate(rows)]


def run(lines: OrderLines) -> Recommendations:
    return recommend(lines, PROPERTY_TABLE, 60.0, PROPERTY_SETTINGS, PROPERTY_INTERVALS)


def same(first: object, second: object) -> bool:
    for name in vars(first):
        a, b = getattr(first, name), getattr(second, name)
        if isinstance(a, np.ndarray):
            if not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                return False
        elif a != b:
            return False
    return True


@settings(max_examples=60, deadline=None)
@given(order_rows, st.randoms(use_true_random=False))
def test_recommend_any_row_order_gives_the_same_results(
    rows: list[tuple[int, int, list[int]]], random: object
) -> None:
    # given order lines and the same lines shuffled
    lines = lines_of(orders_of(rows))
    shuffle = list(range(lines.order_id.size))
    random.shuffle(shuffle)  # type: ignore[attr-defined]
    shuffled = OrderLines(*(getattr(lines, f)[shuffle] for f in vars(lines)))
    # when both are recommended on, then every result is identical
    first, second = run(lines), run(shuffled)
    assert same(first.frequently_bought_together, second.frequently_bought_together)
    assert same(first.bundles, second.bundles)
    assert same(first.upsell, second.upsell)
    assert same(first.next_products, second.next_products)


@settings(max_examples=60, deadline=None)
@given(order_rows)
def test_frequently_bought_together_lift_symmetric_confidence_a_probability(
    rows: list[tuple[int, int, list[int]]],
) -> None:
    links = run(lines_of(orders_of(rows))).frequently_bought_together
    found = {
        (int(a), int(b)): (float(c), float(lift), int(s))
        for a, b, c, lift, s in zip(
            links.product_id,
            links.partner_id,
            links.confidence,
            links.lift,
            links.support,
            strict=True,
        )
    }
    for (a, b), (confidence, lift, support) in found.items():
        assert (b, a) in found
        assert found[(b, a)][1] == pytest.approx(lift)
        assert found[(b, a)][2] == support
        assert 0.0 < confidence <= 1.0
        assert lift > 0


@settings(max_examples=60, deadline=None)
@given(order_rows)
def test_next_products_never_an_owned_one_off(
    rows: list[tuple[int, int, list[int]]],
) -> None:
    orders = orders_of(rows)
    found = run(lines_of(orders))
    result, again = found.next_products, set(found.bought_again.tolist())
    assert not again & set(PROPERTY_INTERVALS)
    owned: dict[int, set[int]] = {}
    for _, customer, _, products in orders:
        if customer >= 0:
            owned.setdefault(customer, set()).update(products)
    assert result.customer_id.tolist() == sorted(owned)
    for row, customer in enumerate(result.customer_id.tolist()):
        chosen = [int(p) for p in result.product_id[row] if p != NO_PRODUCT]
        assert len(chosen) == len(set(chosen))
        for slot, product in enumerate(chosen):
            due = bool(np.isfinite(result.reorder_day[row, slot]))
            if due:
                assert product in owned[customer] and product in PROPERTY_INTERVALS
            elif product in owned[customer]:
                assert product in again
        # a customer is short of picks only when every product left is owned
        if len(chosen) < PROPERTY_SETTINGS.next_products:
            assert set(PRODUCTS) - set(chosen) <= owned[customer]
