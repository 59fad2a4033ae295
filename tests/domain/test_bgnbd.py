"""BG/NBD and MBG/NBD: gradients, fits, and per-customer predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad
from scipy.optimize import approx_fprime
from scipy.special import hyp2f1

from plugin.domain.beta_geo_likelihood import factorise_rows, objective
from plugin.domain.bgnbd import (
    BETA_GEO_VARIANTS,
    BetaGeoParams,
    BetaGeoVariant,
    beta_geo_log_likelihood,
    expected_purchases,
    expected_purchases_if_alive,
    fit_beta_geo,
    median_time_to_next_purchase,
    probability_alive,
)
from plugin.domain.simulation import simulate_customers

CDNOW_BGNBD = BetaGeoParams(r=0.243, alpha=4.414, a=0.793, b=2.426)

params_strategy = st.builds(
    BetaGeoParams,
    r=st.floats(0.01, 20),
    alpha=st.floats(0.01, 500),
    a=st.one_of(st.floats(0.01, 20), st.floats(20, 1e7)),
    b=st.one_of(st.floats(0.01, 20), st.floats(20, 1e7)),
)


@st.composite
def customers(draw: Any) -> tuple[float, float, float]:
    age = draw(st.floats(0, 5000))
    recency = draw(st.floats(0, 1)) * age
    frequency = float(draw(st.integers(0, 500))) if recency > 0 else 0.0
    return frequency, recency, age


@pytest.mark.parametrize("variant", BETA_GEO_VARIANTS)
def test_objective_cdnow_gradient_matches_finite_differences(
    cdnow: Any, variant: BetaGeoVariant
) -> None:
    # given the CDNOW customers and a point away from the optimum
    rows = factorise_rows(cdnow.frequency, cdnow.recency, cdnow.age, np.ones_like(cdnow.age))
    theta = np.log([0.5, 3.0, 1.5, 4.0])
    # when the analytic gradient is compared with finite differences
    _, analytic = objective(theta, rows, variant)
    numeric = approx_fprime(theta, lambda t: objective(t, rows, variant)[0], 1e-7)
    # then they agree to finite-difference precision
    np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("variant", BETA_GEO_VARIANTS)
def test_objective_compressed_rows_equal_per_customer_sum(
    cdnow: Any, variant: BetaGeoVariant
) -> None:
    # given the CDNOW customers, compressed and factorised for fitting
    rows = factorise_rows(cdnow.frequency, cdnow.recency, cdnow.age, np.ones_like(cdnow.age))
    params = BetaGeoParams(0.5, 3.0, 1.5, 4.0)
    # when the fitting objective is evaluated
    value, _ = objective(np.log([0.5, 3.0, 1.5, 4.0]), rows, variant)
    # then it is minus the mean of the plain per-customer log-likelihoods
    direct = beta_geo_log_likelihood(params, cdnow.frequency, cdnow.recency, cdnow.age, variant)
    assert rows.weights.size < cdnow.age.size
    assert value == pytest.approx(-direct.mean(), rel=1e-12)


def test_fit_beta_geo_weights_equal_repeated_rows() -> None:
    # given a few customers, once listed twice and once with weight 2
    x, tx, t = np.array([0, 1, 4, 2.0]), np.array([0, 3, 20, 9.0]), np.array([30, 25, 30, 12.0])
    # when both are fitted
    repeated = fit_beta_geo(np.tile(x, 2), np.tile(tx, 2), np.tile(t, 2))
    weighted = fit_beta_geo(x, tx, t, weights=np.full(4, 2.0))
    # then the estimates and the total log-likelihood agree
    assert weighted.log_likelihood == pytest.approx(repeated.log_likelihood, rel=1e-9)
    for name, value in weighted.params.as_dict().items():
        assert value == pytest.approx(repeated.params.as_dict()[name], rel=1e-4)


@pytest.mark.parametrize("variant", BETA_GEO_VARIANTS)
def test_fit_beta_geo_simulated_process_recovers_parameters(variant: BetaGeoVariant) -> None:
    # given 200,000 customers drawn from the model's own process over 1..52 weeks
    truth = BetaGeoParams(r=0.25, alpha=4.0, a=0.8, b=2.5)
    ages = np.random.default_rng(7).uniform(1, 52, 200_000)
    data = simulate_customers(truth, ages, seed=11, variant=variant)
    # when fitted
    fit = fit_beta_geo(data.frequency, data.recency, data.age, variant=variant)
    # then the truth lies inside the 99.9% likelihood-ratio confidence region: twice the gain in
    # log-likelihood over the true parameters is chi-squared with 4 degrees of freedom, whose
    # 99.9% point is 18.47. (Six seeds gave gains of 0.5 to 5.3.) A wrong gradient or a biased
    # simulator moves the estimate far outside it at this size.
    gain = (
        fit.log_likelihood
        - beta_geo_log_likelihood(truth, data.frequency, data.recency, data.age, variant).sum()
    )
    assert fit.converged and not fit.regularised
    assert 0.0 <= gain < 18.47 / 2
    # and each estimate is near the truth: r and alpha are well identified (spread 1.5% over six
    # seeds), a and b trade off along a ridge (spread up to 19% for b), their mean a/(a+b) less.
    tolerance = {"r": 0.05, "alpha": 0.05, "a": 0.25, "b": 0.25}
    for name, value in fit.params.as_dict().items():
        assert value == pytest.approx(truth.as_dict()[name], rel=tolerance[name]), name
    dropout = fit.params.a / (fit.params.a + fit.params.b)
    assert dropout == pytest.approx(truth.a / (truth.a + truth.b), rel=0.10)


def test_fit_beta_geo_no_repeat_purchases_is_regularised_not_trusted_blindly() -> None:
    # given customers none of whom bought again: the likelihood has no interior maximum
    x = np.zeros(50)
    # when fitted
    fit = fit_beta_geo(x, x, np.linspace(1, 30, 50))
    # then the first fit was found flat and the reported estimate comes from the penalised refit
    assert fit.regularised
    assert all(np.isfinite(v) and v > 0 for v in fit.params.as_dict().values())


def test_beta_geo_log_likelihood_cdnow_published_total() -> None:
    # given the published BG/NBD estimates and a customer mix
    ll = beta_geo_log_likelihood(CDNOW_BGNBD, [0, 2, 5], [0, 10, 30], [38, 38, 38])
    # then each customer's log-likelihood is finite and negative
    assert np.all(np.isfinite(ll)) and np.all(ll < 0)


def test_expected_purchases_euler_form_equals_fhl_equation_10() -> None:
    # given moderate customers, where FHL (2005) eq. 10 can be evaluated directly
    x, tx, t, horizon = np.array([0, 1, 3, 7.0]), np.array([0, 5, 20, 30.0]), 38.0, 39.0
    p = CDNOW_BGNBD
    # when computed by our (Euler-transformed) implementation
    ours = expected_purchases(p, horizon, x, tx, np.full(4, t))
    # then it equals the paper's formula
    z = horizon / (p.alpha + t + horizon)
    hyper = hyp2f1(p.r + x, p.b + x, p.a + p.b + x - 1, z)
    bracket = 1 - ((p.alpha + t) / (p.alpha + t + horizon)) ** (p.r + x) * hyper
    odds = np.where(
        x > 0, p.a / (p.b + np.maximum(x, 1) - 1) * ((p.alpha + t) / (p.alpha + tx)) ** (p.r + x), 0
    )
    direct = (p.a + p.b + x - 1) / (p.a - 1) * bracket / (1 + odds)
    np.testing.assert_allclose(ours, direct, rtol=1e-9)


def test_probability_alive_bgnbd_no_repeat_purchase_is_one() -> None:
    assert probability_alive(CDNOW_BGNBD, [0, 0], [0, 0], [1, 500]).tolist() == [1.0, 1.0]


def test_probability_alive_long_silence_after_heavy_buying_is_near_zero() -> None:
    # given a customer with 50 purchases in 10 weeks, then silent for 300 weeks
    alive = probability_alive(CDNOW_BGNBD, [50], [10], [310])
    # then they are almost surely gone
    assert alive[0] < 1e-6


@pytest.mark.parametrize("variant", BETA_GEO_VARIANTS)
def test_predictions_extreme_customers_stay_finite(variant: BetaGeoVariant) -> None:
    # given frequency 500 over 5000 days, bought recently or long ago, and new customers
    x, tx, t = (
        np.array([500, 500, 0, 0.0]),
        np.array([4999, 10, 0, 0.0]),
        np.array([5000.0] * 3 + [0]),
    )
    params = BetaGeoParams(r=0.24, alpha=30.0, a=0.8, b=2.4)
    # when every prediction is made
    outputs = [
        probability_alive(params, x, tx, t, variant),
        expected_purchases(params, 365, x, tx, t, variant),
        median_time_to_next_purchase(params, x, tx, t),
        beta_geo_log_likelihood(params, x, tx, t, variant),
    ]
    # then none is NaN or infinite, and the recent heavy buyer is expected to buy a lot
    assert all(np.all(np.isfinite(out)) for out in outputs)
    assert outputs[1][0] > 20 and outputs[1][1] < 1e-6


@settings(max_examples=150, deadline=None)
@given(params_strategy, customers(), st.sampled_from(BETA_GEO_VARIANTS))
def test_predictions_any_customer_are_in_range(
    params: BetaGeoParams, customer: tuple[float, float, float], variant: BetaGeoVariant
) -> None:
    x, tx, t = ([v] for v in customer)
    alive = probability_alive(params, x, tx, t, variant)[0]
    short, long = (expected_purchases(params, h, x, tx, t, variant)[0] for h in (30.0, 365.0))
    assert 0.0 <= alive <= 1.0
    assert np.isfinite(short) and np.isfinite(long)
    # monotone in the horizon, up to the precision of scipy's hyp2f1 and of the quadrature for
    # large a and b (~1e-8 relative) where both horizons have saturated at one value
    assert 0.0 <= short <= long * (1 + 1e-5) + 1e-9
    assert np.isfinite(beta_geo_log_likelihood(params, x, tx, t, variant)[0])


def test_median_time_to_next_purchase_matches_simulation() -> None:
    # given a customer with 3 repeat purchases, last at week 20, now at week 30
    p, x, t = CDNOW_BGNBD, 3.0, 30.0
    rng = np.random.default_rng(3)
    # when simulating waits from the posterior rate Gamma(r+x, alpha+T), then exponential waits
    rates = rng.gamma(p.r + x, 1.0 / (p.alpha + t), 200_000)
    waits = rng.exponential(1.0 / rates)
    # then the closed-form median matches the sample median within its sampling error (~1%)
    median = median_time_to_next_purchase(p, [x], [20.0], [t])[0]
    assert median == pytest.approx(np.median(waits), rel=0.02)


def test_expected_purchases_row_order_does_not_matter() -> None:
    rng = np.random.default_rng(5)
    t = rng.uniform(1, 50, 100)
    tx = t * rng.uniform(0, 1, 100)
    x = np.where(tx > 0, rng.integers(1, 20, 100), 0).astype(float)
    order = rng.permutation(100)
    whole = expected_purchases(CDNOW_BGNBD, 10, x, tx, t)
    assert np.array_equal(
        whole[order], expected_purchases(CDNOW_BGNBD, 10, x[order], tx[order], t[order])
    )
    fit_a = fit_beta_geo(x, tx, t)
    fit_b = fit_beta_geo(x[order], tx[order], t[order])
    assert fit_a.params == fit_b.params


def _series_2f1(a: float, b: float, c: float, z: float, terms: int = 400_000) -> float:
    k = np.arange(terms, dtype=float)
    ratios = (a + k) * (b + k) / ((c + k) * (k + 1)) * z
    return float(1.0 + np.sum(np.cumprod(ratios)))


def test_expected_purchases_scipy_degenerate_2f1_case_matches_series() -> None:
    # given MBG/NBD parameters where c - A - B is an integer and z is near 1: scipy's hyp2f1
    # returns inf there, e.g. 2F1(2, 1; 101; 365/367) for x = 98, r = 1, a = 2, b = 1
    params, x, horizon, age = BetaGeoParams(r=1.0, alpha=1.0, a=2.0, b=1.0), 98.0, 365.0, 1.0
    # when the expected purchases are computed
    ours = expected_purchases(params, horizon, [x], [1.0], [age], "mbgnbd")[0]
    # then they equal the formula evaluated with a directly summed series
    c = params.a + params.b + x
    z = horizon / (params.alpha + age + horizon)
    hyper = _series_2f1(c - params.r - x, params.a - 1, c, z)
    alive = probability_alive(params, [x], [1.0], [age], "mbgnbd")[0]
    expected = c / (params.a - 1) * (1 - (1 - z) ** (params.a - 1) * hyper) * alive
    assert ours == pytest.approx(expected, rel=1e-7)


def test_expected_purchases_huge_a_and_b_continue_the_moderate_values() -> None:
    # given dropout laws Beta(a, b) with a/(a+b) fixed and a+b from 1.8e3 to 1.8e7: the largest
    # make scipy's Euler-form 2F1 overflow, and the fit can land there (a homogeneous dropout)
    x, tx, t = [2.0], [150.0], [200.0]
    values = [
        expected_purchases(BetaGeoParams(0.18, 11.0, 0.776 * s, s), 180.0, x, tx, t)[0]
        for s in (1e3, 1e4, 1e5, 1e7)
    ]
    # then the predictions stay finite and converge as the Beta law narrows (1/(a+b) steps)
    assert all(np.isfinite(values))
    assert values[1] == pytest.approx(values[0], rel=5e-3)
    assert values[3] == pytest.approx(values[2], rel=1e-4)


def _expected_if_alive_by_quad(
    params: BetaGeoParams, horizon: float, x: float, age: float, variant: BetaGeoVariant
) -> float:
    """(c / (a-1)) times the mean of 1 - (1 + p t/(alpha+T))^-(r+x) over p ~ Beta(a-1, b+x+k):
    FHL eq. 10 without P(alive), by scipy's adaptive quadrature over p around the Beta law's
    mean, a method independent of the 2F1 forms and of our Gauss-Hermite quadrature. The
    density is scaled to 1 at its mode and the mean divided by its integral."""
    k = 1.0 if variant == "mbgnbd" else 0.0
    shape, beta_a, beta_b = params.r + x, params.a - 1.0, params.b + x + k
    c, scale = beta_a + beta_b, horizon / (params.alpha + age)
    mean, mode = beta_a / c, (beta_a - 1.0) / (c - 2.0)
    sd = np.sqrt(beta_a * beta_b / (c * c * (c + 1.0)))
    at_mode = (beta_a - 1) * np.log(mode) + (beta_b - 1) * np.log1p(-mode)

    def density(p: float) -> float:
        return float(np.exp((beta_a - 1) * np.log(p) + (beta_b - 1) * np.log1p(-p) - at_mode))

    def bought(p: float) -> float:
        return density(p) * float(-np.expm1(-shape * np.log1p(p * scale)))

    span = (max(0.0, mean - 60 * sd), min(1.0, mean + 60 * sd))
    options: dict[str, Any] = {"points": [mean], "epsabs": 0, "epsrel": 1e-11, "limit": 400}
    return float(
        c / beta_a * quad(bought, *span, **options)[0] / quad(density, *span, **options)[0]
    )


@pytest.mark.parametrize(
    ("params", "x", "age", "horizon", "variant"),
    [
        # found by Hypothesis: scipy's 2F1 in Pfaff's form said S = 0.13 (it is 8.6e-14), so 30
        # days came out above 365
        (BetaGeoParams(1.0, 1.0, 2483724.0, 1130145.0), 160.0, 1220.0, 365.0, "mbgnbd"),
        # the same form came out 96% and 98% off here
        (BetaGeoParams(1.0, 10.0, 1e5, 1e4), 100.0, 1000.0, 365.0, "bgnbd"),
        (BetaGeoParams(1.0, 10.0, 1e7, 100.0), 300.0, 3000.0, 365.0, "mbgnbd"),
        # moderate parameters, by Euler's form
        (BetaGeoParams(1.0, 10.0, 41.0, 60.0), 3.0, 200.0, 365.0, "bgnbd"),
    ],
)
def test_expected_purchases_large_a_and_b_match_quadrature(
    params: BetaGeoParams, x: float, age: float, horizon: float, variant: BetaGeoVariant
) -> None:
    # when a customer's expected purchases (if alive) are computed
    ours = expected_purchases_if_alive(params, horizon, [x], [age], variant)[0]
    # then they equal FHL eq. 10 integrated by scipy's adaptive quadrature
    assert ours == pytest.approx(
        _expected_if_alive_by_quad(params, horizon, x, age, variant), rel=1e-8
    )


def test_expected_purchases_hypothesis_case_matches_arbitrary_precision() -> None:
    # given the parameters Hypothesis found 30 days' purchases above 365 days' with
    params = BetaGeoParams(r=1.0, alpha=1.0, a=2483724.0, b=1130145.0)
    # when each variant's expected purchases (if alive) are computed for both horizons
    ours = [
        expected_purchases_if_alive(params, horizon, [160.0], [1220.0], variant)[0]
        for variant in BETA_GEO_VARIANTS
        for horizon in (30.0, 365.0)
    ]
    # then they equal FHL eq. 10 with mpmath's 2F1 at 40 digits (Pfaff's form, computed once)
    assert ours == pytest.approx(
        [1.35689233676477058, 1.45508496720434948, 1.35689263957918803, 1.45508536982573680],
        rel=1e-9,
    )


@pytest.mark.parametrize(
    ("frequency", "recency", "age"),
    [([1.0], [5.0], [4.0]), ([-1.0], [0.0], [4.0]), ([1.0, 2.0], [1.0], [3.0])],
)
def test_fit_beta_geo_inconsistent_customers_raise(
    frequency: list[float], recency: list[float], age: list[float]
) -> None:
    with pytest.raises(ValueError):
        fit_beta_geo(frequency, recency, age)
