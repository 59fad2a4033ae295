"""`clvsync backfill`: a shop's order history read from the live dev store (one bulk query, over
real HTTP on loopback) into the ledger, compared with the ledger the same orders build as
webhook payloads."""

# ruff: noqa: F811  (the dev store's fixtures are imported, and used by name)

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlmodel import Session, select

from jobs.backfill import (
    APPLY_BATCH,
    OVERLAP,
    OrderDataError,
    apply_orders,
    backfill_shop,
    last_backfill_start,
    order_index,
    order_version,
    orders_query,
    scheduled_backfill,
)
from jobs.context import JobContext
from jobs.runs import OK, run_job
from plugin.cli import main
from plugin.devstore.config import DEFAULT_TOKEN, DevStoreConfig
from plugin.devstore.gen_config import GeneratorConfig
from plugin.devstore.generator import GeneratedStore, generate_store
from plugin.devstore.state import DevStoreState
from plugin.shopify.client import AuthError
from plugin.store import ledger, shops
from plugin.store.models import Customer, JobRun, Order, OrderLine, Shop
from tests.devstore.conftest import (  # noqa: F401
    DevStoreFactory,
    LiveDevStore,
    anyio_backend,
    devstore_factory,
    live_switch,
)
from tests.helpers import add_shop, make_settings
from tests.test_compliance import cli_env
from tests.test_job_runs import hold_lease
from webhooks.payloads import PayloadError, parse_order, parse_refund

pytestmark = pytest.mark.anyio

REFERENCE = "reference.myshopify.com"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def with_gift_card_and_custom_item(store: GeneratedStore) -> list[dict[str, Any]]:
    """The store's orders, one of them with a gift card line and a custom item added (the
    generator makes no gift cards, and custom items only in some orders)."""
    orders = [dict(o) for o in store.orders]
    first = next(i for i, o in enumerate(orders) if o.get("customer") and not o.get("test"))
    line = orders[first]["line_items"][0]
    extra = [
        {**line, "id": 9_000_000_001, "gift_card": True},
        {**line, "id": 9_000_000_002, "product_id": None, "variant_id": None, "product_type": None},
    ]
    orders[first] = {**orders[first], "line_items": [*orders[first]["line_items"], *extra]}
    return orders


def live_store(
    factory: DevStoreFactory,
    store: GeneratedStore,
    orders: list[dict[str, Any]] | None = None,
    config: DevStoreConfig | None = None,
) -> LiveDevStore:
    state = DevStoreState(domain=store.shop_domain, currency_code=store.shop_currency)
    chosen = store.orders if orders is None else orders
    state.load(products=store.products, customers=store.customers, orders=chosen)
    return factory(state, config)


def installed(
    engine: Engine, factory: DevStoreFactory, customers: int, seed: int, token: str = DEFAULT_TOKEN
) -> tuple[GeneratedStore, LiveDevStore, Shop]:
    """A generated store's history in a live dev store, and the shop registered with a token."""
    store = generate_store(GeneratorConfig(customers=customers), seed=seed)
    return store, live_store(factory, store), add_shop(engine, store.shop_domain, token)


def context(engine: Engine, http: httpx.AsyncClient, live: LiveDevStore) -> JobContext:
    async def sleep(seconds: float) -> None:
        await anyio.sleep(min(seconds, 0.01))

    settings = make_settings(SHOPIFY_ADMIN_URL=live.base_url)
    return JobContext(engine, settings, http, "test-worker", sleep=sleep)


def apply_payloads(engine: Engine, domain: str, payloads: list[dict[str, Any]]) -> None:
    """The orders as their webhooks would leave them in the ledger."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        shop = shops.get_shop(session, domain)
        assert shop is not None
        for payload in payloads:
            ledger.apply_order(session, shop, parse_order(payload))


def shop_id(engine: Engine, domain: str) -> int:
    with Session(engine) as session:
        shop = shops.get_shop(session, domain)
        assert shop is not None and shop.id is not None
        return shop.id


def ledger_of(engine: Engine, domain: str) -> dict[str, Any]:
    """What the figures stand on: customers' aggregates, orders' value, lines' products."""
    sid = shop_id(engine, domain)
    with Session(engine) as session:
        customers = {
            c.customer_id: (c.orders, c.net_spend, c.first_order_at, c.last_order_at)
            for c in session.exec(select(Customer).where(Customer.shop_id == sid))
        }
        orders = {
            o.order_id: (
                o.customer_id,
                o.counted,
                o.net_amount,
                o.current_total,
                o.financial_status,
                o.processed_at,
                o.cancelled_at,
            )
            for o in session.exec(select(Order).where(Order.shop_id == sid))
        }
        lines = {
            (line.order_id, line.line_id): (
                line.product_id,
                line.product_type,
                line.quantity,
                line.current_quantity,
                line.price,
                line.gift_card,
            )
            for line in session.exec(select(OrderLine).where(OrderLine.shop_id == sid))
        }
    return {"customers": customers, "orders": orders, "lines": lines}


