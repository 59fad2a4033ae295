"""Per-customer summaries: counting per customer-day, units, windows and compression."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugin.domain.rfm_summary import compress_rfm, count_purchase_days, summarise_purchases

purchases = st.lists(
    st.tuples(
        st.integers(0, 5),
        st.floats(0, 60, allow_nan=False),
        st.floats(0.01, 500, allow_nan=False),
    ),
    min_size=1,
    max_size=40,
)


def test_summarise_purchases_two_orders_same_day_count_as_one_purchase() -> None:
    # given a customer with orders on day 10 (two of them), and on day 17; calibration ends day 24
    ids, days, amounts = ["c1"] * 3, [10.2, 10.9, 17.0], [5.0, 7.0, 30.0]
    # when summarised in days
    summary = summarise_purchases(ids, days, amounts, calibration_end_day=24, time_unit="day")
    # then day 10 is the first purchase (12 spent), day 17 the one repeat purchase
    assert summary.frequency.tolist() == [1.0]
    assert summary.recency.tolist() == [7.0]
    assert summary.age.tolist() == [14.0]
    assert summary.monetary_value.tolist() == [30.0]


def test_summarise_purchases_week_unit_divides_days_by_seven() -> None:
    # given purchases on days 0, 7 and 21 and a calibration end on day 28
    ids, days, amounts = [1, 1, 1], [0, 7, 21], [1.0, 2.0, 4.0]
    # when summarised in weeks
    summary = summarise_purchases(ids, days, amounts, calibration_end_day=28, time_unit="week")
    # then recency is 3 weeks, age 4 weeks, and the repeat spend is the mean of 2 and 4
    assert (summary.frequency[0], summary.recency[0], summary.age[0]) == (2.0, 3.0, 4.0)
    assert summary.monetary_value[0] == pytest.approx(3.0)


def test_summarise_purchases_after_calibration_end_are_left_out() -> None:
    # given customer a buying on days 1 and 12, and customer b first buying on day 11
    ids, days, amounts = ["a", "a", "b"], [1, 12, 11], [1.0, 1.0, 1.0]
    # when the calibration ends on day 10
    summary = summarise_purchases(ids, days, amounts, calibration_end_day=10)
    # then only a is a customer, without repeat purchase
    assert summary.customer_ids.tolist() == ["a"]
    assert summary.frequency.tolist() == [0.0]
    assert summary.monetary_value.tolist() == [0.0]


def test_summarise_purchases_mismatched_lengths_raise() -> None:
    with pytest.raises(ValueError, match="one length"):
        summarise_purchases([1, 2], [1.0], [1.0, 2.0], calibration_end_day=5)


def test_count_purchase_days_window_counts_distinct_days_after_the_start() -> None:
    # given purchases of a on days 5 (calibration), 11, 11.5, 13 and 30; b none in the window
    ids, days = ["a"] * 5 + ["b"], [5, 11, 11.5, 13, 30, 3]
    # when counting in (10, 20]
    counts = count_purchase_days(
        ids, days, after_day=10, through_day=20, for_customers=np.array(["a", "b"])
    )
    # then a bought on 2 distinct days and b on none
    assert counts.tolist() == [2.0, 0.0]


@settings(max_examples=60, deadline=None)
@given(purchases, st.randoms(use_true_random=False))
def test_summarise_purchases_any_row_order_gives_same_summary(
    rows: list[tuple[int, float, float]], random: object
) -> None:
    # given purchases and the same purchases shuffled
    shuffled = list(rows)
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    # when both are summarised
    first, second = (
        summarise_purchases(*zip(*data, strict=True), calibration_end_day=45)
        for data in (rows, shuffled)
    )
    # then the summaries agree (amounts up to float summation order)
    assert first.customer_ids.tolist() == second.customer_ids.tolist()
    assert first.frequency.tolist() == second.frequency.tolist()
    assert first.recency.tolist() == second.recency.tolist()
    np.testing.assert_allclose(first.monetary_value, second.monetary_value, rtol=1e-12)
    assert np.all(first.recency <= first.age)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(3, 5)), min_size=1))
def test_compress_rfm_weights_and_inverse_restore_every_row(
    rows: list[tuple[int, int, int]],
) -> None:
    # given rows with many duplicates
    x, tx, t = (np.array(column, dtype=float) for column in zip(*rows, strict=True))
    # when compressed
    compressed = compress_rfm(x, tx, t)
    # then rows are unique, weights count them, and the inverse expands back exactly
    stacked = np.column_stack((compressed.frequency, compressed.recency, compressed.age))
    assert len({tuple(row) for row in stacked}) == len(stacked)
    assert compressed.weights.sum() == len(rows)
    assert np.array_equal(compressed.frequency[compressed.inverse], x)
    assert np.array_equal(compressed.recency[compressed.inverse], tx)
    assert np.array_equal(compressed.age[compressed.inverse], t)
