"""The BG/NBD and MBG/NBD log-likelihood and its gradient, arranged for fast fitting.

Both likelihoods (FHL 2005 eq. 6; Batislam, Denizel and Filiztekin 2007) read
    L = Gamma(r+x) alpha^r / Gamma(r) * [ B(a, b+x+k)/B(a,b) (alpha+T)^-(r+x)
                                         + d B(a+1, b+x+k-1)/B(a,b) (alpha+t_x)^-(r+x) ]
with k = 0, d = [x > 0] for BG/NBD and k = 1, d = 1 for MBG/NBD. Every Gamma, Beta and digamma
term depends on x alone, and x, T and t_x take few distinct values in real data (whole days or
weeks), so the expensive special functions are evaluated once per distinct value and gathered;
per customer row only a multiply-add, one logaddexp and one exp remain. Rows are first
compressed to unique (x, t_x, T) with weights. Everything is in logs: no overflow for heavy
buyers or long histories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.special import digamma, gammaln

from plugin.domain.numeric import dot
from plugin.domain.rfm_summary import compress_rfm

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]
BetaGeoVariant = Literal["bgnbd", "mbgnbd"]


@dataclass(frozen=True)
class Rows:
    """Weighted unique (x, t_x, T) rows, each column stored as distinct values plus indices."""

    x_values: FloatArray
    x_index: IndexArray
    age_values: FloatArray
    age_index: IndexArray
    recency_values: FloatArray
    recency_index: IndexArray
    weights: FloatArray
    weight_by_x: FloatArray


def _distinct(values: FloatArray) -> tuple[FloatArray, IndexArray]:
    unique, index = np.unique(values, return_inverse=True)
    return unique.astype(np.float64), index.astype(np.intp).reshape(-1)


def factorise_rows(
    frequency: FloatArray, recency: FloatArray, age: FloatArray, weights: FloatArray
) -> Rows:
    """Compress customers to weighted unique rows and index each column's distinct values."""
    compressed = compress_rfm(frequency, recency, age)
    summed = np.bincount(compressed.inverse, weights=weights, minlength=compressed.weights.size)
    x_values, x_index = _distinct(compressed.frequency)
    age_values, age_index = _distinct(compressed.age)
    recency_values, recency_index = _distinct(compressed.recency)
    weight_by_x = np.bincount(x_index, weights=summed, minlength=x_values.size)
    return Rows(
        x_values,
        x_index,
        age_values,
        age_index,
        recency_values,
        recency_index,
        summed.astype(np.float64),
        weight_by_x.astype(np.float64),
    )


def _log_beta(a: FloatArray | float, b: FloatArray | float) -> FloatArray:
    return np.asarray(gammaln(a) + gammaln(b) - gammaln(np.add(a, b)), dtype=np.float64)


@dataclass(frozen=True)
class _PerX:
    """Terms that depend on x only, one entry per distinct x."""

    common: FloatArray  # log Gamma(r+x) - log Gamma(r) + r log alpha
    first: FloatArray  # log B(a, b+x+k) - log B(a, b)
    second: FloatArray  # log B(a+1, b+x+k-1) - log B(a, b), or -inf where absent
    x_safe: FloatArray  # x, or 1 where the second term is absent (keeps gammaln finite)


def _per_x(params: FloatArray, x: FloatArray, variant: BetaGeoVariant) -> _PerX:
    r, alpha, a, b = params
    k = 0.0 if variant == "bgnbd" else 1.0
    has_second = x > 0 if variant == "bgnbd" else np.ones_like(x, dtype=bool)
    x_safe = np.where(has_second, x, 1.0)
    log_beta_ab = _log_beta(a, b)
    second = _log_beta(a + 1.0, b + x_safe + k - 1.0) - log_beta_ab
    return _PerX(
        common=gammaln(r + x) - gammaln(r) + r * np.log(alpha),
        first=_log_beta(a, b + x + k) - log_beta_ab,
        second=np.where(has_second, second, -np.inf),
        x_safe=x_safe,
    )


def _per_x_gradients(
    params: FloatArray, x: FloatArray, x_safe: FloatArray, variant: BetaGeoVariant
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """d common/dr, d first/da, d first/db, d second/da, d second/db per distinct x."""
    r, alpha, a, b = params
    k = 0.0 if variant == "bgnbd" else 1.0
    psi_ab = digamma(a + b)
    psi_b = digamma(b)
    psi_abx = digamma(a + b + x + k)
    psi_abx_safe = digamma(a + b + x_safe + k)
    return (
        digamma(r + x) - digamma(r) + np.log(alpha),
        psi_ab - psi_abx,
        digamma(b + x + k) - psi_abx - psi_b + psi_ab,
        1.0 / a + psi_ab - psi_abx_safe,
        digamma(b + x_safe + k - 1.0) - psi_abx_safe - psi_b + psi_ab,
    )


def objective(theta: FloatArray, rows: Rows, variant: BetaGeoVariant) -> tuple[float, FloatArray]:
    """Mean negative log-likelihood per customer and its gradient in log(r, alpha, a, b).

    d log(e^f + e^s) = w_f df + w_s ds with softmax weights w_f + w_s = 1; sums over rows of
    x-only derivatives are taken as (summed row weights per x) . (derivative per x).
    """
    params = np.exp(theta)
    r, alpha = params[0], params[1]
    terms = _per_x(params, rows.x_values, variant)
    rx = (r + rows.x_values)[rows.x_index]
    log_age = np.log(alpha + rows.age_values)[rows.age_index]
    log_recency = np.log(alpha + rows.recency_values)[rows.recency_index]
    first = terms.first[rows.x_index] - rx * log_age
    second = terms.second[rows.x_index] - rx * log_recency
    both = np.logaddexp(first, second)
    on_first = rows.weights * np.exp(first - both)
    on_second = rows.weights - on_first
    total = float(rows.weights.sum())
    value = dot(rows.weight_by_x, terms.common) + dot(rows.weights, both)
    d_common_r, d_first_a, d_first_b, d_second_a, d_second_b = _per_x_gradients(
        params, rows.x_values, terms.x_safe, variant
    )
    first_by_x = np.bincount(rows.x_index, weights=on_first, minlength=rows.x_values.size).astype(
        np.float64
    )
    second_by_x = rows.weight_by_x - first_by_x
    inverse_age = (1.0 / (alpha + rows.age_values))[rows.age_index]
    inverse_recency = (1.0 / (alpha + rows.recency_values))[rows.recency_index]
    gradient = np.array(
        [
            dot(rows.weight_by_x, d_common_r)
            - dot(on_first, log_age)
            - dot(on_second, log_recency),
            total * r / alpha
            - dot(on_first * rx, inverse_age)
            - dot(on_second * rx, inverse_recency),
            dot(first_by_x, d_first_a) + dot(second_by_x, d_second_a),
            dot(first_by_x, d_first_b) + dot(second_by_x, d_second_b),
        ]
    )
    return -value / total, -gradient * params / total


def log_likelihood_per_customer(
    params: FloatArray, x: FloatArray, recency: FloatArray, age: FloatArray, variant: BetaGeoVariant
) -> FloatArray:
    """The same likelihood, directly per customer (no compression): the reference form."""
    r, alpha, _, _ = params
    terms = _per_x(params, x, variant)
    first = terms.first - (r + x) * np.log(alpha + age)
    second = terms.second - (r + x) * np.log(alpha + recency)
    return np.asarray(terms.common + np.logaddexp(first, second), dtype=np.float64)
