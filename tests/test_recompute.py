"""The recompute jobs on a real database: full refit and scoring, re-score of changed customers."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from jobs.recompute import full_recompute, reasons_json, rescore_changed
from plugin.cli import main
from plugin.devstore.gen_config import GeneratorConfig
from plugin.devstore.generator import GeneratedStore, generate_store
from plugin.domain.scoring import (
    CONFIDENCE_RULES,
    SEGMENTS,
    FittedModels,
    OrderHistory,
    ScoringSettings,
    score_shop,
)
from plugin.store import ledger, shops
from plugin.store.models import Customer, CustomerScore, ModelRun, Shop
from plugin.store.scores import to_json
from tests.helpers import T0, add_shop, enqueue, order_payload
from tests.test_compliance import cli_env
from webhooks.payloads import parse_order
from webhooks.processor import Processor

RULES = FittedModels("rules", {}, None, float("nan"), False, 0, 0, CONFIDENCE_RULES, "rules")


def load_store(engine: Engine, customers: int, seed: int) -> tuple[GeneratedStore, Shop, datetime]:
    """A generated store's final orders applied to the ledger (no webhooks: faster)."""
    store = generate_store(GeneratorConfig(customers=customers), seed=seed)
    add_shop(engine, store.shop_domain)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        shop = shops.get_shop(session, store.shop_domain)
        assert shop is not None
        for payload in store.orders:
            ledger.apply_order(session, shop, parse_order(payload))
    start = store.config.start
    as_of = start + timedelta(days=store.config.history_days)
    return store, shop, as_of


def scores_of(engine: Engine) -> dict[int, CustomerScore]:
    with Session(engine) as session:
        return {s.customer_id: s for s in session.exec(select(CustomerScore))}


def test_full_recompute_scores_every_buyer_and_records_the_run(engine: Engine) -> None:
    # given a shop large enough for the models
    _, shop, as_of = load_store(engine, 700, 11)
    # when it is recomputed
    summary = full_recompute(engine, shop, as_of)
    # then every customer with a counted order has a score, a segment and reasons for its tags
    with Session(engine) as session:
        buyers = set(session.exec(select(Customer.customer_id).where(Customer.orders > 0)))
        run = session.exec(select(ModelRun)).one()
    scored = scores_of(engine)
    assert set(scored) == buyers and summary["customers_scored"] == len(buyers)
    assert run.kind == "full" and run.confidence == "fitted" and run.seconds > 0
    assert json.loads(run.repeat_params) and run.repeat_model in ("bgnbd", "mbgnbd", "paretonbd")
    for score in scored.values():
        assert score.segment in SEGMENTS and 0.0 <= score.p_alive <= 1.0
        assert set(json.loads(score.reasons)) == set(score.tags.split())
        assert score.segment in score.tags.split()


def test_reorder_due_counts_the_units_the_ledger_holds(engine: Engine) -> None:
    # given 25 customers who buy one tea every 30 days, then, 40 days before the run, customer
    # 1 buying three teas, customer 2 one, and customer 3 four of which three were refunded
    domain = "units.myshopify.com"
    add_shop(engine, domain)
    payloads = [
        order_payload(1000 * c + k, customer_id=c, day=30 * k)
        for c in range(100, 125)
        for k in range(4)
    ]
    for customer, bought, held in ((1, 3, 3), (2, 1, 1), (3, 4, 1)):
        payload = order_payload(customer, customer_id=customer, day=100)
        payload["line_items"][0] |= {"quantity": bought, "current_quantity": held}
        payloads.append(payload)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        shop = shops.get_shop(session, domain)
        assert shop is not None
        for payload in payloads:
            ledger.apply_order(session, shop, parse_order(payload))
    # when the shop is recomputed 140 days in
    full_recompute(engine, shop, T0 + timedelta(days=140))
    # then three teas last 90 days (due on day 190, not yet); one, or one kept of four, 30
    scored = scores_of(engine)
    assert ["reorder-due" in scored[c].tags.split() for c in (1, 2, 3)] == [False, True, True]
    due = [scored[c].reorder_due_at for c in (1, 2, 3)]
    assert due == [T0 + timedelta(days=d) for d in (190, 130, 130)]


def test_small_shop_falls_back_to_rules_and_says_so(engine: Engine) -> None:
    _, shop, as_of = load_store(engine, 60, 3)
    summary = full_recompute(engine, shop, as_of)
    assert summary["confidence"] == "rules" and summary["repeat_model"] == "rules"
    with Session(engine) as session:
        assert "rules" in session.exec(select(ModelRun.note)).one()


