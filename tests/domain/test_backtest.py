"""The backtest report: its shape, its counts and periods, its timing through an injected clock,
its refusals, and when it gives no spend prediction."""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pytest

from plugin.domain.backtest import FREQUENCY_GROUPS, BacktestError, _unusable_spend, run_backtest
from plugin.domain.bgnbd import BetaGeoParams
from plugin.domain.gamma_gamma import GammaGammaFit, GammaGammaParams
from plugin.domain.simulation import SimulatedPurchases, simulate_purchases

TRUTH = BetaGeoParams(r=0.5, alpha=20.0, a=0.8, b=2.5)  # per day
SPEND = GammaGammaParams(p=6.0, q=4.0, gamma=15.0)


def ticking_clock(step: float = 0.5) -> Any:
    ticks = itertools.count()
    return lambda: next(ticks) * step


@pytest.fixture(scope="module")
def purchases() -> SimulatedPurchases:
    first = np.random.default_rng(4).integers(0, 90, 3000).astype(float)
    return simulate_purchases(TRUTH, SPEND, first, end_day=450.0, seed=8)


def backtest(purchases: SimulatedPurchases, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "calibration_end_day": 270.0,
        "holdout_end_day": 450.0,
        "clock": ticking_clock(),
        "time_unit": "week",
    }
    arguments.update(overrides)
    return run_backtest(purchases.customer_ids, purchases.days, purchases.amounts, **arguments)


def test_run_backtest_simulated_shop_reports_issue_shape(purchases: SimulatedPurchases) -> None:
    # when the backtest runs on a simulated shop
    report = backtest(purchases)
    # then the report has the issue's keys, and is JSON
    json.dumps(report)
    assert report["time_unit"] == "week"
    assert set(report["models"]) == {"bgnbd", "mbgnbd", "paretonbd", "gamma_gamma"}
    assert set(report["models"]["bgnbd"]["params"]) == {"r", "alpha", "a", "b"}
    assert set(report["models"]["paretonbd"]["params"]) == {"r", "alpha", "s", "beta"}
    assert set(report["models"]["gamma_gamma"]["params"]) == {"p", "q", "gamma"}
    for model in report["models"].values():
        assert set(model) >= {"params", "log_likelihood", "converged", "seconds"}
        assert model["converged"] is True
    assert report["selected_model"] in {"bgnbd", "mbgnbd", "paretonbd"}
    holdout = report["holdout"]
    assert set(holdout["predicted_repeat_purchases"]) == {"bgnbd", "mbgnbd", "paretonbd"}
    assert list(holdout["by_calibration_frequency"]) == list(FREQUENCY_GROUPS)
    assert report["customers"] == 3000


def test_run_backtest_fake_clock_gives_each_fit_its_own_seconds(
    purchases: SimulatedPurchases,
) -> None:
    # given a clock that advances 0.5 s per reading, read twice per fit
    report = backtest(purchases, clock=ticking_clock(0.5))
    # then each fit took exactly one tick
    assert [m["seconds"] for m in report["models"].values()] == [0.5, 0.5, 0.5, 0.5]


def test_run_backtest_simulated_shop_predicts_holdout_within_ten_percent(
    purchases: SimulatedPurchases,
) -> None:
    # given 3,000 customers from the BG/NBD process; over 180 holdout days they make ~1,500
    # purchases, a Poisson-like total with a standard deviation of ~40 (3%), plus parameter error
    report = backtest(purchases)
    holdout = report["holdout"]
    actual = holdout["actual_repeat_purchases"]
    # then BG/NBD's aggregate prediction is within 10%, and the group sizes add up
    assert holdout["predicted_repeat_purchases"]["bgnbd"] == pytest.approx(actual, rel=0.10)
    groups = holdout["by_calibration_frequency"].values()
    assert sum(group["customers"] for group in groups) == report["customers"]
    weighted_actual = sum(g["customers"] * g["actual"] for g in groups if g["customers"])
    assert weighted_actual == pytest.approx(actual)


