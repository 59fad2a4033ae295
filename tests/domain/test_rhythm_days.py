"""The customer's own rhythm (mean days between orders) is counted on the shop's calendar."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugin.domain.scoring import (
    CONFIDENCE_FITTED,
    FittedModels,
    OrderHistory,
    ScoringSettings,
    score_shop,
)
from tests.domain.scoring_data import RULES, history

AS_OF = 940.5
EVENING = 900.0 + 19.83 / 24  # 7:50 pm of day 900, local time
MINUTE = 1.0 / 1440.0
# A trusted fit (parameters near the CDNOW estimates, in days): win-back does not depend on them.
FITTED = FittedModels(
    "bgnbd",
    {"r": 0.24, "alpha": 30.0, "a": 0.79, "b": 2.4},
    None,
    -1000.0,
    True,
    1000,
    300,
    CONFIDENCE_FITTED,
    "",
)


def _flags(rows: list[tuple[int, float, float]], models: FittedModels = RULES) -> list[set[str]]:
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), models)
    return [set(scores.tags(i)[1:]) for i in range(len(scores))]


def test_mean_days_between_orders_same_day_orders_have_no_gap() -> None:
    # given customer 1 checking out twice 20 minutes apart on one evening, customer 2 ordering
    # the same basket once, customer 3 twice at the same second
    rows = [(1, EVENING, 20.0), (1, EVENING + 20 * MINUTE, 5.0), (2, EVENING, 25.0)]
    rows += [(3, EVENING, 20.0), (3, EVENING, 5.0)]
    # when scored
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # then none has a gap between purchase days (one purchase day each), though 1 and 3 have
    # two orders
    assert scores.orders.tolist() == [2, 1, 2]
    assert np.isnan(scores.mean_days_between_orders).all()


@pytest.mark.parametrize("models", [RULES, FITTED], ids=["rules", "fitted"])
def test_win_back_two_checkouts_of_one_evening_are_no_rhythm_at_forty_days(
    models: FittedModels,
) -> None:
    # given a split checkout (7:50 and 8:10 pm), the same basket in one order, and in two
    # orders at the same second, all 40 days ago
    rows = [(1, EVENING, 20.0), (1, EVENING + 20 * MINUTE, 5.0), (2, EVENING, 25.0)]
    rows += [(3, EVENING, 20.0), (3, EVENING, 5.0)]
    # when scored
    flags = _flags(rows, models)
    # then none is win-back (40 days < 90, and no rhythm of days), and the split checkout is
    # flagged as the single order is
    assert all("win-back" not in f for f in flags), flags
    assert flags[0] == flags[1] == flags[2]


def test_p_alive_rules_split_checkout_is_the_single_order() -> None:
    # given a split checkout and a single order of one evening, 40 days ago, in a rules shop
    rows = [(1, EVENING, 20.0), (1, EVENING + 20 * MINUTE, 5.0), (2, EVENING, 25.0)]
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # then both decline linearly towards the 90-day win-back point: 1 - 40.x / 90, no churn-risk
    assert scores.p_alive[0] == pytest.approx(scores.p_alive[1], abs=1e-3)
    assert scores.p_alive[1] == pytest.approx(1.0 - (AS_OF - EVENING) / 90.0)
    assert not scores.flags["churn-risk"].any()


def test_mean_days_between_orders_counts_purchase_days_not_orders() -> None:
    # given customer 1 with two orders on day 100 and one on day 110; customer 2 with orders at
    # 7:50 pm on day 100 and 9:10 am on day 101; customer 3 on days 100.9, 101.1 and 110.2
    rows = [(1, 100.2, 10.0), (1, 100.7, 10.0), (1, 110.5, 10.0)]
    rows += [(2, 100.0 + 19.83 / 24, 10.0), (2, 101.0 + 9.17 / 24, 10.0)]
    rows += [(3, 100.9, 10.0), (3, 101.1, 10.0), (3, 110.2, 10.0)]
    # when scored
    scores = score_shop(history(rows), 200.0, ScoringSettings(), RULES)
    # then the gap is (last - first purchase day) / (purchase days - 1): 10 / 1 (not 10.3 / 2),
    # 1 / 1 (not 0.56), 10 / 2 (not 9.3 / 2)
    assert scores.mean_days_between_orders.tolist() == [10.0, 1.0, 5.0]


def test_win_back_rhythm_reason_quotes_days_between_purchase_days() -> None:
    # given customer 1 buying every 10 days (two orders on the middle day) until 31 days ago:
    # 3 x 10 = 30 < 31
    last = AS_OF - 31.0
    rows = [(1, last - 20.0, 10.0), (1, last - 10.0, 10.0), (1, last - 9.9, 10.0), (1, last, 10.0)]
    # and customer 2 the same in one order a day, until 29 days ago
    last2 = AS_OF - 29.0
    rows += [(2, last2 - 20.0, 10.0), (2, last2 - 10.0, 10.0), (2, last2, 10.0)]
    # when scored
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # then customer 1 is win-back on its rhythm, quoted in days between purchase days (10.0, not
    # the 6.7 of 20 days over 3 gaps between orders); customer 2 is not yet
    assert scores.flags["win-back"].tolist() == [True, False]
    assert "usual 10.0 days between orders" in scores.reasons(0)["win-back"]


def test_expected_next_order_rules_adds_the_calendar_gap_to_the_last_order() -> None:
    # given orders on days 900 (twice) and 910, scored by rules on day 915
    rows = [(1, 900.3, 10.0), (1, 900.4, 10.0), (1, 910.5, 10.0)]
    scores = score_shop(history(rows), 915.0, ScoringSettings(), RULES)
    # then the next order is expected a 10-day gap after the last (not 5.1 days,
    # the mean over orders)
    assert scores.expected_next_order_day[0] == pytest.approx(920.5)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 60), st.floats(0.0, 0.999), st.integers(1, 500)),
        min_size=1,
        max_size=12,
    )
)
def test_mean_days_between_orders_is_the_gap_between_distinct_purchase_days(
    orders: list[tuple[int, float, int]],
) -> None:
    # given one customer's orders, each on a whole day at some time of it
    day = np.array([d + frac for d, frac, _ in orders])
    amount = np.array([float(a) for _, _, a in orders])
    one = OrderHistory(np.ones(day.size, dtype=np.int64), day, amount)
    # when scored
    gap = score_shop(one, 100.0, ScoringSettings(), RULES).mean_days_between_orders[0]
    # then it is (last - first purchase day) / (distinct purchase days - 1), NaN for one day,
    # whatever the times of day
    distinct = sorted({d for d, _, _ in orders})
    if len(distinct) == 1:
        assert math.isnan(gap)
    else:
        assert gap == pytest.approx((distinct[-1] - distinct[0]) / (len(distinct) - 1))
