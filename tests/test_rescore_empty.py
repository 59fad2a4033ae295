"""The 15-minute re-score of a fitted shop when its batch has no counted order left."""

from __future__ import annotations

import copy
from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import Session, select

from jobs.plan import plan_changes
from jobs.recompute import full_recompute, rescore_changed
from jobs.shop_settings import shop_writeback_settings
from plugin.store.models import Customer, ModelRun
from plugin.store.sync import Outcome, record_outcomes
from tests.helpers import enqueue
from tests.test_recompute import load_store, scores_of
from webhooks.processor import Processor


def _one_order_customer(engine: Engine) -> int:
    with Session(engine) as session:
        found = session.exec(
            select(Customer.customer_id).where(Customer.orders == 1).order_by(Customer.customer_id)
        ).first()
    assert found is not None
    return found


def _runs(engine: Engine) -> list[ModelRun]:
    with Session(engine) as session:
        return list(session.exec(select(ModelRun)))


def test_rescore_fitted_shop_customer_whose_only_order_was_cancelled_loses_score_and_tags(
    engine: Engine,
) -> None:
    # given a fitted shop, scored, and its desired tags and metafields pushed to the store
    store, shop, as_of = load_store(engine, 700, 11)
    assert full_recompute(engine, shop, as_of)["confidence"] == "fitted"
    settings = shop_writeback_settings(shop)
    pushed = {
        item.change.customer_id: item.change for item in plan_changes(engine, shop, settings).items
    }
    outcomes = [
        Outcome(c.customer_id, frozenset(c.add), dict(c.set_metafields)) for c in pushed.values()
    ]
    assert shop.id is not None
    record_outcomes(engine, shop.id, outcomes, via="push", job_run_id=None, now=as_of)
    assert plan_changes(engine, shop, settings).items == []
    before = scores_of(engine)
    # and a one-order customer, whose only order is then cancelled and refunded
    buyer = _one_order_customer(engine)
    assert pushed[buyer].add
    order = next(
        p
        for p in store.orders
        if (p.get("customer") or {}).get("id") == buyer and not p.get("test")
    )
    stamp = (as_of - timedelta(hours=1)).isoformat()
    cancelled = copy.deepcopy(order) | {
        "cancelled_at": stamp,
        "financial_status": "refunded",
        "updated_at": stamp,
    }
    enqueue(engine, "orders/updated", cancelled, "cancel-1", store.shop_domain)
    Processor(engine).drain()
    # when the 15-minute re-score runs, with that customer the only one changed
    summary = rescore_changed(engine, shop, as_of)
    # then it runs (no IndexError), scoring no one: the customer's score is gone, the others'
    # are those of the full run
    assert summary["kind"] == "rescore" and summary["customers_scored"] == 0
    after = scores_of(engine)
    assert buyer not in after
    assert {c: s.run_id for c, s in after.items()} == {
        c: s.run_id for c, s in before.items() if c != buyer
    }
    # and the next push takes the customer's tags and metafields off, as for any customer
    # without a score, and changes no one else
    plan = plan_changes(engine, shop, settings).items
    assert [item.change.customer_id for item in plan] == [buyer]
    change = plan[0].change
    assert change.add == () and set(change.remove) == set(pushed[buyer].add)
    assert set(change.delete_metafields) == {key for key, _ in pushed[buyer].set_metafields}
    # and the customer is not stale again: the next re-score has nothing to do
    runs = len(_runs(engine))
    assert rescore_changed(engine, shop, as_of + timedelta(minutes=15))["customers_scored"] == 0
    assert len(_runs(engine)) == runs