def test_run_backtest_shuffled_rows_same_report(purchases: SimulatedPurchases) -> None:
    order = np.random.default_rng(0).permutation(purchases.days.size)
    shuffled = SimulatedPurchases(
        purchases.customer_ids[order], purchases.days[order], purchases.amounts[order]
    )
    first, second = backtest(purchases), backtest(shuffled)
    assert (
        first["holdout"]["actual_repeat_purchases"] == second["holdout"]["actual_repeat_purchases"]
    )
    for name in ("bgnbd", "mbgnbd", "paretonbd", "gamma_gamma"):
        for key, value in first["models"][name]["params"].items():
            assert second["models"][name]["params"][key] == pytest.approx(value, rel=1e-6)


def test_run_backtest_counts_holdout_purchases_per_customer_day() -> None:
    # given: a buys on days 0, 5 (calibration) and twice on day 12 and once on 13 (holdout);
    # b buys on day 1 only; c first buys on day 12, after the calibration end
    ids = ["a", "a", "a", "a", "a", "b", "c", "c"]
    days = [0, 5, 12.1, 12.7, 13, 1, 12, 14]
    amounts = [10.0, 20, 5, 5, 7, 9, 3, 4]
    report = run_backtest(
        ids,
        days,
        amounts,
        calibration_end_day=10,
        holdout_end_day=20,
        clock=ticking_clock(),
        time_unit="day",
    )
    # then a and b are the customers, a with one repeat; a made 2 purchase-days in the holdout
    assert (report["customers"], report["repeat_customers"]) == (2, 1)
    groups = report["holdout"]["by_calibration_frequency"]
    assert groups["1"]["actual"] == 2.0 and groups["0"]["actual"] == 0.0
    assert report["holdout"]["actual_repeat_purchases"] == 2.0
    assert report["clv_calibration"]["actual_holdout_spend"] == 17.0


@pytest.mark.parametrize(
    ("ids", "days", "calibration_end", "holdout_end", "message"),
    [
        (["a"], [1.0], 10.0, 5.0, "after the calibration end"),
        (["a"], [11.0], 10.0, 20.0, "no customer"),
        (["a", "b"], [1.0, 2.0], 10.0, 20.0, "no customer made a repeat purchase"),
    ],
)
def test_run_backtest_unusable_data_raises_backtest_error(
    ids: list[str], days: list[float], calibration_end: float, holdout_end: float, message: str
) -> None:
    with pytest.raises(BacktestError, match=message):
        run_backtest(
            ids,
            days,
            [1.0] * len(ids),
            calibration_end_day=calibration_end,
            holdout_end_day=holdout_end,
            clock=ticking_clock(),
        )


def test_run_backtest_default_horizon_clv_is_the_predicted_holdout_spend(
    purchases: SimulatedPurchases,
) -> None:
    # when the backtest runs without a horizon (the holdout's 180 days, undiscounted)
    report = backtest(purchases)
    section = report["clv_calibration"]
    # then each model's CLV total is its predicted holdout spend, E[M] E[Y(180 days)] summed
    assert report["holdout"]["days"] == section["horizon_days"] == 180.0
    for name, spend in section["predicted_holdout_spend"].items():
        assert section["predicted_clv"][name] == pytest.approx(spend, rel=1e-9), name


