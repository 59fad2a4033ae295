"""Order and product histories of generated dev stores, in the shape the scoring engine takes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache

import numpy as np

from plugin.devstore.generator import GeneratedStore, GeneratorConfig, generate_store
from plugin.domain.scoring import CONFIDENCE_RULES, FittedModels, OrderHistory, ProductPurchases

EPOCH = date(1970, 1, 1).toordinal()
COUNTED_KINDS = ("purchase", "refill")
# No fitted model: the shop is scored by its transparent rules.
RULES = FittedModels("rules", {}, None, math.nan, False, 0, 0, CONFIDENCE_RULES, "rules")


def history(rows: list[tuple[int, float, float]]) -> OrderHistory:
    """A shop's orders from (customer, day, amount) rows."""
    return OrderHistory(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.float64),
        np.array([r[2] for r in rows], dtype=np.float64),
    )


@dataclass(frozen=True)
class ScoringInput:
    store: GeneratedStore
    history: OrderHistory
    purchases: ProductPurchases
    as_of_day: float


def epoch_days(moment: datetime) -> float:
    """Fractional days since the Unix epoch of an aware datetime."""
    return moment.timestamp() / 86_400.0


@lru_cache(maxsize=4)
def generated(customers: int, seed: int) -> ScoringInput:
    """A generated store's counted purchases (its transactions) and their order lines."""
    store = generate_store(GeneratorConfig(customers=customers), seed=seed)
    tx = store.transactions
    history = OrderHistory(
        np.array([t.customer_id for t in tx], dtype=np.int64),
        np.array([t.date.toordinal() - EPOCH for t in tx], dtype=np.float64),
        np.array([float(t.amount) for t in tx], dtype=np.float64),
    )
    rows = [
        (int(order["customer"]["id"]), int(line["product_id"]), order["created_at"])
        for order in store.orders
        if order.get("customer") and store.truth.order_kinds.get(order["id"]) in COUNTED_KINDS
        for line in order["line_items"]
        if line.get("product_id") is not None
    ]
    purchases = ProductPurchases(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.array([epoch_days(datetime.fromisoformat(r[2])) for r in rows], dtype=np.float64),
    )
    as_of = epoch_days(store.config.end)
    return ScoringInput(store, history, purchases, as_of)
