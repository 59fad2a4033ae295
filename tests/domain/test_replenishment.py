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
    purchases = ProductPurchases(
        np.array([c for c, _, _ in rows], dtype=np.int64),
        np.full(len(rows), TEA, dtype=np.int64),
        np.array([d for _, d, _ in rows], dtype=np.float64),
        np.array([q for _, _, q in rows], dtype=np.int64),
    )
    # when intervals are learned, then every buyer is on one 30-day cycle a unit (unit-blind,
    # half the buyers said 30 and half 90: too irregular for a consumable)
    assert learn_replenishment(purchases, 400.0, ScoringSettings()) == {TEA: pytest.approx(30.0)}


def test_learn_replenishment_a_spread_of_exactly_the_limit_is_regular() -> None:
    # given 20 buyers with one gap each: 7 of 20 days, 6 of 30 and 7 of `longest`, so that the
    # quartiles are 20 and `longest` and the median 30
    def learned(longest: float) -> dict[int, float]:
        gaps = [20.0] * 7 + [30.0] * 6 + [longest] * 7
        rows = [(c, d) for c, gap in enumerate(gaps, 1) for d in (100.0, 100.0 + gap)]
        return learn_replenishment(purchases_of(rows), 400.0, ScoringSettings())

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
    purchases = ProductPurchases(
        np.array([c for c, _, _ in rows], dtype=np.int64),
        np.full(len(rows), TEA, dtype=np.int64),
        np.array([d for _, d, _ in rows], dtype=np.float64),
        np.array([q for _, _, q in rows], dtype=np.int64),
    )
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
