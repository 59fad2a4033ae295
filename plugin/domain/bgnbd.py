"""BG/NBD and MBG/NBD repeat-purchase models: likelihood, fit and per-customer predictions.

BG/NBD: Fader, Hardie and Lee (2005), "Counting your customers the easy way: an alternative to the
Pareto/NBD model", Marketing Science 24(2). While alive, a customer buys at a Poisson rate
lambda ~ Gamma(r, alpha); after each repeat purchase they drop out with probability
p ~ Beta(a, b).
MBG/NBD: Batislam, Denizel and Filiztekin (2007), "Empirical validation and comparison of models for
customer base analysis", IJRM 24(3): the same, but a customer may also drop out right after the
first purchase, so a customer with no repeat purchase is not sure to be alive.

Both likelihoods have the form (FHL 2005 eq. 6; Batislam et al. eq. 3)
    L = Gamma(r+x) alpha^r / Gamma(r) * [ B(a, b+x+k)/B(a,b) (alpha+T)^-(r+x)
                                         + d B(a+1, b+x+k-1)/B(a,b) (alpha+t_x)^-(r+x) ]
with k = 0, d = [x > 0] for BG/NBD and k = 1, d = 1 for MBG/NBD, so one implementation serves both.
Everything is computed in logs (gammaln, logaddexp) so that heavy buyers and long histories stay
finite. Times are in whatever unit the caller uses (days or weeks); alpha is in that unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import digamma, expit, gammaln, hyp2f1

from plugin.domain.mle import maximise_likelihood
from plugin.domain.rfm_summary import compress_rfm

FloatArray = NDArray[np.float64]
BetaGeoVariant = Literal["bgnbd", "mbgnbd"]
BETA_GEO_VARIANTS: tuple[BetaGeoVariant, ...] = ("bgnbd", "mbgnbd")


@dataclass(frozen=True)
class BetaGeoParams:
    """r, alpha: shape and scale (in the time unit) of the Gamma purchase-rate distribution;
    a, b: the Beta dropout-probability distribution."""

    r: float
    alpha: float
    a: float
    b: float

    def as_dict(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}


@dataclass(frozen=True)
class BetaGeoFit:
    """A fitted model; `log_likelihood` is the total over customers, without any penalty."""

    variant: BetaGeoVariant
    params: BetaGeoParams
    log_likelihood: float
    converged: bool
    iterations: int
    regularised: bool
    customers: int
    message: str


@dataclass(frozen=True)
class _Data:
    x: FloatArray
    tx: FloatArray
    age: FloatArray
    weights: FloatArray


def _shift(variant: BetaGeoVariant) -> float:
    return 0.0 if variant == "bgnbd" else 1.0


def _log_beta(a: FloatArray | float, b: FloatArray | float) -> FloatArray:
    return np.asarray(gammaln(a) + gammaln(b) - gammaln(np.add(a, b)), dtype=np.float64)


def _loglik_terms(
    r: float, alpha: float, a: float, b: float, data: _Data, variant: BetaGeoVariant
) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.bool_]]:
    """Per-customer (common part, log of first bracket term, log of second, mask of second)."""
    k = _shift(variant)
    x = data.x
    has_second = np.ones_like(x, dtype=bool) if variant == "mbgnbd" else x > 0
    # For BG/NBD the second term is absent at x = 0; evaluate it at x = 1 there and mask it out,
    # so that gammaln never sees b - 1 <= 0.
    x2 = np.where(has_second, x, 1.0)
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    log_beta_ab = _log_beta(a, b)
    first = _log_beta(a, b + x + k) - log_beta_ab - (r + x) * np.log(alpha + data.age)
    second = _log_beta(a + 1.0, b + x2 + k - 1.0) - log_beta_ab - (r + x) * np.log(alpha + data.tx)
    second = np.where(has_second, second, -np.inf)
    return np.asarray(common, dtype=np.float64), first, second, has_second


def beta_geo_log_likelihood(
    params: BetaGeoParams,
    frequency: ArrayLike,
    recency: ArrayLike,
    age: ArrayLike,
    variant: BetaGeoVariant = "bgnbd",
) -> FloatArray:
    """Per-customer log-likelihood, FHL (2005) eq. 6 for BG/NBD, Batislam et al. (2007) for MBG/NBD.

    frequency x (repeat purchases), recency t_x and age T in one time unit.
    """
    data = _as_data(frequency, recency, age, None)
    common, first, second, _ = _loglik_terms(
        params.r, params.alpha, params.a, params.b, data, variant
    )
    return np.asarray(common + np.logaddexp(first, second), dtype=np.float64)


def _as_data(
    frequency: ArrayLike, recency: ArrayLike, age: ArrayLike, weights: ArrayLike | None
) -> _Data:
    x = np.asarray(frequency, dtype=np.float64)
    tx = np.asarray(recency, dtype=np.float64)
    t = np.asarray(age, dtype=np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    if not (x.shape == tx.shape == t.shape == w.shape):
        raise ValueError("frequency, recency, age and weights must have one shape")
    if np.any(x < 0) or np.any(tx < 0) or np.any(t < tx) or np.any(w < 0):
        raise ValueError("need frequency >= 0, 0 <= recency <= age and weights >= 0")
    return _Data(x, tx, t, w)


def _gradient_terms(
    r: float, alpha: float, a: float, b: float, data: _Data, variant: BetaGeoVariant
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per-customer derivatives (d/dr, d/dalpha, d/da, d/db) of common, first and second terms,
    stacked as arrays of shape (4, n)."""
    k = _shift(variant)
    x = data.x
    x2 = np.maximum(x, 1.0) if variant == "bgnbd" else x
    psi_ab = digamma(a + b)
    zeros = np.zeros_like(x)
    d_common = np.stack(
        [digamma(r + x) - digamma(r) + np.log(alpha), zeros + r / alpha, zeros, zeros]
    )
    d_first = np.stack(
        [
            -np.log(alpha + data.age),
            -(r + x) / (alpha + data.age),
            psi_ab - digamma(a + b + x + k),
            digamma(b + x + k) - digamma(a + b + x + k) - digamma(b) + psi_ab,
        ]
    )
    d_second = np.stack(
        [
            -np.log(alpha + data.tx),
            -(r + x) / (alpha + data.tx),
            1.0 / a + psi_ab - digamma(a + b + x2 + k),
            digamma(b + x2 + k - 1.0) - digamma(a + b + x2 + k) - digamma(b) + psi_ab,
        ]
    )
    return d_common, d_first, d_second


