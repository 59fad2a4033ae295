"""Scoring a shop's customers: figures, predictions, RFM scores, segments, flags, tags and reasons.

The public surface of the scoring engine. A full run is `fit_models` (the expensive model run,
`plugin.domain.shop_fit`) and then `score_shop`, which also computes the population reference
(RFM cut points, top-20 threshold, replenishment intervals). `rescore` scores a few customers
with a stored `FittedModels` and `ScoreReference`: given all of a customer's orders, its row is
the one a full run with the same models and reference gives, to the last bit.

Rules and formulas: historical figures in `plugin.domain.customer_figures`, predictions (fitted
and rule-based) in `plugin.domain.predictions`, RFM scores and the segment table in
`plugin.domain.segments`, flags in `plugin.domain.flags`, consumables in
`plugin.domain.replenishment`, reasons in `plugin.domain.tag_reasons`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from plugin.domain.customer_figures import CustomerFigures, customer_figures
from plugin.domain.flags import FLAGS, compute_flags, top_threshold
from plugin.domain.predictions import Predictions, predict
from plugin.domain.replenishment import learn_replenishment, reorder_status
from plugin.domain.scoring_types import (
    CONFIDENCE_FITTED,
    CONFIDENCE_RULES,
    RULES_MODEL,
    FittedModels,
    FloatArray,
    IntArray,
    OrderHistory,
    ProductPurchases,
    ScoreReference,
    ScoringSettings,
)
from plugin.domain.segments import (
    SEGMENTS,
    lower_quintile_edges,
    quintile_edges,
    score_higher_better,
    segment_of,
)
from plugin.domain.shop_fit import fit_models
from plugin.domain.tag_reasons import all_reasons, reasons_for

__all__ = [
    "CONFIDENCE_FITTED",
    "CONFIDENCE_RULES",
    "FLAGS",
    "RULES_MODEL",
    "SEGMENTS",
    "TAGS",
    "FittedModels",
    "OrderHistory",
    "ProductPurchases",
    "ScoreReference",
    "ScoringSettings",
    "ShopScores",
    "fit_models",
    "rescore",
    "score_shop",
]

# Every tag the engine can give, segments first: column j of ShopScores.tag_matrix(), bit j of
# ShopScores.tag_bits().
TAGS: tuple[str, ...] = SEGMENTS + FLAGS


@dataclass(frozen=True)
class ShopScores:
    """Per customer, aligned arrays sorted by customer_id; money in shop currency, days since the
    Unix epoch (UTC).

    Beyond the first interface: `days_since_last_order`; `reorder_product_id`,
    `reorder_last_day`, `reorder_interval_days`, `reorder_units` (the consumable behind
    reorder-due and the units of its last purchase, -1/NaN when none); `as_of_day` and
    `settings` (the reasons quote them).
    """

    customer_id: IntArray
    orders: IntArray
    net_spend: FloatArray
    aov: FloatArray
    first_order_day: FloatArray
    last_order_day: FloatArray
    mean_days_between_orders: FloatArray
    trailing_12m_spend: FloatArray
    historical_clv: FloatArray
    p_alive: FloatArray
    expected_purchases: FloatArray
    expected_next_order_day: FloatArray
    expected_spend_per_order: FloatArray
    predicted_clv: FloatArray
    recency_score: NDArray[np.int8]
    frequency_score: NDArray[np.int8]
    monetary_score: NDArray[np.int8]
    segment: NDArray[np.int8]
    flags: dict[str, NDArray[np.bool_]]
    reorder_due_day: FloatArray
    reference: ScoreReference
    models: FittedModels
    days_since_last_order: FloatArray
    reorder_product_id: IntArray
    reorder_last_day: FloatArray
    reorder_interval_days: FloatArray
    reorder_units: FloatArray
    recent_mean_spend: FloatArray
    earlier_mean_spend: FloatArray
    as_of_day: float
    settings: ScoringSettings

    def __len__(self) -> int:
        return int(self.customer_id.size)

    def tags(self, i: int) -> list[str]:
        """Customer i's tags without the shop prefix: the segment, then its flags in FLAGS order."""
        return [SEGMENTS[int(self.segment[i])]] + [f for f in FLAGS if bool(self.flags[f][i])]

    def reasons(self, i: int) -> dict[str, str]:
        """Tag -> which figure crossed which threshold, for each of customer i's tags."""
        return reasons_for(self, i)

    def all_tags(self) -> list[list[str]]:
        """`tags(i)` of every customer, decoded once per distinct combination of tags."""
        patterns, inverse = np.unique(self.tag_bits(), return_inverse=True)
        decoded = [[t for j, t in enumerate(TAGS) if (p >> j) & 1] for p in patterns.tolist()]
        return [decoded[k] for k in inverse.reshape(-1).tolist()]

    def all_reasons(self, start: int = 0, stop: int | None = None) -> list[dict[str, str]]:
        """`reasons(i)` of customers start..stop (default: all), several times faster than
        calling it for each."""
        return all_reasons(self, start, stop)

    def tag_matrix(self) -> NDArray[np.bool_]:
        """(customers x len(TAGS)) booleans: column j says whether each customer has TAGS[j]."""
        matrix = np.zeros((len(self), len(TAGS)), dtype=np.bool_)
        matrix[np.arange(len(self)), self.segment.astype(np.intp)] = True
        for j, name in enumerate(FLAGS):
            matrix[:, len(SEGMENTS) + j] = self.flags[name]
        return matrix

    def tag_bits(self) -> NDArray[np.int64]:
        """Each customer's tags as one integer, bit j for TAGS[j]: compare two runs' bits to find
        the customers whose tags changed, and decode only those with `tags(i)`."""
        bits = np.left_shift(np.int64(1), self.segment.astype(np.int64))
        for j, name in enumerate(FLAGS):
            bits |= np.where(self.flags[name], np.int64(1) << (len(SEGMENTS) + j), 0)
        return np.asarray(bits, dtype=np.int64)