def test_run_backtest_periods_are_whole_days() -> None:
    # given a buys on days 0 and 5, at 10.7 (the calibration end's day), 20.9 (the holdout end's
    # day) and 21; b on day 1; the ends at 10.5 and 20.2
    ids = ["a", "a", "a", "a", "a", "b"]
    days = [0.0, 5.0, 10.7, 20.9, 21.0, 1.0]
    amounts = [10.0, 20.0, 4.0, 6.0, 100.0, 9.0]
    report = run_backtest(
        ids,
        days,
        amounts,
        calibration_end_day=10.5,
        holdout_end_day=20.2,
        clock=ticking_clock(),
        time_unit="day",
    )
    # then day 10 is calibration (a has 2 repeats), the holdout is days 11 to 20, ten days,
    # with a's purchase of day 20 only
    holdout = report["holdout"]
    assert holdout["days"] == 10.0
    assert holdout["by_calibration_frequency"]["2"]["customers"] == 1
    assert holdout["actual_repeat_purchases"] == 1.0
    assert report["clv_calibration"]["actual_holdout_spend"] == 6.0


def test_run_backtest_seven_repeats_and_more_share_the_last_group() -> None:
    # given customers with 6, 7 and 9 repeat purchase days in the calibration period
    ids = [c for c, n in (("six", 7), ("seven", 8), ("nine", 10)) for _ in range(n)]
    days = [float(2 * k) for n in (7, 8, 10) for k in range(n)]
    report = run_backtest(
        ids,
        days,
        [5.0] * len(ids),
        calibration_end_day=30.0,
        holdout_end_day=40.0,
        clock=ticking_clock(),
        time_unit="day",
    )
    # then 6 has its own group, and 7 and 9 are both in 7+
    groups = report["holdout"]["by_calibration_frequency"]
    assert [groups[label]["customers"] for label in ("5", "6", "7+")] == [0, 1, 2]


def small_backtest(amounts: list[float], **overrides: Any) -> dict[str, Any]:
    """The backtest of a, who buys on days 0 and 5, and b on day 1, at `amounts`; calibration
    through day 10, holdout through day 20."""
    arguments: dict[str, Any] = {"calibration_end_day": 10.0, "holdout_end_day": 20.0}
    arguments.update(overrides)
    return run_backtest(
        ["a", "a", "b"], [0.0, 5.0, 1.0], amounts, clock=ticking_clock(), **arguments
    )


@pytest.mark.parametrize(
    ("amount", "horizon", "message"),
    [
        (float("nan"), None, "amounts must be finite and >= 0"),
        (float("inf"), None, "amounts must be finite and >= 0"),
        (-0.01, None, "amounts must be finite and >= 0"),
        (1.0, -1.0, "horizon must be between 0 and 36,500 days"),
        (1.0, 36_501.0, "horizon must be between 0 and 36,500 days"),
    ],
)
def test_run_backtest_bad_amounts_and_horizons_are_refused(
    amount: float, horizon: float | None, message: str
) -> None:
    with pytest.raises(BacktestError, match=message):
        small_backtest([1.0, amount, 1.0], horizon_days=horizon)


@pytest.mark.parametrize("horizon", [0.0, 36_500.0])
def test_run_backtest_horizons_at_the_bounds_are_taken(horizon: float) -> None:
    report = small_backtest([1.0, 2.0, 1.0], horizon_days=horizon)
    assert report["clv_calibration"]["horizon_days"] == horizon


def test_run_backtest_holdout_ending_at_the_calibration_end_is_refused() -> None:
    with pytest.raises(BacktestError, match="holdout end must be after the calibration end"):
        small_backtest([1.0, 1.0, 1.0], holdout_end_day=10.0)


@pytest.mark.parametrize(
    ("q", "converged", "note"),
    [
        (1.0, True, "no spend prediction: Gamma-Gamma q = 1 <= 1, so the mean spend per order"),
        (4.0, False, "no spend prediction: the Gamma-Gamma fit did not converge (stopped)"),
    ],
)
def test_unusable_spend_fits_say_why(q: float, converged: bool, note: str) -> None:
    # given a spend fit with q = 1 (an infinite mean), or one that did not converge
    fit = GammaGammaFit(-1.0, converged, 10, False, 5, "stopped", GammaGammaParams(6.0, q, 15.0))
    # then the report gives no spend prediction from it, and says why
    assert (_unusable_spend(fit) or "").startswith(note)
