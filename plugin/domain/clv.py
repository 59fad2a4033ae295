"""Predicted customer lifetime value from a fitted repeat-purchase model and a spend model."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from plugin.domain.gamma_gamma import GammaGammaParams, expected_order_value
from plugin.domain.repeat_models import RepeatModel, RepeatParams, expected_repeat_purchases
from plugin.domain.rfm_summary import compress_rfm

FloatArray = NDArray[np.float64]
DAYS_PER_YEAR = 365.25
# Discounting is applied per step of about a month, as lifetimes' customer_lifetime_value does.
DAYS_PER_STEP = DAYS_PER_YEAR / 12.0


def predicted_clv(
    purchase_params: RepeatParams,
    spend_params: GammaGammaParams,
    frequency: ArrayLike,
    recency: ArrayLike,
    age: ArrayLike,
    monetary_value: ArrayLike,
    *,
    horizon_days: float,
    days_per_unit: float,
    model: RepeatModel = "bgnbd",
    annual_discount_rate: float = 0.0,
) -> FloatArray:
    """Expected spend in the next `horizon_days`, discounted to the calibration end.

        CLV = E[M | x, m_x] * sum_k (E[Y(t_k)] - E[Y(t_(k-1))]) / (1 + d)^(t_k / 365.25 days),

    with t_k = k H / K over K = ceil(H / (365.25/12)) monthly steps, E[Y(t)] the expected repeat
    purchases in (T, T+t] of the repeat-purchase `model` (for BG/NBD, FHL 2005 eq. 10), E[M]
    the Gamma-Gamma expected spend per order (Fader and Hardie 2013 eq. 5) and d the annual
    discount rate. This is the discrete discounting of Fader, Hardie and Lee (2005), "RFM and
    CLV: using iso-value curves for customer base analysis", JMR 42(4), and of lifetimes'
    `customer_lifetime_value`; spend and purchases multiply because the Gamma-Gamma model
    assumes they are independent. With d = 0 it is exactly E[M] E[Y(H)]. Money in the shop
    currency; recency and age in units of
    `days_per_unit` days.
    """
    if horizon_days < 0 or annual_discount_rate <= -1.0:
        raise ValueError("need horizon_days >= 0 and annual_discount_rate > -1")
    spend = expected_order_value(spend_params, frequency, monetary_value)
    # Purchases depend on (x, t_x, T) only: evaluate each distinct row once, then gather.
    rows = compress_rfm(frequency, recency, age)
    purchases = _discounted_purchases(
        purchase_params,
        rows.frequency,
        rows.recency,
        rows.age,
        horizon_days,
        days_per_unit,
        model,
        annual_discount_rate,
    )
    return np.asarray(spend * purchases[rows.inverse], dtype=np.float64)


def _discounted_purchases(
    params: RepeatParams,
    frequency: ArrayLike,
    recency: ArrayLike,
    age: ArrayLike,
    horizon_days: float,
    days_per_unit: float,
    model: RepeatModel,
    annual_discount_rate: float,
) -> FloatArray:
    x = np.asarray(frequency, dtype=np.float64)
    if annual_discount_rate == 0.0 or horizon_days == 0.0:
        horizon = horizon_days / days_per_unit
        return expected_repeat_purchases(params, model, horizon, x, recency, age)
    steps = max(1, math.ceil(horizon_days / DAYS_PER_STEP))
    total = np.zeros_like(x)
    previous = np.zeros_like(x)
    for k in range(1, steps + 1):
        day = horizon_days * k / steps
        horizon = day / days_per_unit
        cumulative = expected_repeat_purchases(params, model, horizon, x, recency, age)
        total += (cumulative - previous) / (1.0 + annual_discount_rate) ** (day / DAYS_PER_YEAR)
        previous = cumulative
    return total
