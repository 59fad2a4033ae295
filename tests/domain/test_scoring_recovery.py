"""The scoring engine finds what the dev store's generator planted.

Tolerances, from runs over seeds 1-6 (5,000 customers) and 3-4 (3,000) while writing these tests:
- Holdout purchases: predicted / actual total was 0.975-1.048. The actual total (about 2,300
  purchase days in 182 days) is an overdispersed count, standard deviation about 3%, so 10% is
  about three of them, plus the model-choice noise.
- P(alive) with BG/NBD (the planted process): sum of P(alive) / number alive at the end was
  0.995-1.019, and the P(alive) of alive customers ranks above that of dead ones with
  probability (AUC) 0.92-0.93; we ask for 5% and 0.85.
- Replenishment: with 130+ repeat buyers and 500+ gaps per consumable, the median of a cycle
  with 15% noise has a sampling sd of about 1.25 x 15% / sqrt(500) = 0.85%, and gaps cut short
  by the end of the history bias it down by up to 2.5% (measured: 21.1/21, 29.9/30, 44.3/45,
  58.6/60); 7% is that bias plus five sampling sds. Non-consumables had a spread of 0.68 or
  more against 0.25 or less for consumables, so the set found must be exactly the planted one.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from plugin.devstore.generator import GeneratorConfig, PlantedTruth, generate_store
from plugin.domain.replenishment import learn_replenishment
from plugin.domain.rfm_summary import count_purchase_days
from plugin.domain.scoring import (
    CONFIDENCE_FITTED,
    CONFIDENCE_RULES,
    OrderHistory,
    ProductPurchases,
    ScoringSettings,
    fit_models,
    score_shop,
)
from tests.domain.scoring_data import EPOCH, epoch_days, generated

HOLDOUT_DAYS = 182.0


def pure_bgnbd_store(seed: int) -> tuple[OrderHistory, float, PlantedTruth]:
    store = generate_store(GeneratorConfig(customers=5000, consumable_refills=False), seed=seed)
    tx = store.transactions
    orders = OrderHistory(
        np.array([t.customer_id for t in tx], dtype=np.int64),
        np.array([t.date.toordinal() - EPOCH for t in tx], dtype=np.float64),
        np.array([float(t.amount) for t in tx], dtype=np.float64),
    )
    return orders, epoch_days(store.config.end), store.truth


@pytest.mark.parametrize("seed", [1, 4])
def test_score_shop_generated_store_predicts_holdout_purchases_within_ten_percent(
    seed: int,
) -> None:
    # given a generated store whose last 182 days are held out
    orders, end, _ = pure_bgnbd_store(seed)
    as_of = end - HOLDOUT_DAYS
    settings = ScoringSettings(horizon_days=HOLDOUT_DAYS)
    # when fitted and scored on the history before them
    models = fit_models(orders, as_of, settings)
    scores = score_shop(orders, as_of, settings, models)
    # then the expected purchases add up to the purchase days actually made in the holdout
    actual = count_purchase_days(
        orders.customer_id,
        orders.day,
        after_day=np.floor(as_of),
        through_day=end,
        for_customers=scores.customer_id,
    )
    assert models.confidence == CONFIDENCE_FITTED
    assert scores.expected_purchases.sum() == pytest.approx(actual.sum(), rel=0.10)


@pytest.mark.parametrize("seed", [1, 5])
def test_score_shop_generated_store_p_alive_matches_planted_alive(seed: int) -> None:
    # given a generated store and who the generator left alive at the end
    orders, end, truth = pure_bgnbd_store(seed)
    settings = ScoringSettings(candidate_models=("bgnbd",))
    # when scored with BG/NBD, the planted process
    scores = score_shop(orders, end, settings, fit_models(orders, end, settings))
    alive = truth.alive_at_end[np.searchsorted(truth.customer_ids, scores.customer_id)]
    # then P(alive) adds up to the number alive, and ranks the alive above the dead
    assert scores.p_alive.sum() == pytest.approx(alive.sum(), rel=0.05)
    ranks = mannwhitneyu(scores.p_alive[alive], scores.p_alive[~alive]).statistic
    assert ranks / (alive.sum() * (~alive).sum()) > 0.85


@pytest.mark.parametrize("seed", [3, 4])
def test_learn_replenishment_generated_store_recovers_planted_consumables(seed: int) -> None:
    # given a generated store with consumables refilled on planted cycles
    data = generated(3000, seed)
    # when replenishment intervals are learned from its order lines
    learned = learn_replenishment(data.purchases, data.as_of_day, ScoringSettings())
    # then exactly the planted consumables are found, each cycle within 7%
    planted = data.store.truth.consumables
    assert set(learned) == set(planted)
    for product, cycle in planted.items():
        assert learned[product] == pytest.approx(cycle, rel=0.07)


def test_score_shop_generated_store_reorder_due_customers_bought_a_consumable() -> None:
    # given a generated store scored with its order lines
    data = generated(3000, 3)
    settings = ScoringSettings()
    models = fit_models(data.history, data.as_of_day, settings)
    scores = score_shop(data.history, data.as_of_day, settings, models, data.purchases)
    due = scores.flags["reorder-due"]
    # then some customers are due, each for a planted consumable, past its interval
    assert due.sum() > 0
    assert set(scores.reorder_product_id[due].tolist()) <= set(data.store.truth.consumables)
    waited = data.as_of_day - scores.reorder_last_day[due]
    assert np.all(waited >= scores.reorder_interval_days[due])
    assert np.all(scores.reorder_due_day[due] <= data.as_of_day)


def test_fit_models_small_generated_store_is_rules_and_publishes_rules() -> None:
    # given a generated store of 300 customers
    data = generated(300, 7)
    # when fitted and scored
    models = fit_models(data.history, data.as_of_day, ScoringSettings())
    scores = score_shop(data.history, data.as_of_day, ScoringSettings(), models)
    # then it is rules, and predicted CLV is the trailing-12-month spend (horizon 365 days)
    assert models.confidence == CONFIDENCE_RULES
    np.testing.assert_allclose(scores.predicted_clv, scores.trailing_12m_spend)


def test_learn_replenishment_sorted_or_shuffled_lines_give_the_same_intervals() -> None:
    # given a generated store's order lines sorted by (customer, day), as a database gives them,
    # and the same lines shuffled
    lines = generated(3000, 3).purchases
    order = np.lexsort((lines.day, lines.customer_id))
    shuffle = np.random.default_rng(5).permutation(order.size)
    as_sorted, shuffled = (
        ProductPurchases(lines.customer_id[p], lines.product_id[p], lines.day[p])
        for p in (order, shuffle)
    )
    as_of = generated(3000, 3).as_of_day
    # when intervals are learned from each, then they are identical
    learned = learn_replenishment(as_sorted, as_of, ScoringSettings())
    assert learned == learn_replenishment(shuffled, as_of, ScoringSettings())
    assert len(learned) == 4
