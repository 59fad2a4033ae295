"""The recompute jobs: a shop's full refit and scoring, and the cheap re-score of changed customers.

Both load the ledger as arrays, hand them to the pure domain (`plugin.domain.scoring`), and
write every scored customer's figures, segment, desired tags and reasons back, with a record of
the run. The full run refits the models and recomputes the population figures (quintile edges,
the top-20 threshold, replenishment intervals); the re-score reuses the last full run's, so a
purchase can change a customer's tags minutes later without refitting the shop.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import repeat
from json.encoder import encode_basestring_ascii
from typing import Any

import numpy as np
from sqlalchemy import Engine

from jobs.shop_settings import scoring_settings
from plugin.domain.scoring import (
    SEGMENTS,
    TAGS,
    FittedModels,
    OrderHistory,
    ProductPurchases,
    ScoreReference,
    ScoringSettings,
    ShopScores,
    fit_models,
    rescore,
    score_shop,
)
from plugin.domain.shop_days import ShopDays, known_zone
from plugin.domain.tag_reasons import reason_texts
from plugin.store.models import ModelRun, Shop
from plugin.store.scores import (
    LedgerArrays,
    day_stamps,
    latest_full_run,
    load_ledger,
    read_ledger_versions,
    replace_scores,
    save_run,
    stale_customers,
    to_json,
)

log = logging.getLogger(__name__)

RESCORE_BATCH = 5000
# An expected next order further away than this is no date to show or act on: stored as none.
NEXT_ORDER_HORIZON_DAYS = 3650.0
ROW_SLICE = 50_000  # score rows made and written per slice


@dataclass(frozen=True)
class RunSummary:
    run_id: int
    kind: str
    customers_scored: int
    repeat_model: str
    confidence: str
    converged: bool
    seconds: float


def shop_days(shop: Shop) -> ShopDays:
    """The shop's days (`plugin.domain.shop_days`): in its time zone once one is known."""
    return ShopDays(known_zone(shop.iana_timezone))


def _inputs(
    ledger: LedgerArrays, days: ShopDays, as_of: datetime
) -> tuple[OrderHistory, ProductPurchases, float]:
    """The ledger on the shop's calendar (`ShopDays.up_to`), and as_of as a local day."""
    order_days, as_of_day = days.up_to(ledger.order_day, as_of)
    line_days, _ = days.up_to(ledger.line_day, as_of)
    history = OrderHistory(
        ledger.order_customer, order_days, ledger.order_amount, ledger.order_cost
    )
    purchases = ProductPurchases(
        ledger.line_customer, ledger.line_product, line_days, ledger.line_quantity
    )
    return history, purchases, as_of_day


def full_recompute(engine: Engine, shop: Shop, as_of: datetime) -> dict[str, Any]:
    """Refit the shop's models, score every customer, store it all; a summary of the run."""
    assert shop.id is not None
    started = time.perf_counter()
    settings = scoring_settings(shop)
    days = shop_days(shop)
    versions = read_ledger_versions(engine, shop.id)  # first: see LedgerVersions
    ledger = load_ledger(engine, shop.id, costs=settings.margin_from_costs)
    units = {"units_kept": ledger.units_kept, "units_without_cost": ledger.units_without_cost}
    history, purchases, as_of_day = _inputs(ledger, days, as_of)
    del ledger  # its days are on the shop's calendar now: the UTC ones go (120 MB at 10M lines)
    models = fit_models(history, as_of_day, settings)
    scores = score_shop(history, as_of_day, settings, models, purchases)
    run = _run_record(shop.id, "full", as_of, models, scores.reference, settings, scores)
    run_id = save_run(engine, run)
    postgres = engine.dialect.name == "postgresql"
    rows = score_rows(
        shop.id, run_id, scores, versions.of(scores.customer_id), as_of_day, days, postgres
    )
    replace_scores(engine, shop.id, rows, None)
    summary = _finish(engine, run_id, run, started)
    if settings.margin_from_costs:  # what historical CLV's cost of goods leaves out
        summary |= units
    return summary


