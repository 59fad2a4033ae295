"""Pareto/NBD: quadrature against the closed form, gradient, recovery, predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import approx_fprime
from scipy.special import hyp2f1

from plugin.domain.beta_geo_likelihood import factorise_rows
from plugin.domain.paretonbd import (
    ParetoNbdParams,
    _objective,
    _terms,
    fit_pareto_nbd,
    pareto_expected_purchases,
    pareto_nbd_log_likelihood,
    pareto_probability_alive,
)
from plugin.domain.simulation import simulate_pareto_customers

CDNOW_PARETO = ParetoNbdParams(r=0.553, alpha=10.578, s=0.606, beta=11.669)

params_strategy = st.builds(
    ParetoNbdParams,
    r=st.floats(0.01, 20),
    alpha=st.floats(1e-3, 1e4),
    s=st.floats(0.01, 20),
    beta=st.floats(1e-3, 1e4),
)


@st.composite
def customers(draw: Any) -> tuple[float, float, float]:
    age = draw(st.floats(0, 5000))
    recency = draw(st.floats(0, 1)) * age
    frequency = float(draw(st.integers(0, 500))) if recency > 0 else 0.0
    return frequency, recency, age


def closed_form_log_integral(p: ParetoNbdParams, x: float, tx: float, t: float) -> float:
    """log of integral_tx^T (alpha+tau)^-(r+x) (beta+tau)^-(s+1) dtau from the 2F1 expression of
    Fader and Hardie (2005 note, eqs. 20-21: A_0 / (r+s+x)), powers scaled to stay finite."""
    k = p.r + p.s + x
    big, small, second = (
        (p.alpha, p.beta, p.s + 1) if p.alpha >= p.beta else (p.beta, p.alpha, p.r + x)
    )

    def term(y: float) -> float:
        scaled: float = ((big + tx) / y) ** k
        return float(hyp2f1(k, second, k + 1, (big - small) / y)) * scaled

    return float(np.log((term(big + tx) - term(big + t)) / k) - k * np.log(big + tx))


@pytest.mark.parametrize(
    ("params", "customer"),
    [
        (CDNOW_PARETO, (2.0, 30.43, 38.86)),
        (CDNOW_PARETO, (0.0, 0.0, 38.86)),
        (ParetoNbdParams(0.5, 1.0, 2.0, 300.0), (5.0, 1.0, 700.0)),
        (ParetoNbdParams(2.0, 300.0, 0.3, 1.0), (20.0, 300.0, 700.0)),
        (ParetoNbdParams(0.2, 30.0, 0.1, 30.0), (500.0, 10.0, 5000.0)),
    ],
)
def test_terms_quadrature_matches_closed_form(
    params: ParetoNbdParams, customer: tuple[float, float, float]
) -> None:
    # given parameters from the CDNOW fit and far from it (alpha/beta of 1/300 and 300)
    x, tx, t = customer
    vector = np.array([params.r, params.alpha, params.s, params.beta])
    # when the death-term integral is computed by our panel quadrature
    terms = _terms(vector, np.array([x]), np.array([tx]), np.array([t]))
    ours = float(terms.log_died[0] - np.log(params.s))
    # then it matches the hypergeometric closed form to 1e-9 in the log
    assert ours == pytest.approx(closed_form_log_integral(params, x, tx, t), abs=1e-9)


def test_objective_cdnow_gradient_matches_finite_differences(cdnow: Any) -> None:
    rows = factorise_rows(cdnow.frequency, cdnow.recency, cdnow.age, np.ones_like(cdnow.age))
    theta = np.log([0.5, 8.0, 0.7, 12.0])
    _, analytic = _objective(theta, rows)
    numeric = approx_fprime(theta, lambda t: _objective(t, rows)[0], 1e-7)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-6)


def test_fit_pareto_nbd_simulated_process_truth_in_confidence_region() -> None:
    # given 10,000 customers from the Pareto/NBD process with the CDNOW estimates, 1..52 weeks
    truth = CDNOW_PARETO
    ages = np.random.default_rng(3).uniform(1, 52, 10_000)
    data = simulate_pareto_customers((truth.r, truth.alpha), (truth.s, truth.beta), ages, seed=1)
    # when fitted
    fit = fit_pareto_nbd(data.frequency, data.recency, data.age)
    # then the truth is inside the 99.9% likelihood-ratio region (chi-squared, 4 df: 18.47; three
    # seeds at 20,000 customers gave gains of 0.8 to 4.7), and r, alpha, which purchases pin down
    # well, are within 10% (their spread over those seeds was 2%)
    gain = (
        fit.log_likelihood
        - pareto_nbd_log_likelihood(truth, data.frequency, data.recency, data.age).sum()
    )
    assert fit.converged
    assert 0.0 <= gain < 18.47 / 2
    assert fit.params.r == pytest.approx(truth.r, rel=0.10)
    assert fit.params.alpha == pytest.approx(truth.alpha, rel=0.10)


def test_pareto_expected_purchases_s_near_one_is_continuous() -> None:
    # given s on both sides of 1, where the formula's (s-1) division is replaced by its limit
    x, tx, t = [2.0], [20.0], [30.0]
    values = [
        pareto_expected_purchases(ParetoNbdParams(0.5, 10.0, s, 12.0), 39.0, x, tx, t)[0]
        for s in (1.0 - 1e-6, 1.0, 1.0 + 1e-6)
    ]
    assert values[0] == pytest.approx(values[1], rel=1e-5)
    assert values[2] == pytest.approx(values[1], rel=1e-5)


@settings(max_examples=100, deadline=None)
@given(params_strategy, customers())
def test_pareto_predictions_any_customer_are_in_range(
    params: ParetoNbdParams, customer: tuple[float, float, float]
) -> None:
    x, tx, t = ([v] for v in customer)
    alive = pareto_probability_alive(params, x, tx, t)[0]
    short, long = (pareto_expected_purchases(params, h, x, tx, t)[0] for h in (30.0, 365.0))
    assert 0.0 <= alive <= 1.0
    assert np.isfinite(short) and np.isfinite(long)
    assert 0.0 <= short <= long
    assert np.isfinite(pareto_nbd_log_likelihood(params, x, tx, t)[0])


def test_pareto_predictions_extreme_customers_stay_finite() -> None:
    x, tx, t = (
        np.array([500, 500, 0, 0.0]),
        np.array([4999, 10, 0, 0.0]),
        np.array([5000.0] * 3 + [0]),
    )
    params = ParetoNbdParams(r=0.55, alpha=75.0, s=0.6, beta=80.0)  # days
    alive = pareto_probability_alive(params, x, tx, t)
    expected = pareto_expected_purchases(params, 365.0, x, tx, t)
    assert np.all(np.isfinite(alive)) and np.all(np.isfinite(expected))
    assert alive[0] > 0.9 and alive[1] < 1e-6 and alive[3] == 1.0