def _objective(theta: FloatArray, data: _Data, variant: BetaGeoVariant) -> tuple[float, FloatArray]:
    """Mean negative log-likelihood per customer and its gradient in log-parameters."""
    r, alpha, a, b = np.exp(theta)
    common, first, second, _ = _loglik_terms(r, alpha, a, b, data, variant)
    total = np.logaddexp(first, second)
    # Softmax weights of the two bracket terms: d log(e^f + e^s) = w_f df + w_s ds.
    weight_first = np.exp(first - total)
    weight_second = np.exp(second - total)
    d_common, d_first, d_second = _gradient_terms(r, alpha, a, b, data, variant)
    per_customer = d_common + weight_first * d_first + weight_second * d_second
    scale = data.weights / data.weights.sum()
    value = -float(scale @ (common + total))
    gradient = -(per_customer @ scale) * np.array([r, alpha, a, b])
    return value, gradient


def _start(data: _Data) -> FloatArray:
    # r = a = b = 1 and alpha matching the observed mean purchase rate sum(x) / sum(T): a start
    # on the data's own time scale, whatever the unit.
    rate = float(data.weights @ data.x) / max(float(data.weights @ data.age), 1e-12)
    alpha = 1.0 / max(rate, 1e-6)
    return np.log(np.array([1.0, min(alpha, 1e6), 1.0, 1.0], dtype=np.float64))


