"""Per-customer predictions: from the fitted models, or from transparent rules for small shops.

Fitted (times in days, money in shop currency):
- P(alive) and expected repeat purchases E[Y(H)] over the horizon H from the chosen
  repeat-purchase model (`plugin.domain.repeat_models`), evaluated once per distinct (x, t_x, T).
- Expected next-order day: the day by which the customer has more likely than not ordered again,
  as_of + w with P(alive) (1 - ((alpha+T)/(alpha+T+w))^(r+x)) = 1/2, i.e.
  w = (alpha+T) (s^(-1/(r+x)) - 1), s = 1 - 1/(2 P(alive)); NaN when P(alive) <= 1/2. While alive
  the purchase rate has posterior Gamma(r+x, alpha+T) (FHL 2005 appendix) and BG/NBD-family
  customers only drop out right after a purchase, so the wait is Lomax; for Pareto/NBD, which
  can drop out during the wait, this is the same formula and errs on the early side.
- Expected spend per purchase (a customer-day, as the repeat model counts purchases):
  Gamma-Gamma E[M | x, m_x] (Fader and Hardie 2013 eq. 5), or, when the spend model is not
  fitted, the customer's own net spend / purchase days (not per order: two orders of one day
  are one purchase of their sum).
- Predicted CLV = E[M] P(alive) sum_k (E_alive(t_k) - E_alive(t_(k-1))) / (1+d)^(t_k/365.25),
  monthly steps t_k as in `plugin.domain.clv.predicted_clv` (the same formula; with d = 0 it is
  E[M] E[Y(H)]).

Rules (confidence "rules": too few customers or repeat buyers, or no fit converged):
- P(alive) falls linearly from 1 at the last order to 0 at the win-back point (the earlier of
  win_back_days and the rhythm rule's day): max(0, 1 - days since last order / that point).
- Expected purchases = orders in the last 12 months x H / 365; spend per order = AOV;
  predicted CLV = trailing-12-month spend x H / 365, discounted with the same monthly steps,
  spending spread evenly; expected next order = last order + own mean gap between purchase
  days (on the shop's calendar; none with one purchase day) if that is not past, else NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from plugin.domain.bgnbd import BetaGeoParams
from plugin.domain.clv import DAYS_PER_STEP, DAYS_PER_YEAR
from plugin.domain.customer_figures import TRAILING_DAYS, CustomerFigures
from plugin.domain.flags import rhythm_rule_days
from plugin.domain.gamma_gamma import GammaGammaParams, expected_order_value
from plugin.domain.paretonbd import ParetoNbdParams
from plugin.domain.repeat_models import (
    RepeatModel,
    RepeatParams,
    alive_probability,
    expected_repeat_purchases_if_alive,
)
from plugin.domain.rfm_summary import CompressedRfm, compress_rfm
from plugin.domain.scoring_types import (
    CONFIDENCE_FITTED,
    FittedModels,
    FloatArray,
    ScoringSettings,
)


@dataclass(frozen=True)
class Predictions:
    """Per customer, aligned with the CustomerFigures they were made from."""

    p_alive: FloatArray
    expected_purchases: FloatArray
    expected_next_order_day: FloatArray
    expected_spend_per_order: FloatArray
    predicted_clv: FloatArray


def predict(
    models: FittedModels, figures: CustomerFigures, as_of_day: float, settings: ScoringSettings
) -> Predictions:
    """Fitted predictions when the models are trusted, rule-based ones otherwise."""
    if models.confidence == CONFIDENCE_FITTED:
        return _fitted(models, figures, as_of_day, settings)
    return rule_predictions(figures, as_of_day, settings)


def repeat_params_of(models: FittedModels) -> RepeatParams:
    """The repeat model's parameters as the model functions take them."""
    if models.repeat_model == "paretonbd":
        return ParetoNbdParams(**models.repeat_params)
    return BetaGeoParams(**models.repeat_params)


def step_days(horizon_days: float) -> list[float]:
    """The ends t_k of the monthly discounting steps over the horizon."""
    steps = max(1, math.ceil(horizon_days / DAYS_PER_STEP))
    return [horizon_days * k / steps for k in range(1, steps + 1)]