def compute_reference(
    figures: CustomerFigures,
    predicted: Predictions,
    purchases: ProductPurchases | None,
    as_of_day: float,
    settings: ScoringSettings,
) -> ScoreReference:
    """The population figures of a full run (see ScoreReference)."""
    intervals = {} if purchases is None else learn_replenishment(purchases, as_of_day, settings)
    return ScoreReference(
        recency_edges=quintile_edges(np.floor(figures.last_order_day)),
        frequency_edges=lower_quintile_edges(figures.orders),
        monetary_edges=quintile_edges(figures.net_spend),
        top_clv_threshold=top_threshold(predicted.predicted_clv, settings.top_share),
        replenishment_days=intervals,
    )


def score_shop(
    history: OrderHistory,
    as_of_day: float,
    settings: ScoringSettings,
    models: FittedModels,
    purchases: ProductPurchases | None = None,
) -> ShopScores:
    """Score every customer with an order on or before `as_of_day`, computing the reference."""
    figures = customer_figures(history, as_of_day, settings)
    predicted = predict(models, figures, as_of_day, settings)
    reference = compute_reference(figures, predicted, purchases, as_of_day, settings)
    return _assemble(figures, predicted, models, reference, purchases, as_of_day, settings)


def rescore(
    history: OrderHistory,
    as_of_day: float,
    settings: ScoringSettings,
    models: FittedModels,
    reference: ScoreReference,
    purchases: ProductPurchases | None = None,
) -> ShopScores:
    """Score the customers in `history` (all their orders) against a stored reference."""
    figures = customer_figures(history, as_of_day, settings)
    predicted = predict(models, figures, as_of_day, settings)
    return _assemble(figures, predicted, models, reference, purchases, as_of_day, settings)


def _assemble(
    figures: CustomerFigures,
    predicted: Predictions,
    models: FittedModels,
    reference: ScoreReference,
    purchases: ProductPurchases | None,
    as_of_day: float,
    settings: ScoringSettings,
) -> ShopScores:
    recency = score_higher_better(np.floor(figures.last_order_day), reference.recency_edges)
    frequency = score_higher_better(figures.orders.astype(np.float64), reference.frequency_edges)
    monetary = score_higher_better(figures.net_spend, reference.monetary_edges)
    reorder = reorder_status(
        purchases, figures.customer_id, reference.replenishment_days, as_of_day, settings
    )
    flags = compute_flags(
        figures,
        predicted.p_alive,
        predicted.predicted_clv,
        reference.top_clv_threshold,
        reorder.due,
        settings,
    )
    return ShopScores(
        customer_id=figures.customer_id,
        orders=figures.orders,
        net_spend=figures.net_spend,
        aov=figures.aov,
        first_order_day=figures.first_order_day,
        last_order_day=figures.last_order_day,
        mean_days_between_orders=figures.mean_days_between_orders,
        trailing_12m_spend=figures.trailing_12m_spend,
        historical_clv=figures.historical_clv,
        p_alive=predicted.p_alive,
        expected_purchases=predicted.expected_purchases,
        expected_next_order_day=predicted.expected_next_order_day,
        expected_spend_per_order=predicted.expected_spend_per_order,
        predicted_clv=predicted.predicted_clv,
        recency_score=recency,
        frequency_score=frequency,
        monetary_score=monetary,
        segment=segment_of(recency, frequency),
        flags=flags,
        reorder_due_day=reorder.due_day,
        reference=reference,
        models=models,
        days_since_last_order=figures.days_since_last_order,
        reorder_product_id=reorder.product_id,
        reorder_last_day=reorder.last_day,
        reorder_interval_days=reorder.interval_days,
        reorder_units=reorder.units,
        recent_mean_spend=figures.recent_mean_spend,
        earlier_mean_spend=figures.earlier_mean_spend,
        as_of_day=as_of_day,
        settings=settings,
    )
