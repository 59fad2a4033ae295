"""Lifecycle flags, tags and the reasons behind them, on hand-built customers."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest

from plugin.domain.flags import (
    days,
    money_below,
    percent,
    percent_below,
    top_threshold,
    whole_days,
)
from plugin.domain.scoring import (
    SEGMENTS,
    TAGS,
    ProductPurchases,
    ScoringSettings,
    score_shop,
)
from plugin.domain.tag_reasons import reason_texts
from tests.domain.scoring_data import RULES, history

AS_OF = 1000.0


def flag_of(rows: list[tuple[int, float, float]], flag: str, **settings: float) -> list[bool]:
    scores = score_shop(history(rows), AS_OF, ScoringSettings(**settings), RULES)  # type: ignore[arg-type]
    return [bool(v) for v in scores.flags[flag]]


def test_tiers_trailing_spend_at_thresholds_lands_in_the_higher_tier() -> None:
    # given trailing-12-month spends of 0 (order 400 days ago), 249.99, 250, 749.99 and 750
    rows = [(1, AS_OF - 400, 900.0), (2, AS_OF - 10, 249.99), (3, AS_OF - 10, 250.0)]
    rows += [(4, AS_OF - 10, 749.99), (5, AS_OF - 10, 750.0)]
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # then exactly one tier each, none without spend in 12 months
    tiers = [[t for t in scores.tags(i) if t.startswith("tier-")] for i in range(5)]
    assert tiers == [[], ["tier-enthusiast"], ["tier-insider"], ["tier-insider"], ["tier-vip"]]
    assert "750.00" in scores.reasons(4)["tier-vip"]
    assert "250.00" in scores.reasons(2)["tier-insider"]


def test_win_back_ninety_days_without_order_is_flagged() -> None:
    # given last orders 89.5 and 90 days ago
    rows = [(1, AS_OF - 89.5, 10.0), (2, AS_OF - 90.0, 10.0)]
    # then only the second is win-back
    assert flag_of(rows, "win-back") == [False, True]


def test_win_back_far_beyond_own_rhythm_is_flagged_before_ninety_days() -> None:
    # given customer 1 ordering every 15 days until 50 days ago (3 x 15 = 45 < 50), and
    # customer 2 ordering every 5 days until 20 days ago (3 x 5 = 15, but at least 30 days)
    rows = [(1, AS_OF - 50 - 15 * k, 10.0) for k in range(4)]
    rows += [(2, AS_OF - 20 - 5 * k, 10.0) for k in range(4)]
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # then only customer 1 is win-back, and the reason quotes their rhythm
    assert scores.flags["win-back"].tolist() == [True, False]
    assert "15.0 days between orders" in scores.reasons(0)["win-back"]


def test_spend_declining_last_two_orders_below_sixty_percent_of_earlier_mean() -> None:
    # given customer 1: 100, 100, then 50, 60 (55 < 0.6 x 100); customer 2: 100, 100, 70, 60
    rows = [(1, 100.0, 100.0), (1, 200.0, 100.0), (1, 300.0, 50.0), (1, 400.0, 60.0)]
    rows += [(2, 100.0, 100.0), (2, 200.0, 100.0), (2, 300.0, 70.0), (2, 400.0, 60.0)]
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # then only customer 1 is spend-declining, and the reason gives both averages
    assert scores.flags["spend-declining"].tolist() == [True, False]
    assert "55.00" in scores.reasons(0)["spend-declining"]
    assert "100.00" in scores.reasons(0)["spend-declining"]


def test_spend_declining_at_exactly_sixty_percent_is_not_flagged() -> None:
    # given 100, 100, then 60, 60 (exactly 0.6 x 100), and 100, 100, then 59.98, 60
    rows = [(1, 100.0, 100.0), (1, 200.0, 100.0), (1, 300.0, 60.0), (1, 400.0, 60.0)]
    rows += [(2, 100.0, 100.0), (2, 200.0, 100.0), (2, 300.0, 59.98), (2, 400.0, 60.0)]
    # then only the second, below 60 percent, is spend-declining
    assert flag_of(rows, "spend-declining") == [False, True]


def test_spend_declining_needs_earlier_orders_whatever_the_ratio() -> None:
    # given a shop flagging recent orders below 1.5 x the earlier ones, customer 1 with
    # 100, 100, 100, 100, and customer 2 with only two orders (no earlier orders to compare)
    rows = [(1, 100.0 * k, 100.0) for k in range(1, 5)] + [(2, 300.0, 100.0), (2, 400.0, 100.0)]
    # then only customer 1 is spend-declining
    assert flag_of(rows, "spend-declining", spend_declining_ratio=1.5) == [True, False]


def test_spend_declining_reason_reads_the_recent_average_below_the_limit() -> None:
    # given a shop comparing the last 3 orders: 100, 100, then 59.99, 60, 60 (a mean of
    # 59.9967, below 60% of 100, that rounds to 60.00)
    rows = [(1, 100.0 * k, amount) for k, amount in enumerate([100, 100, 59.99, 60, 60], 1)]
    scores = score_shop(history(rows), AS_OF, ScoringSettings(spend_recent_orders=3), RULES)
    # then its reason cuts the mean to 59.99, where "60.00, below 60% of 100.00" would not read
    assert scores.flags["spend-declining"].tolist() == [True]
    assert "averaged 59.99, below 60% of the earlier" in scores.reasons(0)["spend-declining"]
    # and a figure is cut to cents only where rounded it would not read below the limit
    below = {(55.0, "60"): "55.00", (59.9967, "60"): "59.99", (749.995, "750"): "749.995"}
    below |= {(1234.5, "2000"): "1,234.50", (1999.9999, "2000"): "1,999.99"}
    assert {(v, limit): money_below(v, Decimal(limit)) for v, limit in below} == below


def test_spend_declining_three_orders_is_never_flagged() -> None:
    # given 100, 100, then 1 (only one earlier order before the last two)
    rows = [(1, 100.0, 100.0), (1, 200.0, 100.0), (1, 300.0, 1.0)]
    assert flag_of(rows, "spend-declining") == [False]


def test_churn_risk_rules_p_alive_below_threshold() -> None:
    # given one-order customers 60 and 70 days ago: by rule 1 - 60/90 = 0.33, 1 - 70/90 = 0.22
    rows = [(1, AS_OF - 60, 10.0), (2, AS_OF - 70, 10.0)]
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # then only the second is churn-risk, and the reason says it is a rule
    assert scores.flags["churn-risk"].tolist() == [False, True]
    assert "By rule" in scores.reasons(1)["churn-risk"]


def test_reasons_read_past_the_limits_they_quote() -> None:
    # given customer 1, one order 63.36 days ago (by rule 1 - 63.36/90 = 0.296 of the way to
    # win-back remains, below 30%), and customer 2 ordering every 10 days until 30.5 days
    # ago (beyond the rhythm rule's 30 days, not 31)
    rows = [(1, AS_OF - 63.36, 10.0)] + [(2, AS_OF - 30.5 - 10 * k, 10.0) for k in range(3)]
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # then their reasons give figures that read below and beyond those limits
    assert scores.flags["churn-risk"][0] and scores.flags["win-back"][1]
    assert "29% of the way" in scores.reasons(0)["churn-risk"]
    assert "No order for 30.5 days, more than 30 days" in scores.reasons(1)["win-back"]


def test_reasons_quote_settings_that_are_no_whole_percent_as_they_were_set() -> None:
    # given thresholds a merchant may set, 12.5% for churn risk and 64.5% for declining spend:
    # customer 1, one order 78.8 days ago (by rule 1 - 78.8/90 = 0.1244 remains), customer 2
    # spending 100, 100, then 64.45, 64.45 (0.6445 of the earlier average)
    rows = [(1, AS_OF - 78.8, 10.0)]
    rows += [(2, AS_OF - 40.0 * k, 100.0 if k > 1 else 64.45) for k in range(4)]
    settings = ScoringSettings(churn_p_alive=0.125, spend_declining_ratio=0.645)
    scores = score_shop(history(rows), AS_OF, settings, RULES)
    # then each reason quotes its setting exactly, so the figure reads below it (rounded to
    # whole percents, 12% and 64%, the figures would read above)
    assert scores.flags["churn-risk"][0] and scores.flags["spend-declining"][1]
    churn = scores.reasons(0)["churn-risk"]
    assert (
        "12.4% of the way from the last order to the win-back point remains, below 12.5%" in churn
    )
    assert "averaged 64.45, below 64.5% of the earlier" in scores.reasons(1)["spend-declining"]
    # and a setting shows as few decimals as it has, three at the most
    shown = {0.3: "30%", 0.005: "0.5%", 0.1225: "12.25%", 0.12345: "12.345%", 1 / 3: "33.333%"}
    assert {value: percent(value) for value in shown} == shown
    # and a figure below a setting is cut to the setting's decimals, or fewer where the setting
    # is rounded to three and the figure would read equal to it
    below = {(0.2999, 0.3): "29%", (0.1249, 0.125): "12.4%", (0.1234543, 0.1234544): "12%"}
    assert {pair: percent_below(*pair) for pair in below} == below


def test_churn_risk_and_the_rhythm_rule_need_more_than_their_limits() -> None:
    # given customer 1, one order 45 days ago (by rule 1 - 45/90 = 0.5 remains), and customer
    # 2 ordering every 10 days until exactly 30 days ago (the rhythm rule's 30 days)
    rows = [(1, AS_OF - 45.0, 10.0)] + [(2, AS_OF - 30.0 - 10 * k, 10.0) for k in range(3)]
    scores = score_shop(history(rows), AS_OF, ScoringSettings(churn_p_alive=0.5), RULES)
    # then customer 1 is no churn risk (that takes less than the threshold), and neither is
    # win-back (that takes more than the days; customer 2, with nothing left of the way to
    # them, is a churn risk by rule)
    assert scores.flags["churn-risk"].tolist() == [False, True]
    assert scores.flags["win-back"].tolist() == [False, False]


def test_trailing_12_months_leave_out_an_order_exactly_365_days_old() -> None:
    # given an order exactly 365 days before as_of, and one half a day later
    rows = [(1, AS_OF - 365.0, 900.0), (2, AS_OF - 364.5, 50.0)]
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # then only the later one is in the trailing 12 months
    assert scores.trailing_12m_spend.tolist() == [0.0, 50.0]


def test_top_threshold_ten_customers_top_fifth_is_two() -> None:
    # given predicted CLVs 1..10
    values = np.arange(1.0, 11.0)
    # when the top 20% threshold is taken, then it is the second largest
    assert top_threshold(values, 0.2) == 9.0
    assert top_threshold(values, 0.0) == math.inf


def test_top_threshold_a_share_that_makes_a_whole_count_in_float_error() -> None:
    # given predicted CLVs 1..25, and a top share of 28%, 7 customers (25 x 0.28 is
    # 7.000000000000001 in floats)
    values = np.arange(1.0, 26.0)
    # then the threshold is the seventh largest, not the eighth
    assert top_threshold(values, 0.28) == 19.0


def test_top_20_flags_the_top_fifth_by_predicted_clv_and_never_zero() -> None:
    # given ten customers whose trailing spend (hence rule CLV) is 0 (old order) or 10..90
    rows = [(c, AS_OF - 10, 10.0 * c) for c in range(1, 10)] + [(10, AS_OF - 500, 999.0)]
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # then customers 8 and 9 (80, 90) are the top two; the zero-CLV customer never is
    assert np.flatnonzero(scores.flags["top-20"]).tolist() == [7, 8]
    assert "lowest of this shop's top 20%" in scores.reasons(8)["top-20"]


def test_top_20_never_flags_a_zero_clv_even_where_it_fits_in_the_top_fifth() -> None:
    # given a shop of one customer, whose rule CLV is 0 (their only order 500 days ago): the
    # top fifth is that one customer
    scores = score_shop(history([(1, AS_OF - 500, 999.0)]), AS_OF, ScoringSettings(), RULES)
    # then they are not top-20
    assert scores.predicted_clv.tolist() == [0.0]
    assert not scores.flags["top-20"].any()


def test_reorder_due_consumable_past_its_interval_and_not_lapsed() -> None:
    # given product 77 rebought by 25 customers every 30 days (a consumable), then: customer 1
    # last bought it 31 days ago (due), 2 bought it 10 days ago (not yet), 3 bought 100 days
    # ago (lapsed: more than 3 x 30)
    lines = [(c, 77, AS_OF - 200 + 30.0 * k) for c in range(100, 125) for k in range(4)]
    lines += [(1, 77, AS_OF - 31), (2, 77, AS_OF - 10), (3, 77, AS_OF - 100)]
    purchases = ProductPurchases(
        np.array([r[0] for r in lines], dtype=np.int64),
        np.array([r[1] for r in lines], dtype=np.int64),
        np.array([r[2] for r in lines], dtype=np.float64),
    )
    rows = [(c, d, 10.0) for c, _, d in lines]
    # when scored with the purchases
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES, purchases)
    # then the interval is learned, and only customer 1 is due, expected on day -1 after 30
    assert scores.reference.replenishment_days == {77: pytest.approx(30.0)}
    assert scores.flags["reorder-due"][:3].tolist() == [True, False, False]
    assert scores.reorder_due_day[:2].tolist() == pytest.approx([AS_OF - 1, AS_OF + 20])
    assert np.isnan(scores.reorder_due_day[2])
    assert "product 77 31 days ago" in scores.reasons(0)["reorder-due"]
    assert "due after 30 days" in scores.reasons(0)["reorder-due"]


def test_reorder_due_after_the_units_last_bought_times_the_interval() -> None:
    # given product 77 rebought by 25 customers every 30 days, customer 1 who bought three of
    # it 91 days ago and customer 2 who bought three 89 days ago
    lines = [(c, AS_OF - 200 + 30.0 * k, 1) for c in range(100, 125) for k in range(4)]
    lines += [(1, AS_OF - 91, 3), (2, AS_OF - 89, 3)]
    purchases = ProductPurchases(
        np.array([r[0] for r in lines], dtype=np.int64),
        np.full(len(lines), 77, dtype=np.int64),
        np.array([r[1] for r in lines], dtype=np.float64),
        np.array([r[2] for r in lines], dtype=np.int64),
    )
    rows = [(c, d, 10.0) for c, d, _ in lines]
    # when scored with the purchases
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES, purchases)
    # then three bags last 90 days: customer 1 is due, 2 is not yet, and the reason says so
    assert scores.flags["reorder-due"][:2].tolist() == [True, False]
    assert scores.reorder_units[:2].tolist() == [3.0, 3.0]
    assert scores.reasons(0)["reorder-due"] == (
        "Last bought 3 units of product 77 91 days ago; customers who rebuy it do so every "
        "30 days a unit (median), and a reorder is due after 90 days."
    )


def test_tag_matrix_and_bits_agree_with_tags() -> None:
    # given a small shop with several tags, among them champions (TAGS[0], bit 0)
    rows = [(c, AS_OF - 40.0 * c, 100.0 * c) for c in range(1, 12)]
    rows += [(c, AS_OF - 40.0 * c - 20 * k, 50.0) for c in range(1, 6) for k in range(1, 7 - c)]
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    assert scores.tags(0)[0] == TAGS[0] == "champions"
    # when the vectorised forms are built
    matrix, bits, lists = scores.tag_matrix(), scores.tag_bits(), scores.all_tags()
    # then they say the same as tags(i)
    for i in range(len(scores)):
        from_matrix = [TAGS[j] for j in np.flatnonzero(matrix[i])]
        from_bits = [t for j, t in enumerate(TAGS) if (int(bits[i]) >> j) & 1]
        assert sorted(from_matrix) == sorted(from_bits) == sorted(scores.tags(i))
        assert lists[i] == scores.tags(i)
    assert scores.all_reasons() == [scores.reasons(i) for i in range(len(scores))]


def test_product_rank_sampled_equals_full_rank_with_rare_products() -> None:
    # given 300,000 lines of a few common products and three rare ones the sample skips
    from plugin.domain.replenishment import _product_rank

    rng = np.random.default_rng(3)
    product = rng.choice(np.array([10, 20, 30, 40], dtype=np.int64), 300_000)
    product[[1, 7, 299_999]] = [5, 25, 99]
    # when ranked from a sample, then completed; then the rank of a full sort
    expected = np.unique(product, return_inverse=True)[1].reshape(-1)
    assert np.array_equal(_product_rank(product), expected)


def test_reasons_shared_by_customers_with_equal_figures_match_each_customers_own() -> None:
    # given customers who share scores, order counts, whole days since their last order and
    # 12 months' spends (fractions of a day apart), beside rhythm and lapsed win-backs, a
    # decline, and the rules' churn risk
    rows = [(c, AS_OF - 100.0 - 0.1 * (c % 7), 120.0) for c in range(1, 40)]
    rows += [(c, AS_OF - 100.9 - 0.01 * (c % 3), 80.0) for c in range(1, 40)]
    rows += [
        (c, AS_OF - 15.0 * k - 50.0 - c, 100.0 + 60.0 * k) for c in range(40, 60) for k in range(5)
    ]
    rows += [(c, AS_OF - 500.0 - c, 900.0) for c in range(60, 70)]
    rows += [(c, AS_OF - 3.0 * k - 40.0, 40.0) for c in range(70, 75) for k in range(3)]
    scores = score_shop(history(rows), AS_OF, ScoringSettings(), RULES)
    # when the reasons are written for the whole shop, and in slices
    whole = scores.all_reasons()
    sliced = [
        r for start in range(0, len(scores), 17) for r in scores.all_reasons(start, start + 17)
    ]
    # then each customer's reasons are its own, and the texts were shared
    own = [scores.reasons(i) for i in range(len(scores))]
    assert whole == sliced == own
    assert all(list(a) == list(b) for a, b in zip(whole, own, strict=True))  # same key order
    assert {"win-back", "spend-declining", "churn-risk"} <= {t for r in own for t in r}
    assert any("usual" in r.get("win-back", "") for r in own)  # the rhythm branch
    segment = reason_texts(scores)[SEGMENTS[int(scores.segment[0])]]
    assert len(segment.texts) < segment.customers.size


def test_whole_days_counts_what_days_writes() -> None:
    # given day counts near whole numbers, and float noise just under them
    values = np.array([0.0, 0.5, 0.999999999999, 1.0, 1.9999999999, 2.0, 30.25, 364.9999999999])
    # when counted as arrays and written one by one
    wholes = whole_days(values).tolist()
    # then each count is the number `days` writes
    for value, whole in zip(values.tolist(), wholes, strict=True):
        assert days(value) == ("1 day" if whole == 1 else f"{whole:.0f} days")
