"""A shop's model run: summarise its orders, choose the repeat model by holdout, fit, or fall back.

Customers enter at their first order and repeat purchases are counted per customer-day
(`plugin.domain.customer_figures`, the conventions of `plugin.domain.rfm_summary`), in days.
The models are trusted only with at least `min_customers` customers and `min_repeat_customers`
customers with a repeat purchase, and only when a fit converged: when the chosen model's fit
does not, the next candidate (by holdout error) is tried, and when none does, the run's
confidence is "rules" and the scores are the transparent rules of `plugin.domain.predictions`.

Model choice (`plugin.domain.model_choice`): the last `holdout_days(span)` days before as_of are
held out, every candidate model is fitted on the orders before them and judged by the mean
squared error of its predicted repeat purchases in the holdout; the winner (converged fits
first) is then refitted on the whole history. When the calibration period alone is too small
for the minimums, there is no choice: BG/NBD (the first candidate) is fitted.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np

from plugin.domain.customer_figures import CustomerFigures, customer_figures, validate_history
from plugin.domain.gamma_gamma import GammaGammaFit, fit_gamma_gamma
from plugin.domain.model_choice import choose_repeat_model
from plugin.domain.repeat_models import RepeatModel, fit_repeat_model
from plugin.domain.rfm_summary import count_purchase_days, summarise_purchases
from plugin.domain.scoring_types import (
    CONFIDENCE_FITTED,
    CONFIDENCE_RULES,
    RULES_MODEL,
    FittedModels,
    OrderHistory,
    ScoringSettings,
)

MIN_HOLDOUT_DAYS = 28.0
MAX_HOLDOUT_DAYS = 182.0


def holdout_days(span_days: float) -> float:
    """A quarter of the shop's history, between four weeks and half a year, in whole days."""
    return float(math.floor(min(max(span_days / 4.0, MIN_HOLDOUT_DAYS), MAX_HOLDOUT_DAYS)))


def fit_models(history: OrderHistory, as_of_day: float, settings: ScoringSettings) -> FittedModels:
    """Fit the shop's repeat-purchase and spend models on its orders up to `as_of_day`."""
    validate_history(history)
    figures = customer_figures(history, as_of_day, settings)
    customers = int(figures.customer_id.size)
    repeaters = int(np.count_nonzero(figures.frequency > 0))
    if customers < settings.min_customers or repeaters < settings.min_repeat_customers:
        note = (
            f"rules: {customers} customers and {repeaters} with a repeat purchase, below the "
            f"{settings.min_customers} and {settings.min_repeat_customers} a model needs"
        )
        return _rules(customers, repeaters, note)
    preference, choice_note = _choose(history, as_of_day, figures, settings)
    failed: list[str] = []
    for model in preference:
        fit = fit_repeat_model(model, figures.frequency, figures.recency, figures.age)
        if fit.converged:
            break
        failed.append(f"the {model} fit did not converge ({fit.message})")
    else:
        return _rules(customers, repeaters, f"rules: {'; '.join(failed)}; {choice_note}")
    if failed:
        choice_note += f"; {model} fitted because {'; '.join(failed)}"
    if fit.regularised:
        choice_note += f"; {model} needed the regularised refit"
    spend, spend_note = _fit_spend(figures)
    return FittedModels(
        repeat_model=model,
        repeat_params=fit.params.as_dict(),
        spend_params=spend,
        log_likelihood=fit.log_likelihood,
        converged=True,
        customers=customers,
        repeat_customers=repeaters,
        confidence=CONFIDENCE_FITTED,
        note=f"{choice_note}; {spend_note}",
    )


def _rules(customers: int, repeaters: int, note: str) -> FittedModels:
    rule = (
        "P(alive) falls linearly to 0 at the win-back point; predicted CLV is the last 12 "
        "months' spend pro rata over the horizon"
    )
    return FittedModels(
        repeat_model=RULES_MODEL,
        repeat_params={},
        spend_params=None,
        log_likelihood=float("nan"),
        converged=False,
        customers=customers,
        repeat_customers=repeaters,
        confidence=CONFIDENCE_RULES,
        note=f"{note}. {rule}",
    )


def _choose(
    history: OrderHistory, as_of_day: float, figures: CustomerFigures, settings: ScoringSettings
) -> tuple[list[RepeatModel], str]:
    """The candidates in order of preference (the holdout winner first), and why."""
    candidates = cast(tuple[RepeatModel, ...], settings.candidate_models)
    span = as_of_day - float(np.min(figures.first_order_day))
    length = holdout_days(span)
    end = math.floor(as_of_day) - length
    summary = summarise_purchases(
        history.customer_id, history.day, history.amount, calibration_end_day=end
    )
    calibration_repeaters = int(np.count_nonzero(summary.frequency > 0))
    if len(candidates) == 1 or (
        summary.customer_ids.size < settings.min_customers
        or calibration_repeaters < settings.min_repeat_customers
    ):
        reason = "one candidate" if len(candidates) == 1 else "too little history for a holdout"
        return list(candidates), f"{candidates[0]} without a holdout choice ({reason})"
    actual = count_purchase_days(
        history.customer_id,
        history.day,
        after_day=end,
        through_day=math.floor(as_of_day),
        for_customers=summary.customer_ids,
    )
    # every k-th customer by id: a sample that does not depend on the row order
    keep = slice(None, None, max(1, math.ceil(actual.size / settings.choice_max_customers)))
    choice = choose_repeat_model(
        summary.frequency[keep],
        summary.recency[keep],
        summary.age[keep],
        holdout_length=length,
        holdout_frequency=actual[keep],
        models=candidates,
    )
    scores = ", ".join(f"{name} {mse:.4g}" for name, mse in choice.holdout_mse.items())
    rest = sorted(
        (m for m in candidates if m != choice.selected),
        key=lambda m: (not choice.fits[m].converged, choice.holdout_mse[m], candidates.index(m)),
    )
    return [choice.selected, *rest], (
        f"{choice.selected} chosen by the mean squared error of predicted repeat purchases in the "
        f"last {length:.0f} days held out, {actual[keep].size} customers ({scores})"
    )


def _fit_spend(figures: CustomerFigures) -> tuple[dict[str, float] | None, str]:
    fallback = "spend per order is the customer's own average order value"
    try:
        fit: GammaGammaFit = fit_gamma_gamma(figures.frequency, figures.monetary_value)
    except ValueError as error:
        return None, f"Gamma-Gamma not fitted ({error}): {fallback}"
    if not fit.converged or fit.params.q <= 1.0:
        return None, f"Gamma-Gamma fit not usable ({fit.message}, q={fit.params.q:.3g}): {fallback}"
    return fit.params.as_dict(), f"Gamma-Gamma spend model, log-likelihood {fit.log_likelihood:.6g}"
