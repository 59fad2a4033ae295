"""Scoring no customer at all: a re-score whose customers have no counted order left."""

from __future__ import annotations

import numpy as np
import pytest

from plugin.domain.rfm_summary import compress_rfm
from plugin.domain.scoring import (
    CONFIDENCE_FITTED,
    FittedModels,
    OrderHistory,
    ScoringSettings,
    rescore,
    score_shop,
)
from tests.domain.scoring_data import history

AS_OF = 1000.0
SPEND = {"p": 6.0, "q": 3.8, "gamma": 15.0}
FITTED = {
    "bgnbd": FittedModels(
        "bgnbd", {"r": 0.24, "alpha": 4.4, "a": 0.79, "b": 2.4}, SPEND, -100.0, True,
        600, 150, CONFIDENCE_FITTED, "",
    ),
    "mbgnbd": FittedModels(
        "mbgnbd", {"r": 0.52, "alpha": 6.2, "a": 0.89, "b": 1.6}, None, -100.0, True,
        600, 150, CONFIDENCE_FITTED, "",
    ),
    "paretonbd": FittedModels(
        "paretonbd", {"r": 0.55, "alpha": 10.6, "s": 0.61, "beta": 11.7}, SPEND, -100.0, True,
        600, 150, CONFIDENCE_FITTED, "",
    ),
}  # fmt: skip
NO_ORDERS = OrderHistory(
    np.array([], dtype=np.int64), np.array([], dtype=np.float64), np.array([], dtype=np.float64)
)


def test_compress_rfm_no_rows_gives_no_rows() -> None:
    # given no customers
    empty = np.array([], dtype=np.float64)
    # when compressed
    rows = compress_rfm(empty, empty, empty)
    # then there is no row, and no customer to map back
    assert rows.frequency.size == rows.recency.size == rows.age.size == rows.weights.size == 0
    assert rows.inverse.size == 0


def _shop() -> OrderHistory:
    return history([(1, 900.0, 30.0), (1, 950.0, 50.0), (2, 990.0, 20.0), (3, 400.0, 70.0)])


@pytest.mark.parametrize("model", sorted(FITTED))
@pytest.mark.parametrize("discount_rate", [0.0, 0.1])
def test_rescore_fitted_no_counted_orders_gives_no_scores(model: str, discount_rate: float) -> None:
    # given a shop scored with fitted models, and a re-score batch with no counted order (its
    # customer's only order was cancelled), or one with orders only after as of
    settings = ScoringSettings(annual_discount_rate=discount_rate)
    reference = score_shop(_shop(), AS_OF, settings, FITTED[model]).reference
    later = history([(4, AS_OF + 3.0, 25.0)])
    for batch in (NO_ORDERS, later):
        # when re-scored
        scores = rescore(batch, AS_OF, settings, FITTED[model], reference)
        # then there is no customer, no prediction, no tag (and no error)
        assert len(scores) == 0
        assert scores.customer_id.size == scores.p_alive.size == scores.predicted_clv.size == 0
        assert scores.expected_next_order_day.size == scores.expected_purchases.size == 0
        assert scores.all_tags() == [] and scores.all_reasons() == []
        assert all(flag.size == 0 for flag in scores.flags.values())
