"""Seeded simulation of the BG/NBD (or MBG/NBD) purchase process with Gamma-Gamma spend.

For tests and benchmarks: data drawn from the very process a model assumes, so that a fit can be
checked against the parameters that generated it. The story is FHL (2005) section 2, and for
spend Fader and Hardie (2013): per customer lambda ~ Gamma(r, rate alpha), p ~ Beta(a, b),
nu ~ Gamma(q, rate gamma); purchases arrive as a Poisson(lambda) process; after each repeat
purchase (MBG/NBD: also right after the first) the customer drops out with probability p; each
repeat purchase's amount is Gamma(p_spend, rate nu).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from plugin.domain.bgnbd import BetaGeoParams, BetaGeoVariant
from plugin.domain.gamma_gamma import GammaGammaParams

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class SimulatedCustomers:
    """Per customer: repeat purchases, recency and age (time unit of alpha), mean repeat spend."""

    frequency: FloatArray
    recency: FloatArray
    age: FloatArray
    monetary_value: FloatArray


def _repeat_purchases(
    params: BetaGeoParams, age: FloatArray, variant: BetaGeoVariant, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """(purchases that would happen by T if alive, repeat purchases actually made)."""
    rate = rng.gamma(params.r, 1.0 / params.alpha, age.size)
    dropout = rng.beta(params.a, params.b, age.size)
    arrivals = rng.poisson(rate * age).astype(np.float64)
    # Number of repeat purchases after which the customer drops out: geometric on 1, 2, ...;
    # MBG/NBD can also drop out after the first purchase, i.e. after 0 repeat purchases.
    lifetime = rng.geometric(dropout).astype(np.float64) - (1.0 if variant == "mbgnbd" else 0.0)
    return arrivals, np.minimum(arrivals, lifetime)


def simulate_customers(
    params: BetaGeoParams,
    age: ArrayLike,
    *,
    seed: int,
    variant: BetaGeoVariant = "bgnbd",
    spend: GammaGammaParams | None = None,
) -> SimulatedCustomers:
    """Draw one customer per entry of `age` (time from first purchase to the calibration end).

    Given n Poisson arrivals in (0, T], their times are n sorted uniforms, so the x-th is
    T * Beta(x, n - x + 1): recency follows without drawing every purchase time. The mean of x
    Gamma(p, nu) amounts is Gamma(p x, rate nu x). Without `spend`, monetary_value is zero.
    """
    rng = np.random.default_rng(seed)
    t = np.asarray(age, dtype=np.float64)
    arrivals, x = _repeat_purchases(params, t, variant, rng)
    has_repeat = x > 0
    fraction = rng.beta(np.where(has_repeat, x, 1.0), np.where(has_repeat, arrivals - x + 1, 1.0))
    recency = np.where(has_repeat, t * fraction, 0.0)
    monetary = np.zeros_like(t)
    if spend is not None:
        nu = rng.gamma(spend.q, 1.0 / spend.gamma, t.size)
        shape = np.where(has_repeat, spend.p * x, 1.0)
        draw = rng.gamma(shape, 1.0 / np.where(has_repeat, nu * x, 1.0))
        monetary = np.where(has_repeat, draw, 0.0)
    return SimulatedCustomers(x, recency, t, monetary)


@dataclass(frozen=True)
class SimulatedPurchases:
    """One entry per purchase, the first purchases included: customer index, day, amount."""

    customer_ids: NDArray[np.int64]
    days: FloatArray
    amounts: FloatArray


def simulate_purchases(
    params: BetaGeoParams,
    spend: GammaGammaParams,
    first_days: ArrayLike,
    *,
    end_day: float,
    seed: int,
    variant: BetaGeoVariant = "bgnbd",
) -> SimulatedPurchases:
    """Draw every purchase of customers first buying on `first_days`, up to `end_day`.

    Times in days (alpha is then per day); continuous, so two purchases can share a day.
    """
    rng = np.random.default_rng(seed)
    start = np.asarray(first_days, dtype=np.float64)
    window = np.maximum(end_day - start, 0.0)
    arrivals, made = _repeat_purchases(params, window, variant, rng)
    owner = np.repeat(np.arange(start.size), arrivals.astype(np.int64))
    # All n arrivals are uniform in the window; the customer makes only the first `made` of them.
    offsets = rng.random(owner.size) * window[owner]
    order = np.lexsort((offsets, owner))
    owner, offsets = owner[order], offsets[order]
    rank = np.arange(owner.size) - np.searchsorted(owner, owner)
    kept = rank < made[owner]
    ids = np.concatenate((np.arange(start.size), owner[kept])).astype(np.int64)
    days = np.concatenate((start, start[owner[kept]] + offsets[kept]))
    nu = rng.gamma(spend.q, 1.0 / spend.gamma, start.size)
    amounts = rng.gamma(spend.p, 1.0 / nu[ids])
    return SimulatedPurchases(ids, days, amounts)


def simulate_pareto_customers(
    purchase_rate: tuple[float, float],
    dropout_rate: tuple[float, float],
    age: ArrayLike,
    *,
    seed: int,
) -> SimulatedCustomers:
    """Draw customers from the Pareto/NBD process (Schmittlein, Morrison and Colombo 1987).

    lambda ~ Gamma(r, rate alpha) and mu ~ Gamma(s, rate beta) from `purchase_rate` = (r, alpha)
    and `dropout_rate` = (s, beta); the lifetime is Exponential(mu); purchases are Poisson(lambda)
    while alive. Given x arrivals in the alive span L = min(lifetime, T), the last is at
    L * U^(1/x), the largest of x uniforms.
    """
    rng = np.random.default_rng(seed)
    t = np.asarray(age, dtype=np.float64)
    (r, alpha), (s, beta) = purchase_rate, dropout_rate
    rate = rng.gamma(r, 1.0 / alpha, t.size)
    lifetime = rng.exponential(1.0 / rng.gamma(s, 1.0 / beta, t.size))
    alive_span = np.minimum(lifetime, t)
    x = rng.poisson(rate * alive_span).astype(np.float64)
    last = alive_span * rng.random(t.size) ** (1.0 / np.maximum(x, 1.0))
    return SimulatedCustomers(x, np.where(x > 0, last, 0.0), t, np.zeros_like(t))
