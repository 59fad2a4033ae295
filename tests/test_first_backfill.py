"""A shop's first backfill: the scheduled push and reconcile write nothing to the store until a
backfill has read the shop's whole order history, and registering a shop queues that backfill
for the scheduler's workers, who run it though the shop was not in their last read."""

# ruff: noqa: F811  (fixtures are imported, and used by name)

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from jobs import queue
from jobs.context import JobContext
from jobs.queue import Due
from jobs.runs import OK, run_job
from jobs.scheduler import WAITING_FOR_BACKFILL, JobSpec, push, reconcile, rescore
from jobs.scheduler import scheduled_backfill as backfill
from plugin.store.models import JobRun, Shop
from tests.devstore.conftest import (  # noqa: F401
    DevStoreFactory,
    anyio_backend,
    devstore_factory,
    live_switch,
)
from tests.helpers import add_shop
from tests.test_backfill import apply_payloads, context, http, installed  # noqa: F401
from tests.test_cli import run
from tests.test_scheduler import eventually, running

pytestmark = pytest.mark.anyio


def app_tags(tags: list[str]) -> list[str]:
    return [tag for tag in tags if tag.startswith("clv:")]


async def test_the_scheduled_push_waits_for_the_first_backfill(
    engine: Engine, devstore_factory: DevStoreFactory, http: httpx.AsyncClient
) -> None:
    # given a shop just registered, whose loyal customer's latest order alone has come in by
    # webhook (their earlier orders are in the store's history, not yet read)
    store, live, shop = installed(engine, devstore_factory, 60, 41)
    assert shop.id is not None
    by_customer: dict[int, list[dict[str, Any]]] = {}
    for order in store.orders:
        if order.get("customer") and not order.get("test") and not order.get("cancelled_at"):
            by_customer.setdefault(order["customer"]["id"], []).append(order)
    loyal, orders = max(by_customer.items(), key=lambda item: len(item[1]))
    latest = max(orders, key=lambda o: o["processed_at"] or o["created_at"])
    apply_payloads(engine, store.shop_domain, [latest])
    now = datetime.fromisoformat(latest["processed_at"] or latest["created_at"])
    ctx = replace(context(engine, http, live), clock=lambda: now + timedelta(hours=1))
    # when the scheduled rescore, push and reconcile run before any backfill
    scored = await run_job(ctx, shop.id, "rescore", rescore)
    pushed = await run_job(ctx, shop.id, "push", push)
    reconciled = await run_job(ctx, shop.id, "reconcile", reconcile)
    # then the push and the reconcile say they wait for it, and nothing of the app's is in the
    # store about a customer whose history was never read
    assert scored.outcome == pushed.outcome == reconciled.outcome == OK
    assert pushed.counts == reconciled.counts == {"skipped": WAITING_FOR_BACKFILL}
    assert app_tags(live.state.customers[loyal].tags) == []
    assert not any(app_tags(c.tags) for c in live.state.customers.values())
    # and once the backfill has read the history, the next push writes the tags
    read = await run_job(ctx, shop.id, "backfill", backfill)
    assert read.outcome == OK and read.counts["orders_applied"] > 0
    await run_job(ctx, shop.id, "rescore", rescore)
    pushed = await run_job(ctx, shop.id, "push", push)
    assert pushed.outcome == OK and pushed.counts["tags_added"] > 0
    assert app_tags(live.state.customers[loyal].tags) != []


def test_registering_a_shop_queues_its_first_backfill(engine: Engine, migrated_url: str) -> None:
    # when a shop is registered
    code, _, err = run(migrated_url, "shop", "add", "new.myshopify.com", "--token", "shpat_x")
    # then its first backfill is queued for the workers, and the operator told so
    assert code == 0, err
    [tick] = queue.waiting(engine)
    assert tick.job == "backfill"
    assert "a backfill is queued" in err and "clvsync backfill --shop new.myshopify.com" in err


@pytest.mark.parametrize(
    ("counts", "queued"),
    [
        ({"covers_all": True, "read_all_orders": False}, True),  # the last 60 days only
        ({"covers_all": True, "read_all_orders": True, "orders_rejected": 2}, True),
        ({"covers_all": True, "read_all_orders": True, "orders_rejected": 0}, False),
    ],
)
def test_a_new_token_queues_a_backfill_unless_one_has_read_the_whole_history(
    engine: Engine, migrated_url: str, counts: dict[str, Any], queued: bool
) -> None:
    # given a shop whose last backfill read what its token was served
    shop = add_shop(engine, "known.myshopify.com")
    with Session(engine) as session:
        started = datetime(2026, 11, 1, tzinfo=UTC)
        done = {"outcome": OK, "counts": json.dumps(counts)}
        session.add(JobRun(shop_id=shop.id, job="backfill", worker="w", started_at=started, **done))
        session.commit()
    # when a new token is stored for it (granted read_all_orders, perhaps)
    code, _, err = run(migrated_url, "shop", "add", "known.myshopify.com", "--token", "shpat_y")
    # then a backfill is queued to read what the last one could not, unless it read it all
    assert code == 0, err
    assert [tick.job for tick in queue.waiting(engine)] == (["backfill"] if queued else [])
    assert ("a backfill is queued" in err) is queued, err
    assert "could not read" in err if queued else err == ""
    assert "the scheduled push waits" not in err  # it waited for the first one only


async def test_a_tick_for_a_shop_registered_since_the_last_read_of_the_shops_is_run(
    engine: Engine,
) -> None:
    # given a running scheduler, which reads the shops once a minute
    ran: list[str] = []

    async def job(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        ran.append(shop.domain)
        return {}

    jobs = (JobSpec("backfill", job, daily_at_hour=0, misfire_grace_seconds=3600),)
    async with running(engine, jobs, take_every_seconds=0.05) as scheduler:
        # when a shop is registered after its last read, its backfill queued at once
        shop = add_shop(engine, "late.myshopify.com")
        assert shop.id is not None
        queue.enqueue(engine, [Due("backfill", shop.id, scheduler._ctx.clock())])
        scheduler._queued.set()
        # then the scheduler reads the shops again and runs it, rather than drop the tick
        await eventually(lambda: ran == ["late.myshopify.com"])
