"""Historical figures per customer: which orders are a customer's last ones whatever the row
order, and the as-of day's own orders."""

from __future__ import annotations

import numpy as np
import pytest

from plugin.domain.customer_figures import customer_figures
from plugin.domain.scoring_types import OrderHistory, ScoringSettings

AS_OF = 100.0


def history(rows: list[tuple[float, float]]) -> OrderHistory:
    """One customer's orders as (day, amount), in the row order given."""
    return OrderHistory(
        np.ones(len(rows), dtype=np.int64),
        np.array([day for day, _ in rows]),
        np.array([amount for _, amount in rows]),
    )


# orders on days 10, 20, 30.5 and 30: the last two (30 and 30.5) are the recent ones
ORDERS = [(10.0, 100.0), (20.0, 80.0), (30.0, 40.0), (30.5, 20.0)]


@pytest.mark.parametrize(
    "rows", [ORDERS, ORDERS[::-1], [ORDERS[0], ORDERS[1], ORDERS[3], ORDERS[2]]]
)
def test_last_orders_are_the_latest_whatever_the_row_order(rows: list[tuple[float, float]]) -> None:
    # when the figures are taken from the rows in this order
    figures = customer_figures(history(rows), AS_OF, ScoringSettings())
    # then the recent mean is of the orders of days 30 and 30.5, the earlier of 10 and 20
    assert figures.recent_mean_spend.tolist() == [30.0]
    assert figures.earlier_mean_spend.tolist() == [90.0]
    assert figures.last_order_day.tolist() == [30.5]


@pytest.mark.parametrize("same_day", [[(30.0, 50.0), (30.0, 10.0)], [(30.0, 10.0), (30.0, 50.0)]])
def test_same_day_orders_rank_by_amount_whatever_the_row_order(
    same_day: list[tuple[float, float]],
) -> None:
    # given orders on days 10, 20 and two of day 30 (50 and 10), in either row order, and one
    # recent order counted
    rows = [(10.0, 100.0), (20.0, 80.0), *same_day]
    one = ScoringSettings(spend_recent_orders=1)
    figures = customer_figures(history(rows), AS_OF, one)
    # then the last order is the larger of day 30's: the recent mean 50, the earlier
    # (100 + 80 + 10) / 3
    assert figures.recent_mean_spend.tolist() == [50.0]
    assert figures.earlier_mean_spend.tolist() == [pytest.approx(190.0 / 3)]


def test_an_order_on_the_as_of_day_itself_counts() -> None:
    # given orders on days 50 and 100, figures as of day 100
    figures = customer_figures(history([(50.0, 30.0), (AS_OF, 20.0)]), AS_OF, ScoringSettings())
    # then both count
    assert figures.orders.tolist() == [2]
    assert figures.net_spend.tolist() == [50.0]
    assert figures.days_since_last_order.tolist() == [0.0]
