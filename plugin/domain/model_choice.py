"""Choosing a shop's repeat-purchase model by how well it predicts a holdout period.

Criterion: the per-customer mean squared error between the predicted expected number of repeat
purchases in the holdout, E[Y(t) | x, t_x, T], and the number actually made. Squared error is a
proper scoring rule for a predicted mean (it is minimised in expectation by the true conditional
mean), so the model whose conditional expectations are closest to the truth wins on average; it
uses every customer, unlike an aggregate curve, and it needs only what every model predicts.
Models whose fit did not converge are not eligible unless none converged. Ties go to the model
listed first (BG/NBD, the better-known one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from plugin.domain.repeat_models import (
    REPEAT_MODELS,
    RepeatFit,
    RepeatModel,
    expected_repeat_purchases,
    fit_repeat_model,
)

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ModelChoice:
    """The chosen model, every candidate's fit and its holdout mean squared error."""

    selected: RepeatModel
    fits: Mapping[RepeatModel, RepeatFit]
    holdout_mse: Mapping[RepeatModel, float]


def holdout_mse(predicted: ArrayLike, actual: ArrayLike) -> float:
    """Mean over customers of (predicted - actual)^2, in purchases squared."""
    error = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return float(np.mean(error * error)) if error.size else 0.0


def select_by_holdout(
    mse: Mapping[RepeatModel, float], converged: Mapping[RepeatModel, bool]
) -> RepeatModel:
    """The eligible model (converged, or any if none is) with the smallest holdout MSE."""
    names = list(mse)
    eligible = [name for name in names if converged.get(name, False)] or names
    if not eligible:
        raise ValueError("no candidate models to choose from")
    return min(eligible, key=lambda name: (mse[name], names.index(name)))


def choose_repeat_model(
    frequency: ArrayLike,
    recency: ArrayLike,
    age: ArrayLike,
    *,
    holdout_length: float,
    holdout_frequency: ArrayLike,
    models: Sequence[RepeatModel] = REPEAT_MODELS,
) -> ModelChoice:
    """Fit each model on the calibration summary, predict the holdout, keep the best.

    `holdout_length` is in the time unit of recency and age; `holdout_frequency` is the number of
    purchases each customer made in the holdout.
    """
    fits = {name: fit_repeat_model(name, frequency, recency, age) for name in models}
    mse = {
        name: holdout_mse(
            expected_repeat_purchases(fit.params, name, holdout_length, frequency, recency, age),
            holdout_frequency,
        )
        for name, fit in fits.items()
    }
    selected = select_by_holdout(mse, {name: fit.converged for name, fit in fits.items()})
    return ModelChoice(selected, fits, mse)