def rescore_changed(engine: Engine, shop: Shop, as_of: datetime) -> dict[str, Any]:
    """Re-score the customers whose ledger changed since their last score, with the last full
    run's models and population figures.

    A full run instead if there is none, or if more customers are stale than the last one
    scored: its population figures (quintile edges, the top-20 threshold) describe a shop that
    has changed since, such as one run on the webhooks alone before the first backfill (on an
    empty ledger, whose edges score every customer R 5, F 5, M 5: champions)."""
    assert shop.id is not None
    last = latest_full_run(engine, shop.id)
    started = time.perf_counter()
    customer_ids = [] if last is None else stale_customers(engine, shop.id, RESCORE_BATCH, as_of)
    if last is None or len(customer_ids) > last.customers:
        return full_recompute(engine, shop, as_of)
    if not customer_ids:  # nothing to do: no run recorded (this job comes every 15 minutes)
        return {"run_id": None, "kind": "rescore", "customers_scored": 0}
    settings = scoring_settings(shop)
    models, reference = _models_of(last), _reference_of(last)
    run = _run_record(shop.id, "rescore", as_of, models, reference, settings, None)
    run_id = save_run(engine, run)
    days = shop_days(shop)
    postgres = engine.dialect.name == "postgresql"
    scored, seen = 0, set[int]()
    while True:
        customer_ids = [c for c in customer_ids if c not in seen]
        if not customer_ids:
            break
        seen.update(customer_ids)
        versions = read_ledger_versions(engine, shop.id, customer_ids)  # first: LedgerVersions
        ledger = load_ledger(engine, shop.id, customer_ids, costs=settings.margin_from_costs)
        history, purchases, as_of_day = _inputs(ledger, days, as_of)
        scores = rescore(history, as_of_day, settings, models, reference, purchases)
        rows = score_rows(
            shop.id, run_id, scores, versions.of(scores.customer_id), as_of_day, days, postgres
        )
        replace_scores(engine, shop.id, rows, customer_ids)
        scored += int(scores.customer_id.size)
        customer_ids = stale_customers(engine, shop.id, RESCORE_BATCH, as_of)
    run.scored = scored
    return _finish(engine, run_id, run, started)


def _run_record(
    shop_id: int,
    kind: str,
    as_of: datetime,
    models: FittedModels,
    reference: ScoreReference,
    settings: ScoringSettings,
    scores: ShopScores | None,
) -> ModelRun:
    return ModelRun(
        shop_id=shop_id,
        kind=kind,
        started_at=datetime.now(UTC),
        seconds=0.0,
        as_of=as_of,
        repeat_model=models.repeat_model,
        repeat_params=to_json(models.repeat_params),
        spend_params=None if models.spend_params is None else to_json(models.spend_params),
        log_likelihood=None if not np.isfinite(models.log_likelihood) else models.log_likelihood,
        converged=models.converged,
        customers=models.customers,
        repeat_customers=models.repeat_customers,
        confidence=models.confidence,
        note=models.note,
        reference=to_json(asdict(reference)),
        settings=to_json(asdict(settings)),
        scored=0 if scores is None else int(scores.customer_id.size),
    )


def _finish(engine: Engine, run_id: int, run: ModelRun, started: float) -> dict[str, Any]:
    from sqlmodel import Session

    seconds = time.perf_counter() - started
    with Session(engine) as session, session.begin():
        stored = session.get(ModelRun, run_id)
        assert stored is not None
        stored.seconds, stored.scored = round(seconds, 3), run.scored
    log.info("%s run %d: %d customers scored in %.1f s", run.kind, run_id, run.scored, seconds)
    return {
        "run_id": run_id,
        "kind": run.kind,
        "customers_scored": run.scored,
        "repeat_model": run.repeat_model,
        "confidence": run.confidence,
        "converged": run.converged,
    }


def _models_of(run: ModelRun) -> FittedModels:
    return FittedModels(
        repeat_model=run.repeat_model,
        repeat_params=json.loads(run.repeat_params),
        spend_params=None if run.spend_params is None else json.loads(run.spend_params),
        log_likelihood=float("nan") if run.log_likelihood is None else run.log_likelihood,
        converged=run.converged,
        customers=run.customers,
        repeat_customers=run.repeat_customers,
        confidence=run.confidence,
        note=run.note,
    )


