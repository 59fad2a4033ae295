"""Predicted CLV: undiscounted identity, discounting, horizon and extremes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugin.domain.bgnbd import BetaGeoParams, expected_purchases
from plugin.domain.clv import predicted_clv
from plugin.domain.gamma_gamma import GammaGammaParams, expected_order_value

PURCHASES = BetaGeoParams(r=0.243, alpha=4.414, a=0.793, b=2.426)  # CDNOW, weeks
SPEND = GammaGammaParams(p=6.25, q=3.74, gamma=15.44)
X, TX, T, M = (
    np.array([0, 2, 10.0]),
    np.array([0, 20, 35.0]),
    np.array([38, 38, 38.0]),
    np.array([0, 20, 45.0]),
)


def clv(horizon_days: float, rate: float = 0.0) -> np.ndarray:
    return predicted_clv(
        PURCHASES,
        SPEND,
        X,
        TX,
        T,
        M,
        horizon_days=horizon_days,
        days_per_unit=7.0,
        annual_discount_rate=rate,
    )


def test_predicted_clv_no_discount_is_spend_times_purchases() -> None:
    expected = expected_order_value(SPEND, X, M) * expected_purchases(PURCHASES, 52.0, X, TX, T)
    np.testing.assert_allclose(clv(364.0), expected, rtol=1e-12)


def test_predicted_clv_discount_lowers_value_by_less_than_a_year_of_it() -> None:
    # given a 10% annual rate over one year
    undiscounted, discounted = clv(365.25), clv(365.25, 0.10)
    # then every customer is worth less, but more than if all spend came at the year's end
    assert np.all(discounted < undiscounted)
    assert np.all(discounted > undiscounted / 1.10)


def test_predicted_clv_zero_horizon_is_zero() -> None:
    assert clv(0.0).tolist() == [0.0, 0.0, 0.0]


def test_predicted_clv_bad_rate_raises() -> None:
    with pytest.raises(ValueError):
        clv(365.0, -1.0)


@settings(max_examples=50, deadline=None)
@given(st.floats(0, 3650), st.floats(0, 0.5))
def test_predicted_clv_any_horizon_and_rate_non_negative_and_finite(
    horizon: float, rate: float
) -> None:
    values = predicted_clv(
        PURCHASES,
        SPEND,
        [500.0, 0.0],
        [700.0, 0.0],
        [714.0, 0.0],
        [1e5, 0.0],
        horizon_days=horizon,
        days_per_unit=7.0,
        annual_discount_rate=rate,
    )
    assert np.all(np.isfinite(values)) and np.all(values >= 0)
