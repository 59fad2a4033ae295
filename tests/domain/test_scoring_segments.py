"""RFM quintile scores, the segment grid, and the Hypothesis properties of scoring."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugin.domain.scoring import (
    CONFIDENCE_FITTED,
    SEGMENTS,
    FittedModels,
    OrderHistory,
    ScoringSettings,
    rescore,
    score_shop,
)
from plugin.domain.segments import (
    SEGMENT_GRID,
    lower_quintile_edges,
    quintile_edges,
    score_higher_better,
    segment_of,
    segment_rule,
)
from tests.domain.scoring_data import RULES, history

BGNBD = FittedModels(
    "bgnbd",
    {"r": 0.5, "alpha": 60.0, "a": 0.8, "b": 2.5},
    {"p": 6.0, "q": 4.0, "gamma": 30.0},
    -1.0,
    True,
    1000,
    500,
    CONFIDENCE_FITTED,
    "test parameters",
)
PARETO = FittedModels(
    "paretonbd",
    {"r": 0.5, "alpha": 60.0, "s": 0.7, "beta": 300.0},
    None,
    -1.0,
    True,
    1000,
    500,
    CONFIDENCE_FITTED,
    "test parameters",
)
MODELS = st.sampled_from([RULES, BGNBD, PARETO])
AS_OF = 20_000.0

orders = st.lists(
    st.tuples(
        st.integers(1, 12),
        st.floats(AS_OF - 3000.0, AS_OF, allow_nan=False),
        st.floats(0.0, 5000.0, allow_nan=False),
    ),
    min_size=1,
    max_size=60,
)


def test_quintile_edges_are_actual_values_at_20_40_60_80_percent() -> None:
    # given the values 1..10
    values = np.arange(1.0, 11.0)
    # when cut into quintiles, then each edge is the lower order statistic
    assert quintile_edges(values) == (2.0, 4.0, 6.0, 8.0)


def test_score_higher_better_value_on_an_edge_gets_the_lower_score() -> None:
    # given edges 2, 4, 6, 8
    edges = (2.0, 4.0, 6.0, 8.0)
    # when scoring 1, 2, 3, 8, 9
    scores = score_higher_better(np.array([1.0, 2.0, 3.0, 8.0, 9.0]), edges)
    # then values on an edge share the score below it
    assert scores.tolist() == [1, 1, 2, 4, 5]


def test_score_shop_recency_later_last_order_scores_higher() -> None:
    # given ten customers whose last orders were 10, 20, ..., 100 days before as-of
    rows = [(c, AS_OF - 10.0 * c, 5.0) for c in range(1, 11)]
    # when scored
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # then R falls with the days since the last order, two customers per quintile
    assert scores.recency_score.tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert scores.reference.recency_edges == (
        AS_OF - 90.0,
        AS_OF - 70.0,
        AS_OF - 50.0,
        AS_OF - 30.0,
    )


def test_score_shop_frequency_edges_are_the_lower_order_statistics() -> None:
    # given ten customers with 1, 1, 2, 2, 3, 3, 4, 4, 5 and 5 orders on distinct days
    counts = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    rows = [(c, AS_OF - 20.0 * k - 1.0, 5.0) for c, n in enumerate(counts, 1) for k in range(n)]
    # when scored
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # then the 20/40/60/80th percentiles fall between the pairs and take the lower value
    # (edges 1, 2, 3, 4): each pair has its own F
    assert scores.reference.frequency_edges == (1.0, 2.0, 3.0, 4.0)
    assert scores.frequency_score.tolist() == counts


def test_score_shop_m_is_from_net_spend_whatever_the_margin() -> None:
    # given ten customers who spent 100, 200, ..., 1,000, in a shop without a margin rate and
    # in one at 30%
    rows = [(c, AS_OF - 10.0, 100.0 * c) for c in range(1, 11)]
    plain = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    margined = score_shop(history(rows), AS_OF, ScoringSettings(margin_rate=0.3), RULES)
    # then M and its cut points are those of net spend in both, though historical CLV is not
    assert margined.historical_clv[-1] == pytest.approx(300.0)
    assert margined.reference.monetary_edges == plain.reference.monetary_edges
    assert plain.reference.monetary_edges == (200.0, 400.0, 600.0, 800.0)
    assert margined.monetary_score.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_lower_quintile_edges_are_the_20_40_60_80th_order_statistics() -> None:
    # given 1..101 (100 steps, so the 80th percentile is exactly the 81st value)
    # when cut, then each edge is the value at its percentile
    assert lower_quintile_edges(np.arange(1.0, 102.0)) == (21.0, 41.0, 61.0, 81.0)


def test_score_shop_recency_counts_the_day_of_the_last_order_not_its_hour() -> None:
    # given six customers who last ordered on earlier days, and four today at other hours
    earlier = [(c, AS_OF - 10.0 * c - 0.5, 5.0) for c in range(1, 7)]
    today = [(c, AS_OF + 0.05 * (c - 6), 5.0) for c in range(7, 11)]
    # when scored
    scores = score_shop(history(earlier + today), AS_OF + 0.5, ScoringSettings(), RULES)
    # then those of today, 40% of the shop, share the highest R
    assert scores.recency_score.tolist() == [3, 3, 2, 2, 1, 1, 5, 5, 5, 5]


def test_rescore_days_after_the_full_run_keeps_recency_against_the_reference() -> None:
    # given a full run, and the same customer re-scored 5 days later without a new order
    rows = [(c, AS_OF - 10.0 * c, 5.0) for c in range(1, 11)]
    full = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    later = rescore(history(rows[2:3]), AS_OF + 5.0, ScoringSettings(), RULES, full.reference)
    # then their R is unchanged: the population they are compared with did not age
    assert later.recency_score[0] == full.recency_score[2]


def test_segment_grid_every_cell_has_one_of_the_eleven_segments() -> None:
    # then all 25 (R, F) cells are covered and every segment appears somewhere
    assert SEGMENT_GRID.shape == (5, 5)
    assert sorted(set(SEGMENT_GRID.ravel().tolist())) == list(range(len(SEGMENTS)))


# The table of the segments module's docstring, R 5 (top row) to R 1, F 1 to F 5, written out
# again here so that a change to either is seen.
DOCUMENTED_TABLE = """
    new            potential-loyalist potential-loyalist champions champions
    promising      potential-loyalist potential-loyalist loyal     loyal
    about-to-sleep about-to-sleep     need-attention     loyal     loyal
    hibernating    hibernating        at-risk            at-risk   cant-lose
    lost           hibernating        at-risk            at-risk   cant-lose
