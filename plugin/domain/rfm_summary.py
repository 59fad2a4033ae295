"""Per-customer repeat-purchase summaries (frequency, recency, age, mean repeat spend).

The inputs of the BG/NBD family and of the Gamma-Gamma model, built from one row per purchase.
Conventions follow Fader, Hardie and Lee (2005), "Counting your customers the easy way",
section 2: a customer enters at their first purchase; `frequency` x is the number of repeat
purchases, `recency` t_x the time of the last purchase and `age` T the time of the calibration end,
both measured from the first purchase. Purchases are counted per customer-day: several orders on
one day are one purchase whose amount is their sum, as in the CDNOW data the paper uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

TimeUnit = Literal["day", "week"]
DAYS_PER_UNIT: Mapping[TimeUnit, float] = {"day": 1.0, "week": 7.0}

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class RfmSummary:
    """One entry per customer, sorted by customer id; times in `time_unit`, money in shop currency.

    `monetary_value` is the mean amount of the repeat purchases (the first is left out, as the
    Gamma-Gamma model requires) and 0 for customers without a repeat purchase.
    """

    customer_ids: NDArray[Any]
    frequency: FloatArray
    recency: FloatArray
    age: FloatArray
    monetary_value: FloatArray
    first_day: NDArray[np.int64]
    time_unit: TimeUnit


@dataclass(frozen=True)
class CompressedRfm:
    """Unique (frequency, recency, age) rows with their counts as weights.

    `inverse` maps each original customer to its row, so `row_values[inverse]` expands back.
    """

    frequency: FloatArray
    recency: FloatArray
    age: FloatArray
    weights: FloatArray
    inverse: NDArray[np.intp]


@dataclass(frozen=True)
class _CustomerDays:
    """Purchases collapsed to one entry per (customer, day), sorted by customer then day."""

    customer_index: NDArray[np.intp]
    day: NDArray[np.int64]
    amount: FloatArray


def _collapse_to_customer_days(
    index: NDArray[np.intp], day: NDArray[np.int64], amount: FloatArray
) -> _CustomerDays:
    if index.size == 0:
        return _CustomerDays(index, day, amount.astype(np.float64))
    order = np.lexsort((day, index))
    index, day, amount = index[order], day[order], amount[order]
    starts = np.flatnonzero(
        np.concatenate(([True], (index[1:] != index[:-1]) | (day[1:] != day[:-1])))
    )
    summed = np.add.reduceat(amount, starts)
    return _CustomerDays(index[starts], day[starts], summed.astype(np.float64))


def _as_days(days: ArrayLike) -> NDArray[np.int64]:
    values = np.asarray(days, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("purchase days must be finite numbers")
    return np.floor(values).astype(np.int64)


def summarise_purchases(
    customer_ids: ArrayLike,
    days: ArrayLike,
    amounts: ArrayLike,
    *,
    calibration_end_day: float,
    time_unit: TimeUnit = "day",
) -> RfmSummary:
    """Summarise purchases up to and including `calibration_end_day` per customer.

    `days` are purchase times in days since any fixed origin (fractions are floored to the day);
    `calibration_end_day` is on the same scale and inclusive. For a customer with purchase days
    d_0 < d_1 < ... < d_x (distinct days) and calibration end E, in units of u days:
    frequency x, recency t_x = (d_x - d_0) / u, age T = (E - d_0) / u (FHL 2005, section 2), and
    monetary value = (sum of amounts on d_1..d_x) / x (Fader and Hardie 2013, Gamma-Gamma note).
    Customers whose first purchase is after the calibration end are not included.
    """
    ids = np.asarray(customer_ids)
    day = _as_days(days)
    amount = np.asarray(amounts, dtype=np.float64)
    if not (ids.shape == day.shape == amount.shape) or ids.ndim != 1:
        raise ValueError("customer_ids, days and amounts must be 1-d arrays of one length")
    keep = day <= int(np.floor(calibration_end_day))
    unique_ids, index = np.unique(ids[keep], return_inverse=True)
    collapsed = _collapse_to_customer_days(index.astype(np.intp), day[keep], amount[keep])
    return _summary_from_customer_days(
        unique_ids, collapsed, float(np.floor(calibration_end_day)), time_unit
    )


def _summary_from_customer_days(
    unique_ids: NDArray[Any], days: _CustomerDays, end_day: float, time_unit: TimeUnit
) -> RfmSummary:
    n = unique_ids.size
    counts = np.bincount(days.customer_index, minlength=n)
    firsts = (np.cumsum(counts) - counts).astype(np.intp)
    lasts = firsts + counts - 1
    first_day = days.day[firsts]
    last_day = days.day[lasts]
    total = np.bincount(days.customer_index, weights=days.amount, minlength=n)
    frequency = (counts - 1).astype(np.float64)
    repeat_total = total - days.amount[firsts]
    monetary = np.divide(
        repeat_total, frequency, out=np.zeros(n, dtype=np.float64), where=frequency > 0
    )
    unit = DAYS_PER_UNIT[time_unit]
    return RfmSummary(
        customer_ids=unique_ids,
        frequency=frequency,
        recency=((last_day - first_day) / unit).astype(np.float64),
        age=((end_day - first_day) / unit).astype(np.float64),
        monetary_value=monetary,
        first_day=first_day.astype(np.int64),
        time_unit=time_unit,
    )


def count_purchase_days(
    customer_ids: ArrayLike,
    days: ArrayLike,
    *,
    after_day: float,
    through_day: float,
    for_customers: NDArray[Any],
) -> FloatArray:
    """Distinct purchase days per customer in the window (after_day, through_day].

    The holdout count of the backtest (FHL 2005, section 4): one number per entry of the sorted
    `for_customers`, 0 for customers without a purchase in the window; others are ignored.
    """
    ids = np.asarray(customer_ids)
    day = _as_days(days)
    keep = (day > int(np.floor(after_day))) & (day <= int(np.floor(through_day)))
    keep &= np.isin(ids, for_customers)
    position = np.searchsorted(for_customers, ids[keep]).astype(np.intp)
    pairs = _collapse_to_customer_days(position, day[keep], np.zeros(position.size))
    return np.bincount(pairs.customer_index, minlength=for_customers.size).astype(np.float64)


def compress_rfm(frequency: ArrayLike, recency: ArrayLike, age: ArrayLike) -> CompressedRfm:
    """Collapse identical (frequency, recency, age) rows into one weighted row.

    The likelihoods are sums over customers, so a row with weight w contributes w times its
    log-likelihood: the fit is the same, and much cheaper when times are whole days or weeks.
    No rows give no rows (a re-score whose customers have no counted order left).
    """
    x = np.asarray(frequency, dtype=np.float64)
    tx = np.asarray(recency, dtype=np.float64)
    t = np.asarray(age, dtype=np.float64)
    order = np.lexsort((t, tx, x))
    xs, txs, ts = x[order], tx[order], t[order]
    # the first row opens a group: there is none when there are no rows (no customer to score)
    new_row = np.ones(x.size, dtype=np.bool_)
    new_row[1:] = (xs[1:] != xs[:-1]) | (txs[1:] != txs[:-1]) | (ts[1:] != ts[:-1])
    row_of_sorted = np.cumsum(new_row) - 1
    inverse = np.empty(x.size, dtype=np.intp)
    inverse[order] = row_of_sorted
    starts = np.flatnonzero(new_row)
    weights = np.diff(np.append(starts, x.size)).astype(np.float64)
    return CompressedRfm(xs[starts], txs[starts], ts[starts], weights, inverse)
