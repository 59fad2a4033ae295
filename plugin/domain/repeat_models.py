"""One face for the repeat-purchase models: fit, P(alive) and expected purchases by model name.

BG/NBD and MBG/NBD are in `plugin.domain.bgnbd`, Pareto/NBD in `plugin.domain.paretonbd`; each
function's source and formula are documented there.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from plugin.domain.bgnbd import (
    BetaGeoFit,
    BetaGeoParams,
    expected_purchases,
    expected_purchases_if_alive,
    fit_beta_geo,
    probability_alive,
)
from plugin.domain.paretonbd import (
    ParetoNbdFit,
    ParetoNbdParams,
    fit_pareto_nbd,
    pareto_expected_purchases,
    pareto_expected_purchases_if_alive,
    pareto_probability_alive,
)

FloatArray = NDArray[np.float64]
RepeatModel = Literal["bgnbd", "mbgnbd", "paretonbd"]
REPEAT_MODELS: tuple[RepeatModel, ...] = ("bgnbd", "mbgnbd", "paretonbd")
RepeatFit = BetaGeoFit | ParetoNbdFit
RepeatParams = BetaGeoParams | ParetoNbdParams


def fit_repeat_model(
    model: RepeatModel, frequency: ArrayLike, recency: ArrayLike, age: ArrayLike
) -> RepeatFit:
    """Maximum-likelihood fit of the named model."""
    if model == "paretonbd":
        return fit_pareto_nbd(frequency, recency, age)
    return fit_beta_geo(frequency, recency, age, variant=model)


def model_of(fit: RepeatFit) -> RepeatModel:
    return "paretonbd" if isinstance(fit, ParetoNbdFit) else fit.variant


def expected_repeat_purchases(
    params: RepeatParams,
    model: RepeatModel,
    horizon: float,
    frequency: ArrayLike,
    recency: ArrayLike,
    age: ArrayLike,
) -> FloatArray:
    """Expected repeat purchases in (T, T + horizon], horizon in the data's time unit."""
    if isinstance(params, ParetoNbdParams):
        return pareto_expected_purchases(params, horizon, frequency, recency, age)
    if model == "paretonbd":
        raise ValueError("Pareto/NBD needs ParetoNbdParams")
    return expected_purchases(params, horizon, frequency, recency, age, model)


def alive_probability(
    params: RepeatParams,
    model: RepeatModel,
    frequency: ArrayLike,
    recency: ArrayLike,
    age: ArrayLike,
) -> FloatArray:
    """P(alive at T | x, t_x, T)."""
    if isinstance(params, ParetoNbdParams):
        return pareto_probability_alive(params, frequency, recency, age)
    if model == "paretonbd":
        raise ValueError("Pareto/NBD needs ParetoNbdParams")
    return probability_alive(params, frequency, recency, age, model)


def expected_repeat_purchases_if_alive(
    params: RepeatParams, model: RepeatModel, horizon: float, frequency: ArrayLike, age: ArrayLike
) -> FloatArray:
    """Expected repeat purchases in (T, T + horizon] for a customer alive at T; a function of
    (x, T) only. Times P(alive) it is `expected_repeat_purchases`."""
    if isinstance(params, ParetoNbdParams):
        return pareto_expected_purchases_if_alive(params, horizon, frequency, age)
    if model == "paretonbd":
        raise ValueError("Pareto/NBD needs ParetoNbdParams")
    return expected_purchases_if_alive(params, horizon, frequency, age, model)
