"""What scoring takes and keeps: per-shop settings, order and product histories, fitted models.

Re-exported by `plugin.domain.scoring`, which is the public surface; they live here so that the
segment, flag and replenishment modules can use them without importing the scorer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from numbers import Integral, Real

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

CONFIDENCE_FITTED = "fitted"
CONFIDENCE_RULES = "rules"
RULES_MODEL = "rules"  # FittedModels.repeat_model when no model is trusted
# The longest CLV horizon, 100 years: scoring steps through it month by month when discounting,
# so an unbounded horizon (1e12 days) would hang a recompute, and an infinite one overflow it.
MAX_HORIZON_DAYS = 36_500.0


@dataclass(frozen=True)
class ScoringSettings:
    """Per-shop thresholds; the defaults are the product's. Money in shop currency, times in days.

    Tiers by trailing-12-month spend S: vip S >= tier_vip; insider tier_insider <= S < tier_vip;
    enthusiast 0 < S < tier_insider; no tier when S = 0.
    """

    horizon_days: float = 365.0
    annual_discount_rate: float = 0.0
    margin_rate: float | None = None
    # Historical CLV as net spend less the cost of the goods kept, at the store's cost per item
    # (read by the costs job); a variant without one counts no cost. Not with a margin rate.
    margin_from_costs: bool = False
    tier_insider: float = 250.0
    tier_vip: float = 750.0
    win_back_days: float = 90.0
    win_back_rhythm_factor: float = 3.0
    churn_p_alive: float = 0.3
    spend_declining_ratio: float = 0.6
    top_share: float = 0.2
    min_customers: int = 500
    min_repeat_customers: int = 100
    reorder_grace: float = 1.0
    # Added beyond the first interface: ---------------------------------------------------------
    # The rhythm rule of win-back (days since last order > factor x own mean gap) never fires
    # before this many days: three orders in one week is a burst, not a 2-day rhythm.
    win_back_rhythm_min_days: float = 30.0
    # spend-declining compares the mean of the last `spend_recent_orders` orders with the mean of
    # the earlier ones, and needs at least `spend_earlier_orders` earlier orders.
    spend_recent_orders: int = 2
    spend_earlier_orders: int = 2
    # A consumable stops being reorder-due once this many intervals have passed since the last
    # purchase: by then the customer has moved on, and win-back speaks to them instead.
    reorder_lapse: float = 3.0
    # Replenishment: a product is a consumable when at least `replenishment_min_buyers` customers
    # bought it again, and its gaps are regular: (upper - lower quartile) / median <= max_spread.
    replenishment_min_buyers: int = 20
    replenishment_max_spread: float = 0.5
    # Candidate repeat-purchase models for the holdout choice, in tie-break order.
    candidate_models: tuple[str, ...] = ("bgnbd", "mbgnbd", "paretonbd")
    # The holdout choice fits every candidate on at most this many calibration customers (every
    # k-th by customer id): 100,000 customers tell the models apart; all of them only cost time.
    choice_max_customers: int = 100_000

    def __post_init__(self) -> None:
        problems = self._type_problems() or [text for broken, text in self._checks() if broken]
        if problems:
            raise ValueError("invalid scoring settings: " + "; ".join(problems))

    def _type_problems(self) -> list[str]:
        """Every number is finite (NaN fails no `not x >= 0` check, infinity passes most), and a
        count is a whole number; checked first, so that `_checks` compares numbers only."""
        problems = []
        for field in fields(self):  # types are strings here (from __future__ import annotations)
            value = getattr(self, field.name)
            if field.type == "int" and not _is_count(value):
                problems.append(f"{field.name} must be a whole number")
            elif field.type == "bool" and not isinstance(value, bool):
                problems.append(f"{field.name} must be true or false")
            elif field.type in ("float", "float | None") and not (
                _is_finite(value) or (value is None and field.type == "float | None")
            ):
                problems.append(f"{field.name} must be a finite number")
        return problems

    def _checks(self) -> list[tuple[bool, str]]:
        margin = self.margin_rate
        return [
            (
                not 0 <= self.horizon_days <= MAX_HORIZON_DAYS,
                f"horizon_days must be in [0, {MAX_HORIZON_DAYS:.0f}]",
            ),
            (not self.annual_discount_rate > -1, "annual_discount_rate must be > -1"),
            (margin is not None and not 0 <= margin <= 1, "margin_rate must be in [0, 1]"),
            (
                margin is not None and self.margin_from_costs,
                "margin_rate and margin_from_costs: set one, not both",
            ),
            (not 0 <= self.tier_insider <= self.tier_vip, "need 0 <= tier_insider <= tier_vip"),
            (not self.win_back_days > 0, "win_back_days must be > 0"),
            (not self.win_back_rhythm_factor > 0, "win_back_rhythm_factor must be > 0"),
            (not 0 <= self.churn_p_alive <= 1, "churn_p_alive must be in [0, 1]"),
            (not self.spend_declining_ratio > 0, "spend_declining_ratio must be > 0"),
            (not 0 <= self.top_share <= 1, "top_share must be in [0, 1]"),
            # a model is never fitted to no customers, nor to no repeat purchase
            (self.min_customers < 1, "min_customers must be >= 1"),
            (self.min_repeat_customers < 1, "min_repeat_customers must be >= 1"),
            (not 0 < self.reorder_grace < self.reorder_lapse, "need 0 < reorder_grace < lapse"),
            (min(self.spend_recent_orders, self.spend_earlier_orders) < 1, "spend orders >= 1"),
            (self.replenishment_min_buyers < 1, "replenishment_min_buyers must be >= 1"),
            (not self.replenishment_max_spread >= 0, "replenishment_max_spread must be >= 0"),
            (not self.candidate_models, "candidate_models must not be empty"),
            (
                not set(self.candidate_models) <= {"bgnbd", "mbgnbd", "paretonbd"},
                "candidate_models are bgnbd, mbgnbd, paretonbd",
            ),
            (self.choice_max_customers < 1, "choice_max_customers must be >= 1"),
        ]


def _is_finite(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class OrderHistory:
    """Counted orders of one shop, one row per order, equal-length arrays, any row order.

    `day`: days since the Unix epoch, UTC, fractional; `amount`: net order amount, >= 0;
    `cost`: the cost of the goods the order kept, >= 0, when historical CLV is gross margin
    from product costs (`ScoringSettings.margin_from_costs`), else None.
    """

    customer_id: IntArray
    day: FloatArray
    amount: FloatArray
    cost: FloatArray | None = None


@dataclass(frozen=True)
class ProductPurchases:
    """One row per order line of a counted order: who bought which product on which day, and
    how many units are left of the line (None: one each), which a consumable's due day scales
    with (`plugin.domain.replenishment`)."""

    customer_id: IntArray
    product_id: IntArray
    day: FloatArray
    quantity: IntArray | None = None


@dataclass(frozen=True)
class FittedModels:
    """What a full refit produces and the cheap re-score reuses.

    `repeat_model` is "bgnbd", "mbgnbd" or "paretonbd" with its parameters (time unit: days), or
    "rules" with no parameters when confidence is "rules". `spend_params` holds Gamma-Gamma p, q,
    gamma (money in shop currency), or None when not fitted (spend per order is then the customer's
    own average order value). `log_likelihood` is NaN when nothing was fitted.
    """

    repeat_model: str
    repeat_params: dict[str, float]
    spend_params: dict[str, float] | None
    log_likelihood: float
    converged: bool
    customers: int
    repeat_customers: int
    confidence: str
    note: str


@dataclass(frozen=True)
class ScoreReference:
    """Population figures that a single customer's re-score needs.

    Quintile cut points (4 each, ascending): recency in last-order days (days since the Unix
    epoch, not days ago), frequency in orders, monetary in net spend; `top_clv_threshold` the
    smallest predicted CLV that is top-20; `replenishment_days` product id -> learned refill
    interval in days (consumables only).
    """

    recency_edges: tuple[float, ...]
    frequency_edges: tuple[float, ...]
    monetary_edges: tuple[float, ...]
    top_clv_threshold: float
    replenishment_days: dict[int, float]
