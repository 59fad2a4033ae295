"""Exact money sums against tier thresholds, and ties in the RFM quintiles and the top-20 flag."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from plugin.domain.flags import money, top_threshold
from plugin.domain.scoring import (
    SEGMENTS,
    ScoringSettings,
    score_shop,
)
from plugin.domain.segments import quintile_edges, score_higher_better
from tests.domain.scoring_data import RULES, history

AS_OF = 20_000.5


def quintile_scores(values: np.ndarray) -> list[int]:
    """Each value's score within `values`, through the cut points as the scorer takes them."""
    return score_higher_better(values, quintile_edges(values)).tolist()


def test_score_shop_four_orders_making_exactly_750_reach_vip() -> None:
    # given orders of 169.80, 120.08, 354.95 and 105.17 (750.00; in floats 749.9999999999999)
    amounts = (169.80, 120.08, 354.95, 105.17)
    rows = [(7, AS_OF - 100.0 + 20.0 * k, a) for k, a in enumerate(amounts)]
    rows += [(8, AS_OF - 100.0, 300.0), (8, AS_OF - 80.0, 450.0)]
    # when scored
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # then the sums are exactly 750, customer 7 is VIP like customer 8, and the reason agrees
    assert scores.trailing_12m_spend.tolist() == [750.0, 750.0]
    assert scores.net_spend.tolist() == [750.0, 750.0]
    assert scores.historical_clv.tolist() == [750.0, 750.0]
    assert scores.aov.tolist() == [187.5, 375.0]
    assert [t for t in scores.tags(0) if t.startswith("tier-")] == ["tier-vip"]
    assert scores.reasons(0)["tier-vip"] == (
        "Spent 750.00 in the last 12 months, at or above the VIP threshold of 750.00."
    )
    # and customers with equal spend share one M score
    assert scores.monetary_score[0] == scores.monetary_score[1]


def test_score_shop_cents_summing_to_the_insider_threshold_are_insider() -> None:
    # given 2,500 orders of 0.10 (250.00; summed in floats 250.00000000003)
    rows = [(1, AS_OF - 300.0 + 0.1 * k, 0.1) for k in range(2500)]
    # when scored
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # then the spend is 250 exactly and the tier is insider
    assert scores.trailing_12m_spend[0] == 250.0
    assert [t for t in scores.tags(0) if t.startswith("tier-")] == ["tier-insider"]


def test_score_shop_same_day_amounts_in_any_order_sum_to_the_exact_amount() -> None:
    # given three same-day orders whose float sum depends on the order of addition
    for amounts in [(0.3, 0.2, 0.1), (0.1, 0.2, 0.3), (0.2, 0.3, 0.1)]:
        rows = [(1, AS_OF - 3.0, a) for a in amounts]
        # when scored
        scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
        # then the sum is 0.60, whatever order they came in
        assert scores.net_spend[0] == 0.6
        assert scores.trailing_12m_spend[0] == 0.6


def test_score_shop_whole_shop_ordered_at_one_moment_scores_r_and_m_three_and_no_top_20() -> None:
    # given 100 customers who each ordered once, all at the same moment yesterday, for 30.00
    rows = [(c, AS_OF - 1.5, 30.0) for c in range(1, 101)]
    # when scored
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # then R and M are the middle score, F the lowest (a one-time buyer is always F 1), nobody
    # is "lost", and nobody is top-20: all are tied, and 100% of the shop does not fit in the
    # top fifth
    for name in ("recency_score", "monetary_score"):
        assert getattr(scores, name).tolist() == [3] * 100, name
    assert scores.frequency_score.tolist() == [1] * 100
    assert "lost" not in {SEGMENTS[i] for i in scores.segment}
    assert not scores.flags["top-20"].any()


def test_score_shop_forty_percent_sharing_the_latest_day_score_r_five() -> None:
    # given 40 customers whose last order is on the latest day, and 60 spread over earlier days
    rows = [(c, AS_OF - 1.5, 30.0) for c in range(1, 41)]
    rows += [(41 + k, AS_OF - 1000.0 + 10.0 * k, 30.0) for k in range(60)]
    # when scored
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # then the 40 take the score of their middle rank (the 80th percentile): 5; the other 60
    # are the bottom three quintiles, 20 each
    assert scores.recency_score[:40].tolist() == [5] * 40
    assert Counter(scores.recency_score[40:].tolist()) == {1: 20, 2: 20, 3: 20}


