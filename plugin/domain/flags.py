"""Lifecycle flags per customer, and the reasons behind each tag in a merchant's words.

Every threshold is a per-shop setting (`ScoringSettings`); money in shop currency, days.
- top-20: predicted CLV > 0 and >= the shop's top_clv_threshold, the smallest predicted CLV among
  the top `top_share` of customers, which are never more than that share: customers tied at the
  cut-off are all in only when all of them fit (see `top_threshold`).
- tier-vip: trailing-12-month spend >= tier_vip; tier-insider: >= tier_insider and < tier_vip;
  tier-enthusiast: > 0 and < tier_insider. At most one tier; none without spend in 12 months.
- win-back: days since the last order >= win_back_days, or, for customers with a rhythm (2+
  purchase days of the shop's calendar), > max(win_back_rhythm_factor x mean gap,
  win_back_rhythm_min_days), the gap being the mean days between purchase days
  (`plugin.domain.customer_figures.mean_purchase_day_gap`: same-day orders are no rhythm).
- churn-risk: P(alive) < churn_p_alive.
- reorder-due: a consumable the customer bought is due: days since its last purchase (of u
  units) >= reorder_grace x u x its interval, and fewer than reorder_lapse x u x its interval
  (after that the customer has lapsed, which win-back covers). See
  `plugin.domain.replenishment`.
- spend-declining: the mean of the last spend_recent_orders orders < spend_declining_ratio x the
  mean of the earlier orders (at least spend_earlier_orders of them, with a positive mean).
"""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
from numpy.typing import NDArray

from plugin.domain.customer_figures import CustomerFigures
from plugin.domain.scoring_types import FloatArray, ScoringSettings

BoolArray = NDArray[np.bool_]
FLAGS: tuple[str, ...] = (
    "top-20",
    "tier-enthusiast",
    "tier-insider",
    "tier-vip",
    "win-back",
    "churn-risk",
    "reorder-due",
    "spend-declining",
)


def top_threshold(predicted_clv: FloatArray, share: float) -> float:
    """The smallest predicted CLV among the top `share` of customers (inf when there are none).

    The top share is k = ceil(n x share) customers, and v the k-th largest value. Customers above
    v are always in. Those at v are in only if every customer at v fits within the k; otherwise
    none of them is, and the threshold is the smallest value above v (inf when there is none).
    Why: the tag promises a top fifth, and a tied group that does not fit can only be cut by
    telling equal customers apart (by id, or at random) or by letting all of them in; the first
    gives one of two identical customers the tag and not the other, and changes with the
    customers' ids, the second tags 100% of a shop where 90% share one value. So the flag may
    cover fewer than k customers (none when the whole shop ties), never more. O(n).
    """
    values = np.asarray(predicted_clv, dtype=np.float64)
    n = values.size
    count = min(n, math.ceil(n * share - 1e-9)) if share > 0 else 0
    if count == 0:
        return math.inf
    cutoff = float(np.partition(values, n - count)[n - count])
    if np.count_nonzero(values >= cutoff) <= count:
        return cutoff
    above = values[values > cutoff]
    return float(above.min()) if above.size else math.inf


def rhythm_rule_days(gap: FloatArray, settings: ScoringSettings) -> FloatArray:
    """Days without an order beyond which the rhythm rule of win-back fires (inf: no rhythm).

    `gap` is the mean days between purchase days (NaN with one purchase day)."""
    has_rhythm = np.isfinite(gap) & (gap > 0)
    days = np.maximum(settings.win_back_rhythm_factor * gap, settings.win_back_rhythm_min_days)
    return np.where(has_rhythm, days, np.inf)


def compute_flags(
    figures: CustomerFigures,
    p_alive: FloatArray,
    predicted_clv: FloatArray,
    top_clv_threshold: float,
    reorder_due: BoolArray,
    settings: ScoringSettings,
) -> dict[str, BoolArray]:
    """Every flag of the module docstring, one boolean array per flag name."""
    spend = figures.trailing_12m_spend
    since = figures.days_since_last_order
    recent, earlier = figures.recent_mean_spend, figures.earlier_mean_spend
    comparable = np.isfinite(earlier) & (earlier > 0)
    ratio = np.divide(recent, earlier, out=np.ones_like(recent), where=comparable)
    rhythm = rhythm_rule_days(figures.mean_days_between_orders, settings)
    return {
        "top-20": (predicted_clv > 0) & (predicted_clv >= top_clv_threshold),
        "tier-enthusiast": (spend > 0) & (spend < settings.tier_insider),
        "tier-insider": (spend >= settings.tier_insider) & (spend < settings.tier_vip),
        "tier-vip": spend >= settings.tier_vip,
        "win-back": (since >= settings.win_back_days) | (since > rhythm),
        "churn-risk": p_alive < settings.churn_p_alive,
        "reorder-due": np.asarray(reorder_due, dtype=np.bool_),
        "spend-declining": comparable & (ratio < settings.spend_declining_ratio),
    }


