"""Gamma-Gamma model of spend per order: likelihood, fit and conditional expected spend.

Fader and Hardie (2013), "The Gamma-Gamma Model of Monetary Value" (note, brucehardie.com), after
Colombo and Jiang (1999). Each order of a customer is Gamma(p, nu) distributed, and nu varies across
customers as Gamma(q, gamma). Only the mean m_x of a customer's x repeat orders is used; the model
assumes spend is independent of the purchase process. Money is a float in the shop's currency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import digamma, gammaln

from plugin.domain.mle import FitDiagnostics, maximise_likelihood
from plugin.domain.numeric import dot

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class GammaGammaParams:
    """p: shape of spend per order; q, gamma: shape and scale (money) of the customers' nu."""

    p: float
    q: float
    gamma: float

    def as_dict(self) -> dict[str, float]:
        return {"p": self.p, "q": self.q, "gamma": self.gamma}


@dataclass(frozen=True)
class GammaGammaFit(FitDiagnostics):
    """A fitted model; `customers` counts those with x > 0 and m_x > 0, the only ones used."""

    params: GammaGammaParams


@dataclass(frozen=True)
class _Data:
    """Customers with x > 0 and m > 0, with what the objective needs precomputed.

    x takes few distinct values, so Gamma and digamma terms are computed per distinct x and
    summed with the total weight per x; only log(gamma + m x) and 1/(gamma + m x) are per row.
    """

    x: FloatArray
    m: FloatArray
    weights: FloatArray
    x_values: FloatArray
    weight_by_x: FloatArray
    weighted_x: FloatArray  # w x
    total_value: FloatArray  # m x
    sum_w_x_log_mx: float  # sum w x (log m + log x)
    sum_w_log_m: float  # sum w log m


def _as_data(frequency: ArrayLike, monetary_value: ArrayLike, weights: ArrayLike | None) -> _Data:
    x = np.asarray(frequency, dtype=np.float64)
    m = np.asarray(monetary_value, dtype=np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    if not (x.shape == m.shape == w.shape):
        raise ValueError("frequency, monetary_value and weights must have one shape")
    keep = (x > 0) & (m > 0) & (w > 0)
    x, m, w = x[keep], m[keep], w[keep]
    # A canonical order makes every floating-point sum, hence the fit, identical bit for bit
    # whatever order the customers came in.
    order = np.lexsort((m, x)) if weights is None else np.lexsort((w, m, x))
    x, m, w = x[order], m[order], w[order]
    x_values, x_index = np.unique(x, return_inverse=True)
    log_m = np.log(m)
    return _Data(
        x=x,
        m=m,
        weights=w,
        x_values=x_values.astype(np.float64),
        weight_by_x=np.bincount(x_index.reshape(-1), weights=w, minlength=x_values.size).astype(
            np.float64
        ),
        weighted_x=w * x,
        total_value=m * x,
        sum_w_x_log_mx=dot(w * x, log_m + np.log(x)),
        sum_w_log_m=dot(w, log_m),
    )


def _log_likelihood(p: float, q: float, gamma: float, data: _Data) -> FloatArray:
    x, m = data.x, data.m
    px = p * x
    return np.asarray(
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(gamma)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(gamma + m * x),
        dtype=np.float64,
    )


def gamma_gamma_log_likelihood(
    params: GammaGammaParams, frequency: ArrayLike, monetary_value: ArrayLike
) -> FloatArray:
    """Per-customer log-density of the mean repeat spend m_x given x (Fader and Hardie 2013, eq. 3):

        L = Gamma(px+q) / (Gamma(px) Gamma(q)) gamma^q m_x^(px-1) x^(px) / (gamma + m_x x)^(px+q)

    for customers with x > 0 and m_x > 0 (others are left out of the result).
    """
    data = _as_data(frequency, monetary_value, None)
    return _log_likelihood(params.p, params.q, params.gamma, data)


def _objective(theta: FloatArray, data: _Data) -> tuple[float, FloatArray]:
    """Mean negative log-likelihood and its gradient in log(p, q, gamma); the sum over customers
    of eq. 3, with x-only terms grouped by distinct x."""
    p, q, gamma = np.exp(theta)
    px = p * data.x_values
    w_by_x = data.weight_by_x
    total = float(data.weights.sum())
    log_total = np.log(gamma + data.total_value)
    inverse_total = 1.0 / (gamma + data.total_value)
    sum_w_x_log, sum_w_log = dot(data.weighted_x, log_total), dot(data.weights, log_total)
    sum_w_x_inv, sum_w_inv = dot(data.weighted_x, inverse_total), dot(data.weights, inverse_total)
    value = (
        dot(w_by_x, gammaln(px + q) - gammaln(px))
        - total * (gammaln(q) - q * np.log(gamma))
        + p * data.sum_w_x_log_mx
        - data.sum_w_log_m
        - p * sum_w_x_log
        - q * sum_w_log
    )
    psi_pxq = digamma(px + q)
    d_p = dot(w_by_x * data.x_values, psi_pxq - digamma(px)) + data.sum_w_x_log_mx - sum_w_x_log
    d_q = dot(w_by_x, psi_pxq) - total * (digamma(q) - np.log(gamma)) - sum_w_log
    d_gamma = total * q / gamma - p * sum_w_x_inv - q * sum_w_inv
    gradient = np.array([d_p * p, d_q * q, d_gamma * gamma])
    return -value / total, -gradient / total


def fit_gamma_gamma(
    frequency: ArrayLike, monetary_value: ArrayLike, *, weights: ArrayLike | None = None
) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma fit on the customers with x > 0 and m_x > 0.

    L-BFGS-B on log(p, q, gamma) with the analytic gradient, regularised refit on failure.
    """
    data = _as_data(frequency, monetary_value, weights)
    if data.x.size == 0:
        raise ValueError("cannot fit Gamma-Gamma without customers who made a repeat purchase")
    # p = 1, q = 2 and gamma = the mean spend make the prior mean spend p gamma / (q - 1) match it.
    mean_spend = dot(data.weights, data.m) / float(data.weights.sum())
    start = np.log(np.array([1.0, 2.0, mean_spend]))
    outcome = maximise_likelihood(lambda theta: _objective(theta, data), start)
    p, q, gamma = (float(v) for v in np.exp(outcome.log_params))
    total_weight = float(data.weights.sum())
    return GammaGammaFit(
        params=GammaGammaParams(p, q, gamma),
        **outcome.fit_fields(total_weight),
    )


def expected_order_value(
    params: GammaGammaParams, frequency: ArrayLike, monetary_value: ArrayLike
) -> FloatArray:
    """E[spend per order | x, m_x] (Fader and Hardie 2013, eq. 5):

        (q - 1)/(px + q - 1) * p gamma/(q - 1) + px/(px + q - 1) * m_x,

    a weighted mean of the population mean p gamma / (q - 1) and the customer's own m_x; at x = 0
    it is the population mean. Requires q > 1 (otherwise the population mean is infinite).
    Increasing in m_x, since the weight px/(px + q - 1) is positive.
    """
    if params.q <= 1.0:
        raise ValueError("Gamma-Gamma mean spend is infinite when q <= 1")
    x = np.asarray(frequency, dtype=np.float64)
    m = np.where(x > 0, np.asarray(monetary_value, dtype=np.float64), 0.0)
    px = params.p * x
    denominator = px + params.q - 1.0
    population_mean = params.p * params.gamma / (params.q - 1.0)
    return np.asarray(
        (params.q - 1.0) / denominator * population_mean + px / denominator * m, dtype=np.float64
    )