def fit_beta_geo(
    frequency: ArrayLike,
    recency: ArrayLike,
    age: ArrayLike,
    *,
    variant: BetaGeoVariant = "bgnbd",
    weights: ArrayLike | None = None,
) -> BetaGeoFit:
    """Maximum-likelihood BG/NBD or MBG/NBD fit (FHL 2005 section 3; Batislam et al. 2007).

    Rows are first compressed to unique (x, t_x, T) with their (summed) weights; the optimiser
    is L-BFGS-B on log-parameters with the analytic gradient, with a regularised refit when the
    first fit does not converge (see `plugin.domain.mle`).
    """
    raw = _as_data(frequency, recency, age, weights)
    if raw.x.size == 0 or raw.weights.sum() <= 0:
        raise ValueError("cannot fit a model to no customers")
    compressed = compress_rfm(raw.x, raw.tx, raw.age)
    summed = np.bincount(
        compressed.inverse, weights=raw.weights, minlength=compressed.weights.size
    ).astype(np.float64)
    data = _Data(compressed.frequency, compressed.recency, compressed.age, summed)
    outcome = maximise_likelihood(lambda theta: _objective(theta, data, variant), _start(data))
    r, alpha, a, b = (float(v) for v in np.exp(outcome.log_params))
    return BetaGeoFit(
        variant=variant,
        params=BetaGeoParams(r, alpha, a, b),
        log_likelihood=-outcome.mean_neg_log_likelihood * float(data.weights.sum()),
        converged=outcome.converged,
        iterations=outcome.iterations,
        regularised=outcome.regularised,
        customers=round(float(data.weights.sum())),
        message=outcome.message,
    )


def _log_odds_dead(
    params: BetaGeoParams, x: FloatArray, tx: FloatArray, age: FloatArray, variant: BetaGeoVariant
) -> FloatArray:
    """log of a/(b+x+k-1) ((alpha+T)/(alpha+t_x))^(r+x): the odds of having dropped out."""
    k = _shift(variant)
    x_safe = np.maximum(x, 1.0) if variant == "bgnbd" else x
    log_ratio = np.log(params.alpha + age) - np.log(params.alpha + tx)
    return np.asarray(
        np.log(params.a) - np.log(params.b + x_safe + k - 1.0) + (params.r + x) * log_ratio,
        dtype=np.float64,
    )


def probability_alive(
    params: BetaGeoParams,
    frequency: ArrayLike,
    recency: ArrayLike,
    age: ArrayLike,
    variant: BetaGeoVariant = "bgnbd",
) -> FloatArray:
    """P(alive at T | x, t_x, T).

    BG/NBD (FHL 2005 appendix, eq. A2 and Fader, Hardie and Lee 2008 note "Computing P(alive)"):
        1 / (1 + [x > 0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x));
    MBG/NBD (Batislam et al. 2007): 1 / (1 + a/(b+x) ((alpha+T)/(alpha+t_x))^(r+x)).
    Computed as expit(-log odds), which is exact at both ends.
    """
    data = _as_data(frequency, recency, age, None)
    log_odds = _log_odds_dead(params, data.x, data.tx, data.age, variant)
    alive = np.asarray(expit(-log_odds), dtype=np.float64)
    if variant == "bgnbd":
        alive = np.where(data.x > 0, alive, 1.0)
    return alive


def expected_purchases(
    params: BetaGeoParams,
    horizon: float,
    frequency: ArrayLike,
    recency: ArrayLike,
    age: ArrayLike,
    variant: BetaGeoVariant = "bgnbd",
) -> FloatArray:
    """Expected repeat purchases in (T, T + horizon] given (x, t_x, T), FHL (2005) eq. 10:

        E = (c / (a-1)) [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x+k; c; z)] P(alive),
        c = a+b+x+k-1, z = t/(alpha+T+t)   (k = 0 BG/NBD, 1 MBG/NBD, Batislam et al. eq. 6).

    Writing S = ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x+k; c; z), which is
    E[exp(-lambda p t) | alive] over the posterior, the power and 2F1 over/underflow for heavy
    buyers, so S is computed in turn, on the customers where the previous form is not finite, as:
    1. Euler's transformation (Abramowitz and Stegun 15.3.3): (1-z)^(a-1) 2F1(c-r-x, a-1; c; z),
       whose first two arguments no longer grow with x;
    2. Pfaff's (A&S 15.3.4): 2F1(r+x, a+k-1; c; -t/(alpha+T)), for very large a and b, where
       (1-z)^(a-1) underflows while the 2F1 above overflows;
    3. the limit as the Beta(a, b) dropout law becomes a point mass at p0 = (a-1)/c:
       ((alpha+T)/(alpha+T+p0 t))^(r+x), off by O(1/(a+b)) relative.
    `horizon` is in the time unit of the data.
    """
    data = _as_data(frequency, recency, age, None)
    k = _shift(variant)
    a = params.a if abs(params.a - 1.0) > 1e-9 else 1.0 + 1e-9  # removable singularity at a = 1
    c = a + params.b + data.x + k - 1.0
    # c = 0 (BG/NBD, x = 0, a + b = 1) is a removable singularity of c * 2F1(.; c; .) as well
    c = np.where(np.abs(c) < 1e-9, 1e-9, c)
    survival = _discounted_survival(params, a, c, k, data, horizon)
    alive = probability_alive(params, data.x, data.tx, data.age, variant)
    # an expected count is never negative; clip the last-digit rounding of 1 - S near 0
    expected = np.maximum(c / (a - 1.0) * (1.0 - survival), 0.0) * alive
    return np.asarray(expected, dtype=np.float64)


