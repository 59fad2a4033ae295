"""Vectorised simulation of one chunk of customers: latent rates, purchase times, order kinds.

All times are float days since the start of the history; money is integer cents in the shop's
currency. Nothing here builds Python objects per order, so a chunk of 50,000 customers costs a
few numpy calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from plugin.devstore.gen_config import GeneratorConfig, LifecycleParams, PopulationParams

# Order kinds. PURCHASE and REFILL are the real purchases an app should count; the rest are
# the noise it must ignore or count as zero.
PURCHASE = 0
REFILL = 1
CANCELLED = 2
FULL_REFUND = 3
TEST = 4
GUEST = 5
KIND_NAMES = ("purchase", "refill", "cancelled", "full_refund", "test", "guest")
MIN_ORDER_CENTS = 100


@dataclass(frozen=True)
class CustomerArrays:
    """Latent truth and observable birth of one chunk of customers."""

    index: NDArray[np.int64]
    birth_day: NDArray[np.float64]
    lam: NDArray[np.float64]
    p_drop: NDArray[np.float64]
    spend_mean: NDArray[np.float64]
    alive: NDArray[np.bool_]
    death_day: NDArray[np.float64]
    currency: NDArray[np.int64]


@dataclass(frozen=True)
class PurchaseArrays:
    """The planted purchases of a chunk (first purchase at birth, then BG/NBD repeats)."""

    customer: NDArray[np.int64]
    day: NDArray[np.float64]
    target_cents: NDArray[np.int64]


def group_cumsum(values: NDArray[np.float64], counts: NDArray[np.int64]) -> NDArray[np.float64]:
    """Cumulative sums restarting at each group; groups are consecutive runs of the given sizes."""
    total = np.cumsum(values)
    ends = np.cumsum(counts)
    starts = ends - counts
    before = np.where(starts > 0, total[np.maximum(starts - 1, 0)], 0.0) if len(total) else starts
    result: NDArray[np.float64] = total - np.repeat(before, counts)
    return result


def simulate_customers(
    rng: np.random.Generator, config: GeneratorConfig, first_index: int, n: int
) -> tuple[CustomerArrays, PurchaseArrays]:
    """Draw latent rates and the BG/NBD purchase history of n customers.

    BG/NBD (Fader, Hardie & Lee 2005): while alive, repeat purchases are Poisson with rate
    lambda; after each repeat purchase the customer drops out with probability p, so the number
    of repeats made before dropping out is D ~ Geometric(p) on {1, 2, ...}. With N(T) ~
    Poisson(lambda T) purchases of the Poisson process in the window T, the observed repeats are
    the first min(D, N) of N uniform order statistics on (0, T), and the customer is alive at the
    end iff N < D. The j-th of n uniform order statistics is S_j / S_{n+1} for S the partial sums
    of standard exponentials; S_{n+1} = S_k + Gamma(n + 1 - k), so only k exponentials are drawn.
    """
    pop = config.population
    horizon = float(config.history_days)
    birth = rng.uniform(0.0, horizon, n)
    window = horizon - birth
    lam = rng.gamma(pop.r, 1.0 / pop.alpha, n)
    p_drop = rng.beta(pop.a, pop.b, n)
    dropout_after = rng.geometric(np.maximum(p_drop, 1e-12))
    in_window = rng.poisson(lam * window)
    k = np.minimum(dropout_after, in_window).astype(np.int64)
    alive = in_window < dropout_after
    owner = np.repeat(np.arange(n, dtype=np.int64), k)
    sums = group_cumsum(rng.standard_exponential(int(k.sum())), k)
    last = np.zeros(n)
    has = k > 0
    last[has] = sums[np.cumsum(k)[has] - 1]
    scale = last + rng.gamma((in_window - k + 1).astype(np.float64), 1.0)
    repeat_day = birth[owner] + window[owner] * sums / scale[owner]
    death = np.full(n, np.inf)
    death[~alive] = birth[~alive] + window[~alive] * last[~alive] / scale[~alive]
    nu = rng.gamma(pop.spend_q, 1.0 / pop.spend_gamma, n)
    customers = CustomerArrays(
        index=np.arange(first_index, first_index + n, dtype=np.int64),
        birth_day=birth,
        lam=lam,
        p_drop=p_drop,
        spend_mean=pop.spend_p / nu,
        alive=alive,
        death_day=death,
        currency=draw_currency(rng, config.lifecycle, n),
    )
    purchases = _purchases(rng, pop, birth, owner, repeat_day, nu)
    return customers, purchases


def draw_currency(rng: np.random.Generator, life: LifecycleParams, n: int) -> NDArray[np.int64]:
    """Presentment currencies of n orderers, by the configured shares."""
    shares = np.array([c[2] for c in life.presentment_currencies], dtype=np.float64)
    drawn: NDArray[np.int64] = rng.choice(len(shares), size=n, p=shares / shares.sum())
    return drawn.astype(np.int64)


def _purchases(
    rng: np.random.Generator,
    pop: PopulationParams,
    birth: NDArray[np.float64],
    owner: NDArray[np.int64],
    repeat_day: NDArray[np.float64],
    nu: NDArray[np.float64],
) -> PurchaseArrays:
    n = birth.shape[0]
    customer = np.concatenate([np.arange(n, dtype=np.int64), owner])
    day = np.concatenate([birth, repeat_day])
    order = np.lexsort((day, customer))
    customer, day = customer[order], day[order]
    value = rng.gamma(pop.spend_p, 1.0 / nu[customer])
    cents = np.maximum(np.round(value * 100.0), MIN_ORDER_CENTS).astype(np.int64)
    return PurchaseArrays(customer=customer, day=day, target_cents=cents)


def refill_days(
    rng: np.random.Generator,
    start_day: NDArray[np.float64],
    cycle_days: NDArray[np.float64],
    stop_day: NDArray[np.float64],
    noise: float,
    abandon: float,
    first_units: NDArray[np.int64],
    bought: tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]],
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Refill chains of one unit a refill. Chain i starts with first_units[i] units bought at
    start_day[i], which last first_units*cycle*j days; each refill lasts cycle*j days, with
    j = clip(1 + noise*N(0,1), 0.5, 1.5) drawn per refill. bought holds (chain, day, units) of
    the customer's other purchase lines of the chain's product, on or after its start: a line of
    q units bought before the refill that would come next pushes that refill and every later one
    back by q*cycle days, so refill k comes on the first day x = b_k + cycle*(units bought before
    x), b_k its day without them; a line bought after the chain's last refill changes nothing.
    Every unit covers one cycle (a chain's own units times j), so the interval per unit is the
    cycle.

    The chain's length is drawn first: the customer abandons with probability `abandon` per
    refill. Returns (chain index, refill day) for every refill before its chain's stop_day.
    """
    n = start_day.shape[0]
    length = np.asarray(rng.geometric(abandon, size=n), dtype=np.int64) - 1
    chain = np.repeat(np.arange(n, dtype=np.int64), length)
    jitter = np.clip(1.0 + noise * rng.standard_normal(int(length.sum())), 0.5, 1.5)
    units = np.ones(chain.shape[0])
    started = length > 0
    units[(np.cumsum(length) - length)[started]] = np.maximum(first_units[started], 1)
    day = start_day[chain] + group_cumsum(cycle_days[chain] * units * jitter, length)
    day = _pushed(day, chain, cycle_days, bought)
    keep = day < stop_day[chain]
    return chain[keep], day[keep]


