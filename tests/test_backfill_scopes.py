"""The backfill and the token's access scopes: without read_all_orders Shopify serves only the
last 60 days of orders, so the backfill reads what it is served and says so (counts, log,
`clvsync backfill`), and a daily run that finds the scope granted reads the whole history
again. Over a live dev store on loopback, on SQLite and PostgreSQL."""

# ruff: noqa: F811  (the dev store's fixtures are imported, and used by name)

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlmodel import Session, select

from jobs.backfill import ORDER_WINDOW, OVERLAP, backfill_shop, last_backfill_start
from jobs.context import JobContext
from jobs.runs import OK, run_job
from jobs.scheduler import WAITING_FOR_BACKFILL, push, rescore, scheduled_backfill
from plugin.cli import main
from plugin.devstore.config import APP_SCOPES, DEFAULT_TOKEN, DevStoreConfig
from plugin.devstore.gen_config import GeneratorConfig
from plugin.devstore.generator import GeneratedStore, generate_store
from plugin.devstore.state import DevStoreState
from plugin.store.models import Order, Shop
from tests.devstore.conftest import (  # noqa: F401
    DevStoreFactory,
    LiveDevStore,
    anyio_backend,
    devstore_factory,
    live_switch,
)
from tests.helpers import add_shop
from tests.test_backfill import context, http  # noqa: F401
from tests.test_compliance import cli_env

pytestmark = pytest.mark.anyio

NOTE = "only: the token lacks read_all_orders, and Shopify serves only the last 60 days of orders"


