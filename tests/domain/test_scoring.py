"""Scoring a shop: historical figures, the model run and its fallback, predictions, re-scoring."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from plugin.domain.clv import predicted_clv
from plugin.domain.customer_figures import customer_figures
from plugin.domain.gamma_gamma import GammaGammaParams
from plugin.domain.predictions import repeat_params_of
from plugin.domain.scoring import (
    CONFIDENCE_FITTED,
    CONFIDENCE_RULES,
    OrderHistory,
    ScoringSettings,
    fit_models,
    rescore,
    score_shop,
)
from tests.domain.scoring_data import RULES, generated, history


def test_score_shop_hand_built_history_figures_match_arithmetic() -> None:
    # given customer 7 with orders on days 100, 160 and 400 (30, 50, 20) and customer 3 with one
    # order of 80 on day 390; as of day 500, margin rate 0.4
    orders = history([(7, 400.0, 20.0), (3, 390.0, 80.0), (7, 100.0, 30.0), (7, 160.0, 50.0)])
    settings = ScoringSettings(margin_rate=0.4)
    # when scored
    scores = score_shop(orders, 500.0, settings, RULES)
    # then rows are sorted by id and every figure is the arithmetic of the orders
    assert scores.customer_id.tolist() == [3, 7]
    assert scores.orders.tolist() == [1, 3]
    assert scores.net_spend.tolist() == [80.0, 100.0]
    assert scores.aov.tolist() == pytest.approx([80.0, 100.0 / 3])
    assert scores.first_order_day.tolist() == [390.0, 100.0]
    assert scores.last_order_day.tolist() == [390.0, 400.0]
    assert np.isnan(scores.mean_days_between_orders[0])
    assert scores.mean_days_between_orders[1] == pytest.approx(150.0)
    # the day-100 order is more than 365 days before day 500, the day-160 one is not
    assert scores.trailing_12m_spend.tolist() == [80.0, 70.0]
    assert scores.historical_clv.tolist() == pytest.approx([32.0, 40.0])


def test_score_shop_orders_after_as_of_are_ignored() -> None:
    # given an order after the as-of day
    orders = history([(1, 10.0, 5.0), (1, 30.0, 7.0), (2, 31.0, 9.0)])
    # when scored as of day 20
    scores = score_shop(orders, 20.0, ScoringSettings(), RULES)
    # then only the first order counts
    assert scores.customer_id.tolist() == [1]
    assert scores.net_spend.tolist() == [5.0]


def test_score_shop_rules_predictions_are_the_documented_rules() -> None:
    # given a customer with orders of 100 on days 0, 200 and 330, scored as of day 380 by rules
    orders = history([(1, 0.0, 100.0), (1, 200.0, 100.0), (1, 330.0, 100.0)])
    settings = ScoringSettings(horizon_days=730.0)
    # when scored
    scores = score_shop(orders, 380.0, settings, RULES)
    # then predicted CLV is the trailing-12-month spend (200) pro rata over 730 days
    assert scores.predicted_clv[0] == pytest.approx(200.0 * 730.0 / 365.0)
    assert scores.expected_purchases[0] == pytest.approx(2.0 * 730.0 / 365.0)
    assert scores.expected_spend_per_order[0] == pytest.approx(100.0)
    # P(alive) falls linearly to 0 at 90 days: 50 days after the last order, 1 - 50/90 remain
    assert scores.p_alive[0] == pytest.approx(1.0 - 50.0 / 90.0)
    # the next order is expected one mean gap (165 days) after the last: day 495
    assert scores.expected_next_order_day[0] == pytest.approx(495.0)


def test_score_shop_rules_discount_lowers_predicted_clv_by_mean_monthly_factor() -> None:
    # given one customer scored by rules with and without a 10% annual discount rate
    orders = history([(1, 300.0, 120.0)])
    plain = score_shop(orders, 330.0, ScoringSettings(), RULES)
    discounted = score_shop(orders, 330.0, ScoringSettings(annual_discount_rate=0.1), RULES)
    # then the discounted value is the plain one times the mean of 1.1^(-t_k/365.25), t_k monthly
    factor = np.mean([1.1 ** -(365.0 * k / 12 / 365.25) for k in range(1, 13)])
    assert discounted.predicted_clv[0] == pytest.approx(plain.predicted_clv[0] * factor)


def test_fit_models_small_shop_falls_back_to_rules_and_says_why() -> None:
    # given a shop with 3 customers
    orders = history([(1, 0.0, 10.0), (1, 5.0, 10.0), (2, 3.0, 10.0), (3, 4.0, 12.0)])
    # when its models are fitted with the default minimums
    models = fit_models(orders, 10.0, ScoringSettings())
    # then nothing is fitted: confidence rules, no parameters, and the note gives the counts
    assert models.confidence == CONFIDENCE_RULES
    assert models.repeat_model == "rules"
    assert models.repeat_params == {}
    assert models.spend_params is None
    assert models.customers == 3
    assert models.repeat_customers == 1
    assert "3 customers" in models.note and "500" in models.note


def test_fit_models_enough_customers_but_few_repeaters_falls_back_to_rules() -> None:
    # given 600 one-order customers and 50 repeat buyers
    rows = [(c, float(c % 300), 20.0) for c in range(650)]
    rows += [(c, 310.0, 25.0) for c in range(50)]
    # when fitted
    models = fit_models(history(rows), 400.0, ScoringSettings())
    # then the 50 repeat buyers are below the 100 needed
    assert models.confidence == CONFIDENCE_RULES
    assert models.repeat_customers == 50


def test_fit_models_generated_store_fits_and_records_the_choice() -> None:
    # given a generated store of 3,000 customers
    data = generated(3000, 3)
    # when its models are fitted
    models = fit_models(data.history, data.as_of_day, ScoringSettings())
    # then a model is trusted, with parameters, and the note names the holdout criterion
    assert models.confidence == CONFIDENCE_FITTED
    assert models.converged
    assert models.repeat_model in ("bgnbd", "mbgnbd", "paretonbd")
    assert set(models.repeat_params) >= {"r", "alpha"}
    assert models.spend_params is not None and set(models.spend_params) == {"p", "q", "gamma"}
    assert "held out" in models.note
    assert models.customers == np.unique(data.history.customer_id).size
    assert math.isfinite(models.log_likelihood)


def test_score_shop_fitted_clv_equals_the_clv_module_with_discount() -> None:
    # given a fitted generated store and a 12% discount rate
    data = generated(3000, 3)
    settings = ScoringSettings(annual_discount_rate=0.12, horizon_days=500.0)
    models = fit_models(data.history, data.as_of_day, settings)
    assert models.spend_params is not None
    # when scored
    scores = score_shop(data.history, data.as_of_day, settings, models)
    # then predicted CLV is plugin.domain.clv's formula on the per customer-day summary
    figures = customer_figures(data.history, data.as_of_day, settings)
    expected = predicted_clv(
        repeat_params_of(models),
        GammaGammaParams(**models.spend_params),
        figures.frequency,
        figures.recency,
        figures.age,
        figures.monetary_value,
        horizon_days=500.0,
        days_per_unit=1.0,
        model=models.repeat_model,  # type: ignore[arg-type]
        annual_discount_rate=0.12,
    )
    np.testing.assert_allclose(scores.predicted_clv, expected, rtol=1e-9, atol=1e-9)


def test_score_shop_without_a_spend_model_values_a_purchase_day_not_an_order() -> None:
    # given a fitted repeat model without a spend model, and two customers who bought the same
    # on the same days, one in an order of 40 a day, the other in two orders of 20
    data = generated(3000, 3)
    fitted = fit_models(data.history, data.as_of_day, ScoringSettings())
    assert fitted.confidence == CONFIDENCE_FITTED
    models = replace(fitted, spend_params=None)
    days = [19_000.2, 19_100.2, 19_300.2]
    orders = [(1, day, 40.0) for day in days]
    orders += [(2, day, 20.0) for day in days] + [(2, day + 0.01, 20.0) for day in days]
    # when scored
    scores = score_shop(history(orders), 20_000.0, ScoringSettings(), models)
    # then both are worth the same, 40 a purchase
    assert scores.expected_spend_per_order.tolist() == [40.0, 40.0]
    assert scores.predicted_clv[0] == scores.predicted_clv[1] > 0


def test_score_shop_fitted_next_order_day_is_nan_only_when_more_likely_gone() -> None:
    # given a fitted generated store
    data = generated(3000, 3)
    models = fit_models(data.history, data.as_of_day, ScoringSettings())
    # when scored
    scores = score_shop(data.history, data.as_of_day, ScoringSettings(), models)
    # then the next order day is after as-of exactly where P(alive) > 1/2, NaN elsewhere
    likely = scores.p_alive > 0.5
    assert np.all(scores.expected_next_order_day[likely] > data.as_of_day)
    assert np.all(np.isnan(scores.expected_next_order_day[~likely]))


def test_rescore_one_customer_with_full_run_reference_equals_full_run_row() -> None:
    # given a full run on a generated store with product purchases
    data = generated(3000, 3)
    settings = ScoringSettings()
    models = fit_models(data.history, data.as_of_day, settings)
    full = score_shop(data.history, data.as_of_day, settings, models, data.purchases)
    # when each of a few customers (a heavy buyer, a reorder-due one, a one-order one) is
    # re-scored alone with all their orders and the full run's reference
    chosen = {
        int(full.customer_id[np.argmax(full.orders)]),
        int(full.customer_id[np.argmax(full.flags["reorder-due"])]),
        int(full.customer_id[np.argmin(full.orders)]),
    }
    for customer in chosen:
        rows = data.history.customer_id == customer
        lines = data.purchases.customer_id == customer
        alone = rescore(
            OrderHistory(
                *(
                    a[rows]
                    for a in (data.history.customer_id, data.history.day, data.history.amount)
                )
            ),
            data.as_of_day,
            settings,
            models,
            full.reference,
            type(data.purchases)(
                *(
                    a[lines]
                    for a in (
                        data.purchases.customer_id,
                        data.purchases.product_id,
                        data.purchases.day,
                    )
                )
            ),
        )
        # then every figure, score, flag and reason is the full run's, to the bit
        i = int(np.searchsorted(full.customer_id, customer))
        assert_same_row(full, i, alone, 0)


def assert_same_row(full: object, i: int, alone: object, j: int) -> None:
    for name in ARRAY_FIELDS:
        left, right = getattr(full, name)[i], getattr(alone, name)[j]
        assert left == right or (np.isnan(left) and np.isnan(right)), name
    for flag, values in full.flags.items():  # type: ignore[attr-defined]
        assert values[i] == alone.flags[flag][j], flag  # type: ignore[attr-defined]
    assert full.tags(i) == alone.tags(j)  # type: ignore[attr-defined]
    assert full.reasons(i) == alone.reasons(j)  # type: ignore[attr-defined]


ARRAY_FIELDS = (
    "customer_id",
    "orders",
    "net_spend",
    "aov",
    "first_order_day",
    "last_order_day",
    "mean_days_between_orders",
    "trailing_12m_spend",
    "historical_clv",
    "p_alive",
    "expected_purchases",
    "expected_next_order_day",
    "expected_spend_per_order",
    "predicted_clv",
    "recency_score",
    "frequency_score",
    "monetary_score",
    "segment",
    "reorder_due_day",
)


def test_score_shop_history_arrays_of_different_lengths_raise() -> None:
    # given arrays of different lengths
    bad = OrderHistory(np.array([1, 2]), np.array([1.0]), np.array([3.0, 4.0]))
    # when scored, then it is refused
    with pytest.raises(ValueError, match="one length"):
        score_shop(bad, 10.0, ScoringSettings(), RULES)


def test_score_shop_negative_amount_raises() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        score_shop(history([(1, 1.0, -5.0)]), 10.0, ScoringSettings(), RULES)


def test_score_shop_empty_shop_scores_nobody_and_fits_nothing() -> None:
    # given a shop without orders
    empty = history([])
    # when fitted and scored
    models = fit_models(empty, 100.0, ScoringSettings())
    scores = score_shop(empty, 100.0, ScoringSettings(), models)
    # then rules, no customers, and the vectorised tag forms are empty
    assert models.confidence == CONFIDENCE_RULES and models.customers == 0
    assert len(scores) == 0
    assert scores.tag_matrix().shape[0] == 0
    assert scores.all_tags() == [] and scores.all_reasons() == []
    assert scores.reference.top_clv_threshold == math.inf


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"tier_insider": 800.0}, "tier_insider <= tier_vip"),
        ({"margin_rate": 1.5}, "margin_rate"),
        ({"top_share": -0.1}, "top_share"),
        ({"candidate_models": ("bgnbd", "weibull")}, "candidate_models"),
        ({"reorder_grace": 4.0}, "reorder_grace"),
        ({"churn_p_alive": float("nan")}, "churn_p_alive"),
    ],
)
def test_scoring_settings_out_of_range_value_is_refused(
    override: dict[str, object], message: str
) -> None:
    # given a shop override out of range, when settings are built, then they are refused
    with pytest.raises(ValueError, match=message):
        ScoringSettings(**override)  # type: ignore[arg-type]


def test_scoring_settings_defaults_are_valid() -> None:
    # then the product defaults pass their own checks, and the thresholds are the documented ones
    settings = ScoringSettings()
    assert (settings.tier_insider, settings.tier_vip, settings.win_back_days) == (250, 750, 90)
