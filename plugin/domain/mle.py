"""Maximum-likelihood fitting over log-parameters, with a convergence check and a regularised refit.

Every model here has strictly positive parameters, so the optimiser works on theta = log(params):
the search is unconstrained in effect, and scale parameters in days or weeks are treated alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

FloatArray = NDArray[np.float64]
# log-parameters -> (mean negative log-likelihood per customer, its gradient in log-parameters)
Objective = Callable[[FloatArray], tuple[float, FloatArray]]

# exp(+-25) spans 1e-11..7e10: wider than any sensible rate, scale or shape. An estimate that ends
# on this box has run off to a degenerate limit (e.g. no dropout at all), which we do not call
# converged.
LOG_PARAM_BOUND = 25.0
# Per-customer L2 weight on (theta - start) for the refit: small beside a typical per-customer
# log-likelihood of order 1, so it only decides directions the data leave flat.
REFIT_PENALTY = 1e-3
_GRADIENT_TOLERANCE = 1e-5
# Smallest curvature (eigenvalue of the Hessian of the mean negative log-likelihood in
# log-parameters) for an optimum to count as identified. Weakly identified but real optima have
# curvatures of 1e-3 and more per customer; a run-off towards a degenerate limit (e.g. no repeat
# purchases at all, or identical spends) leaves the surface flat, at 1e-7 and below.
_MIN_CURVATURE = 1e-6
_HESSIAN_STEP = 1e-4


@dataclass(frozen=True)
class MleOutcome:
    """Where the optimiser ended, in log-parameters, and whether it is to be trusted."""

    log_params: FloatArray
    mean_neg_log_likelihood: float
    converged: bool
    iterations: int
    regularised: bool
    message: str

    def fit_fields(self, customers: float) -> dict[str, Any]:
        """The FitDiagnostics fields of a fit to `customers` (weighted) customers."""
        return {
            "log_likelihood": -self.mean_neg_log_likelihood * customers,
            "converged": self.converged,
            "iterations": self.iterations,
            "regularised": self.regularised,
            "customers": round(customers),
            "message": self.message,
        }


@dataclass(frozen=True)
class FitDiagnostics:
    """How a maximum-likelihood fit went. `log_likelihood` is the total over customers, without
    any penalty; `regularised` says the penalised refit was used."""

    log_likelihood: float
    converged: bool
    iterations: int
    regularised: bool
    customers: int
    message: str


def maximise_likelihood(
    objective: Objective, start: FloatArray, *, max_iterations: int = 500
) -> MleOutcome:
    """Minimise `objective` with L-BFGS-B and its analytic gradient, refitting with an L2 penalty
    on (theta - start) when the first fit fails the convergence check."""
    first = _run(objective, start, max_iterations)
    if first.converged:
        return first
    refit = _run(_penalised(objective, start), start, max_iterations)
    value, _ = objective(refit.log_params)
    iterations = first.iterations + refit.iterations
    return MleOutcome(
        refit.log_params, value, refit.converged, iterations, True, f"regularised: {refit.message}"
    )


def _penalised(objective: Objective, centre: FloatArray) -> Objective:
    def penalised(theta: FloatArray) -> tuple[float, FloatArray]:
        value, gradient = objective(theta)
        delta = theta - centre
        return value + REFIT_PENALTY * float(delta @ delta), gradient + 2.0 * REFIT_PENALTY * delta

    return penalised


def _run(objective: Objective, start: FloatArray, max_iterations: int) -> MleOutcome:
    bounds = [(-LOG_PARAM_BOUND, LOG_PARAM_BOUND)] * start.size
    result = minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": max_iterations, "ftol": 1e-13, "gtol": 1e-9},
    )
    theta = np.asarray(result.x, dtype=np.float64)
    value, gradient = objective(theta)
    converged = _is_converged(bool(result.success), value, gradient, theta)
    if converged and not _is_identified(objective, theta):
        converged = False
        message = f"{result.message}; flat likelihood: parameters not identified"
    else:
        message = str(result.message)
    return MleOutcome(theta, value, converged, int(result.nit), False, message)


def _is_converged(success: bool, value: float, gradient: FloatArray, theta: FloatArray) -> bool:
    # L-BFGS-B often stops with a line-search warning right at the optimum, where rounding hides
    # further progress; a small gradient there is still an optimum. An estimate on the box is not.
    if not (np.isfinite(value) and np.all(np.isfinite(gradient))):
        return False
    if np.any(np.abs(theta) >= LOG_PARAM_BOUND - 1e-6):
        return False
    return success or float(np.max(np.abs(gradient))) < _GRADIENT_TOLERANCE


def _hessian(objective: Objective, theta: FloatArray) -> FloatArray:
    """Forward differences of the analytic gradient, symmetrised: accurate to O(step), plenty
    for telling a curved optimum from a flat one, at one gradient per parameter."""
    _, centre = objective(theta)
    columns = []
    for j in range(theta.size):
        step = np.zeros_like(theta)
        step[j] = _HESSIAN_STEP
        _, shifted = objective(theta + step)
        columns.append((shifted - centre) / _HESSIAN_STEP)
    matrix = np.column_stack(columns)
    return np.asarray((matrix + matrix.T) / 2.0, dtype=np.float64)


def _is_identified(objective: Objective, theta: FloatArray) -> bool:
    # A maximum is only an estimate if the likelihood curves down in every direction there.
    hessian = _hessian(objective, theta)
    if not np.all(np.isfinite(hessian)):
        return False
    return float(np.linalg.eigvalsh(hessian)[0]) > _MIN_CURVATURE