"""


def test_segment_of_every_cell_matches_the_documented_table() -> None:
    # given every (R, F) pair
    rows = [line.split() for line in DOCUMENTED_TABLE.strip().splitlines()]
    r, f = np.meshgrid(np.arange(5, 0, -1), np.arange(1, 6), indexing="ij")
    # when segmented
    codes = segment_of(r.ravel().astype(np.int8), f.ravel().astype(np.int8))
    # then each cell is the table's
    assert [SEGMENTS[i] for i in codes] == [name for row in rows for name in row]


@pytest.mark.parametrize(
    ("segment", "rule"),
    [
        ("champions", "recency score 5 and frequency score 4-5"),
        ("loyal", "recency score 3-4 and frequency score 4-5"),
        ("potential-loyalist", "recency score 4-5 and frequency score 2-3"),
        ("new", "recency score 5 and frequency score 1"),
        ("promising", "recency score 4 and frequency score 1"),
        ("need-attention", "recency score 3 and frequency score 3"),
        ("about-to-sleep", "recency score 3 and frequency score 1-2"),
        ("at-risk", "recency score 1-2 and frequency score 3-4"),
        ("cant-lose", "recency score 1-2 and frequency score 5"),
        (
            "hibernating",
            "recency score 2 and frequency score 1-2 or recency score 1 and frequency score 2",
        ),
        ("lost", "recency score 1 and frequency score 1"),
    ],
)
def test_segment_rule_words_each_segments_cells(segment: str, rule: str) -> None:
    # when a segment's cells are put in words (the tag reason quotes them), then rows with the
    # same frequency scores are merged, higher recency first
    assert segment_rule(segment) == rule


def test_score_shop_shop_of_one_customer_has_valid_scores() -> None:
    # given a single customer
    scores = score_shop(history([(1, AS_OF - 5.0, 10.0)]), AS_OF, ScoringSettings(), RULES)
    # then scores are in range and the segment is one of the eleven
    assert 1 <= scores.recency_score[0] <= 5
    assert 0 <= scores.segment[0] < len(SEGMENTS)


@settings(max_examples=60, deadline=None)
@given(orders, MODELS)
def test_score_shop_any_history_scores_in_range_and_predictions_valid(
    rows: list[tuple[int, float, float]], models: FittedModels
) -> None:
    # given any orders of up to 12 customers over 3,000 days, amounts 0..5,000
    # when scored with rules, BG/NBD or Pareto/NBD
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), models)
    # then every score is in 1..5, predictions are finite and non-negative, P(alive) in [0, 1]
    for name in ("recency_score", "frequency_score", "monetary_score"):
        values = getattr(scores, name)
        assert values.min() >= 1 and values.max() <= 5, name
    for name in ("expected_purchases", "expected_spend_per_order", "predicted_clv", "net_spend"):
        values = getattr(scores, name)
        assert np.all(np.isfinite(values)) and np.all(values >= 0), name
    assert np.all((scores.p_alive >= 0) & (scores.p_alive <= 1))
    assert np.all(
        np.isnan(scores.expected_next_order_day) | (scores.expected_next_order_day >= AS_OF)
    )
    for i in range(len(scores)):
        assert set(scores.reasons(i)) == set(scores.tags(i))


@settings(max_examples=60, deadline=None)
@given(orders, st.integers(0, 11), st.floats(0.01, 10_000.0), MODELS)
def test_score_shop_more_spend_never_lowers_m(
    rows: list[tuple[int, float, float]], pick: int, extra: float, models: FittedModels
) -> None:
    # given a shop, and the same shop where one customer's order is larger
    before = score_shop(history(rows), AS_OF, ScoringSettings(), models)
    i = pick % len(rows)
    richer = [(c, d, a + extra if k == i else a) for k, (c, d, a) in enumerate(rows)]
    after = score_shop(history(richer), AS_OF, ScoringSettings(), models)
    # then that customer's M score is not lower
    at = int(np.searchsorted(before.customer_id, rows[i][0]))
    assert after.monetary_score[at] >= before.monetary_score[at]


@settings(max_examples=40, deadline=None)
@given(orders, st.randoms(use_true_random=False), MODELS)
def test_score_shop_row_order_does_not_change_any_result(
    rows: list[tuple[int, float, float]], rng: object, models: FittedModels
) -> None:
    # given the same orders in two row orders
    shuffled = list(rows)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    first = score_shop(history(rows), AS_OF, ScoringSettings(), models)
    second = score_shop(history(shuffled), AS_OF, ScoringSettings(), models)
    # then every figure is identical, to the bit, and so are the tags
    for name in ("net_spend", "aov", "trailing_12m_spend", "p_alive", "predicted_clv"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert first.reference == second.reference
    assert first.all_tags() == second.all_tags()


@settings(max_examples=40, deadline=None)
@given(orders, st.integers(0, 11), MODELS)
def test_rescore_any_customer_with_full_reference_equals_full_run(
    rows: list[tuple[int, float, float]], pick: int, models: FittedModels
) -> None:
    # given a full run and one of its customers
    full = score_shop(history(rows), AS_OF, ScoringSettings(), models)
    customer = int(full.customer_id[pick % len(full)])
    # when that customer's orders are re-scored alone with the full run's reference
    alone = rescore(
        history([r for r in rows if r[0] == customer]),
        AS_OF,
        ScoringSettings(),
        models,
        full.reference,
    )
    # then the row is the full run's
    i = int(np.searchsorted(full.customer_id, customer))
    assert full.tags(i) == alone.tags(0)
    assert full.reasons(i) == alone.reasons(0)
    for name in ("net_spend", "p_alive", "expected_purchases", "predicted_clv", "segment"):
        np.testing.assert_array_equal(getattr(full, name)[i : i + 1], getattr(alone, name))


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 3000),
    st.floats(0.0, 1e6),
    st.floats(0.0, 3000.0),
    st.sampled_from([BGNBD, PARETO]),
)
def test_score_shop_extreme_customer_has_no_nan_in_required_fields(
    orders_count: int, amount: float, span: float, models: FittedModels
) -> None:
    # given one customer with up to 3,000 orders over up to 3,000 days, up to 1e6 each
    days = AS_OF - span + np.linspace(0.0, span, orders_count)
    extreme = OrderHistory(
        np.full(orders_count, 1, dtype=np.int64), days, np.full(orders_count, amount)
    )
    # when scored with a fitted model
    scores = score_shop(extreme, AS_OF, ScoringSettings(), models)
    # then no required figure is NaN or infinite
    for name in ("p_alive", "expected_purchases", "expected_spend_per_order", "predicted_clv"):
        assert np.all(np.isfinite(getattr(scores, name))), name


same_day_orders = st.lists(
    st.tuples(
        st.integers(1, 4),
        st.integers(int(AS_OF) - 40, int(AS_OF)).map(float),
        st.integers(0, 100_000).map(lambda cents: cents / 100.0),
    ),
    min_size=2,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(same_day_orders, st.randoms(use_true_random=False), MODELS)
def test_score_shop_rows_sorted_by_customer_and_day_with_ties_equal_shuffled_rows(
    rows: list[tuple[int, float, float]], rng: object, models: FittedModels
) -> None:
    # given whole-day orders (many same-day ties), once sorted by customer and day as a database
    # returns them, same-day orders in any order, and once shuffled
    shuffled = list(rows)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    by_customer_day = sorted(shuffled, key=lambda r: (r[0], r[1]))
    # when both are scored
    first = score_shop(history(by_customer_day), AS_OF, ScoringSettings(), models)
    second = score_shop(history(shuffled), AS_OF, ScoringSettings(), models)
    # then every sum is identical to the bit
    for name in ("net_spend", "trailing_12m_spend", "aov", "predicted_clv", "monetary_score"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))


@pytest.mark.parametrize("amounts", [(0.3, 0.2, 0.1), (0.1, 0.2, 0.3), (0.2, 0.3, 0.1)])
def test_score_shop_same_day_orders_in_any_order_sum_in_one_order(
    amounts: tuple[float, float, float],
) -> None:
    # given three same-day orders whose float sum depends on the order of addition
    rows = [(1, AS_OF - 3.0, a) for a in amounts]
    # when scored, rows already sorted by customer and day
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # then the sum is exact (in the ledger's 1/10,000 units), whatever order they came in
    assert scores.net_spend[0] == 0.6
