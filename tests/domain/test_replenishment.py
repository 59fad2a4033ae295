"""Replenishment intervals on hand-made purchase histories with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from plugin.domain.replenishment import learn_replenishment, reorder_status
from plugin.domain.scoring_types import ProductPurchases, ScoringSettings

TEA = 500


def purchases_of(rows: list[tuple[int, float]]) -> ProductPurchases:
    """(customer, day) purchases of TEA."""
    return ProductPurchases(
        np.array([c for c, _ in rows], dtype=np.int64),
        np.full(len(rows), TEA, dtype=np.int64),
        np.array([d for _, d in rows], dtype=np.float64),
    )


def purchases_in_units(rows: list[tuple[int, int, float, int]]) -> ProductPurchases:
    """(customer, product, day, units) purchases."""
    customer, product, day, units = zip(*rows, strict=True)
    return ProductPurchases(
        np.array(customer, dtype=np.int64),
        np.array(product, dtype=np.int64),
        np.array(day, dtype=np.float64),
        np.array(units, dtype=np.int64),
    )


def learned_from_one_gap_each(gaps: list[float]) -> dict[int, float]:
    """Intervals learned from one buyer per gap, who bought tea on day 100 and `gap` days later."""
    rows = [(c, d) for c, gap in enumerate(gaps, 1) for d in (100.0, 100.0 + gap)]
    return learn_replenishment(purchases_of(rows), 400.0, ScoringSettings())


def test_learn_replenishment_one_heavy_buyer_does_not_set_the_interval() -> None:
    # given one customer refilling weekly 60 times and 19 customers with one 60-day gap each
    rows = [(1, 1000.0 + 7 * k) for k in range(60)]
    rows += [(c, d) for c in range(2, 21) for d in (1400.0, 1460.0)]
    # when intervals are learned
    learned = learn_replenishment(purchases_of(rows), 1470.0, ScoringSettings())
    # then each buyer speaks once: the median of the 20 buyers' median gaps is 60 days
    # (pooling the 78 gaps gave the weekly buyer's 7)
    assert learned == {TEA: pytest.approx(60.0)}


def test_learn_replenishment_orders_under_a_day_apart_are_one_purchase() -> None:
    # given 20 customers who each ordered tea at 23:46 and again at 00:14 (two UTC dates, 0.02
    # days apart), and 20 more who did the same and then bought it again 30 days later
    split = [(c, d) for c in range(1, 21) for d in (100.99, 101.01)]
    refill = [(c, d) for c in range(21, 41) for d in (100.99, 101.01, 130.99)]
    # when intervals are learned, then a split order is no refill cycle
    assert learn_replenishment(purchases_of(split), 200.0, ScoringSettings()) == {}
    # and the refill is measured from the first order of the pair, whose two units lasted 30
    # days: 15 days a unit
    learned = learn_replenishment(purchases_of(split + refill), 200.0, ScoringSettings())
    assert learned == {TEA: pytest.approx(15.0)}


def test_learn_replenishment_a_day_apart_is_a_gap() -> None:
    # given 20 customers who each bought tea daily at the same hour for five days
    rows = [(c, 10.5 + k) for c in range(1, 21) for k in range(5)]
    # then the one-day cycle is learned: only gaps under a day are merged
    assert learn_replenishment(purchases_of(rows), 20.0, ScoringSettings()) == {
        TEA: pytest.approx(1.0)
    }


def test_learn_replenishment_a_gap_is_divided_by_the_units_bought() -> None:
    # given 12 customers who buy one bag of tea every 30 days and 12 who buy three every 90
    ones = [(c, 100.0 + 30 * k, 1) for c in range(1, 13) for k in range(3)]
    threes = [(c, 100.0 + 90 * k, 3) for c in range(13, 25) for k in range(3)]
    rows = ones + threes
    purchases = purchases_in_units([(c, TEA, d, q) for c, d, q in rows])
    # when intervals are learned, then every buyer is on one 30-day cycle a unit (unit-blind,
    # half the buyers said 30 and half 90: too irregular for a consumable)
    assert learn_replenishment(purchases, 400.0, ScoringSettings()) == {TEA: pytest.approx(30.0)}


def test_learn_replenishment_a_spread_of_exactly_the_limit_is_regular() -> None:
    # given 20 buyers with one gap each: 7 of 20 days, 6 of 30 and 7 of `longest`, so that the
    # quartiles are 20 and `longest` and the median 30
    def learned(longest: float) -> dict[int, float]:
        return learned_from_one_gap_each([20.0] * 7 + [30.0] * 6 + [longest] * 7)

    # then a spread of 15 days, exactly 0.5 x the median, is regular: a 30-day consumable
    assert learned(35.0) == {TEA: pytest.approx(30.0)}
    # and one of 16 days is not
    assert learned(36.0) == {}


def test_reorder_status_due_from_the_day_it_is_reached_until_the_day_it_lapses() -> None:
    # given a 30-day tea, one bag bought on day 900
    purchases = purchases_of([(1, 900.0)])
    customers = np.array([1], dtype=np.int64)

    def due(day: float) -> bool:
        return bool(
            reorder_status(purchases, customers, {TEA: 30.0}, day, ScoringSettings()).due[0]
        )

    # then it is due from 30 days on (reorder_grace 1), and no more from 90 (reorder_lapse 3)
    assert [due(day) for day in (929.5, 930.0, 989.5, 990.0)] == [False, True, True, False]


def test_reorder_status_the_last_purchase_lasts_its_units_times_the_interval() -> None:
    # given a 30-day tea: customer 1 bought one bag 40 days ago, customer 2 three bags 40 days
    # ago, customer 3 two orders of one bag and one of two on one evening 100 days ago (four
    # bags, rule 1), customer 4 one bag 100 days ago
    rows = [(1, 960.0, 1), (2, 960.0, 3), (3, 900.2, 1), (3, 900.5, 1), (3, 900.9, 2)]
    rows += [(4, 900.0, 1)]
    purchases = purchases_in_units([(c, TEA, d, q) for c, d, q in rows])
    customers = np.array([1, 2, 3, 4], dtype=np.int64)
    # when their status is asked on day 1000
    status = reorder_status(purchases, customers, {TEA: 30.0}, 1000.0, ScoringSettings())
    # then one bag is due after 30 days and three after 90, four bought on one evening after
    # 120 from the first order; one bag lapses after 3 x 30 days, four bags after 3 x 120
    assert status.due.tolist() == [True, False, False, False]
    assert status.due_day[:3].tolist() == pytest.approx([990.0, 1050.0, 1020.2])
    assert np.isnan(status.due_day[3])
    assert status.units[:3].tolist() == [1.0, 3.0, 4.0]
    assert status.last_day[:3].tolist() == pytest.approx([960.0, 960.0, 900.2])
    # and on day 1030 the four bags are due, still short of their lapse (1260.2)
    later = reorder_status(purchases, customers, {TEA: 30.0}, 1030.0, ScoringSettings())
    assert later.due.tolist() == [True, False, True, False]


def test_purchases_with_a_quantity_under_one_are_refused() -> None:
    # given a purchase of no units
    purchases = ProductPurchases(
        np.array([1, 1]), np.array([TEA, TEA]), np.array([1.0, 40.0]), np.array([1, 0])
    )
    # then learning refuses it, naming the quantities
    with pytest.raises(ValueError, match="quantities must be at least 1"):
        learn_replenishment(purchases, 50.0, ScoringSettings())


@pytest.mark.parametrize(
    ("customer", "product", "day", "quantity"),
    [
        ([1, 1], [TEA], [1.0, 40.0], None),
        ([[1, 1]], [[TEA, TEA]], [[1.0, 40.0]], None),
        ([1, 1], [TEA, TEA], [1.0, 40.0], [1]),
    ],
    ids=["lengths differ", "two-dimensional", "quantities of another length"],
)
def test_purchases_of_unequal_shapes_are_refused(
    customer: list[int], product: list[int], day: list[float], quantity: list[int] | None
) -> None:
    purchases = ProductPurchases(
        np.array(customer),
        np.array(product),
        np.array(day),
        None if quantity is None else np.array(quantity),
    )
    with pytest.raises(ValueError, match="1-d arrays of one length"):
        learn_replenishment(purchases, 50.0, ScoringSettings())


def test_purchases_on_days_that_are_not_finite_are_refused() -> None:
    purchases = purchases_of([(1, 1.0), (1, float("nan"))])
    with pytest.raises(ValueError, match="days must be finite"):
        learn_replenishment(purchases, 50.0, ScoringSettings())


def test_learn_replenishment_counts_a_purchase_on_the_as_of_day_and_none_after() -> None:
    # given 20 customers who bought tea on day 100 and again on day 130, and 20 more on day 100
    # and again on day 131
    rows = [(c, d) for c in range(1, 21) for d in (100.0, 130.0)]
    rows += [(c, d) for c in range(21, 41) for d in (100.0, 131.0)]
    # when intervals are learned as of day 130, then the refills of that day make the cycle
    # (those of day 131 have not happened yet: their buyers have no gap)
    assert learn_replenishment(purchases_of(rows), 130.0, ScoringSettings()) == {
        TEA: pytest.approx(30.0)
    }


def test_learn_replenishment_reads_each_customers_purchases_in_day_order() -> None:
    # given 20 customers who bought tea on days 100, 130 and 160, listed out of day order
    rows = [(c, d) for c in range(1, 21) for d in (130.0, 100.0, 160.0)]
    # then the 30-day cycle is learned as from the same rows in order
    assert learn_replenishment(purchases_of(rows), 200.0, ScoringSettings()) == {
        TEA: pytest.approx(30.0)
    }


def test_learn_replenishment_a_buyers_median_is_of_their_sorted_gaps_midway() -> None:
    # given 20 customers whose gaps were 40, 20 and 30 days (median 30), and 20 whose gaps were
    # 20 and 40 (median midway, 30)
    odd = [(c, d) for c in range(1, 21) for d in (100.0, 140.0, 160.0, 190.0)]
    even = [(c, d) for c in range(21, 41) for d in (100.0, 120.0, 160.0)]
    # then every buyer says 30 days: the product is a 30-day consumable
    for rows in (odd, even):
        assert learn_replenishment(purchases_of(rows), 200.0, ScoringSettings()) == {
            TEA: pytest.approx(30.0)
        }


def test_learn_replenishment_the_spread_is_from_the_lower_quartile() -> None:
    # given 21 buyers with one gap each: 5 of 5 days, one of `shortest`, 9 of 30 and 6 of 40, so
    # that the lower quartile (the sixth) is `shortest`, the median 30 and the upper quartile 40
    def learned(shortest: float) -> dict[int, float]:
        return learned_from_one_gap_each([5.0] * 5 + [shortest] + [30.0] * 9 + [40.0] * 6)

    # then a spread of 40 - 25, 0.5 x the median, is regular, and one of 40 - 24 is not
    assert learned(25.0) == {TEA: pytest.approx(30.0)}
    assert learned(24.0) == {}


def test_reorder_status_without_consumables_flags_no_one() -> None:
    # given tea bought 40 days ago, but no product learned as a consumable
    purchases = purchases_of([(1, 960.0)])
    status = reorder_status(purchases, np.array([1], dtype=np.int64), {}, 1000.0, ScoringSettings())
    # then no one is due, and no consumable stands behind the flag
    assert status.due.tolist() == [False]
    assert status.product_id.tolist() == [-1]
    assert np.isnan(status.due_day[0])


def test_reorder_status_only_of_the_customers_asked_and_their_purchases_so_far() -> None:
    # given a 30-day tea: customer 1 bought it 40 days ago, and again 10 days after the day
    # asked; customer 9 40 days ago; customer 7, not asked, 5 days ago
    purchases = purchases_of([(1, 960.0), (1, 1010.0), (7, 995.0), (9, 960.0)])
    status = reorder_status(
        purchases, np.array([1, 9], dtype=np.int64), {TEA: 30.0}, 1000.0, ScoringSettings()
    )
    # then customer 1 is due from their purchase of day 960 (the later one had not happened),
    # and so is customer 9 (customer 7's purchase is not theirs)
    assert status.due.tolist() == [True, True]
    assert status.last_day.tolist() == pytest.approx([960.0, 960.0])


def test_reorder_status_the_consumable_behind_the_flag() -> None:
    # given tea on a 30-day cycle and coffee (a higher id) on a 10-day one, a reorder due from
    # 0.8 of what a purchase lasts, and on day 1000: customer 1 bought 20 bags of tea on day 480
    # (due; expected on day 1080) and coffee on day 993 (not due; expected on day 1003);
    # customer 2 tea on day 965 and coffee on day 980 (both due; expected on days 995 and 990);
    # customer 3 tea on day 960 and coffee on day 980 (both due; both expected on day 990)
    coffee = TEA + 100
    rows = [(1, TEA, 480.0, 20), (1, coffee, 993.0, 1), (2, TEA, 965.0, 1)]
    rows += [(2, coffee, 980.0, 1), (3, TEA, 960.0, 1), (3, coffee, 980.0, 1)]
    purchases = purchases_in_units(rows)
    status = reorder_status(
        purchases,
        np.array([1, 2, 3], dtype=np.int64),
        {TEA: 30.0, coffee: 10.0},
        1000.0,
        ScoringSettings(reorder_grace=0.8),
    )
    # then the flag stands on a due consumable before one expected sooner, on the one expected
    # soonest among the due, and on the lower id between two expected on one day
    assert status.due.tolist() == [True, True, True]
    assert status.product_id.tolist() == [TEA, coffee, TEA]
    # and the expected day is the earliest of all
    assert status.due_day.tolist() == pytest.approx([1003.0, 990.0, 990.0])
