"""Replenishment intervals on hand-made purchase histories with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from plugin.domain.replenishment import learn_replenishment
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
    # and the refill is measured from the first order of the pair: 30 days
    learned = learn_replenishment(purchases_of(split + refill), 200.0, ScoringSettings())
    assert learned == {TEA: pytest.approx(30.0)}


def test_learn_replenishment_a_day_apart_is_a_gap() -> None:
    # given 20 customers who each bought tea daily at the same hour for five days
    rows = [(c, 10.5 + k) for c in range(1, 21) for k in range(5)]
    # then the one-day cycle is learned: only gaps under a day are merged
    assert learn_replenishment(purchases_of(rows), 20.0, ScoringSettings()) == {
        TEA: pytest.approx(1.0)
    }
