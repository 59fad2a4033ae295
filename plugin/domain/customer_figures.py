"""Historical figures per customer from one row per order, with group-bys in numpy only.

Money is summed exactly: each amount is taken as a whole number of ten-thousandths of the shop's
currency (the ledger's resolution, `plugin.store.types.MONEY_SCALE`), those are added (exact in
float64 below 2**53 of them, 900 billion in currency), and a sum is divided by 10,000 only at the
end. 169.80 + 120.08 + 354.95 + 105.17 is then 750.0, not 749.9999999999999: a figure compared
with a threshold (a tier's 750) is the amount the merchant reads, and a sum does not depend on
the order of the rows, nor on whether the customer is scored with the whole shop or alone.

Orders are put in a canonical order (customer, day, amount) first, so that "the last k orders"
are the same ones whatever the row order (same-day orders by amount).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from plugin.domain.scoring_types import FloatArray, IntArray, OrderHistory, ScoringSettings

TRAILING_DAYS = 365.0  # the "trailing 12 months" window, in days
# Money units summed per unit of currency: 4 decimals, the ledger's MONEY_SCALE (the domain does
# not import the store). Shopify amounts have at most 3 decimals, so nothing real is rounded.
MONEY_UNITS = 10_000.0


@dataclass(frozen=True)
class CustomerFigures:
    """Per customer (sorted by id). Money in shop currency, days since the Unix epoch.

    mean_days_between_orders is the mean gap between purchase days (`mean_purchase_day_gap`),
    NaN with one purchase day.

    frequency, recency, age, monetary_value are the repeat-purchase model's inputs in days,
    counted per customer-day as in `plugin.domain.rfm_summary`: x distinct purchase days - 1,
    t_x and T from the first purchase day to the last and to floor(as_of); m_x the mean amount
    of the repeat purchase days (0 when x = 0).
    """

    customer_id: IntArray
    orders: IntArray
    net_spend: FloatArray
    aov: FloatArray
    first_order_day: FloatArray
    last_order_day: FloatArray
    mean_days_between_orders: FloatArray
    trailing_12m_spend: FloatArray
    trailing_12m_orders: FloatArray
    historical_clv: FloatArray
    days_since_last_order: FloatArray
    recent_mean_spend: FloatArray  # mean of the last spend_recent_orders orders, NaN if too few
    earlier_mean_spend: FloatArray  # mean of the orders before those, NaN if too few
    frequency: FloatArray
    recency: FloatArray
    age: FloatArray
    monetary_value: FloatArray


@dataclass(frozen=True)
class _Sorted:
    customer: IntArray
    day: FloatArray
    units: FloatArray  # amount in 1 / MONEY_UNITS of the currency, whole numbers
    starts: NDArray[np.intp]
    ends: NDArray[np.intp]
    index: NDArray[np.intp]


def validate_history(history: OrderHistory) -> None:
    """Raise ValueError unless the arrays are 1-d, of one length, finite, and amounts and costs
    >= 0."""
    n = history.customer_id.shape
    if not (n == history.day.shape == history.amount.shape) or len(n) != 1:
        raise ValueError("customer_id, day and amount must be 1-d arrays of one length")
    if not (np.all(np.isfinite(history.day)) and np.all(np.isfinite(history.amount))):
        raise ValueError("order days and amounts must be finite")
    if np.any(history.amount < 0):
        raise ValueError("order amounts must be >= 0")
    cost = history.cost
    if cost is not None and (cost.shape != n or not np.all(np.isfinite(cost) & (cost >= 0))):
        raise ValueError("order costs must be one finite cost >= 0 per order")


def _canonical(
    customer: IntArray, day: FloatArray, amount: FloatArray
) -> tuple[IntArray, FloatArray, FloatArray]:
    """The rows in (customer, day, amount) order.

    Loaded from a database ordered by customer and day, the rows are usually sorted already:
    checking costs one pass, sorting five million rows four seconds. Then only same-day orders
    of a customer (ties) may need their amounts put in order, which touches just those rows.
    """
    if customer.size < 2:
        return customer, day, amount
    dc, dd = np.diff(customer), np.diff(day)
    if not np.all((dc > 0) | ((dc == 0) & (dd >= 0))):
        order = np.lexsort((amount, day, customer))
        return customer[order], day[order], amount[order]
    tie = (dc == 0) & (dd == 0)  # row k + 1 ties with row k
    if not np.any(tie & (np.diff(amount) < 0)):
        return customer, day, amount
    member = np.zeros(customer.size, dtype=np.bool_)
    member[1:] |= tie
    member[:-1] |= tie
    rows = np.flatnonzero(member)
    opens = np.concatenate(([True], ~tie))[rows]  # a member that does not tie with the one before
    # within a tie only the amounts differ, so putting them in order is all there is to do
    amount = amount.copy()
    amount[rows] = amount[rows[np.lexsort((amount[rows], np.cumsum(opens)))]]
    return customer, day, amount


def _sort(history: OrderHistory, as_of_day: float) -> _Sorted:
    customer = np.asarray(history.customer_id, dtype=np.int64)
    day = np.asarray(history.day, dtype=np.float64)
    amount = np.asarray(history.amount, dtype=np.float64)
    keep = day <= as_of_day
    if not np.all(keep):
        customer, day, amount = customer[keep], day[keep], amount[keep]
    customer, day, amount = _canonical(customer, day, amount)
    new = np.empty(customer.size, dtype=np.bool_)
    new[:1] = True
    np.not_equal(customer[1:], customer[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], customer.size)[: starts.size] - 1
    index = np.cumsum(new, dtype=np.intp) - 1
    return _Sorted(customer, day, money_units(amount), starts, ends.astype(np.intp), index)


def money_units(amount: FloatArray) -> FloatArray:
    """Amounts as whole numbers of 1 / MONEY_UNITS of the currency (float64, exact integers)."""
    return np.rint(amount * MONEY_UNITS)


def customer_figures(
    history: OrderHistory, as_of_day: float, settings: ScoringSettings
) -> CustomerFigures:
    """Every historical figure of every customer with an order on or before `as_of_day`.

    net spend = sum of amounts; AOV = net spend / orders; mean days between orders: see
    `mean_purchase_day_gap` (on the shop's calendar); trailing-12-month spend = sum of
    amounts with day > as_of - 365; historical CLV = net spend - the orders' costs when the
    history has them (gross margin from product costs), else net spend x margin_rate when the
    shop sets a margin rate, else net spend. Every sum is exact to 1 / MONEY_UNITS (module
    docstring); a mean or a margin is that exact sum divided or multiplied once.
    """
    validate_history(history)
    rows = _sort(history, as_of_day)
    n = rows.starts.size
    orders = np.diff(np.append(rows.starts, rows.customer.size)).astype(np.int64)
    net_units = np.bincount(rows.index, weights=rows.units, minlength=n).astype(np.float64)
    net = net_units / MONEY_UNITS
    recent = rows.day > as_of_day - TRAILING_DAYS
    trailing = (
        np.bincount(rows.index, weights=np.where(recent, rows.units, 0.0), minlength=n)
        / MONEY_UNITS
    ).astype(np.float64)
    trailing_orders = np.bincount(rows.index, weights=recent, minlength=n).astype(np.float64)
    first, last = rows.day[rows.starts], rows.day[rows.ends]
    recent_mean, earlier_mean = _recent_and_earlier(rows, orders, net_units, settings)
    model = _model_inputs(rows, n, as_of_day)
    gaps = mean_purchase_day_gap(model[0], model[1])
    return CustomerFigures(
        customer_id=rows.customer[rows.starts],
        orders=orders,
        net_spend=net,
        aov=net / np.maximum(orders, 1),
        first_order_day=first,
        last_order_day=last,
        mean_days_between_orders=gaps,
        trailing_12m_spend=trailing,
        trailing_12m_orders=trailing_orders,
        historical_clv=_historical_clv(history, as_of_day, settings, rows, net_units),
        days_since_last_order=as_of_day - last,
        recent_mean_spend=recent_mean,
        earlier_mean_spend=earlier_mean,
        frequency=model[0],
        recency=model[1],
        age=model[2],
        monetary_value=model[3],
    )


def _historical_clv(
    history: OrderHistory,
    as_of_day: float,
    settings: ScoringSettings,
    rows: _Sorted,
    net_units: FloatArray,
) -> FloatArray:
    """Net spend less the costs of the orders up to as_of when the history has them, else net
    spend x the margin rate (1 without one); exact sums, as the others."""
    if history.cost is None:
        margin = 1.0 if settings.margin_rate is None else settings.margin_rate
        return net_units / MONEY_UNITS * margin
    keep = np.asarray(history.day, dtype=np.float64) <= as_of_day
    owner = np.searchsorted(rows.customer[rows.starts], np.asarray(history.customer_id)[keep])
    cost = money_units(np.asarray(history.cost, dtype=np.float64)[keep])
    cost_units = np.bincount(owner, weights=cost, minlength=rows.starts.size)
    result: FloatArray = (net_units - cost_units) / MONEY_UNITS
    return result


def mean_purchase_day_gap(frequency: FloatArray, recency: FloatArray) -> FloatArray:
    """Mean days between a customer's purchase days: (last - first purchase day) / (distinct
    purchase days - 1), i.e. t_x / x of the repeat model's inputs; NaN with one purchase day.

    Counted on the shop's calendar, as the models count purchases: two checkouts of one evening
    are one purchase day and no rhythm (a gap of minutes would make win-back's rule of three
    times the customer's own gap fire at its 30-day minimum), and orders of 7:50 pm and of
    9:10 am the next morning are 1 day apart, not 0.56.
    """
    gaps = np.full(frequency.size, np.nan)
    np.divide(recency, frequency, out=gaps, where=frequency > 0)
    return gaps


def _recent_and_earlier(
    rows: _Sorted, orders: IntArray, net_units: FloatArray, settings: ScoringSettings
) -> tuple[FloatArray, FloatArray]:
    """Mean of each customer's last k orders, and of their earlier orders (NaN if too few).

    The last k amounts are gathered one by one (k is small), in money units: the sums are exact.
    """
    k = max(1, settings.spend_recent_orders)
    eligible = orders >= k + max(1, settings.spend_earlier_orders)
    recent_sum = np.zeros(orders.size)
    for j in range(k):
        recent_sum += np.where(eligible, rows.units[np.maximum(rows.ends - j, 0)], 0.0)
    recent = np.where(eligible, recent_sum / k / MONEY_UNITS, np.nan)
    earlier_sum = net_units - recent_sum
    earlier = np.where(eligible, earlier_sum / np.maximum(orders - k, 1) / MONEY_UNITS, np.nan)
    return recent, earlier


def _model_inputs(
    rows: _Sorted, n: int, as_of_day: float
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(x, t_x, T, m_x) in days, purchases counted per customer-day (FHL 2005, section 2)."""
    whole = np.floor(rows.day)
    new_day = np.ones(rows.day.size, dtype=np.bool_)
    new_day[1:] = (rows.index[1:] != rows.index[:-1]) | (whole[1:] != whole[:-1])
    day_starts = np.flatnonzero(new_day)
    day_index = np.cumsum(new_day, dtype=np.intp) - 1
    day_amount = np.bincount(day_index, weights=rows.units, minlength=day_starts.size)
    owner = rows.index[day_starts]
    days_per_customer = np.bincount(owner, minlength=n)
    first_day, last_day = whole[rows.starts], whole[rows.ends]
    frequency = (days_per_customer - 1).astype(np.float64)
    first_amount = day_amount[np.cumsum(days_per_customer) - days_per_customer]
    total = np.bincount(owner, weights=day_amount, minlength=n)
    monetary = np.divide(
        (total - first_amount) / MONEY_UNITS, frequency, out=np.zeros(n), where=frequency > 0
    ).astype(np.float64)
    age = np.floor(as_of_day) - first_day
    return frequency, last_day - first_day, age, monetary
