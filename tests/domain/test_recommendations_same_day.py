"""Orders minutes apart are one purchase: not buying again, not going on to buy; and a
consumable the reorder-due flag calls due stays among the next products until it lapses."""

import numpy as np

from plugin.domain.recommendations import (
    OrderLines,
    ProductTable,
    RecommendationSettings,
    recommend,
    upsell,
)
from plugin.domain.replenishment import reorder_status
from plugin.domain.scoring_types import ProductPurchases, ScoringSettings

SOFA, MUG, TEA, PEN = 1, 2, 3, 4
BEANS = 1


def _order_lines(rows: list[tuple[int, int, int, float, int, float]]) -> OrderLines:
    a = np.array(rows, dtype=float)
    return OrderLines(
        a[:, 0].astype(np.int64),
        a[:, 1].astype(np.int64),
        a[:, 2].astype(np.int64),
        a[:, 3],
        a[:, 4].astype(np.int64),
        a[:, 5],
    )


def _shop_with_duplicate_sofa_checkouts(gap_days: float) -> OrderLines:
    rows: list[tuple[int, int, int, float, int, float]] = []

    def order(customer: int, day: float, products: list[int]) -> None:
        for product in products:
            rows.append((len(rows) + 1, customer, product, day, 1, 100.0))

    for customer in (1, 2, 3):
        order(customer, 10.0, [SOFA])
        order(customer, 10.0 + gap_days, [SOFA])
    order(4, 5.0, [SOFA])
    order(4, 40.0, [MUG])
    for customer in range(10, 60):
        order(customer, 20.0 + customer, [MUG, TEA if customer % 2 else PEN])
    return _order_lines(rows)


def _next_for(lines: OrderLines, customer_id: int) -> list[int]:
    products = ProductTable(
        np.array([SOFA, MUG, TEA, PEN]),
        np.array(["f", "k", "k", "o"], dtype=object),
        np.array([900.0, 10.0, 5.0, 2.0]),
    )
    found = recommend(lines, products, 100.0, RecommendationSettings(), replenishment_days={})
    nexts = found.next_products
    row = int(np.flatnonzero(nexts.customer_id == customer_id)[0])
    return [int(p) for p in nexts.product_id[row].tolist()]


def test_buy_again_same_day_duplicate_checkouts_one_off_not_reoffered() -> None:
    # given: three customers who each checked out the sofa twice, ten minutes apart
    lines = _shop_with_duplicate_sofa_checkouts(gap_days=0.007)
    # when: the next products are computed for another sofa owner
    picks = _next_for(lines, 4)
    # then: the sofa stays a one-off, not offered again
    assert SOFA not in picks


def test_buy_again_orders_days_apart_product_reoffered() -> None:
    # given: the same three customers bought the sofa again three days later
    lines = _shop_with_duplicate_sofa_checkouts(gap_days=3.0)
    # when: the next products are computed for another sofa owner
    picks = _next_for(lines, 4)
    # then: the sofa is bought again, so it is offered to its owner
    assert SOFA in picks


def test_next_products_flagged_due_before_lapse_consumable_kept() -> None:
    # given: a bag of beans (30-day interval) bought 85 days ago: due, and not yet lapsed
    # (lapse at 3 intervals) but lapsed 0.3 of an interval ahead
    scoring = ScoringSettings()
    interval, as_of = 30.0, 85.0
    rows = [(1, 7, BEANS, 0.0, 1, 12.0)]
    rows += [(100 + c, c, MUG, 10.0 + c, 1, 8.0) for c in range(10, 30)]
    lines = _order_lines(rows)
    purchases = ProductPurchases(np.array([7]), np.array([BEANS]), np.array([0.0]))
    flag = reorder_status(purchases, np.array([7]), {BEANS: interval}, as_of, scoring)
    assert flag.due[0]
    products = ProductTable(
        np.array([BEANS, MUG]),
        np.array(["coffee", "kit"], dtype=object),
        np.array([12.0, 8.0]),
    )
    # when: the next products are computed
    found = recommend(lines, products, as_of, RecommendationSettings(), {BEANS: interval}, scoring)
    # then: the beans the flag calls due are among them
    nexts = found.next_products
    row = int(np.flatnonzero(nexts.customer_id == 7)[0])
    assert BEANS in nexts.product_id[row].tolist()


def _upsell_shop(gap_days: float) -> OrderLines:
    rows: list[tuple[int, int, int, float, int, float]] = []
    for customer in (1, 2, 3):
        rows.append((len(rows) + 1, customer, 1, 10.0, 1, 10.0))
        rows.append((len(rows) + 1, customer, 2, 10.0 + gap_days, 1, 20.0))
    return _order_lines(rows)


def _upsell_pairs(lines: OrderLines) -> list[tuple[int, int]]:
    products = ProductTable(
        np.array([1, 2]), np.array(["coffee", "coffee"], dtype=object), np.array([10.0, 20.0])
    )
    links = upsell(lines, products, 100.0, RecommendationSettings())
    return list(zip(links.product_id.tolist(), links.partner_id.tolist(), strict=True))


def test_upsell_second_checkout_minutes_later_not_counted() -> None:
    # given: three customers who bought the small bag, then the large one 15 minutes later
    lines = _upsell_shop(gap_days=0.01)
    # when: upsell links are computed
    pairs = _upsell_pairs(lines)
    # then: none, since no one went on to buy the large bag
    assert pairs == []


def test_upsell_pricier_product_days_later_counted() -> None:
    # given: three customers who bought the small bag, then the large one two days later
    lines = _upsell_shop(gap_days=2.0)
    # when: upsell links are computed
    pairs = _upsell_pairs(lines)
    # then: the large bag is the small bag's upsell
    assert pairs == [(1, 2)]
