"""Pareto/NBD repeat-purchase model: likelihood, fit, P(alive) and expected purchases.

Schmittlein, Morrison and Colombo (1987), "Counting your customers: who are they and what will
they do next?", Management Science 33(1); expressions from Fader and Hardie (2005), "A note on
deriving the Pareto/NBD model and related expressions" (brucehardie.com, note 009). While alive a
customer buys at rate lambda ~ Gamma(r, alpha); their lifetime is exponential with rate
mu ~ Gamma(s, beta), so unlike BG/NBD they can drop out at any moment.

The likelihood is usually written with 2F1 terms whose parameter derivatives have no closed form.
We use its integral form instead (the note, eqs. 14-18, before the integral is done):

    L = Gamma(r+x) alpha^r beta^s / Gamma(r) * [ (alpha+T)^-(r+x) (beta+T)^-s  +  s I ],
    I = integral from t_x to T of (alpha+tau)^-(r+x) (beta+tau)^-(s+1) dtau,

(the first term: alive throughout; the second: died at tau in (t_x, T]). Its derivatives are
integrals of the same kernel times -log(alpha+tau), -(r+x)/(alpha+tau), -log(beta+tau) and
-(s+1)/(beta+tau), so one quadrature gives the value and the gradient. I is computed in
l = log(m + tau), m = min(alpha, beta), where the log-integrand is smooth with slope
-(p_m - 1 + p_M (m+tau)/(M+tau)) (p_m, p_M the powers of the two kernels), by Gauss-Legendre
on panels whose widths adapt to that slope (each panel lets the integrand fall by at most e^-3,
and spans at most one unit of l), all in logs. Against adaptive quadrature and the closed form,
the log of I agrees to 1e-10 over r, s in 0.01..50, alpha, beta in 1e-6..1e4, x up to 1000,
T up to 1e5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import digamma, expit, gammaln, logsumexp

from plugin.domain.beta_geo_likelihood import Rows, factorise_rows
from plugin.domain.mle import FitDiagnostics, maximise_likelihood
from plugin.domain.numeric import dot

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]
_NODES, _NODE_WEIGHTS = np.polynomial.legendre.leggauss(8)
_PANELS = 16
_DECAY_PER_PANEL = 3.0  # the integrand falls by at most e^-3 across a panel
_MAX_PANEL = 1.0  # and a panel spans at most one unit of log(m + tau) (or 1/8 of the range)


@dataclass(frozen=True)
class ParetoNbdParams:
    """r, alpha: purchase-rate Gamma (alpha in the time unit); s, beta: dropout-rate Gamma."""

    r: float
    alpha: float
    s: float
    beta: float

    def as_dict(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "s": self.s, "beta": self.beta}


@dataclass(frozen=True)
class ParetoNbdFit(FitDiagnostics):
    """A fitted model; `log_likelihood` is the total over customers, without any penalty."""

    params: ParetoNbdParams


@dataclass(frozen=True)
class _Terms:
    """Per row: log of the alive term and log of s I. Per quadrature node (flat, `node_row`
    naming its row): the node's share of its row's I, log(alpha+tau) and log(beta+tau)."""

    log_alive: FloatArray
    log_died: FloatArray
    node_row: IndexArray
    node_share: FloatArray
    log_alpha_tau: FloatArray
    log_beta_tau: FloatArray

    def node_mean(self, values: FloatArray) -> FloatArray:
        """Per row, the share-weighted sum of a per-node quantity."""
        return np.bincount(
            self.node_row, weights=self.node_share * values, minlength=self.log_alive.size
        ).astype(np.float64)


@dataclass(frozen=True)
class _Kernel:
    """(m+tau)^-p_m (M+tau)^-p_M with m = min(alpha, beta), M = max(alpha, beta), per row."""

    m: float
    big: float
    p_m: FloatArray
    p_big: FloatArray

    def slope(self, ell: FloatArray, rows: IndexArray) -> FloatArray:
        """Decay rate of log[(m+tau) kernel] in l = log(m+tau), for the given rows."""
        e = np.exp(ell)
        return np.asarray(self.p_m[rows] - 1.0 + self.p_big[rows] * e / (e + (self.big - self.m)))

    def log_integrand(self, ell: FloatArray, rows: IndexArray) -> tuple[FloatArray, FloatArray]:
        """(log[(m+tau) kernel], log(M+tau)) at nodes l of shape (len(rows), nodes)."""
        log_big_tau = np.log(np.exp(ell) + (self.big - self.m))
        value = (1.0 - self.p_m[rows])[:, None] * ell - self.p_big[rows][:, None] * log_big_tau
        return np.asarray(value, dtype=np.float64), log_big_tau


def _kernel(params: FloatArray, x: FloatArray) -> _Kernel:
    r, alpha, s, beta = params
    power_alpha, power_beta = r + x, np.full_like(x, s + 1.0)
    if alpha <= beta:
        return _Kernel(float(alpha), float(beta), power_alpha, power_beta)
    return _Kernel(float(beta), float(alpha), power_beta, power_alpha)


def _panel_width(
    kernel: _Kernel, rows: IndexArray, start: FloatArray, remaining: FloatArray, cap: FloatArray
) -> FloatArray:
    # The slope grows with l, so the width is set by the slope at the panel's end: a few
    # fixed-point steps of width = decay / slope(start + width).
    cap = np.minimum(remaining, cap)
    floor = _DECAY_PER_PANEL / cap
    width = np.minimum(_DECAY_PER_PANEL / np.maximum(kernel.slope(start, rows), floor), cap)
    for _ in range(4):
        slope = np.maximum(kernel.slope(start + width, rows), floor)
        width = np.minimum(_DECAY_PER_PANEL / slope, cap)
    return width


@dataclass(frozen=True)
class _Quadrature:
    """Flat per-node arrays and the per-row log of the integral."""

    row: IndexArray
    ell: FloatArray
    log_big_tau: FloatArray
    log_term: FloatArray
    log_integral: FloatArray


def _quadrature(kernel: _Kernel, start: FloatArray, end: FloatArray) -> _Quadrature:
    """log of integral over l in [log(m+start), log(m+end)] of (m+tau) kernel, panel by panel;
    a row leaves the loop once its range is covered, so light buyers cost few panels."""
    first = np.log(kernel.m + start)
    total = np.log(kernel.m + end) - first
    longest = np.maximum(_MAX_PANEL, total / (_PANELS // 2))
    done = np.zeros_like(total)
    log_integral = np.full_like(total, -np.inf)
    active = np.flatnonzero(total > 0)
    blocks: list[tuple[IndexArray, FloatArray, FloatArray, FloatArray]] = []
    for panel in range(_PANELS):
        if active.size == 0:
            break
        remaining = total[active] - done[active]
        last = panel == _PANELS - 1
        start_l = first[active] + done[active]
        cap = longest[active]
        width = remaining if last else _panel_width(kernel, active, start_l, remaining, cap)
        ell = start_l[:, None] + width[:, None] * (_NODES[None, :] + 1.0) / 2.0
        value, log_big_tau = kernel.log_integrand(ell, active)
        log_term = value + np.log(width / 2.0)[:, None] + np.log(_NODE_WEIGHTS)[None, :]
        log_integral[active] = np.logaddexp(log_integral[active], logsumexp(log_term, axis=1))
        blocks.append(
            (np.repeat(active, _NODES.size), ell.ravel(), log_big_tau.ravel(), log_term.ravel())
        )
        done[active] += width
        active = active[remaining - width > 1e-12 * np.maximum(total[active], 1.0)]
    if not blocks:
        empty = np.zeros(0)
        return _Quadrature(np.zeros(0, dtype=np.intp), empty, empty, empty, log_integral)
    row, ell_flat, big_flat, term_flat = (np.concatenate(c) for c in zip(*blocks, strict=True))
    return _Quadrature(row.astype(np.intp), ell_flat, big_flat, term_flat, log_integral)


def _terms(params: FloatArray, x: FloatArray, recency: FloatArray, age: FloatArray) -> _Terms:
    r, alpha, s, beta = params
    kernel = _kernel(params, x)
    quad = _quadrature(kernel, recency, age)
    alpha_is_m = alpha <= beta
    return _Terms(
        log_alive=-(r + x) * np.log(alpha + age) - s * np.log(beta + age),
        log_died=np.log(s) + quad.log_integral,
        node_row=quad.row,
        node_share=np.exp(quad.log_term - quad.log_integral[quad.row]),
        log_alpha_tau=quad.ell if alpha_is_m else quad.log_big_tau,
        log_beta_tau=quad.log_big_tau if alpha_is_m else quad.ell,
    )


def _common(params: FloatArray, x: FloatArray) -> FloatArray:
    r, alpha, s, beta = params
    return np.asarray(
        gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta), dtype=np.float64
    )


def pareto_nbd_log_likelihood(
    params: ParetoNbdParams, frequency: ArrayLike, recency: ArrayLike, age: ArrayLike
) -> FloatArray:
    """Per-customer log-likelihood (Fader and Hardie 2005 note, eq. 18, in the integral form
    above); x repeat purchases, recency t_x and age T in one time unit."""
    x, tx, t = _arrays(frequency, recency, age)
    vector = _vector(params)
    terms = _terms(vector, x, tx, t)
    return np.asarray(
        _common(vector, x) + np.logaddexp(terms.log_alive, terms.log_died), dtype=np.float64
    )


def _objective(theta: FloatArray, rows: Rows) -> tuple[float, FloatArray]:
    """Mean negative log-likelihood per customer and its gradient in log(r, alpha, s, beta)."""
    params = np.exp(theta)
    r, alpha, s, beta = params
    x = rows.x_values[rows.x_index]
    age = rows.age_values[rows.age_index]
    recency = rows.recency_values[rows.recency_index]
    terms = _terms(params, x, recency, age)
    both = np.logaddexp(terms.log_alive, terms.log_died)
    on_alive = rows.weights * np.exp(terms.log_alive - both)
    on_died = rows.weights - on_alive
    total = float(rows.weights.sum())
    value = dot(rows.weights, _common(params, x) + both)
    # d log(s I) / d theta = (1/s for s) + E_share[d log integrand / d theta]
    died_r = -terms.node_mean(terms.log_alpha_tau)
    died_alpha = -(r + x) * terms.node_mean(np.exp(-terms.log_alpha_tau))
    died_s = 1.0 / s - terms.node_mean(terms.log_beta_tau)
    died_beta = -(s + 1.0) * terms.node_mean(np.exp(-terms.log_beta_tau))
    gradient = np.array(
        [
            dot(rows.weights, digamma(r + x) - digamma(r) + np.log(alpha))
            - dot(on_alive, np.log(alpha + age))
            + dot(on_died, died_r),
            total * r / alpha - dot(on_alive, (r + x) / (alpha + age)) + dot(on_died, died_alpha),
            total * np.log(beta) - dot(on_alive, np.log(beta + age)) + dot(on_died, died_s),
            total * s / beta - dot(on_alive, s / (beta + age)) + dot(on_died, died_beta),
        ]
    )
    return -value / total, -gradient * params / total


def _arrays(
    frequency: ArrayLike, recency: ArrayLike, age: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    x = np.asarray(frequency, dtype=np.float64)
    tx = np.asarray(recency, dtype=np.float64)
    t = np.asarray(age, dtype=np.float64)
    if not (x.shape == tx.shape == t.shape):
        raise ValueError("frequency, recency and age must have one shape")
    if np.any(x < 0) or np.any(tx < 0) or np.any(t < tx):
        raise ValueError("need frequency >= 0 and 0 <= recency <= age")
    return x, tx, t


def _vector(params: ParetoNbdParams) -> FloatArray:
    return np.array([params.r, params.alpha, params.s, params.beta], dtype=np.float64)


def fit_pareto_nbd(
    frequency: ArrayLike,
    recency: ArrayLike,
    age: ArrayLike,
    *,
    weights: ArrayLike | None = None,
) -> ParetoNbdFit:
    """Maximum-likelihood Pareto/NBD fit on weighted unique (x, t_x, T) rows, L-BFGS-B on
    log-parameters with the analytic gradient and a regularised refit on failure."""
    x, tx, t = _arrays(frequency, recency, age)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    if x.size == 0 or total <= 0:
        raise ValueError("cannot fit a model to no customers")
    rows = factorise_rows(x, tx, t, w)
    # r = s = 1, alpha from the observed purchase rate, beta = alpha: a start on the data's scale
    alpha = min(1.0 / max(dot(w, x) / max(dot(w, t), 1e-12), 1e-6), 1e6)
    start = np.log(np.array([1.0, alpha, 1.0, alpha], dtype=np.float64))
    outcome = maximise_likelihood(lambda theta: _objective(theta, rows), start)
    r, alpha_hat, s, beta = (float(v) for v in np.exp(outcome.log_params))
    return ParetoNbdFit(
        params=ParetoNbdParams(r, alpha_hat, s, beta),
        **outcome.fit_fields(total),
    )


def pareto_probability_alive(
    params: ParetoNbdParams, frequency: ArrayLike, recency: ArrayLike, age: ArrayLike
) -> FloatArray:
    """P(alive at T | x, t_x, T): the alive term's share of the likelihood (Fader and Hardie
    2005 note, eq. 19), expit(log alive - log died)."""
    x, tx, t = _arrays(frequency, recency, age)
    terms = _terms(_vector(params), x, tx, t)
    return np.asarray(expit(terms.log_alive - terms.log_died), dtype=np.float64)


def pareto_expected_purchases(
    params: ParetoNbdParams,
    horizon: float,
    frequency: ArrayLike,
    recency: ArrayLike,
    age: ArrayLike,
) -> FloatArray:
    """Expected purchases in (T, T + t] given (x, t_x, T) (Fader and Hardie 2005 note, eq. 27):

        P(alive) (r+x)(beta+T) / ((alpha+T)(s-1)) [1 - ((beta+T)/(beta+T+t))^(s-1)],

    with [1 - ((beta+T)/(beta+T+t))^(s-1)]/(s-1) computed as -expm1(-(s-1) L)/(s-1),
    L = log1p(t/(beta+T)), whose limit at s = 1 is L.
    """
    x, tx, t = _arrays(frequency, recency, age)
    p = params
    growth = np.log1p(horizon / (p.beta + t))
    shape = p.s - 1.0
    decay = growth if abs(shape) < 1e-12 else -np.expm1(-shape * growth) / shape
    alive = pareto_probability_alive(params, x, tx, t)
    return np.asarray(alive * (p.r + x) * (p.beta + t) / (p.alpha + t) * decay, dtype=np.float64)


def pareto_expected_purchases_if_alive(
    params: ParetoNbdParams, horizon: float, frequency: ArrayLike, age: ArrayLike
) -> FloatArray:
    """Expected purchases in (T, T + t] for a customer alive at T: `pareto_expected_purchases`
    without its P(alive) factor, (r+x)(beta+T) / (alpha+T) [1 - ((beta+T)/(beta+T+t))^(s-1)]/(s-1)
    (Fader and Hardie 2005 note, eq. 27); it depends on (x, T) only."""
    x = np.asarray(frequency, dtype=np.float64)
    t = np.asarray(age, dtype=np.float64)
    p = params
    growth = np.log1p(horizon / (p.beta + t))
    shape = p.s - 1.0
    decay = growth if abs(shape) < 1e-12 else -np.expm1(-shape * growth) / shape
    return np.asarray((p.r + x) * (p.beta + t) / (p.alpha + t) * decay, dtype=np.float64)
