"""Historical figures per customer: which orders are a customer's last ones whatever the row
order, the as-of day's own orders, exact money sums, the repeat model's inputs and the inputs
refused."""

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


def with_costs(rows: list[tuple[float, float]], costs: list[float]) -> OrderHistory:
    """`history(rows)` with each order's cost of goods."""
    plain = history(rows)
    return OrderHistory(plain.customer_id, plain.day, plain.amount, np.array(costs))


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


EARLIER = [(10.0, 100.0), (20.0, 80.0)]


@pytest.mark.parametrize(
    "rows",
    [
        [*EARLIER, (30.0, 50.0), (30.0, 10.0)],
        [*EARLIER, (30.0, 10.0), (30.0, 50.0)],
        # days out of order too: the rows are sorted whole, not only within a day
        [(30.0, 50.0), (30.0, 10.0), *EARLIER[::-1]],
        [(30.0, 10.0), (30.0, 50.0), *EARLIER[::-1]],
    ],
)
def test_same_day_orders_rank_by_amount_whatever_the_row_order(
    rows: list[tuple[float, float]],
) -> None:
    # given orders on days 10, 20 and two of day 30 (50 and 10), in any row order, and one
    # recent order counted
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


def test_an_order_on_the_as_of_day_itself_counts_with_its_cost() -> None:
    # given orders on days 50 and 100 with their costs, figures as of day 100
    costed = with_costs([(50.0, 30.0), (AS_OF, 20.0)], [10.0, 5.0])
    figures = customer_figures(costed, AS_OF, ScoringSettings(margin_from_costs=True))
    # then the margin is both orders' amounts less both costs
    assert figures.historical_clv.tolist() == [35.0]


def test_money_sums_are_exact_in_ten_thousandths() -> None:
    # given amounts whose float products and sum are off in the last bit (52.06 + 850.86 +
    # 248.73 less costs of 24.33, 410.28 and 49.45 is 667.5900000000001 if the products are not
    # rounded to whole ten-thousandths; 125.50 + 568.81 + 5.19 is 699.4999999999999 so)
    rows = [(10.0, 52.06), (20.0, 850.86), (30.0, 248.73)]
    costed = with_costs(rows, [24.33, 410.28, 49.45])
    margin = customer_figures(costed, AS_OF, ScoringSettings(margin_from_costs=True))
    spend = customer_figures(
        history([(10.0, 125.5), (20.0, 568.81), (30.0, 5.19)]), AS_OF, ScoringSettings()
    )
    # then they are the amounts the merchant reads
    assert margin.historical_clv.tolist() == [667.59]
    assert spend.net_spend.tolist() == [699.5]


def test_repeat_model_inputs_count_purchase_days_and_whole_days() -> None:
    # given orders of 100 on day 10, 20 on day 20, and 10 and 20 on day 30, as of day 100.6
    rows = [(10.2, 100.0), (20.5, 20.0), (30.1, 10.0), (30.7, 20.0)]
    figures = customer_figures(history(rows), 100.6, ScoringSettings())
    # then x counts repeat purchase days (2), t_x and T run from the first purchase day to the
    # last and to the as-of day in whole days (20 and 90), and m_x is the mean of the repeat
    # days' amounts, without the first day's ((20 + 30) / 2)
    assert figures.frequency.tolist() == [2.0]
    assert figures.recency.tolist() == [20.0]
    assert figures.age.tolist() == [90.0]
    assert figures.monetary_value.tolist() == [25.0]


@pytest.mark.parametrize(
    ("day", "amount", "message"),
    [
        (np.array([[1.0, 2.0]]), np.array([[5.0, 6.0]]), "1-d arrays of one length"),
        (np.array([1.0, 2.0]), np.array([5.0, np.nan]), "days and amounts must be finite"),
        (np.array([1.0, 2.0]), np.array([5.0, np.inf]), "days and amounts must be finite"),
        (np.array([1.0, 2.0]), np.array([5.0, -0.01]), "amounts must be >= 0"),
    ],
)
def test_orders_that_cannot_be_figured_are_refused(
    day: np.ndarray, amount: np.ndarray, message: str
) -> None:
    # given orders of 2-d shape, with an amount that is not finite, or a negative one
    customer = np.ones(day.shape, dtype=np.int64)
    # when figured, then they are refused by name
    with pytest.raises(ValueError, match=message):
        customer_figures(OrderHistory(customer, day, amount), AS_OF, ScoringSettings())
