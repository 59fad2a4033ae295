"""Historical CLV as gross margin: net spend less the cost of the goods kept, when the order
history carries each order's cost; the settings that choose it."""

from __future__ import annotations

import numpy as np
import pytest

from plugin.domain.customer_figures import customer_figures
from plugin.domain.scoring import OrderHistory, ScoringSettings


def history(cost: list[float] | None) -> OrderHistory:
    # customer 1: orders of 100.10 and 50.05 on days 10 and 20; customer 2: 30.00 on day 40
    return OrderHistory(
        customer_id=np.array([2, 1, 1], dtype=np.int64),
        day=np.array([40.0, 20.0, 10.0]),
        amount=np.array([30.0, 50.05, 100.1]),
        cost=None if cost is None else np.array(cost),
    )


def test_historical_clv_is_net_spend_less_the_costs_of_the_orders_up_to_as_of() -> None:
    # given each order's cost of goods
    orders = history([12.5, 20.02, 40.04])
    # when the figures are taken on day 30 and on day 50
    early = customer_figures(orders, 30.0, ScoringSettings())
    late = customer_figures(orders, 50.0, ScoringSettings())
    # then each customer's historical CLV is their net spend less the costs so far, exactly
    assert early.customer_id.tolist() == [1] and early.historical_clv.tolist() == [90.09]
    assert late.historical_clv.tolist() == [90.09, 17.5]
    assert late.net_spend.tolist() == [150.15, 30.0]


def test_without_costs_historical_clv_is_net_spend_at_the_margin_rate() -> None:
    figures = customer_figures(history(None), 50.0, ScoringSettings(margin_rate=0.4))
    assert figures.historical_clv.tolist() == pytest.approx([60.06, 12.0])


@pytest.mark.parametrize("cost", [[1.0, -0.01, 0.0], [1.0, float("nan"), 0.0], [1.0, 2.0]])
def test_a_cost_below_zero_not_finite_or_missing_is_refused(cost: list[float]) -> None:
    with pytest.raises(ValueError, match="order costs"):
        customer_figures(history(cost), 50.0, ScoringSettings())


def test_margin_from_costs_is_a_yes_or_no_and_not_with_a_margin_rate() -> None:
    with pytest.raises(ValueError, match="margin_rate and margin_from_costs"):
        ScoringSettings(margin_rate=0.5, margin_from_costs=True)
    with pytest.raises(ValueError, match="margin_from_costs must be true or false"):
        ScoringSettings(margin_from_costs="yes")  # type: ignore[arg-type]
    assert ScoringSettings(margin_from_costs=True).margin_from_costs