class Clock:
    """The one "now" of the app's jobs and of the dev store, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def created(order: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(order["created_at"])


def kept_ids(orders: list[dict[str, Any]], since: datetime | None = None) -> set[int]:
    """The orders the ledger keeps (test orders are not), of those created since `since`."""
    return {o["id"] for o in orders if not o.get("test") and (since is None or created(o) >= since)}


def generated(
    factory: DevStoreFactory, customers: int, seed: int, scopes: tuple[str, ...], clock: Clock
) -> tuple[GeneratedStore, LiveDevStore]:
    """A generated store's history in a live dev store whose now is `clock`'s, its token
    holding `scopes`."""
    store = generate_store(GeneratorConfig(customers=customers), seed=seed)
    state = DevStoreState(domain=store.shop_domain, currency_code=store.shop_currency, now=clock)
    state.load(products=store.products, customers=store.customers, orders=store.orders)
    return store, factory(state, DevStoreConfig(access_scopes=scopes))


def registered(
    engine: Engine,
    factory: DevStoreFactory,
    http: httpx.AsyncClient,
    customers: int,
    seed: int,
    scopes: tuple[str, ...],
    start: datetime = datetime(2025, 12, 31, tzinfo=UTC),
) -> tuple[Clock, GeneratedStore, LiveDevStore, int, JobContext]:
    """`generated` at `start`, registered as a shop with the dev store's token; the jobs'
    context on the same clock."""
    clock = Clock(start)
    store, live = generated(factory, customers, seed, scopes, clock)
    shop = add_shop(engine, store.shop_domain, DEFAULT_TOKEN)
    assert shop.id is not None
    return clock, store, live, shop.id, replace(context(engine, http, live), clock=clock)


def held_ids(engine: Engine, shop_id: int) -> set[int]:
    with Session(engine) as session:
        return set(session.exec(select(Order.order_id).where(Order.shop_id == shop_id)))


async def backfill_job(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
    return await backfill_shop(ctx, shop, run_id)


async def test_a_backfill_without_read_all_orders_keeps_what_is_served_and_says_so(
    engine: Engine,
    devstore_factory: DevStoreFactory,
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a shop of three years' history whose token lacks read_all_orders, at the end of it
    clock, store, _live, shop_id, ctx = registered(
        engine, devstore_factory, http, 120, 31, APP_SCOPES
    )
    # when the whole history is backfilled
    with caplog.at_level(logging.WARNING, logger="jobs.backfill"):
        result = await run_job(ctx, shop_id, "backfill", backfill_job)
    # then the run read the orders of the last 60 days, and its counts say from when and why
    window_start = clock.now - ORDER_WINDOW
    served = [o for o in store.orders if created(o) >= window_start]
    assert result.outcome == OK, result.error
    assert 0 < len(served) < len(store.orders) / 4
    assert result.counts["read_all_orders"] is False
    assert result.counts["history_from"] == window_start.isoformat()
    assert result.counts["since"] is None and result.counts["orders_read"] == len(served)
    # and the ledger holds those orders only
    assert held_ids(engine, shop_id) == kept_ids(store.orders, window_start)
    # and the log says so, naming the shop and the date, never the token
    [warning] = [r.getMessage() for r in caplog.records if "read_all_orders" in r.getMessage()]
    assert store.shop_domain in warning and "history read from 2025-11-01 " + NOTE in warning
    assert DEFAULT_TOKEN not in caplog.text


async def test_a_backfill_without_the_scope_ends_the_wait_for_the_first_backfill(
    engine: Engine, devstore_factory: DevStoreFactory, http: httpx.AsyncClient
) -> None:
    # given a shop whose token lacks read_all_orders, backfilled as far as the store allows
    clock, _store, _live, shop_id, ctx = registered(
        engine, devstore_factory, http, 60, 32, APP_SCOPES
    )
    read = await run_job(ctx, shop_id, "backfill", scheduled_backfill)
    assert read.outcome == OK and read.counts["orders_applied"] > 0
    # when the scheduled rescore and push run
    await run_job(ctx, shop_id, "rescore", rescore)
    pushed = await run_job(ctx, shop_id, "push", push)
    # then the push writes to the store: the history read is all the store would give
    assert pushed.outcome == OK and pushed.counts != {"skipped": WAITING_FOR_BACKFILL}
    assert pushed.counts["tags_added"] > 0
    # but the shop's history is not taken as read whole by the daily run
    with Session(engine) as session:
        assert last_backfill_start(session, shop_id) == clock.now
        assert last_backfill_start(session, shop_id, complete=True) is None


async def test_the_daily_backfill_reads_the_whole_history_once_the_scope_is_granted(
    engine: Engine, devstore_factory: DevStoreFactory, http: httpx.AsyncClient
) -> None:
    # given a shop whose token lacked read_all_orders for its first two daily backfills
    clock, store, live, shop_id, ctx = registered(
        engine, devstore_factory, http, 80, 33, APP_SCOPES
    )
    first = await run_job(ctx, shop_id, "backfill", scheduled_backfill)
    clock.now += timedelta(days=1)
    second = await run_job(ctx, shop_id, "backfill", scheduled_backfill)
    # (each read the whole history the store would serve: neither is where a read starts)
    assert first.counts["since"] is None and first.counts["read_all_orders"] is False
    assert second.counts["since"] is None and second.counts["read_all_orders"] is False
    assert held_ids(engine, shop_id) == kept_ids(store.orders, clock.now - ORDER_WINDOW - OVERLAP)
    # when the merchant grants read_all_orders and the next daily run comes
    devstore_factory(live.state, DevStoreConfig())
    clock.now += timedelta(days=1)
    granted_at = clock.now
    third = await run_job(ctx, shop_id, "backfill", scheduled_backfill)
    # then it reads the whole history, not only the orders updated since the runs before
    assert third.outcome == OK, third.error
    assert third.counts["since"] is None and third.counts["read_all_orders"] is True
    assert third.counts["history_from"] is None
    assert third.counts["orders_read"] == len(store.orders)
    assert held_ids(engine, shop_id) == kept_ids(store.orders)
    # and the daily run after it reads from it, as before
    clock.now += timedelta(days=1)
    fourth = await run_job(ctx, shop_id, "backfill", scheduled_backfill)
    assert fourth.counts["since"] == (granted_at - OVERLAP).isoformat()


async def test_a_daily_run_without_the_scope_after_one_with_it_is_not_where_the_next_starts(
    engine: Engine, devstore_factory: DevStoreFactory, http: httpx.AsyncClient
) -> None:
    # given a daily backfill with read_all_orders, then one after the scope was taken away
    clock, _store, live, shop_id, ctx = registered(
        engine,
        devstore_factory,
        http,
        40,
        34,
        (*APP_SCOPES, "read_all_orders"),
        start=datetime(2025, 12, 1, tzinfo=UTC),
    )
    whole = await run_job(ctx, shop_id, "backfill", scheduled_backfill)
    assert whole.counts["read_all_orders"] is True and whole.counts["history_from"] is None
    devstore_factory(live.state, DevStoreConfig(access_scopes=APP_SCOPES))
    clock.now += timedelta(days=1)
    limited = await run_job(ctx, shop_id, "backfill", scheduled_backfill)
    assert limited.counts["read_all_orders"] is False
    # when the scope is granted again and the daily run comes
    devstore_factory(live.state, DevStoreConfig())
    clock.now += timedelta(days=1)
    again = await run_job(ctx, shop_id, "backfill", scheduled_backfill)
    # then it reads from the last run made with the scope: what the limited one was not
    # served (older orders updated meanwhile) is read
    assert again.counts["since"] == (datetime(2025, 12, 1, tzinfo=UTC) - OVERLAP).isoformat()


async def test_a_backfill_with_the_scope_reads_the_whole_history_and_says_nothing_more(
    engine: Engine, devstore_factory: DevStoreFactory, http: httpx.AsyncClient
) -> None:
    # given a shop whose token holds read_all_orders (the dev store's default)
    clock, store, _live, shop_id, ctx = registered(
        engine, devstore_factory, http, 40, 35, DevStoreConfig().access_scopes
    )
    # when it is backfilled, by the daily run and again
    first = await run_job(ctx, shop_id, "backfill", scheduled_backfill)
    clock.now += timedelta(days=1)
    second = await run_job(ctx, shop_id, "backfill", scheduled_backfill)
    # then the first read every order, the second from the first, as before the scopes
    assert first.counts["orders_read"] == len(store.orders) and first.counts["covers_all"]
    assert first.counts["read_all_orders"] is True and first.counts["history_from"] is None
    assert second.counts["since"] == (clock.now - timedelta(days=1) - OVERLAP).isoformat()
    assert held_ids(engine, shop_id) == kept_ids(store.orders)


class RefusingScopes(httpx.AsyncBaseTransport):
    """Loopback HTTP, but a query of the token's scopes is refused as ACCESS_DENIED."""

    def __init__(self) -> None:
        self._real = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if b"currentAppInstallation" in request.content:
            error = {"message": "Access denied", "extensions": {"code": "ACCESS_DENIED"}}
            return httpx.Response(200, json={"errors": [error]})
        return await self._real.handle_async_request(request)

    async def aclose(self) -> None:
        await self._real.aclose()