def test_rescore_changed_updates_only_customers_whose_orders_changed(engine: Engine) -> None:
    # given a scored shop
    store, shop, as_of = load_store(engine, 60, 4)
    full_recompute(engine, shop, as_of)
    before = scores_of(engine)
    buyer = min(before)
    # when one customer buys again and the changed customers are re-scored
    enqueue(
        engine,
        "orders/create",
        order_payload(990001, customer_id=buyer, total="80.00", day=0)
        | {
            "processed_at": as_of.isoformat(),
            "created_at": as_of.isoformat(),
            "updated_at": as_of.isoformat(),
        },
        "new-order",
        store.shop_domain,
    )
    Processor(engine).drain()
    summary = rescore_changed(engine, shop, as_of + timedelta(hours=1))
    # then that customer alone was re-scored, with their new order counted
    after = scores_of(engine)
    assert summary["customers_scored"] == 1
    assert after[buyer].ledger_version > before[buyer].ledger_version
    assert after[buyer].trailing_12m_spend >= before[buyer].trailing_12m_spend + 80 - 1e-6
    unchanged = {c: s.run_id for c, s in after.items() if c != buyer}
    assert unchanged == {c: s.run_id for c, s in before.items() if c != buyer}
    # and with nothing stale, nothing is scored and no run is recorded
    with Session(engine) as session:
        runs = len(session.exec(select(ModelRun)).all())
    assert rescore_changed(engine, shop, as_of)["customers_scored"] == 0
    with Session(engine) as session:
        assert len(session.exec(select(ModelRun)).all()) == runs


def test_export_shows_scores_and_prefixed_desired_tags(engine: Engine, migrated_url: str) -> None:
    store, shop, as_of = load_store(engine, 60, 5)
    with Session(engine) as session, session.begin():
        stored = session.get(Shop, shop.id)
        assert stored is not None
        stored.settings = json.dumps({"tag_prefix": "ltv-"})
    full_recompute(engine, shop, as_of)
    result = CliRunner().invoke(
        main, ["export", "--shop", store.shop_domain], env=cli_env(migrated_url)
    )
    assert result.exit_code == 0, result.output
    rows = [r for r in csv.DictReader(io.StringIO(result.stdout)) if int(r["orders"]) > 0]
    assert rows and all(r["segment"] in SEGMENTS for r in rows)
    assert all(t.startswith("ltv-") for r in rows for t in r["desired_tags"].split())


def test_recompute_cli_reports_the_run(engine: Engine, migrated_url: str) -> None:
    store, _, _ = load_store(engine, 60, 6)
    result = CliRunner().invoke(
        main, ["recompute", "--shop", store.shop_domain], env=cli_env(migrated_url)
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["kind"] == "full"
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(CustomerScore)).one() > 0


@pytest.mark.parametrize(
    ("scoring", "named"), [({"tier_vipp": 900}, "tier_vipp"), ({"top_share": 7}, "top_share")]
)
def test_bad_shop_setting_is_refused_with_its_name(
    engine: Engine, migrated_url: str, scoring: dict[str, float], named: str
) -> None:
    store, shop, _ = load_store(engine, 30, 7)
    with Session(engine) as session, session.begin():
        stored = session.get(Shop, shop.id)
        assert stored is not None
        stored.settings = json.dumps({"scoring": scoring})
    result = CliRunner().invoke(
        main, ["recompute", "--shop", store.shop_domain], env=cli_env(migrated_url)
    )
    assert result.exit_code == 1 and named in result.stderr


def test_reasons_json_is_each_customers_reasons_encoded() -> None:
    # given a scored shop whose customers carry one to several tags
    customers = np.repeat(np.arange(1, 301, dtype=np.int64), 3)
    day = 1000.0 - (customers % 97) * 3.7 - np.tile([0.0, 40.0, 200.0], 300)
    amount = 20.0 + (customers % 13) * 35.0 + np.tile([0.0, 10.0, 400.0], 300)
    scores = score_shop(OrderHistory(customers, day, amount), 1000.0, ScoringSettings(), RULES)
    # when the reasons are encoded in slices, as the score rows are
    encoded = [
        text for start in range(0, 300, 128) for text in reasons_json(scores, start, start + 128)
    ]
    # then each is the JSON of that customer's reasons, keys sorted
    assert encoded == [to_json(scores.reasons(i)) for i in range(len(scores))]
    assert len({len(json.loads(text)) for text in encoded}) > 1