def discount(day: float, annual_rate: float) -> float:
    """1 / (1 + d)^(day / 365.25): the value today of money spent `day` days from now."""
    return float((1.0 + annual_rate) ** (-day / DAYS_PER_YEAR))


def _fitted(
    models: FittedModels, figures: CustomerFigures, as_of_day: float, settings: ScoringSettings
) -> Predictions:
    model: RepeatModel = models.repeat_model  # type: ignore[assignment]
    params = repeat_params_of(models)
    x, tx, age = figures.frequency, figures.recency, figures.age
    rows = compress_rfm(x, tx, age)
    alive = alive_probability(params, model, rows.frequency, rows.recency, rows.age)[rows.inverse]
    pairs = compress_rfm(x, np.zeros_like(x), age)
    horizon = settings.horizon_days
    if_alive = expected_repeat_purchases_if_alive(
        params, model, horizon, pairs.frequency, pairs.age
    )[pairs.inverse]
    discounted = _discounted_if_alive(params, model, pairs, settings)[pairs.inverse]
    spend = _spend_per_order(models, figures)
    return Predictions(
        p_alive=alive,
        expected_purchases=alive * if_alive,
        expected_next_order_day=as_of_day + _next_order_wait(params, alive, x, age),
        expected_spend_per_order=spend,
        predicted_clv=spend * alive * discounted,
    )


def _discounted_if_alive(
    params: RepeatParams, model: RepeatModel, pairs: CompressedRfm, settings: ScoringSettings
) -> FloatArray:
    x, age = pairs.frequency, pairs.age
    rate = settings.annual_discount_rate
    if rate == 0.0 or settings.horizon_days == 0.0:
        return expected_repeat_purchases_if_alive(params, model, settings.horizon_days, x, age)
    total = np.zeros_like(x)
    previous = np.zeros_like(x)
    for day in step_days(settings.horizon_days):
        cumulative = expected_repeat_purchases_if_alive(params, model, day, x, age)
        total += (cumulative - previous) * discount(day, rate)
        previous = cumulative
    return total


def _spend_per_order(models: FittedModels, figures: CustomerFigures) -> FloatArray:
    if models.spend_params is None:
        return figures.net_spend / (figures.frequency + 1.0)
    spend = GammaGammaParams(**models.spend_params)
    return expected_order_value(spend, figures.frequency, figures.monetary_value)


def _next_order_wait(
    params: RepeatParams, alive: FloatArray, frequency: FloatArray, age: FloatArray
) -> FloatArray:
    likely = alive > 0.5
    survival = 1.0 - 0.5 / np.where(likely, alive, 1.0)
    shape = params.r + frequency
    wait = (params.alpha + age) * np.expm1(-np.log(survival) / shape)
    return np.where(likely, wait, np.nan)


def win_back_point(figures: CustomerFigures, settings: ScoringSettings) -> FloatArray:
    """Days after the last order at which win-back starts: win_back_days, or earlier when the
    customer's own rhythm says so, max(rhythm factor x mean gap, rhythm minimum days)."""
    rhythm = rhythm_rule_days(figures.mean_days_between_orders, settings)
    return np.minimum(rhythm, settings.win_back_days)


def rule_predictions(
    figures: CustomerFigures, as_of_day: float, settings: ScoringSettings
) -> Predictions:
    """The transparent rules of the module docstring, for shops whose models are not trusted."""
    horizon = settings.horizon_days
    point = np.maximum(win_back_point(figures, settings), 1e-9)
    alive = np.clip(1.0 - figures.days_since_last_order / point, 0.0, 1.0)
    next_day = figures.last_order_day + figures.mean_days_between_orders
    next_day = np.where(next_day >= as_of_day, next_day, np.nan)
    steps = step_days(horizon)
    mean_discount = sum(discount(d, settings.annual_discount_rate) for d in steps) / len(steps)
    pro_rata = horizon / TRAILING_DAYS
    return Predictions(
        p_alive=alive,
        expected_purchases=figures.trailing_12m_orders * pro_rata,
        expected_next_order_day=next_day,
        expected_spend_per_order=figures.aov,
        predicted_clv=figures.trailing_12m_spend * pro_rata * mean_discount,
    )
