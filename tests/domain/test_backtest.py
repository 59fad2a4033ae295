"""The backtest report: its shape, its counts, its timing through an injected clock."""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pytest

from plugin.domain.backtest import FREQUENCY_GROUPS, BacktestError, run_backtest
from plugin.domain.bgnbd import BetaGeoParams
from plugin.domain.gamma_gamma import GammaGammaParams
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