@pytest.fixture
async def refusing_http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=RefusingScopes(), timeout=10) as client:
        yield client


async def test_a_backfill_whose_scopes_are_refused_reads_on_but_is_not_taken_as_whole(
    engine: Engine, devstore_factory: DevStoreFactory, refusing_http: httpx.AsyncClient
) -> None:
    # given a store that serves every order but will not tell the token's scopes
    clock, store, _live, shop_id, ctx = registered(
        engine, devstore_factory, refusing_http, 30, 36, DevStoreConfig().access_scopes
    )
    # when it is backfilled
    result = await run_job(ctx, shop_id, "backfill", scheduled_backfill)
    # then it read what it was served, and says it cannot tell whether that was everything
    assert result.outcome == OK, result.error
    assert result.counts["orders_read"] == len(store.orders)
    assert result.counts["read_all_orders"] is None
    assert result.counts["history_from"] == (clock.now - ORDER_WINDOW).isoformat()
    with Session(engine) as session:
        assert last_backfill_start(session, shop_id) is not None
        assert last_backfill_start(session, shop_id, complete=True) is None


def recent_store(
    factory: DevStoreFactory, scopes: tuple[str, ...]
) -> tuple[GeneratedStore, LiveDevStore]:
    """A generated history ending now (the CLI runs on the real clock), in a dev store on the
    real clock whose token holds `scopes`."""
    start = datetime.now(UTC) - timedelta(days=365)
    store = generate_store(GeneratorConfig(customers=40, history_days=365, start=start), seed=37)
    state = DevStoreState(domain=store.shop_domain, currency_code=store.shop_currency)
    state.load(products=store.products, customers=store.customers, orders=store.orders)
    return store, factory(state, DevStoreConfig(access_scopes=scopes))