def test_score_shop_ninety_percent_tied_spend_tags_only_the_top_ten_percent() -> None:
    # given 90 customers who spent 20.00 in the last year and 10 who spent 500.00
    rows = [(c, AS_OF - 100.0 + 0.5 * c, 20.0 if c <= 90 else 500.0) for c in range(1, 101)]
    # when scored by rule (predicted value from the last 12 months' spend)
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # then only the 10 big spenders are top-20: the 90 tied do not fit in the top fifth
    assert np.flatnonzero(scores.flags["top-20"]).tolist() == list(range(90, 100))
    assert scores.flags["top-20"].mean() <= 0.2


def test_quintile_scores_group_across_a_boundary_lands_in_its_middle() -> None:
    # given ten customers, four of them tied on ranks 3..6 (middle 4.5, percentile 0.4)
    values = np.array([1.0, 2.0, 5.0, 5.0, 5.0, 5.0, 7.0, 8.0, 9.0, 10.0])
    # when scored, then the tied group scores 3, and the others keep their own quintile
    assert quintile_scores(values) == [1, 1, 3, 3, 3, 3, 4, 4, 5, 5]
    # and the cut points are actual values, the first two below the tied group
    assert quintile_edges(values) == (2.0, 2.0, 5.0, 8.0)


def test_quintile_edges_nobody_in_the_bottom_quintiles_puts_cut_points_below_everyone() -> None:
    # given a shop where everyone has the same value
    edges = quintile_edges(np.full(7, 4.0))
    # then cut points 1 and 2 are just below it, 3 and 4 at it: the shop scores 3, a lower
    # value re-scored later 1, a higher one 5
    assert edges[:2] == (np.nextafter(4.0, -np.inf),) * 2 and edges[2:] == (4.0, 4.0)
    assert quintile_scores(np.full(7, 4.0)) == [3] * 7


def mid_rank_scores(values: list[float]) -> list[int]:
    """1 + floor(5p), p = (customers below + customers at or below) / 2n, in exact integers."""
    n = len(values)
    return [
        1 + 5 * (sum(w < v for w in values) + sum(w <= v for w in values)) // (2 * n)
        for v in values
    ]


small_values = st.lists(st.integers(0, 6).map(float), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(small_values)
def test_quintile_scores_any_values_equal_the_mid_rank_rule(values: list[float]) -> None:
    # given values with many ties, when scored through the cut points
    scores = quintile_scores(np.array(values))
    # then each is its group's mid-rank score
    assert scores == mid_rank_scores(values)


@settings(max_examples=200, deadline=None)
@given(small_values, st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0]))
def test_top_threshold_any_values_never_exceed_the_share_and_keep_all_above_the_cutoff(
    values: list[float], share: float
) -> None:
    # given predicted values with many ties and a top share
    array = np.array(values)
    # when the threshold is taken
    chosen = array >= top_threshold(array, share)
    # then at most the share is chosen, and whoever is above the k-th largest value is in,
    # and those at it are in exactly when all of them fit
    k = min(len(values), math.ceil(len(values) * share - 1e-9))
    assert chosen.sum() <= k
    if k:
        cutoff = sorted(values, reverse=True)[k - 1]
        fits = sum(v >= cutoff for v in values) <= k
        expected = [v > cutoff or (v == cutoff and fits) for v in values]
        assert chosen.tolist() == expected


def test_score_shop_one_time_buyers_are_f_one_however_many_they_are() -> None:
    # given a shop where 70% of the customers bought once, the rest two to four times
    rows = [(c, AS_OF - 10.0 - c, 30.0) for c in range(1, 71)]
    for c in range(71, 101):
        rows += [(c, AS_OF - 200.0 + 10.0 * k, 30.0) for k in range(2 + c % 3)]
    rows.sort()
    # when scored
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # then every one-time buyer scores F 1 (their group's middle rank would give F 2), so the
    # recent ones can be "new" and "promising", and repeat buyers score higher
    once = scores.orders == 1
    assert set(scores.frequency_score[once].tolist()) == {1}
    assert scores.frequency_score[~once].min() > 1
    assert {"new", "promising"} <= {SEGMENTS[i] for i in scores.segment[once]}


def test_a_three_decimal_spend_below_a_threshold_does_not_read_as_reaching_it() -> None:
    # given a spend of 749.999 in a three-decimal currency, below the VIP threshold of 750
    scores = score_shop(history([(7, AS_OF - 30.0, 749.999)]), AS_OF, ScoringSettings(), RULES)
    # then the reason shows the third decimal: not "Spent 750.00 ... below ... 750.00"
    assert scores.reasons(0)["tier-insider"].startswith("Spent 749.999 in the last 12 months")
    # and amounts with two decimals, and predictions, read with two
    assert money(1234.5) == "1,234.50" and money(0.6) == "0.60"
    assert money(1234.56789) == "1,234.57" and money(749.9995) == "750.00"