def _reference_of(run: ModelRun) -> ScoreReference:
    stored = json.loads(run.reference)
    return ScoreReference(
        recency_edges=tuple(stored["recency_edges"]),
        frequency_edges=tuple(stored["frequency_edges"]),
        monetary_edges=tuple(stored["monetary_edges"]),
        top_clv_threshold=float(stored["top_clv_threshold"]),
        replenishment_days={int(k): float(v) for k, v in stored["replenishment_days"].items()},
    )


def _optional(values: np.ndarray[Any, Any]) -> list[float | None]:
    return [None if v != v else v for v in values.tolist()]  # NaN -> NULL


def score_rows(
    shop_id: int,
    run_id: int,
    scores: ShopScores,
    versions: np.ndarray[Any, Any],
    as_of_day: float,
    days: ShopDays,
    postgres: bool,
) -> Iterator[tuple[Any, ...]]:
    """One row per scored customer, in SCORE_COLUMNS order, made a slice at a time as they are
    written (a million customers' rows and reasons at once would take gigabytes). The scores'
    days are the shop's (local); the moments written are UTC."""
    next_order = scores.expected_next_order_day
    next_order = np.where(next_order <= as_of_day + NEXT_ORDER_HORIZON_DAYS, next_order, np.nan)
    next_order, reorder_due = days.utc(next_order), days.utc(scores.reorder_due_day)
    # one string per distinct combination of tags, shared by every customer who has it
    patterns, which = np.unique(scores.tag_bits(), return_inverse=True)
    spelled = [" ".join(t for j, t in enumerate(TAGS) if (p >> j) & 1) for p in patterns.tolist()]
    which = which.reshape(-1)
    segments = np.array(SEGMENTS)
    for start in range(0, int(scores.customer_id.size), ROW_SLICE):
        part = slice(start, start + ROW_SLICE)
        count = int(scores.customer_id[part].size)
        yield from zip(
            repeat(shop_id, count),
            scores.customer_id[part].tolist(),
            repeat(run_id, count),
            versions[part].tolist(),
            scores.aov[part].tolist(),
            _optional(scores.mean_days_between_orders[part]),
            scores.trailing_12m_spend[part].tolist(),
            scores.historical_clv[part].tolist(),
            scores.p_alive[part].tolist(),
            scores.expected_purchases[part].tolist(),
            day_stamps(next_order[part], postgres),
            scores.expected_spend_per_order[part].tolist(),
            scores.predicted_clv[part].tolist(),
            scores.recency_score[part].tolist(),
            scores.frequency_score[part].tolist(),
            scores.monetary_score[part].tolist(),
            segments[scores.segment[part]].tolist(),
            day_stamps(reorder_due[part], postgres),
            [spelled[k] for k in which[part].tolist()],
            reasons_json(scores, start, start + count),
            strict=True,
        )


def reasons_json(scores: ShopScores, start: int, stop: int) -> list[str]:
    """`to_json(scores.reasons(i))` for customers start..stop, the same text built from each
    tag's distinct reasons (`reason_texts`): each distinct `"tag": "reason"` pair is encoded
    once, and a customer's object is its pairs in key order (to_json sorts keys)."""
    count = max(min(stop, len(scores)) - start, 0)
    pairs: dict[str, np.ndarray[Any, Any]] = {}
    bits = np.zeros(count, dtype=np.int64)
    given = reason_texts(scores, start, stop)
    for tag, reasons in given.items():
        key = encode_basestring_ascii(tag) + ": "
        encoded = np.empty(len(reasons.texts), dtype=object)
        encoded[:] = [key + encode_basestring_ascii(text) for text in reasons.texts]
        column = np.empty(count, dtype=object)
        column[reasons.customers] = encoded[reasons.text_of]
        pairs[tag] = column
        bits[reasons.customers] |= np.int64(1) << TAGS.index(tag)
    objects = np.full(count, "{}", dtype=object)
    patterns, which = np.unique(bits, return_inverse=True)
    for k, pattern in enumerate(patterns.tolist()):
        if pattern == 0:
            continue
        members = np.flatnonzero(which.reshape(-1) == k)
        keys = sorted(tag for j, tag in enumerate(TAGS) if (pattern >> j) & 1)
        form = "{" + ", ".join(["%s"] * len(keys)) + "}"
        columns = [pairs[tag][members] for tag in keys]
        objects[members] = [form % parts for parts in zip(*columns, strict=True)]
    return list(objects.tolist())
