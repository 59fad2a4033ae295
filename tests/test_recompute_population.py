"""What the 15-minute re-score scores against: the last full run's population figures, only
while they still describe the shop, and never a score marked current that lacks an order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

import jobs.recompute as recompute
from jobs.recompute import full_recompute, rescore_changed
from plugin.devstore.gen_config import GeneratorConfig
from plugin.devstore.generator import generate_store
from plugin.store import ledger, shops
from plugin.store.models import ModelRun, Shop
from tests.helpers import add_shop, order_payload
from tests.test_recompute import load_store, scores_of
from webhooks.payloads import parse_order

AS_OF = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)


def shop_of(engine: Engine, domain: str) -> Shop:
    add_shop(engine, domain)
    with Session(engine, expire_on_commit=False) as session:
        shop = shops.get_shop(session, domain)
    assert shop is not None
    return shop


def apply(engine: Engine, shop: Shop, payload: dict[str, Any], at: datetime | None = None) -> None:
    if at is not None:
        stamps = ("created_at", "processed_at", "updated_at")
        payload = payload | dict.fromkeys(stamps, at.isoformat())
    with Session(engine) as session, session.begin():
        held = shops.get_shop(session, shop.domain)
        assert held is not None
        ledger.apply_order(session, held, parse_order(payload))


def runs(engine: Engine) -> list[tuple[str, int]]:
    with Session(engine) as session:
        query = select(ModelRun).order_by(ModelRun.id)  # type: ignore[arg-type]
        return [(run.kind, run.scored) for run in session.exec(query)]


def test_the_first_backfill_after_a_run_on_an_empty_ledger_is_scored_by_a_full_run(
    engine: Engine,
) -> None:
    # given a shop whose first full run came before its first backfill: on an empty ledger
    store = generate_store(GeneratorConfig(customers=60), seed=5)
    shop = shop_of(engine, store.shop_domain)
    as_of = store.config.start + timedelta(days=store.config.history_days)
    rescore_changed(engine, shop, as_of)
    # when the backfill brings the order history, and the re-score comes
    for payload in store.orders:
        apply(engine, shop, payload)
    summary = rescore_changed(engine, shop, as_of + timedelta(minutes=15))
    # then a full run scores them against their own population, not against the empty one's
    # edges (which made every customer R 5, F 5, M 5: all 60 champions, their tags pushed)
    assert summary["kind"] == "full"
    scores = scores_of(engine)
    champions = [c for c, score in scores.items() if score.segment == "champions"]
    assert len(scores) == 60 and len(champions) <= 20
    assert runs(engine) == [("full", 0), ("full", 60)]


def test_a_first_time_buyer_scored_against_no_population_is_f_1(engine: Engine) -> None:
    # given a shop refitted before its first order, then its first order
    shop = shop_of(engine, "first.myshopify.com")
    full_recompute(engine, shop, AS_OF)
    apply(engine, shop, order_payload(7001, customer_id=601, total="30.00"), AS_OF)
    # when the re-score comes
    rescore_changed(engine, shop, AS_OF + timedelta(hours=1))
    # then a one-time buyer is F 1 (README), never a champion
    score = scores_of(engine)[601]
    assert score.frequency_score == 1 and score.segment != "champions"


def test_a_rescore_of_a_few_customers_keeps_the_last_full_runs_figures(engine: Engine) -> None:
    # given a scored shop, then one customer's new order
    _, shop, as_of = load_store(engine, 60, 4)
    full_recompute(engine, shop, as_of)
    buyer = min(scores_of(engine))
    apply(engine, shop, order_payload(990001, customer_id=buyer, total="80.00"), as_of)
    # when the re-score comes, then it re-scores that customer alone
    summary = rescore_changed(engine, shop, as_of + timedelta(minutes=15))
    assert summary["kind"] == "rescore" and summary["customers_scored"] == 1


def test_an_order_applied_during_a_full_run_leaves_its_customer_to_the_next_rescore(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a scored shop, and a full run during whose model fit an order of 800.00 is applied
    _, shop, as_of = load_store(engine, 60, 4)
    full_recompute(engine, shop, as_of)
    buyer = min(scores_of(engine))
    fit = recompute.fit_models

    def fit_while_an_order_lands(*args: Any) -> Any:
        apply(engine, shop, order_payload(990001, customer_id=buyer, total="800.00"), as_of)
        return fit(*args)

    monkeypatch.setattr(recompute, "fit_models", fit_while_an_order_lands)
    full_recompute(engine, shop, as_of + timedelta(hours=1))
    monkeypatch.setattr(recompute, "fit_models", fit)
    # when the next re-score comes
    summary = rescore_changed(engine, shop, as_of + timedelta(hours=2))
    # then it takes the order into the buyer's figures (the full run did not mark the score as
    # including it: before, it did, and the order was left out until the next day's refit)
    assert summary["kind"] == "rescore" and summary["customers_scored"] == 1
    assert scores_of(engine)[buyer].trailing_12m_spend >= 800.0


def test_a_customer_whose_only_order_is_dated_later_records_no_rescore_run(
    engine: Engine,
) -> None:
    # given a scored shop, and a new customer whose only order is dated three days ahead
    shop = shop_of(engine, "future.myshopify.com")
    apply(engine, shop, order_payload(1, customer_id=5), AS_OF - timedelta(days=40))
    apply(engine, shop, order_payload(2, customer_id=6), AS_OF - timedelta(days=30))
    full_recompute(engine, shop, AS_OF)
    apply(engine, shop, order_payload(3, customer_id=7), AS_OF + timedelta(days=3))
    # when the re-score comes every 15 minutes, then it has nothing to do (before, each tick
    # recorded a run that scored no one), until the order's day has come
    for tick in range(1, 5):
        summary = rescore_changed(engine, shop, AS_OF + timedelta(minutes=15 * tick))
        assert summary == {"run_id": None, "kind": "rescore", "customers_scored": 0}
    rescore_changed(engine, shop, AS_OF + timedelta(days=4))
    assert runs(engine) == [("full", 2), ("rescore", 1)]
    assert sorted(scores_of(engine)) == [5, 6, 7]


@pytest.mark.parametrize(("new_buyers", "kind"), [(0, "rescore"), (1, "full")])
def test_a_rescore_of_as_many_customers_as_the_last_full_run_scored_is_still_a_rescore(
    engine: Engine, new_buyers: int, kind: str
) -> None:
    # given a shop of three buyers, scored by a full run
    shop = shop_of(engine, "small.myshopify.com")
    for customer in (1, 2, 3):
        apply(engine, shop, order_payload(customer, customer_id=customer), AS_OF - timedelta(30))
    full_recompute(engine, shop, AS_OF)
    # when all three buy again (and, in the second case, a fourth buys for the first time)
    for customer in range(1, 4 + new_buyers):
        apply(engine, shop, order_payload(100 + customer, customer_id=customer), AS_OF)
    # then as many customers as the full run scored are re-scored; one more is a full run
    summary = rescore_changed(engine, shop, AS_OF + timedelta(hours=1))
    assert (summary["kind"], summary["customers_scored"]) == (kind, 3 + new_buyers)