# How far from a whole number of thousandths (of money; of a percent's last decimal) a float
# may be and still be one.
_MILLS_SLACK = 1e-6


def money(value: float) -> str:
    """An amount in shop currency as a merchant reads it: 1,234.50; with three decimals when it
    has them (Kuwaiti dinars and the like: 749.999 must not read as 750.00 below a threshold of
    750). A figure with more (a prediction) is rounded to two."""
    mills = value * 1000.0
    exact_mills = abs(mills - round(mills)) < _MILLS_SLACK
    return f"{value:,.3f}" if exact_mills and round(mills) % 10 else f"{value:,.2f}"


def money_below(value: float, limit: Decimal) -> str:
    """`value`, below `limit`, as `money` writes it, unless that reads at or above the limit (a
    mean of 59.9967 rounded to 60.00, below 60.00): then cut, not rounded, to cents."""
    shown = money(value)
    if written_amount(shown) < limit:
        return shown
    return f"{math.floor(value * 100.0) / 100.0:,.2f}"


def written_amount(text: str) -> Decimal:
    """The amount `money` (or `percent`, without its sign) wrote, exactly."""
    return Decimal(text.replace(",", ""))


_DAY_SLACK = 1e-9  # 2.9999999999 days of float arithmetic still read as 3 days


def days(value: float) -> str:
    """A number of days in words: "1 day", "12 days"."""
    whole = math.floor(value + _DAY_SLACK)
    return "1 day" if whole == 1 else f"{whole} days"


def whole_days(values: FloatArray) -> FloatArray:
    """The whole number of days that `days` writes for each value: equal wholes, equal words."""
    return np.floor(values + _DAY_SLACK)


def percent(value: float) -> str:
    """A share as a percentage with as few decimals (up to 3) as show it exactly: 30%, 12.5%,
    0.5%; one with more is rounded to 3. A setting quoted in a reason reads as it was set (a
    churn threshold of 0.125 rounded to "12%" would make 12.4% read above it)."""
    hundred = 100.0 * value
    for digits in range(3):
        scaled = hundred * 10.0**digits
        if abs(scaled - round(scaled)) < _MILLS_SLACK:
            return f"{hundred:.{digits}f}%"
    return f"{hundred:.3f}%"


def percent_below(value: float, limit: float) -> str:
    """`value`, below `limit`, as a percentage that reads below `percent(limit)`: cut, not
    rounded, to the decimals the limit shows (29% below 30%, 12.4% below 12.5%), else to the
    first of more (up to 3), then fewer, that reads below it (a limit rounded to 3 decimals
    may read equal to the value at 3)."""
    shown_limit = percent(limit)[:-1]
    decimals = len(shown_limit.partition(".")[2])
    for digits in (*range(decimals, 4), *range(decimals)):
        scale = 10.0**digits
        shown = math.floor(100.0 * value * scale + _DAY_SLACK) / scale
        if shown < float(shown_limit):
            break
    return f"{shown:.{digits}f}%"


def days_beyond(since: FloatArray, limit: FloatArray) -> FloatArray:
    """The days `since`, beyond `limit`, as the reasons write them: whole, or cut (not rounded)
    to as few decimals (up to 3) as it takes to read more than `days(limit)`."""
    shown = whole_days(since)
    for digits in range(1, 4):
        scale = 10.0**digits
        finer = np.floor(since * scale + _DAY_SLACK) / scale
        shown = np.where(shown > whole_days(limit), shown, finer)
    return shown


def days_shown(value: float) -> str:
    """A number of days as `days_beyond` gives it, in words."""
    return "1 day" if value == 1 else f"{value:g} days"
