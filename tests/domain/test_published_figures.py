"""The fits reproduce the published maximum-likelihood estimates on the CDNOW sample."""

from __future__ import annotations

from typing import Any

import pytest

from plugin.domain.bgnbd import fit_beta_geo
from plugin.domain.gamma_gamma import fit_gamma_gamma
from plugin.domain.paretonbd import fit_pareto_nbd


def three_significant(value: float) -> float:
    return float(f"{value:.3g}")


def test_fit_beta_geo_cdnow_weeks_reproduces_fader_hardie_lee_2005(cdnow: Any) -> None:
    # given the 2,357 CDNOW customers over 39 weeks of calibration, in weeks
    # when BG/NBD is fitted by maximum likelihood
    fit = fit_beta_geo(cdnow.frequency, cdnow.recency, cdnow.age, variant="bgnbd")
    # then the estimates match FHL (2005), section 5: r=0.243, alpha=4.414, a=0.793, b=2.426
    assert fit.converged and not fit.regularised
    assert fit.customers == 2357
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in fit.params.as_dict().items():
        assert three_significant(value) == three_significant(published[name]), name
    # and the log-likelihood, reported as -9582.4
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=0.05)


def test_fit_gamma_gamma_cdnow_repeat_customers_reproduces_fader_hardie_2013(cdnow: Any) -> None:
    # given the mean repeat spend of the CDNOW customers (946 have a repeat purchase)
    # when Gamma-Gamma is fitted by maximum likelihood
    fit = fit_gamma_gamma(cdnow.frequency, cdnow.monetary_value)
    # then the estimates match Fader and Hardie (2013): p=6.25, q=3.74, gamma=15.44
    assert fit.converged and not fit.regularised
    assert fit.customers == 946
    published = {"p": 6.25, "q": 3.74, "gamma": 15.44}
    for name, value in fit.params.as_dict().items():
        assert three_significant(value) == three_significant(published[name]), name


def test_fit_pareto_nbd_cdnow_weeks_reproduces_fader_hardie_lee_2005(cdnow: Any) -> None:
    # given the same CDNOW customers
    # when Pareto/NBD is fitted by maximum likelihood
    fit = fit_pareto_nbd(cdnow.frequency, cdnow.recency, cdnow.age)
    # then the estimates match the Pareto/NBD column of FHL (2005), table 1, as printed there:
    # r=0.55, alpha=10.58, s=0.61, beta=11.67, LL -9595.0
    assert fit.converged and not fit.regularised
    assert round(fit.params.r, 2) == 0.55
    assert round(fit.params.alpha, 2) == 10.58
    assert round(fit.params.s, 2) == 0.61
    assert round(fit.params.beta, 2) == 11.67
    assert fit.log_likelihood == pytest.approx(-9595.0, abs=0.05)