def _pushed(
    day: NDArray[np.float64],
    chain: NDArray[np.int64],
    cycle_days: NDArray[np.float64],
    bought: tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]],
) -> NDArray[np.float64]:
    # Iterating x <- b_k + cycle*(units bought before x) from x = b_k only raises x, so it stops
    # at the first such day. A purchase on a refill's very day sorts after it: it does not push
    # it. Cycles are whole days, so the sums of q*cycle are exact.
    bought_chain, bought_day, bought_units = bought
    has_bought = np.zeros(cycle_days.shape[0], dtype=bool)
    has_bought[bought_chain] = True
    pending = np.flatnonzero(has_bought[chain])
    base = day[pending]
    owner = np.r_[chain[pending], bought_chain]
    is_bought = np.r_[np.zeros(base.shape[0], dtype=bool), np.ones(bought_chain.shape[0], bool)]
    added = np.r_[np.zeros(base.shape[0]), cycle_days[bought_chain] * bought_units]
    counts = np.bincount(owner, minlength=cycle_days.shape[0]).astype(np.int64)
    at = base
    while True:
        order = np.lexsort((is_bought, np.r_[at, bought_day], owner))
        before = np.empty(owner.shape[0])
        before[order] = group_cumsum(added[order], counts)
        moved = base + before[: base.shape[0]]
        if np.array_equal(moved, at):
            break
        at = moved
    result = day.copy()
    result[pending] = at
    return result


def extra_order_days(
    rng: np.random.Generator, base_day: NDArray[np.float64], horizon: float, n: int
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Place n extra orders shortly after randomly chosen existing orders (within the history).

    Extra orders (cancelled, fully refunded, test) ride along real purchases so they fall inside
    a customer's active life, like the orders a real customer cancels or returns.
    """
    if n == 0 or base_day.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    picked = rng.integers(0, base_day.shape[0], n).astype(np.int64)
    gap = rng.uniform(0.05, 3.0, n)
    day = np.minimum(base_day[picked] + gap, (base_day[picked] + horizon) / 2.0)
    return picked, day


def share_count(rng: np.random.Generator, base: int, share: float) -> int:
    """How many extra items make up `share` of the final total: Poisson around base*s/(1-s)."""
    if share <= 0.0 or base == 0:
        return 0
    return int(rng.poisson(base * share / (1.0 - share)))