def _discounted_survival(
    params: BetaGeoParams, a: float, c: FloatArray, k: float, data: _Data, horizon: float
) -> FloatArray:
    """S of `expected_purchases`, by the first of its three forms that is finite."""
    base = params.alpha + data.age
    log_one_minus_z = np.log(base) - np.log(base + horizon)
    z = horizon / (base + horizon)
    hyper = _hyp2f1(c - params.r - data.x, a - 1.0, c, z)
    power = np.exp((a - 1.0) * log_one_minus_z)
    # inf * 0 would be NaN with a warning: leave those entries NaN quietly for the next form.
    euler = np.multiply(power, hyper, out=np.full_like(z, np.nan), where=np.isfinite(hyper))
    bad = ~np.isfinite(euler)
    if not np.any(bad):
        return np.asarray(euler, dtype=np.float64)
    pfaff = _hyp2f1(params.r + data.x[bad], a + k - 1.0, c[bad], -horizon / base[bad])
    limit = np.exp(-(params.r + data.x[bad]) * np.log1p((a - 1.0) / c[bad] * horizon / base[bad]))
    # E >= 0 needs S <= 1 when a > 1 and S >= 1 when a < 1; the Pfaff series alternates and can
    # break that by rounding when S is tiny (its precision there is ~1e-6 absolute).
    plausible = np.isfinite(pfaff) & (pfaff >= 0.0) & ((1.0 - pfaff) * (a - 1.0) >= 0.0)
    euler[bad] = np.where(plausible, pfaff, limit)
    return np.asarray(euler, dtype=np.float64)


def _hyp2f1(a: FloatArray, b: float, c: FloatArray, z: FloatArray) -> FloatArray:
    """Gauss 2F1 from scipy, nudging `a` by 1e-9 (relative) where scipy returns inf or NaN.

    scipy 1.17's hyp2f1 returns inf for z near 1 when c - a - b is an integer (the degenerate case
    of its 1 - z transformation, A&S 15.3.10-12), e.g. 2F1(2, 1; 101; 0.99), while the series
    converges to 1.0202. The function is smooth in `a`, so the nudged value is off by ~1e-9.
    """
    value = np.asarray(hyp2f1(a, b, c, z), dtype=np.float64)
    bad = ~np.isfinite(value)
    if np.any(bad):
        nudged = a + 1e-9 * np.maximum(np.abs(a), 1.0)
        value = np.where(bad, hyp2f1(nudged, b, c, z), value)
    return value


def median_time_to_next_purchase(
    params: BetaGeoParams, frequency: ArrayLike, recency: ArrayLike, age: ArrayLike
) -> FloatArray:
    """Median wait from T to the next purchase, for a customer who is still alive.

    While alive the rate has posterior Gamma(r+x, alpha+T) (FHL 2005 eq. 8 and appendix), and in
    both BG/NBD and MBG/NBD dropout only happens right after a purchase, so the wait W is
    exponential given lambda; mixed over the posterior, P(W > w) = ((alpha+T)/(alpha+T+w))^(r+x),
    a Lomax law with median (alpha+T)(2^(1/(r+x)) - 1). We report the median because the mean,
    (alpha+T)/(r+x-1), is infinite when r+x <= 1. Multiply by P(alive) to judge if it will come.
    """
    data = _as_data(frequency, recency, age, None)
    shape = params.r + data.x
    return np.asarray((params.alpha + data.age) * np.expm1(np.log(2.0) / shape), dtype=np.float64)
