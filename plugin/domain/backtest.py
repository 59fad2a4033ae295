"""Backtest of the repeat-purchase and spend models on one row per purchase.

As in Fader, Hardie and Lee (2005), section 4: customers enter at their first purchase; purchases
are counted per customer-day; the models are fitted on the purchases up to the calibration end
(inclusive) and predict each customer's repeat purchases in the holdout (calibration end,
holdout end]. The report is a plain dict, the JSON of `clvsync backtest --json`. The clock is
not read here: the caller passes one in, and fit times are measured with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from plugin.domain.clv import predicted_clv
from plugin.domain.gamma_gamma import GammaGammaFit, expected_order_value, fit_gamma_gamma
from plugin.domain.model_choice import holdout_mse, select_by_holdout
from plugin.domain.numeric import dot
from plugin.domain.repeat_models import (
    REPEAT_MODELS,
    RepeatFit,
    RepeatModel,
    expected_repeat_purchases,
    fit_repeat_model,
    model_of,
)
from plugin.domain.rfm_summary import (
    DAYS_PER_UNIT,
    RfmSummary,
    TimeUnit,
    count_purchase_days,
    summarise_purchases,
)
from plugin.domain.scoring_types import MAX_HORIZON_DAYS

FloatArray = NDArray[np.float64]
Clock = Callable[[], float]
FREQUENCY_GROUPS: tuple[str, ...] = ("0", "1", "2", "3", "4", "5", "6", "7+")


class BacktestError(ValueError):
    """The purchases cannot support a backtest (no customers, no repeat buyers, bad dates,
    negative or non-finite amounts, a horizon out of range)."""


T = TypeVar("T")


@dataclass(frozen=True)
class _Holdout:
    """What happened in the holdout: purchase days per customer, total spend, its length."""

    purchases: FloatArray
    spend: float
    days: float


def run_backtest(
    customer_ids: ArrayLike,
    days: ArrayLike,
    amounts: ArrayLike,
    *,
    calibration_end_day: float,
    holdout_end_day: float,
    clock: Clock,
    time_unit: TimeUnit = "week",
    horizon_days: float | None = None,
    models: Sequence[RepeatModel] = REPEAT_MODELS,
) -> dict[str, Any]:
    """Fit on the calibration period, predict the holdout, and report.

    `days` are purchase days on any fixed origin, as are the two inclusive end days. The report
    has `time_unit`, `models` (per model `params`, `log_likelihood`, `converged`, `seconds`),
    `selected_model` (smallest holdout MSE, see `plugin.domain.model_choice`), `holdout`
    (total actual and predicted repeat purchases, and their per-customer means by calibration
    frequency 0..6 and 7+), `customers`, `repeat_customers`, and `clv_calibration`: actual and
    predicted holdout spend (E[Y(holdout)] E[M]) and the predicted CLV total over `horizon_days`
    (default: the holdout length, at most `MAX_HORIZON_DAYS`), undiscounted. Both are null, and
    `clv_calibration.note` says why, when the Gamma-Gamma model could not be fitted (no repeat
    purchase worth more than 0), did not converge, or has an infinite mean (q <= 1): the scorer
    does not use such a fit either. `models.gamma_gamma` is null when it was not fitted.
    """
    if holdout_end_day <= calibration_end_day:
        raise BacktestError("the holdout end must be after the calibration end")
    _check_inputs(amounts, horizon_days)
    summary = summarise_purchases(
        customer_ids, days, amounts, calibration_end_day=calibration_end_day, time_unit=time_unit
    )
    if summary.customer_ids.size == 0:
        raise BacktestError("no customer made a purchase by the calibration end")
    if not np.any(summary.frequency > 0):
        raise BacktestError("no customer made a repeat purchase in the calibration period")
    holdout = _observe_holdout(
        customer_ids, days, amounts, summary, calibration_end_day, holdout_end_day
    )
    horizon = holdout.days if horizon_days is None else horizon_days
    return _report(summary, holdout, horizon, models, clock)


def _check_inputs(amounts: ArrayLike, horizon_days: float | None) -> None:
    values = np.asarray(amounts, dtype=np.float64)
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise BacktestError("purchase amounts must be finite and >= 0")
    if horizon_days is not None and not 0 <= horizon_days <= MAX_HORIZON_DAYS:
        raise BacktestError(f"the horizon must be between 0 and {MAX_HORIZON_DAYS:,.0f} days")


def _observe_holdout(
    customer_ids: ArrayLike,
    days: ArrayLike,
    amounts: ArrayLike,
    summary: RfmSummary,
    calibration_end_day: float,
    holdout_end_day: float,
) -> _Holdout:
    ids = np.asarray(customer_ids)
    day = np.floor(np.asarray(days, dtype=np.float64))
    end, stop = np.floor(calibration_end_day), np.floor(holdout_end_day)
    window = (day > end) & (day <= stop) & np.isin(ids, summary.customer_ids)
    purchases = count_purchase_days(
        ids, day, after_day=end, through_day=stop, for_customers=summary.customer_ids
    )
    spend = float(np.asarray(amounts, dtype=np.float64)[window].sum())
    return _Holdout(purchases, spend, float(stop - end))


def _report(
    summary: RfmSummary,
    holdout: _Holdout,
    horizon_days: float,
    models: Sequence[RepeatModel],
    clock: Clock,
) -> dict[str, Any]:
    unit = DAYS_PER_UNIT[summary.time_unit]
    fits = {name: _timed(clock, partial(_fit_model, summary, name)) for name in models}
    spend, spend_seconds = _timed(clock, partial(_fit_spend, summary))
    predicted = {
        name: _predict(fit, summary, holdout.days / unit) for name, (fit, _) in fits.items()
    }
    mse = {name: holdout_mse(values, holdout.purchases) for name, values in predicted.items()}
    selected = select_by_holdout(mse, {name: fit.converged for name, (fit, _) in fits.items()})
    entries: dict[str, Any] = {name: _model_entry(*timed) for name, timed in fits.items()}
    entries["gamma_gamma"] = None if isinstance(spend, str) else _model_entry(spend, spend_seconds)
    return {
        "time_unit": summary.time_unit,
        "models": entries,
        "selected_model": selected,
        "holdout": _holdout_section(summary, holdout, predicted, mse),
        "customers": int(summary.customer_ids.size),
        "repeat_customers": int(np.count_nonzero(summary.frequency > 0)),
        "clv_calibration": _clv_section(
            summary,
            {n: f for n, (f, _) in fits.items()},
            spend,
            predicted,
            holdout.spend,
            horizon_days,
        ),
    }


def _fit_model(summary: RfmSummary, model: RepeatModel) -> RepeatFit:
    return fit_repeat_model(model, summary.frequency, summary.recency, summary.age)


def _fit_spend(summary: RfmSummary) -> GammaGammaFit | str:
    """The Gamma-Gamma fit, or why there is none."""
    try:
        return fit_gamma_gamma(summary.frequency, summary.monetary_value)
    except ValueError as error:  # no repeat purchase worth more than 0
        return str(error)


def _timed(clock: Clock, fit: Callable[[], T]) -> tuple[T, float]:
    started = clock()
    result = fit()
    return result, clock() - started


def _predict(fit: RepeatFit, summary: RfmSummary, horizon: float) -> FloatArray:
    return expected_repeat_purchases(
        fit.params, model_of(fit), horizon, summary.frequency, summary.recency, summary.age
    )


def _model_entry(fit: RepeatFit | GammaGammaFit, seconds: float) -> dict[str, Any]:
    return {
        "params": fit.params.as_dict(),
        "log_likelihood": fit.log_likelihood,
        "converged": fit.converged,
        "seconds": seconds,
    }


def _group_labels(frequency: FloatArray) -> NDArray[np.str_]:
    index = np.minimum(frequency, 7).astype(np.intp)
    return np.asarray(FREQUENCY_GROUPS, dtype=np.str_)[index]


def _holdout_section(
    summary: RfmSummary,
    holdout: _Holdout,
    predicted: dict[RepeatModel, FloatArray],
    mse: dict[RepeatModel, float],
) -> dict[str, Any]:
    labels = _group_labels(summary.frequency)
    return {
        "days": holdout.days,
        "actual_repeat_purchases": float(holdout.purchases.sum()),
        "predicted_repeat_purchases": {name: float(v.sum()) for name, v in predicted.items()},
        "mse_per_customer": mse,
        "by_calibration_frequency": {
            label: _group_entry(labels == label, holdout.purchases, predicted)
            for label in FREQUENCY_GROUPS
        },
    }


def _group_entry(
    members: NDArray[np.bool_], actual: FloatArray, predicted: dict[RepeatModel, FloatArray]
) -> dict[str, Any]:
    count = int(np.count_nonzero(members))
    return {
        "customers": count,
        "actual": float(actual[members].mean()) if count else None,
        "predicted": {
            name: float(values[members].mean()) if count else None
            for name, values in predicted.items()
        },
    }


def _clv_section(
    summary: RfmSummary,
    fits: dict[RepeatModel, RepeatFit],
    spend_fit: GammaGammaFit | str,
    predicted: dict[RepeatModel, FloatArray],
    actual_spend: float,
    horizon_days: float,
) -> dict[str, Any]:
    note = _unusable_spend(spend_fit)
    section: dict[str, Any] = {
        "actual_holdout_spend": actual_spend,
        "horizon_days": horizon_days,
        "note": note,
    }
    if note is not None or isinstance(spend_fit, str):
        section["predicted_holdout_spend"] = dict.fromkeys(fits)
        section["predicted_clv"] = dict.fromkeys(fits)
        return section
    order_value = expected_order_value(spend_fit.params, summary.frequency, summary.monetary_value)
    section["predicted_holdout_spend"] = {
        name: dot(order_value, values) for name, values in predicted.items()
    }
    section["predicted_clv"] = {
        name: _total_clv(fit, spend_fit, summary, horizon_days) for name, fit in fits.items()
    }
    return section


def _unusable_spend(spend_fit: GammaGammaFit | str) -> str | None:
    """Why the spend fit gives no spend prediction, or None when it does."""
    if isinstance(spend_fit, str):
        return f"no spend prediction: Gamma-Gamma not fitted ({spend_fit})"
    if not spend_fit.converged:
        return f"no spend prediction: the Gamma-Gamma fit did not converge ({spend_fit.message})"
    if spend_fit.params.q <= 1.0:
        return (
            f"no spend prediction: Gamma-Gamma q = {spend_fit.params.q:.3g} <= 1, so the mean "
            "spend per order is infinite"
        )
    return None


def _total_clv(
    fit: RepeatFit, spend_fit: GammaGammaFit, summary: RfmSummary, horizon_days: float
) -> float:
    clv = predicted_clv(
        fit.params,
        spend_fit.params,
        summary.frequency,
        summary.recency,
        summary.age,
        summary.monetary_value,
        horizon_days=horizon_days,
        days_per_unit=DAYS_PER_UNIT[summary.time_unit],
        model=model_of(fit),
    )
    return float(clv.sum())
