"""Benchmark: fit BG/NBD and Gamma-Gamma on 1,000,000 simulated customers, ours against lifetimes.

    python bench/fit.py [--customers N] [--seed S] [--no-lifetimes]

Customers are drawn (seeded) from the BG/NBD process with Gamma-Gamma spend, as a shop would see
them: first purchases spread over one year, calibration ending a year after the last of them, times
in whole days (recency floored to the day). Both libraries fit the same arrays: ours through
`fit_beta_geo` and `fit_gamma_gamma` (timed from raw per-customer arrays, compression included),
the archived `lifetimes` package (a bench-only extra, never a runtime dependency) through
`BetaGeoFitter.fit` on all customers and `GammaGammaFitter.fit` on the repeat customers. The last
line is JSON with `seconds` (ours, both fits), `speedup_vs_lifetimes` and `param_max_rel_diff`
(null when lifetimes does not import).
"""

from __future__ import annotations

import os

# OpenBLAS threads spin for the CPU and make vector dot products 100x slower on a busy machine;
# pin them for both contenders so that the run measures the fitting code.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from plugin.domain.bgnbd import BetaGeoParams, fit_beta_geo
from plugin.domain.gamma_gamma import GammaGammaParams, fit_gamma_gamma
from plugin.domain.simulation import simulate_customers

TRUTH = BetaGeoParams(r=0.25, alpha=30.0, a=0.8, b=2.5)  # alpha in days
SPEND = GammaGammaParams(p=6.0, q=4.0, gamma=15.0)


@dataclass(frozen=True)
class Customers:
    frequency: np.ndarray[Any, np.dtype[np.float64]]
    recency: np.ndarray[Any, np.dtype[np.float64]]
    age: np.ndarray[Any, np.dtype[np.float64]]
    monetary_value: np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class Result:
    params: dict[str, float]
    seconds_bgnbd: float
    seconds_gamma_gamma: float

    @property
    def seconds(self) -> float:
        return self.seconds_bgnbd + self.seconds_gamma_gamma


def generate(customers: int, seed: int) -> Customers:
    first_day = np.random.default_rng(seed).integers(0, 365, customers)
    age = (730 - first_day).astype(np.float64)
    drawn = simulate_customers(TRUTH, age, seed=seed + 1, spend=SPEND)
    return Customers(drawn.frequency, np.floor(drawn.recency), age, drawn.monetary_value)


def fit_ours(data: Customers) -> Result:
    started = time.perf_counter()
    purchases = fit_beta_geo(data.frequency, data.recency, data.age)
    middle = time.perf_counter()
    spend = fit_gamma_gamma(data.frequency, data.monetary_value)
    ended = time.perf_counter()
    if not (purchases.converged and spend.converged):
        print(f"warning: our fits converged: BG/NBD {purchases.converged}, GG {spend.converged}")
    return Result(
        {**purchases.params.as_dict(), **spend.params.as_dict()}, middle - started, ended - middle
    )


def fit_lifetimes(data: Customers) -> Result | str:
    """lifetimes' fitters on the same arrays, or why they could not run."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from lifetimes import BetaGeoFitter, GammaGammaFitter  # type: ignore[import-untyped]

            started = time.perf_counter()
            purchases = BetaGeoFitter().fit(data.frequency, data.recency, data.age)
            middle = time.perf_counter()
            repeat = data.frequency > 0
            spend = GammaGammaFitter().fit(data.frequency[repeat], data.monetary_value[repeat])
            ended = time.perf_counter()
    except Exception as error:  # an archived package on new numpy/pandas: report, do not crash
        return f"{type(error).__name__}: {error}"
    spend_params = spend.params_.to_dict()
    params = {**purchases.params_.to_dict(), "p": spend_params["p"], "q": spend_params["q"]}
    params["gamma"] = spend_params["v"]  # lifetimes calls gamma "v"
    return Result(params, middle - started, ended - middle)


def _row(name: str, result: Result) -> str:
    params = " ".join(f"{k}={v:.6g}" for k, v in result.params.items())
    return (
        f"{name:<10} BG/NBD {result.seconds_bgnbd:7.3f} s  Gamma-Gamma "
        f"{result.seconds_gamma_gamma:7.3f} s  total {result.seconds:7.3f} s  {params}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--no-lifetimes", action="store_true")
    options = parser.parse_args()

    data = generate(options.customers, options.seed)
    repeat = int(np.count_nonzero(data.frequency > 0))
    print(f"customers {options.customers:,}, repeat customers {repeat:,}, seed {options.seed}")
    truth = {**TRUTH.as_dict(), **SPEND.as_dict()}
    print("truth      " + " ".join(f"{k}={v:.6g}" for k, v in truth.items()))
    ours = fit_ours(data)
    print(_row("clvsync", ours))
    theirs = "skipped (--no-lifetimes)" if options.no_lifetimes else fit_lifetimes(data)
    summary: dict[str, Any] = {
        "customers": options.customers,
        "seconds": round(ours.seconds, 4),
        "seconds_bgnbd": round(ours.seconds_bgnbd, 4),
        "seconds_gamma_gamma": round(ours.seconds_gamma_gamma, 4),
        "lifetimes_seconds": None,
        "speedup_vs_lifetimes": None,
        "param_max_rel_diff": None,
    }
    if isinstance(theirs, str):
        print(f"lifetimes  not compared: {theirs}")
        summary["lifetimes_error"] = theirs
    else:
        print(_row("lifetimes", theirs))
        diff = max(abs(ours.params[k] - v) / abs(v) for k, v in theirs.params.items())
        speedup = theirs.seconds / ours.seconds
        print(f"speed-up {speedup:.1f}x, largest relative parameter difference {diff:.2e}")
        summary.update(
            lifetimes_seconds=round(theirs.seconds, 4),
            speedup_vs_lifetimes=round(speedup, 2),
            param_max_rel_diff=float(f"{diff:.3e}"),
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