async def backfill(
    engine: Engine, http: httpx.AsyncClient, live: LiveDevStore, **options: Any
) -> dict[str, Any]:
    sid = shop_id(engine, live.state.domain)

    async def job(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
        return await backfill_shop(ctx, shop, run_id, **options)

    result = await run_job(context(engine, http, live), sid, "backfill", job)
    assert result.outcome == OK, result.error
    return dict(result.counts)


async def test_backfill_builds_the_ledger_the_order_webhooks_build(
    engine: Engine, devstore_factory: DevStoreFactory, http: httpx.AsyncClient
) -> None:
    # given a generated store's history in the dev store (refunds, cancellations, test and
    # guest orders, several currencies; a gift card and a custom item added), and the same
    # orders applied as webhook payloads to a reference shop
    store = generate_store(GeneratorConfig(customers=120), seed=5)
    orders = with_gift_card_and_custom_item(store)
    live = live_store(devstore_factory, store, orders)
    add_shop(engine, store.shop_domain, DEFAULT_TOKEN)
    add_shop(engine, REFERENCE)
    apply_payloads(engine, REFERENCE, orders)
    # and, for one refunded order, its refunds/create webhook already processed (before any of
    # the order's own)
    refunded = next(o for o in orders if o.get("refunds") and not o.get("test"))
    with Session(engine, expire_on_commit=False) as session, session.begin():
        shop = shops.get_shop(session, store.shop_domain)
        assert shop is not None
        for refund in refunded["refunds"]:
            ledger.apply_refund(session, shop, parse_refund({"order_id": refunded["id"], **refund}))
    # when the shop is backfilled from the store
    counts = await backfill(engine, http, live)
    # then every order was read, the test orders left out, and the ledger is the reference's
    tests = sum(bool(o.get("test")) for o in orders)
    assert counts["orders_read"] == len(orders)
    assert counts["test_orders_skipped"] == tests > 0
    assert counts["orders_applied"] == len(orders) - tests
    assert counts["orders_unchanged"] == counts["orders_rejected"] == 0
    ours, reference = ledger_of(engine, store.shop_domain), ledger_of(engine, REFERENCE)
    assert ours == reference
    lines = ours["lines"].values()
    sent = [line for o in orders if not o.get("test") for line in o["line_items"]]
    gift_cards = sum(bool(line["gift_card"]) for line in sent)
    custom_items = sum(line["product_id"] is None for line in sent)
    assert sum(line[5] for line in lines) == gift_cards >= 1
    assert sum(line[0] is None for line in lines) == custom_items >= 1
    not_counted = sum(not counted for _, counted, *_ in ours["orders"].values())
    guests = sum(customer is None for customer, *_ in ours["orders"].values())
    assert not_counted > 0 and guests > 0 and len(ours["customers"]) > 50


async def test_backfill_again_changes_nothing_and_keeps_newer_webhook_versions(
    engine: Engine, devstore_factory: DevStoreFactory, http: httpx.AsyncClient
) -> None:
    # given a backfilled shop, one of whose orders then came cancelled by a webhook
    store, live, _ = installed(engine, devstore_factory, 60, 7)
    await backfill(engine, http, live)
    counted = next(o for o in store.orders if not o.get("test") and o.get("customer"))
    later = datetime.fromisoformat(counted["updated_at"]) + timedelta(days=1)
    cancelled = {**counted, "updated_at": later.isoformat(), "cancelled_at": later.isoformat()}
    apply_payloads(engine, store.shop_domain, [cancelled])
    before = ledger_of(engine, store.shop_domain)
    # when it is backfilled again
    counts = await backfill(engine, http, live)
    # then nothing was applied: the store's older version of that order lost to the webhook's
    assert counts["orders_applied"] == 0
    assert counts["orders_unchanged"] == len(store.orders) - counts["test_orders_skipped"]
    after = ledger_of(engine, store.shop_domain)
    assert after == before
    assert after["orders"][counted["id"]][1] is False  # cancelled: not counted


async def test_backfill_after_the_webhooks_applies_nothing(
    engine: Engine, devstore_factory: DevStoreFactory, http: httpx.AsyncClient
) -> None:
    # given a shop whose orders all came by webhook, in the versions the store holds
    store, live, _ = installed(engine, devstore_factory, 60, 8)
    apply_payloads(engine, store.shop_domain, store.orders)
    before = ledger_of(engine, store.shop_domain)
    with Session(engine) as session:
        versions = {c.customer_id: c.ledger_version for c in session.exec(select(Customer))}
    # when it is backfilled
    counts = await backfill(engine, http, live)
    # then each order is the version already held (same stamp, read another way): none is
    # rewritten, and no customer's ledger moves (which would have them re-scored)
    assert counts["orders_applied"] == 0
    assert counts["orders_unchanged"] == len(store.orders) - counts["test_orders_skipped"]
    assert ledger_of(engine, store.shop_domain) == before
    with Session(engine) as session:
        assert {c.customer_id: c.ledger_version for c in session.exec(select(Customer))} == versions


async def test_backfill_since_reads_only_the_orders_updated_since(
    engine: Engine, devstore_factory: DevStoreFactory, http: httpx.AsyncClient
) -> None:
    store, live, _ = installed(engine, devstore_factory, 60, 9)
    stamps = sorted(datetime.fromisoformat(o["updated_at"]) for o in store.orders)
    since = stamps[len(stamps) // 2]
    counts = await backfill(engine, http, live, since=since)
    assert counts["orders_read"] == sum(s >= since for s in stamps)
    with Session(engine) as session:
        held = session.exec(select(Order)).all()
    assert held and all(o.updated_at >= since for o in held)
    # and nothing updated since: an empty export, nothing read
    later = await backfill(engine, http, live, since=stamps[-1] + timedelta(days=1))
    assert later["orders_read"] == later["orders_applied"] == 0


async def test_scheduled_backfill_reads_all_then_what_changed_since_the_last_run(
    engine: Engine, devstore_factory: DevStoreFactory, http: httpx.AsyncClient
) -> None:
    # given a shop whose last successful backfill began mid-history
    store, live, shop = installed(engine, devstore_factory, 60, 10)
    assert shop.id is not None
    stamps = sorted(datetime.fromisoformat(o["updated_at"]) for o in store.orders)
    middle = stamps[len(stamps) // 2]
    ctx = replace(context(engine, http, live), clock=lambda: middle)
    first = await run_job(ctx, shop.id, "backfill", scheduled_backfill)
    # when the daily job runs again
    second = await run_job(ctx, shop.id, "backfill", scheduled_backfill)
    # then the first read the whole history, the second what was updated since a day before
    # the first began
    assert first.outcome == second.outcome == OK
    assert first.counts["since"] is None and first.counts["orders_read"] == len(stamps)
    since = middle - OVERLAP
    assert second.counts["since"] == since.isoformat()
    assert second.counts["orders_read"] == sum(s >= since for s in stamps) < len(stamps)


async def test_an_order_a_daily_run_left_out_as_unreadable_is_read_by_the_next_one(
    engine: Engine, devstore_factory: DevStoreFactory, http: httpx.AsyncClient
) -> None:
    # given a shop backfilled mid-history, one of whose orders was then cancelled in the
    # store, and the next daily run, which could not read that order's new version (a date
    # without its zone: a shape that release could not read)
    store, live, shop = installed(engine, devstore_factory, 40, 21)
    assert shop.id is not None
    stamps = sorted(datetime.fromisoformat(o["updated_at"]) for o in store.orders)
    middle, last = stamps[len(stamps) // 2], stamps[-1]
    base = context(engine, http, live)
    first = await run_job(replace(base, clock=lambda: middle), shop.id, "backfill", backfill_job)
    assert first.outcome == OK and first.counts["orders_rejected"] == 0
    victim = live.state.orders[next(o["id"] for o in store.orders if not o.get("test"))]
    cancelled = last + timedelta(hours=1)
    victim.updated_at = victim.cancelled_at = cancelled.strftime("%Y-%m-%dT%H:%M:%SZ")
    readable, victim.processed_at = victim.processed_at, "2026-01-02T03:04:05"
    daily = replace(base, clock=lambda: last + timedelta(days=2))
    second = await run_job(daily, shop.id, "backfill", scheduled_backfill)
    assert second.outcome == OK and second.counts["orders_rejected"] == 1
    # when the cause is gone (a release that reads it) and the daily run comes again
    victim.processed_at = readable
    third = await run_job(
        replace(base, clock=lambda: last + timedelta(days=3)),
        shop.id,
        "backfill",
        scheduled_backfill,
    )
    # then it read from where the run that left the order out had, and the ledger holds the
    # order cancelled
    assert third.outcome == OK and third.counts["orders_rejected"] == 0
    assert third.counts["since"] == second.counts["since"] == (middle - OVERLAP).isoformat()
    with Session(engine) as session:
        held = session.get(Order, (shop.id, victim.id))
    assert held is not None and held.cancelled_at is not None and not held.counted
    # and the run that read everything is where the next one starts
    fourth = await run_job(
        replace(base, clock=lambda: last + timedelta(days=4)),
        shop.id,
        "backfill",
        scheduled_backfill,
    )
    assert fourth.counts["since"] == (last + timedelta(days=3) - OVERLAP).isoformat()


async def test_a_run_that_left_orders_out_still_counts_as_the_first_backfill(
    engine: Engine, devstore_factory: DevStoreFactory, http: httpx.AsyncClient
) -> None:
    # given a first backfill of the whole history that could not read one order
    store, live, shop = installed(engine, devstore_factory, 20, 22)
    assert shop.id is not None
    victim = live.state.orders[store.orders[0]["id"]]
    victim.processed_at = "2026-01-02T03:04:05"
    first = await run_job(context(engine, http, live), shop.id, "backfill", scheduled_backfill)
    assert first.outcome == OK and first.counts["orders_rejected"] == 1
    with Session(engine) as session:
        # then the shop's history counts as read (the scheduled push waits for nothing more),
        # but the daily run reads the whole history again
        assert last_backfill_start(session, shop.id) is not None
        assert last_backfill_start(session, shop.id, complete=True) is None
    again = await run_job(context(engine, http, live), shop.id, "backfill", scheduled_backfill)
    assert again.counts["since"] is None and again.counts["orders_rejected"] == 1


async def test_a_backfill_asked_for_since_a_date_never_starts_the_daily_run(
    engine: Engine, devstore_factory: DevStoreFactory, http: httpx.AsyncClient
) -> None:
    # given a full backfill at one moment, then one asked for since a date, later
    store, live, shop = installed(engine, devstore_factory, 40, 12)
    assert shop.id is not None
    stamps = sorted(datetime.fromisoformat(o["updated_at"]) for o in store.orders)
    full_at, partial_at = stamps[len(stamps) // 3], stamps[2 * len(stamps) // 3]
    base = context(engine, http, live)

    async def partial(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
        return await backfill_shop(ctx, shop, run_id, since=partial_at)

    full = await run_job(replace(base, clock=lambda: full_at), shop.id, "backfill", backfill_job)
    part = await run_job(replace(base, clock=lambda: partial_at), shop.id, "backfill", partial)
    assert full.counts["covers_all"] is True and part.counts["covers_all"] is False
    # when the daily run comes
    daily = await run_job(base, shop.id, "backfill", scheduled_backfill)
    # then it reads from the full one, not from the partial one, which left a gap before it
    assert daily.counts["since"] == (full_at - OVERLAP).isoformat()
    assert daily.counts["covers_all"] is True


async def backfill_job(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
    return await backfill_shop(ctx, shop, run_id)


async def test_a_backfill_whose_token_is_refused_marks_the_shop_for_reauthorisation(
    engine: Engine, devstore_factory: DevStoreFactory, http: httpx.AsyncClient
) -> None:
    # given a shop whose token the store no longer takes
    _, live, shop = installed(engine, devstore_factory, 20, 3, token="shpat_revoked")
    # when it is backfilled, then the run fails on the 401 and the shop is marked
    with pytest.raises(AuthError):
        await backfill_shop(context(engine, http, live), shop, None)
    with Session(engine) as session:
        stored = session.get(Shop, shop.id)
    assert stored is not None and stored.needs_reauth


def test_backfill_command_reports_the_run(
    engine: Engine, devstore_factory: DevStoreFactory, migrated_url: str
) -> None:
    store, live, _ = installed(engine, devstore_factory, 40, 11)
    env = {**cli_env(migrated_url), "SHOPIFY_ADMIN_URL": live.base_url}
    args = ["backfill", "--shop", store.shop_domain, "--json"]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["outcome"] == "ok" and summary["orders_read"] == len(store.orders)
    assert "orders processed:" in result.stderr and "bulk query completed:" in result.stderr
    # an unknown shop is refused by name
    result = CliRunner().invoke(main, ["backfill", "--shop", "nope.myshopify.com"], env=env)
    assert result.exit_code != 0 and "no shop 'nope.myshopify.com'" in result.output


def test_backfill_command_since_reads_from_that_day_in_utc(
    engine: Engine, devstore_factory: DevStoreFactory, migrated_url: str
) -> None:
    store, live, _ = installed(engine, devstore_factory, 40, 11)
    stamps = sorted(datetime.fromisoformat(o["updated_at"]) for o in store.orders)
    day = stamps[len(stamps) // 2].astimezone(UTC).date()
    env = {**cli_env(migrated_url), "SHOPIFY_ADMIN_URL": live.base_url}
    # when backfilled from a day, given as the help says (a day, UTC)
    args = ["backfill", "--shop", store.shop_domain, "--since", day.isoformat(), "--json"]
    result = CliRunner().invoke(main, args, env=env)
    # then the orders updated from that day's UTC midnight on are read, and the run says so
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    assert summary["since"] == midnight.isoformat()
    assert 0 < summary["orders_read"] == sum(s >= midnight for s in stamps) < len(stamps)


def test_backfill_command_progress_counts_orders_processed_not_applied(
    engine: Engine, devstore_factory: DevStoreFactory, migrated_url: str
) -> None:
    # given a shop backfilled once
    store, live, _ = installed(engine, devstore_factory, 20, 23)
    env = {**cli_env(migrated_url), "SHOPIFY_ADMIN_URL": live.base_url}
    args = ["backfill", "--shop", store.shop_domain]
    assert CliRunner().invoke(main, args, env=env).exit_code == 0
    # when it is backfilled again, with nothing new in the store
    again = CliRunner().invoke(main, args, env=env)
    # then its summary says none was applied, and its progress that all were processed
    assert again.exit_code == 0, again.output
    n = len(store.orders)
    assert f"{n:,} orders read: 0 applied, " in again.stdout, again.stdout
    assert f"orders processed: {n:,}/{n:,} (100%)" in again.stderr, again.stderr
    assert "orders applied" not in again.stderr


def test_backfill_of_a_shop_without_a_token_fails_with_the_reason(
    engine: Engine, devstore_factory: DevStoreFactory, migrated_url: str
) -> None:
    store, live, _ = installed(engine, devstore_factory, 20, 13, "shpat_revoked")
    env = {**cli_env(migrated_url), "SHOPIFY_ADMIN_URL": live.base_url}
    result = CliRunner().invoke(main, ["backfill", "--shop", store.shop_domain], env=env)
    assert result.exit_code == 1
    assert "AuthError" in result.stderr and "shpat_revoked" not in result.output


def test_a_failed_backfill_with_json_says_why_in_its_json(
    engine: Engine, devstore_factory: DevStoreFactory, migrated_url: str
) -> None:
    store, live, _ = installed(engine, devstore_factory, 20, 13, "shpat_revoked")
    env = {**cli_env(migrated_url), "SHOPIFY_ADMIN_URL": live.base_url}
    args = ["backfill", "--shop", store.shop_domain, "--json"]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert summary["outcome"] == "failed" and summary["run_id"]
    assert "AuthError" in summary["error"] and "shpat_revoked" not in result.output


def test_backfill_command_without_json_names_the_run_and_its_outcome(
    engine: Engine, devstore_factory: DevStoreFactory, migrated_url: str
) -> None:
    # given a shop whose store holds orders the ledger lacks
    store, live, shop = installed(engine, devstore_factory, 20, 5)  # with test orders
    env = {**cli_env(migrated_url), "SHOPIFY_ADMIN_URL": live.base_url}
    # when it is backfilled without --json
    result = CliRunner().invoke(main, ["backfill", "--shop", store.shop_domain], env=env)
    # then its line names the job run recorded and how it ended, as --json does
    assert result.exit_code == 0, result.output
    [run] = job_runs(engine, shop)
    assert run.outcome == OK
    assert result.stdout.startswith(f"{len(store.orders):,} orders read: ")
    assert result.stdout.rstrip().endswith(f" s; run {run.id}, ok)"), result.stdout
    # and says each count by its name, as the run recorded them
    counts = json.loads(run.counts)
    assert counts["test_orders_skipped"] > counts["orders_rejected"] == 0  # told apart below
    assert (
        f"{counts['orders_read']:,} orders read: {counts['orders_applied']:,} applied, "
        f"{counts['orders_unchanged']:,} already held, {counts['test_orders_skipped']:,} test "
        f"orders skipped, {counts['orders_rejected']:,} unreadable ("
    ) in result.stdout
    # after saying, first, how it reads them
    assert result.stderr.startswith(
        f"reading {store.shop_domain}'s orders with a bulk query ...\n"
    ), result.stderr


def test_backfill_command_while_another_worker_backfills_is_not_run_nor_recorded(
    engine: Engine, devstore_factory: DevStoreFactory, migrated_url: str
) -> None:
    # given a shop whose backfill lease another worker holds
    store, live, shop = installed(engine, devstore_factory, 20, 17)
    hold_lease(engine, shop, "backfill", "other-host:42", shop.installed_at + timedelta(days=3650))
    env = {**cli_env(migrated_url), "SHOPIFY_ADMIN_URL": live.base_url}
    # when backfilled from the command line
    result = CliRunner().invoke(main, ["backfill", "--shop", store.shop_domain], env=env)
    # then it says it was not run, and that no run was recorded
    assert result.exit_code == 1, result.output
    assert "backfill skipped (not recorded): " in result.stderr, result.stderr
    assert "other-host:42" in result.stderr
    assert job_runs(engine, shop) == []


def test_backfill_command_that_fails_names_the_failed_run(
    engine: Engine, devstore_factory: DevStoreFactory, migrated_url: str
) -> None:
    # given a shop whose token the store no longer takes
    store, live, shop = installed(engine, devstore_factory, 20, 19, "shpat_revoked")
    env = {**cli_env(migrated_url), "SHOPIFY_ADMIN_URL": live.base_url}
    # when it is backfilled, then the failure names the run it recorded
    result = CliRunner().invoke(main, ["backfill", "--shop", store.shop_domain], env=env)
    assert result.exit_code == 1
    [run] = job_runs(engine, shop)
    assert f"backfill failed (run {run.id}): AuthError" in result.stderr, result.stderr


def job_runs(engine: Engine, shop: Shop) -> list[JobRun]:
    with Session(engine) as session:
        return list(session.exec(select(JobRun).where(JobRun.shop_id == shop.id)))


ORDER = {
    "id": "gid://shopify/Order/10",
    "customer": {"id": "gid://shopify/Customer/7"},
    "createdAt": "2026-01-02T03:04:05Z",
    "processedAt": "2026-01-02T03:04:05Z",
    "updatedAt": "2026-01-03T00:00:00Z",
    "cancelledAt": None,
    "test": False,
    "displayFinancialStatus": "PARTIALLY_REFUNDED",
    "currencyCode": "EUR",
    "presentmentCurrencyCode": "USD",
    "totalPriceSet": {"shopMoney": {"amount": "30.00", "currencyCode": "EUR"}},
    "currentTotalPriceSet": {"shopMoney": {"amount": "20.00", "currencyCode": "EUR"}},
    "refunds": [{"id": "gid://shopify/Refund/5", "createdAt": "2026-01-03T00:00:00Z"}],
}
LINE = {
    "id": "gid://shopify/LineItem/11",
    "quantity": 2,
    "currentQuantity": 1,
    "isGiftCard": False,
    "sku": "",
    "product": {"id": "gid://shopify/Product/3", "productType": "Coffee"},
    "variant": {"id": "gid://shopify/ProductVariant/4"},
    "originalUnitPriceSet": {"shopMoney": {"amount": "15.00"}},
    "totalDiscountSet": {"shopMoney": {"amount": "0.00"}},
    "__parentId": "gid://shopify/Order/10",
}


def test_order_version_reads_what_the_ledger_keeps() -> None:
    version = order_version(ORDER, [LINE])
    assert (version.order_id, version.customer_id, version.currency) == (10, 7, "EUR")
    assert (version.total, version.current_total) == (Decimal("30.00"), Decimal("20.00"))
    assert version.financial_status == "partially_refunded"
    assert version.updated_at == datetime(2026, 1, 3, tzinfo=UTC)
    assert [r.refund_id for r in version.refunds] == [5]
    [line] = version.lines
    assert (line.line_id, line.product_id, line.variant_id, line.product_type) == (
        11,
        3,
        4,
        "Coffee",
    )
    assert (line.quantity, line.current_quantity, line.price, line.sku) == (
        2,
        1,
        Decimal("15.00"),
        None,
    )
    custom = order_version(ORDER, [{**LINE, "product": None, "variant": None}]).lines[0]
    assert (custom.product_id, custom.product_type) == (None, None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "10"}, "id: expected a global id"),
        ({"createdAt": "yesterday"}, "createdAt: not an ISO 8601 date-time"),
        ({"createdAt": "2026-01-02T03:04:05"}, "createdAt: no time zone"),
        ({"currentTotalPriceSet": {"shopMoney": {"amount": "x", "currencyCode": "EUR"}}}, "amount"),
        ({"currentTotalPriceSet": None, "currencyCode": None}, "currency: expected"),
        ({"customer": "gid://shopify/Customer/7"}, "customer: expected an object"),
        ({"currentTotalPriceSet": "20.00", "currencyCode": None}, "currency: expected"),
        ({"refunds": ["gid://shopify/Refund/5"]}, r"refunds\[0\]: expected an object"),
    ],
)
def test_order_version_names_the_field_it_cannot_read(change: dict[str, Any], message: str) -> None:
    with pytest.raises(OrderDataError, match=message):
        order_version({**ORDER, **change}, [LINE])


WEBHOOK_ORDER = {
    "id": 10,
    "currency": "EUR",
    "created_at": "2026-01-02T03:04:05Z",
    "updated_at": "2026-01-03T00:00:00Z",
    "total_price_set": {"shop_money": {"amount": "30.00"}},
    "current_total_price_set": {"shop_money": {"amount": "30.00"}},
    "line_items": [{"id": 11, "quantity": 2, "price": "15.00"}],
}
NAN_TOTAL = {"currentTotalPriceSet": {"shopMoney": {"amount": "NaN", "currencyCode": "EUR"}}}


@pytest.mark.parametrize(
    ("bulk_change", "line_change", "webhook_change", "message"),
    [
        (NAN_TOTAL, {}, {"current_total_price_set": {"shop_money": {"amount": "NaN"}}}, "finite"),
        (
            {"totalPriceSet": {"shopMoney": {"amount": "-Infinity"}}},
            {},
            {"total_price_set": {"shop_money": {"amount": "-Infinity"}}},
            "totalPriceSet.shopMoney.amount: not a finite amount",
        ),
        (
            {},
            {"originalUnitPriceSet": {"shopMoney": {"amount": "sNaN"}}},
            {"line_items": [{"id": 11, "quantity": 2, "price": "sNaN"}]},
            r"lineItems\[0\].originalUnitPriceSet.shopMoney.amount: not a finite amount",
        ),
        (
            {"processedAt": "9999-12-31T23:59:59Z"},
            {},
            {"processed_at": "9999-12-31T23:59:59Z"},
            "processedAt: .* not between 1970 and 2200",
        ),
        (
            {"createdAt": "1900-01-01T00:00:00Z"},
            {},
            {"created_at": "1900-01-01T00:00:00Z"},
            "createdAt: .* not between 1970 and 2200",
        ),
        (
            {"cancelledAt": "9999-12-31T23:59:59-05:00"},  # past the calendar once in UTC
            {},
            {"cancelled_at": "9999-12-31T23:59:59-05:00"},
            "cancelledAt: not an ISO 8601 date-time in range",
        ),
        ({"id": "gid://shopify/Order/0"}, {}, {"id": 0}, "id: 0 is not an id"),
        (
            {"customer": {"id": f"gid://shopify/Customer/{2**63}"}},
            {},
            {"customer": {"id": 2**63}},
            f"customer.id: {2**63} is not an id",
        ),
        (
            {"currentTotalPriceSet": {"shopMoney": {"amount": "1e30", "currencyCode": "EUR"}}},
            {},
            {"current_total_price_set": {"shop_money": {"amount": "1e30"}}},
            "currentTotalPriceSet.shopMoney.amount: '1e30' is out of range",
        ),
        (
            {},
            {"quantity": True},
            {"line_items": [{"id": 11, "quantity": True, "price": "15.00"}]},
            r"lineItems\[0\]: quantity and currentQuantity: expected a whole number, got True",
        ),
        (
            {},
            {"currentQuantity": 2**31},
            {"line_items": [{"id": 11, "quantity": 2, "current_quantity": 2**31, "price": "1"}]},
            r"lineItems\[0\]: quantity and currentQuantity: 2147483648 is out of range",
        ),
    ],
    ids=[
        "nan",
        "infinity",
        "line-snan",
        "year-9999",
        "year-1900",
        "overflow",
        "id-0",
        "id-2^63",
        "amount-1e30",
        "quantity-bool",
        "quantity-2^31",
    ],
)
def test_the_backfill_refuses_what_the_webhook_parser_refuses(
    bulk_change: dict[str, Any],
    line_change: dict[str, Any],
    webhook_change: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(PayloadError):
        parse_order({**WEBHOOK_ORDER, **webhook_change})
    with pytest.raises(OrderDataError, match=message):
        order_version({**ORDER, **bulk_change}, [{**LINE, **line_change}])


def test_an_order_with_a_nan_amount_is_left_out_alone(engine: Engine, tmp_path: Path) -> None:
    # given an export whose order 10 has a NaN total, beside a readable order 20
    shop = add_shop(engine, "nan.myshopify.com")
    ctx = JobContext(engine, make_settings(), http=None)  # type: ignore[arg-type]
    other = {**ORDER, "id": "gid://shopify/Order/20"}
    other_line = {**LINE, "id": "gid://shopify/LineItem/21", "__parentId": other["id"]}
    listed = [{**ORDER, **NAN_TOTAL}, LINE, other, other_line]
    # when it is applied
    counts = apply_orders(ctx, shop, export_of(tmp_path / "orders.jsonl", listed))
    # then order 10 is rejected, and order 20 applied
    assert (counts["read"], counts["applied"], counts["rejected"]) == (2, 1, 1)
    with Session(engine) as session:
        assert [order.order_id for order in session.exec(select(Order))] == [20]


def test_line_items_are_read_with_their_order_wherever_they_come(tmp_path: Path) -> None:
    # given an ungrouped export (API 2026-01 on): order 20's line before it, order 10's lines
    # one right after it and one after order 20, and a line of an order never listed
    other = {**ORDER, "id": "gid://shopify/Order/20"}
    late = {**LINE, "id": "gid://shopify/LineItem/12"}
    stray = {**LINE, "id": "gid://shopify/LineItem/99", "__parentId": "gid://shopify/Order/99"}
    early = {**LINE, "id": "gid://shopify/LineItem/21", "__parentId": "gid://shopify/Order/20"}
    export = tmp_path / "orders.jsonl"
    lines = [early, ORDER, LINE, other, late, stray]
    export.write_text("".join(json.dumps(line) + "\n" for line in lines) + "\n")
    # then every order is read with all of its lines, in the export's order
    with order_index(export) as index:
        assert index.orders == 2 and index.orphans == 1
        read = [(o["id"], [i["id"] for i in items]) for o, items in index.read()]
    assert read == [
        ("gid://shopify/Order/10", ["gid://shopify/LineItem/11", "gid://shopify/LineItem/12"]),
        ("gid://shopify/Order/20", ["gid://shopify/LineItem/21"]),
    ]
    # and the index is gone with the block
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orders.jsonl"]


def export_of(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.mark.parametrize(
    "listed",
    [[ORDER, LINE, ORDER, LINE], [ORDER, LINE, LINE], [LINE, ORDER, ORDER]],
    ids=["order-and-line-twice", "line-twice", "order-twice-line-once"],
)
def test_an_order_or_line_item_listed_twice_is_applied_once(
    engine: Engine, tmp_path: Path, listed: list[dict[str, Any]]
) -> None:
    # given an export that lists an order, or its line item, twice
    shop = add_shop(engine, "twice.myshopify.com")
    ctx = JobContext(engine, make_settings(), http=None)  # type: ignore[arg-type]
    # when it is applied
    counts = apply_orders(ctx, shop, export_of(tmp_path / "orders.jsonl", listed))
    # then the order is read and applied once, with its line once
    assert counts["read"] == counts["applied"] == 1 and counts["rejected"] == 0
    with Session(engine) as session:
        assert [line.line_id for line in session.exec(select(OrderLine))] == [11]


def test_a_line_item_listed_twice_makes_the_version_listed_once() -> None:
    # the same version, digest and all: a later export listing it once changes nothing
    assert order_version(ORDER, [LINE, LINE]) == order_version(ORDER, [LINE])
    other = {**LINE, "id": "gid://shopify/LineItem/12"}
    lines = order_version(ORDER, [LINE, other, LINE]).lines
    assert [line.line_id for line in lines] == [11, 12]


def test_an_order_without_line_items_is_read_with_none(tmp_path: Path) -> None:
    export = tmp_path / "orders.jsonl"
    export.write_text(json.dumps(ORDER) + "\n")
    with order_index(export) as index:
        assert [(o["id"], items) for o, items in index.read()] == [(ORDER["id"], [])]


def test_orders_query_filters_on_the_update_time_quoted() -> None:
    # Shopify's search syntax: "Date values must be a string surrounded by quotes" (unquoted,
    # a date-time's time is not taken as given)
    assert "orders {" in orders_query(None)
    since = datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert """orders(query: "updated_at:>='2026-03-01T12:00:00Z'")""" in orders_query(since)


async def test_backfill_restores_the_lines_an_older_release_left_out(
    engine: Engine, devstore_factory: DevStoreFactory, http: httpx.AsyncClient
) -> None:
    # given a backfilled shop some of whose orders lost their lines, as an older release's
    # backfill left them (line items that came before their order in the export were dropped)
    store, live, _ = installed(engine, devstore_factory, 60, 9)
    await backfill(engine, http, live)
    whole = ledger_of(engine, store.shop_domain)
    sid = shop_id(engine, store.shop_domain)
    stripped = sorted({order for order, _ in whole["lines"]})[::3]
    with Session(engine) as session, session.begin():
        for order_id in stripped:
            for line in session.exec(
                select(OrderLine).where(OrderLine.shop_id == sid, OrderLine.order_id == order_id)
            ):
                session.delete(line)
    # when it is backfilled again, then those orders are applied and hold their lines again
    counts = await backfill(engine, http, live)
    assert counts["orders_applied"] == len(stripped)
    assert ledger_of(engine, store.shop_domain) == whole
    # and a further backfill has nothing left to repair
    assert (await backfill(engine, http, live))["orders_applied"] == 0


def test_a_shop_erased_while_its_backfill_applies_ends_the_run_cleanly(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # given an export of two batches' worth of orders, and a shop/redact that erases the shop
    # once the first batch is applied
    shop = add_shop(engine, "erased.myshopify.com")
    ctx = JobContext(engine, make_settings(), http=None)  # type: ignore[arg-type]
    listed = [
        {**ORDER, "id": f"gid://shopify/Order/{n}", "refunds": []}
        for n in range(1, APPLY_BATCH + 2)
    ]
    export = export_of(tmp_path / "orders.jsonl", listed)

    def erase(done: int, read: int) -> None:
        if done == APPLY_BATCH:
            with Session(engine) as session, session.begin():
                stored = session.get(Shop, shop.id)
                assert stored is not None
                shops.forget_shop(session, stored)

    # when it is backfilled
    counts = apply_orders(ctx, shop, export, progress=erase)
    # then the run stops there, without an error, saying why
    assert (counts["read"], counts["applied"], counts["erased"]) == (
        APPLY_BATCH + 1,
        APPLY_BATCH,
        1,
    )
    assert any("the shop was erased" in r.getMessage() for r in caplog.records)
    with Session(engine) as session:
        assert session.exec(select(Order)).first() is None