def test_backfill_command_without_the_scope_prints_from_when_history_was_read(
    engine: Engine, devstore_factory: DevStoreFactory, migrated_url: str
) -> None:
    # given a shop whose token lacks read_all_orders
    store, live = recent_store(devstore_factory, APP_SCOPES)
    add_shop(engine, store.shop_domain, DEFAULT_TOKEN)
    env = {**cli_env(migrated_url), "SHOPIFY_ADMIN_URL": live.base_url}
    # when it is backfilled from the command line, as text, as JSON and as the scheduled job
    days = {(datetime.now(UTC) - ORDER_WINDOW).date().isoformat()}
    text = CliRunner().invoke(main, ["backfill", "--shop", store.shop_domain], env=env)
    as_json = CliRunner().invoke(main, ["backfill", "--shop", store.shop_domain, "--json"], env=env)
    job = CliRunner().invoke(
        main, ["jobs", "run", "backfill", "--shop", store.shop_domain], env=env
    )
    days.add((datetime.now(UTC) - ORDER_WINDOW).date().isoformat())  # a run across midnight
    # then the text ends with one line saying from when the history was read, and why
    assert text.exit_code == 0, text.output
    counts_line, note = text.stdout.rstrip().splitlines()
    assert counts_line.endswith(", ok)")
    assert note in {f"history read from {day} {NOTE} without it" for day in days}, note
    # and the JSON says the same, as the run's counts do
    assert as_json.exit_code == 0, as_json.output
    summary = json.loads(as_json.stdout)
    assert summary["read_all_orders"] is False
    assert summary["history_from"][:10] in days
    # (the store's now is a moment before the test's: an order may have left the window since)
    served = [o for o in store.orders if created(o) >= datetime.now(UTC) - ORDER_WINDOW]
    assert 0 < len(served) <= summary["orders_read"] < len(store.orders)
    # and `jobs run backfill` says it after its JSON, on stderr: stdout stays the JSON alone
    assert job.exit_code == 0, job.output
    assert json.loads(job.stdout)["read_all_orders"] is False
    note = job.stderr.rstrip().splitlines()[-1]
    assert note in {f"history read from {day} {NOTE} without it" for day in days}, note


def test_backfill_command_with_the_scope_prints_the_counts_alone(
    engine: Engine, devstore_factory: DevStoreFactory, migrated_url: str
) -> None:
    store, live = recent_store(devstore_factory, DevStoreConfig().access_scopes)
    add_shop(engine, store.shop_domain, DEFAULT_TOKEN)
    env = {**cli_env(migrated_url), "SHOPIFY_ADMIN_URL": live.base_url}
    text = CliRunner().invoke(main, ["backfill", "--shop", store.shop_domain], env=env)
    assert text.exit_code == 0, text.output
    [counts_line] = text.stdout.rstrip().splitlines()
    assert counts_line.startswith(f"{len(store.orders):,} orders read: ")
    assert "history read from" not in text.output
    ran = CliRunner().invoke(
        main, ["jobs", "run", "backfill", "--shop", store.shop_domain], env=env
    )
    assert ran.exit_code == 0 and "history read from" not in ran.output, ran.output
