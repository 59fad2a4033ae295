"""`clvsync demo`: the whole product against the dev store, on loopback, with no credentials.

It starts the dev store and the app, generates a store, delivers its history to the app as
signed webhooks (as Shopify would), waits until the app has processed them, scores every
customer, computes the recommendations, pushes tags and metafields to the dev store, prints
a summary (one JSON object with --json), and then either stays up (printing where to look) or,
with --once, stops both.

The generated history ends at the start of the current day (UTC), not at a fixed date: staying
up, the app's scheduled jobs run on the real clock (as every other command does), and find a
store whose history ended hours ago, not months ago.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import anyio
import click
import httpx
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from jobs.backfill import backfill_shop
from jobs.context import JobContext, worker_name
from jobs.recommend import compute_recommendations
from jobs.recompute import full_recompute
from jobs.runs import DEFAULT_LEASE_SECONDS, OK, SKIPPED, JobFn, run_job
from jobs.scheduler import STANDARD_JOBS, model_run_counts
from jobs.writeback import push_shop
from plugin.app import create_app
from plugin.cli_database import open_migrated, shown_url
from plugin.devstore.config import DEFAULT_TOKEN, DevStoreConfig
from plugin.devstore.gen_config import GeneratorConfig
from plugin.devstore.generator import GeneratedStore, generate_store
from plugin.devstore.sender import RetrySchedule, SendSummary, WebhookSender
from plugin.devstore.server import create_devstore_app
from plugin.devstore.state import DevStoreState
from plugin.domain.writeback import DEFAULT_TAG_PREFIX
from plugin.serving import serve_in_thread
from plugin.settings import Settings, load_settings
from plugin.store import inbox, shops
from plugin.store.db import make_engine
from plugin.store.models import Customer, CustomerScore, Order, Shop
from plugin.store.tokens import settings_cipher

_LEASE_SECONDS = {spec.name: spec.lease_seconds for spec in STANDARD_JOBS}


class Progress:
    """A one-line progress display on stderr, redrawn at most every half second."""

    def __init__(self, label: str, total: int) -> None:
        self._label, self._total, self._shown = label, total, 0.0
        self._tty = sys.stderr.isatty()

    def update(self, done: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._shown < (0.5 if self._tty else 5.0):
            return
        self._shown = now
        share = done / self._total if self._total else 1.0
        line = f"{self._label}: {done}/{self._total} ({share:.0%})"
        end = "\n" if final or not self._tty else ""
        click.echo(("\r" if self._tty else "") + line, err=True, nl=False)
        click.echo(end, err=True, nl=False)


@dataclass(frozen=True)
class DemoPorts:
    """The sockets the app and the dev store listen on, bound before anything starts (None:
    a free port each)."""

    app: socket.socket | None
    devstore: socket.socket | None


def history_end(now: datetime) -> datetime:
    """Where the demo's generated history ends: the start of `now`'s day in UTC. The demo scores
    as of it, and the app's scheduled jobs, on the real clock, hours after it (not the months
    after a fixed date that turned every customer into a win-back). A whole day, not `now`
    itself: a seed gives the same store whenever in the day it runs (purchases count by the
    shop's calendar days, which a start at another time of day would regroup)."""
    return datetime.combine(now.astimezone(UTC).date(), datetime.min.time(), UTC)


def generator_config(customers: int, end: datetime) -> GeneratorConfig:
    """The generator's defaults, with the history ending at `end`."""
    defaults = GeneratorConfig(customers=customers)
    return replace(defaults, start=end - timedelta(days=defaults.history_days))


def demo_settings(database_url: str) -> Settings:
    """Development settings: the fixed development secrets, which the dev store's sender uses."""
    return load_settings({"CLVSYNC_ENV": "development", "DATABASE_URL": database_url}, None)


def _open_database(database_url: str) -> Engine:
    """An engine on the migrated database; a ClickException naming the URL without its password
    (and the option) if it cannot be opened, as every other command reports it."""
    return open_migrated(database_url, "--database-url")


def _register_shop(engine: Engine, settings: Settings, domain: str) -> None:
    """Register the dev store's shop afresh. Each run generates a new, empty dev store: what an
    earlier run on this database held for the shop (its ledger, its inbox, what it recorded as
    pushed, the backfill's start) would leave the new store without its tags, so it is all
    deleted first, as shop/redact deletes it."""
    with Session(engine) as session, session.begin():
        earlier = shops.get_shop(session, domain)
        if earlier is not None:
            shops.forget_shop(session, earlier)
        cipher = settings_cipher(settings)
        shops.add_shop(session, domain, DEFAULT_TOKEN, cipher, datetime.now(UTC))


class Counter(Protocol):
    def update(self, done: int, *, final: bool = False) -> None: ...


async def _deliver(
    store: GeneratedStore, app_url: str, secret: str, progress: Counter | None = None
) -> SendSummary:
    """Deliver the store's events; the progress counts deliveries the app acknowledged (the
    sender pulls events far ahead of them: up to max_in_flight)."""
    shown = progress or Progress("webhooks acknowledged", len(store.events))
    acknowledged = 0

    async def count(response: httpx.Response) -> None:
        nonlocal acknowledged
        if response.is_success:  # the sender's acknowledgement: a 2xx in time
            acknowledged += 1
            shown.update(acknowledged)

    async with httpx.AsyncClient(event_hooks={"response": [count]}) as client:
        sender = WebhookSender(
            client,
            app_url=app_url,
            secret=secret,
            shop_domain=store.shop_domain,
            schedule=RetrySchedule(time_compression=600.0),  # Shopify's 4 h of retries in 25 s
            keep_records=False,
        )
        summary = await sender.send(store.events)
    shown.update(summary.acknowledged, final=True)
    return summary


def _wait_until_processed(database_url: str, total: int) -> None:
    progress = Progress("webhooks processed", total)
    reader = make_engine(database_url, read_only=True)  # never waits behind the writers
    try:
        while True:
            with Session(reader) as session:
                counts = inbox.count_by_status(session)
            pending = counts.get("pending", 0)
            progress.update(total - min(pending, total), final=pending == 0)
            if pending == 0:
                return
            time.sleep(1.0)  # counting a large inbox is not free: once a second is enough
    finally:
        reader.dispose()


def _held(engine: Engine, domain: str) -> tuple[int, int]:
    with Session(engine) as session:
        shop_id = session.exec(select(Shop.id).where(Shop.domain == domain)).one()
        customers = session.exec(
            select(func.count())
            .select_from(Customer)
            .where(Customer.shop_id == shop_id, col(Customer.deleted_at).is_(None))
        ).one()
        orders = session.exec(
            select(func.count()).select_from(Order).where(Order.shop_id == shop_id)
        ).one()
    return int(customers), int(orders)


@dataclass
class AdminCalls:
    """The demo's own Admin API calls to the dev store (the backfill's and the push's, retries
    included), and how many the dev store answered with a 5xx: its faults met, whichever step
    met them (the push alone makes a handful of calls, bulk, and often meets none)."""

    made: int = 0
    server_errors: int = 0

    async def count(self, response: httpx.Response) -> None:
        """An httpx response hook; staged uploads and bulk results are not API calls."""
        if response.request.url.path.endswith("/graphql.json"):
            self.made += 1
            if response.status_code >= 500:
                self.server_errors += 1


@dataclass(frozen=True)
class DemoSteps:
    backfill: dict[str, Any]
    recompute: dict[str, Any]
    recommendations: dict[str, Any]
    push: dict[str, Any]
    calls: AdminCalls


async def _run_steps(
    engine: Engine, settings: Settings, shop: Shop, as_of: datetime, error_share: float
) -> DemoSteps:
    """The backfill, the refit, the recommendations and the push, each run as the scheduler runs
    it: under its lease (the app's own scheduled jobs may be running beside them), recorded as a
    job run, on the real clock (the audit of the push is dated now, so the prune keeps it and
    `push --undo` finds it). Only the scoring and the recommendations are as of `as_of`."""
    assert shop.id is not None

    async def refit(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
        # the scheduler's refit, but as of `as_of`: its model run named as the scheduler names it
        summary = await anyio.to_thread.run_sync(full_recompute, ctx.engine, shop, as_of)
        return model_run_counts(summary)

    async def recommend(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(compute_recommendations, ctx.engine, shop, as_of)

    calls = AdminCalls()
    async with httpx.AsyncClient(timeout=30, event_hooks={"response": [calls.count]}) as http:
        # a worker name of its own: the app's scheduler in this process holds leases as itself
        ctx = JobContext(engine, settings, http, worker=f"{worker_name()}:demo")
        if error_share:
            click.echo(
                f"the dev store answers each Admin API call with a 5xx at a {error_share:.0%} "
                "chance, on purpose (--devstore-errors): the backfill and the push retry them",
                err=True,
            )
        click.echo("reading the store's whole order history back (a backfill) ...", err=True)
        # the whole history, not the daily run's read since the last one: staying up within the
        # 6 h after 00:00 UTC, the app's scheduler makes up the day's backfill at once, and
        # the daily run after it would read nothing
        backfilled = await _step(ctx, shop.id, "backfill", backfill_shop)
        click.echo("recomputing: fitting the models, scoring every customer ...", err=True)
        recomputed = await _step(ctx, shop.id, "refit", refit)
        click.echo("recommending: frequently bought together, upsell, next products ...", err=True)
        recommended = await _step(ctx, shop.id, "recommend", recommend)
        click.echo("pushing tags and metafields to the dev store ...", err=True)
        pushed = await _step(ctx, shop.id, "push", push_shop)
    skipped = ("since", "covers_all")
    return DemoSteps(
        {k: v for k, v in backfilled.items() if k not in skipped},
        recomputed,
        recommended,
        pushed,
        calls,
    )


async def _step(ctx: JobContext, shop_id: int, job: str, fn: JobFn) -> dict[str, Any]:
    """`fn` run as job `job`; while the app's scheduler runs a job under the same lease, waited
    for. A ClickException if it fails."""
    lease_seconds = _LEASE_SECONDS.get(job, DEFAULT_LEASE_SECONDS)
    waiting = False
    while True:
        result = await run_job(ctx, shop_id, job, fn, lease_seconds=lease_seconds)
        if result.outcome != SKIPPED:
            break
        if not waiting:
            click.echo(f"  waiting for the app's scheduled run ({result.error}) ...", err=True)
            waiting = True
        await anyio.sleep(1.0)
    if result.outcome != OK:
        raise click.ClickException(f"the demo's {job} failed: {result.error}")
    return dict(result.counts)


def tags_in_sync(engine: Engine, shop: Shop, state: DevStoreState, prefix: str) -> bool:
    """Does every customer in the dev store hold exactly its desired tags under the prefix?"""
    with Session(engine) as session:
        scores = session.exec(
            select(CustomerScore.customer_id, CustomerScore.tags).where(
                CustomerScore.shop_id == shop.id
            )
        ).all()
    desired = {customer_id: {prefix + t for t in tags.split()} for customer_id, tags in scores}
    return all(
        {t for t in customer.tags if t.startswith(prefix)} == desired.get(customer.id, set())
        and len(customer.tags) == len(set(customer.tags))
        for customer in state.customers.values()
    )


def check_in_sync(result: dict[str, Any]) -> None:
    """A ClickException (exit 1) unless the demo's own check found every customer in the dev
    store holding exactly its desired tags: a demo that did not sync must not look as if it did."""
    if not result["tags_in_sync"]:
        raise click.ClickException(
            "after the push, some customers in the dev store do not hold exactly their desired "
            "tags (tags_in_sync is false)"
        )


def report(result: dict[str, Any], as_json: bool, calls: AdminCalls, error_share: float) -> None:
    """The demo's summary on stdout: one JSON object with `as_json` (its keys and values are
    what tools read: unchanged), else a few lines of text."""
    if as_json:
        click.echo(json.dumps(result))
        return
    for line in summary_lines(result, calls, error_share):
        click.echo(line)


def summary_lines(result: dict[str, Any], calls: AdminCalls, error_share: float) -> list[str]:
    """The summary as text, one step a line (the JSON summary's figures, and the faults met)."""
    backfill, scored = result["backfill"], result["recompute"]
    recommended = result["recommendations"]
    # "paretonbd, fitted, converged"; the rules (too few repeat buyers to fit) just "rules"
    fit = [scored.get("repeat_model"), scored.get("confidence")]
    fit = list(dict.fromkeys(fit)) + (["converged"] if scored.get("converged") else [])
    return [
        f"webhooks: {result['webhooks_sent']:,} sent, {result['webhooks_acknowledged']:,} "
        "acknowledged and processed",
        f"ledger: {result['customers']:,} customers, {result['orders']:,} orders",
        f"backfill: {backfill['orders_read']:,} orders read, {backfill['orders_applied']:,} "
        f"applied (the webhooks missed them), {backfill['orders_unchanged']:,} held already, "
        f"{backfill['test_orders_skipped']:,} test orders skipped, "
        f"{backfill['orders_rejected']:,} rejected",
        f"scores: {scored['customers_scored']:,} customers scored (model run "
        f"{scored['model_run_id']}: {', '.join(map(str, fit))})",
        f"recommendations: {recommended['order_lines']:,} order lines read, "
        f"{recommended['products_with_partners']:,} products with partners, "
        f"{recommended['bundle_candidates']:,} bundle candidates, "
        f"{recommended['customers_with_next_products']:,} customers with next products",
        f"push: {result['tag_changes_pushed']:,} tag changes, {result['metafields_pushed']:,} "
        f"customer metafields, {result['product_metafields_pushed']:,} product metafields; "
        f"{result['bulk_operations']:,} bulk operations, API cost {result['api_cost_used']:,}, "
        f"{result['throttled_responses']:,} throttled",
        faults_met(calls, error_share),
        f"tags in sync: {'yes' if result['tags_in_sync'] else 'no'}",
        f"took: {result['seconds']:,} s",
    ]


def faults_met(calls: AdminCalls, error_share: float) -> str:
    """What the dev store's faults did: only what happened (a run can meet none of them)."""
    line = f"Admin API calls: {calls.made:,} to the dev store by the backfill and the push; "
    if not calls.server_errors:
        chance = f"each had a {error_share:.0%} chance" if error_share else "--devstore-errors 0"
        return line + f"none answered with a 5xx ({chance})"
    return line + (
        f"{calls.server_errors:,} answered with a 5xx on purpose (a {error_share:.0%} chance "
        "each), and were retried"
    )


def run_demo(
    customers: int,
    seed: int,
    database_url: str,
    ports: DemoPorts,
    once: bool,
    error_share: float = 0.0,
    as_json: bool = False,
) -> dict[str, Any]:
    """Run the demo, print its summary, and unless `once` stay up until interrupted; the
    summary. A ClickException (exit 1) if the dev store did not end in sync."""
    started = time.monotonic()
    settings = demo_settings(database_url)
    engine = _open_database(database_url)
    click.echo(f"generating a store of {customers} customers (seed {seed}) ...", err=True)
    config = generator_config(customers, history_end(datetime.now(UTC)))
    store = generate_store(config, seed=seed)
    state = DevStoreState(
        domain=store.shop_domain,
        currency_code=store.shop_currency,
        time_zone=store.config.shop_time_zone,
    )
    state.load(products=store.products, customers=store.customers, orders=store.orders)
    _register_shop(engine, settings, store.shop_domain)
    with ExitStack() as running:
        devstore_url = running.enter_context(
            serve_in_thread(
                create_devstore_app(
                    state, DevStoreConfig(fault_error_share=error_share, seed=seed)
                ),
                sock=ports.devstore,
            )
        )
        # Staying up, the app runs its scheduled jobs against the dev store; either way, the
        # demo runs the backfill, the refit, the recommendations and the push itself, in order.
        settings = replace(settings, admin_url=devstore_url)
        app = create_app(settings, engine=engine, run_jobs=not once)
        app_url = running.enter_context(serve_in_thread(app, sock=ports.app))
        summary = anyio.run(_deliver, store, app_url, settings.api_secret)
        _wait_until_processed(database_url, summary.sent)
        with Session(engine, expire_on_commit=False) as session:
            shop = shops.get_shop(session, store.shop_domain)
        assert shop is not None
        # Scored as of the history's end (earlier today): the app's scheduled jobs, on the real
        # clock, score as of the hours after it, and agree but for those hours.
        as_of = store.config.end
        steps = anyio.run(_run_steps, engine, settings, shop, as_of, error_share)
        pushed = steps.push
        held_customers, held_orders = _held(engine, store.shop_domain)
        result: dict[str, Any] = {
            "webhooks_sent": summary.sent,
            "webhooks_acknowledged": summary.acknowledged,
            "customers": held_customers,
            "orders": held_orders,
            "backfill": steps.backfill,
            "tag_changes_pushed": pushed["tags_added"] + pushed["tags_removed"],
            "metafields_pushed": pushed["metafields_set"],
            "api_cost_used": pushed["api_cost"],
            "throttled_responses": pushed["throttled"],
            "api_retries": pushed["retries"],
            "api_server_errors_met": pushed["server_errors"],
            "bulk_operations": pushed["bulk_operations"],
            "tags_in_sync": tags_in_sync(engine, shop, state, DEFAULT_TAG_PREFIX),
            "seconds": round(time.monotonic() - started, 2),
            "recompute": steps.recompute,
            "recommendations": steps.recommendations,
            "product_metafields_pushed": pushed["product_metafields_set"],
        }
        # before staying up: the figures are the same either way
        report(result, as_json, steps.calls, error_share)
        check_in_sync(result)
        if not once:
            command = invoked_command(sys.argv[0], Path.cwd(), sys.executable)
            _stay_up(where_to_look(app_url, devstore_url, store.shop_domain, database_url, command))
    engine.dispose()
    return result


def invoked_command(argv0: str, cwd: Path, python: str) -> str:
    """clvsync as this process was started, to paste in a shell at `cwd`: the console script
    it was run as (the install does not put `.venv/bin` on PATH, so a bare `clvsync` is often
    not found), relative to `cwd` when under it; else `python -m plugin.cli` (the process
    started so, or by something else), with this process's interpreter."""
    if Path(argv0).stem == "clvsync":
        if os.sep not in argv0:
            return "clvsync"  # found on PATH: it will be again
        return _pasteable(argv0, cwd)
    return f"{_pasteable(python, cwd)} -m plugin.cli"


def _pasteable(path: str, cwd: Path) -> str:
    """`path` for a shell at `cwd`: relative when under it (`.venv/bin/clvsync`), else absolute;
    symbolic links kept (a virtual environment's python is one), quoted if need be."""
    absolute = os.path.abspath(os.path.join(cwd, path))
    if absolute.startswith(os.path.join(os.path.abspath(cwd), "")):
        relative = os.path.relpath(absolute, cwd)
        absolute = relative if os.sep in relative else os.path.join(".", relative)
    return shlex.quote(absolute)


def where_to_look(
    app_url: str, devstore_url: str, domain: str, database_url: str, command: str
) -> str:
    """The stay-up message: the servers' addresses, and commands to run against the database
    (its URL without its password: the message is for a terminal, a log, a screenshot), with
    `command` the way to run clvsync (`invoked_command`)."""
    env = f"CLVSYNC_ENV=development DATABASE_URL={shown_url(database_url)}"
    return (
        "\nclvsync demo is running (Ctrl-C stops it):\n"
        f"  app        {app_url}/healthz, webhooks at {app_url}/webhooks\n"
        f"  dev store  {devstore_url}/admin/api/2026-10/graphql.json "
        f"(X-Shopify-Access-Token: {DEFAULT_TOKEN})\n"
        f"  figures    {env} {command} export --shop {domain}\n"
        f"  inbox      {env} {command} webhooks status"
    )


def _stay_up(message: str) -> None:
    click.echo(message, err=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        click.echo("stopping", err=True)


@click.command()
@click.option("--customers", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True)
@click.option("--once", is_flag=True, help="Stop both servers after the run, not staying up.")
@click.option("--json", "as_json", is_flag=True, help="The summary as one JSON object on stdout.")
@click.option(
    "--database-url",
    default=None,
    help="Default: sqlite:///./clvsync-demo.db, or a temporary database with --once.",
)
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="The app's port (not with --once).",
)
@click.option(
    "--devstore-port",
    default=8100,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="The dev store's port: its Admin API, which the app's scheduled jobs call while the "
    "demo stays up (not with --once).",
)
@click.option(
    "--devstore-errors",
    default=0.1,
    show_default=True,
    type=click.FloatRange(0.0, 0.5),
    help="Share of the dev store's Admin API calls that fail with a 5xx (the push retries).",
)
def demo(
    customers: int,
    seed: int,
    once: bool,
    as_json: bool,
    database_url: str | None,
    port: int,
    devstore_port: int,
    devstore_errors: float,
) -> None:
    """Run the product against a generated dev store, on this machine only."""
    from plugin.cli import listen_or_fail

    ports = DemoPorts(None, None)
    if not once:  # both ports taken now: one in use stops the demo before it generates a store
        app_sock = listen_or_fail("127.0.0.1", port, "--port")
        try:
            devstore_sock = listen_or_fail("127.0.0.1", devstore_port, "--devstore-port")
        except click.ClickException:
            app_sock.close()
            raise
        ports = DemoPorts(app_sock, devstore_sock)
    with tempfile.TemporaryDirectory() as scratch:
        if database_url is None:
            path = Path(scratch) / "demo.db" if once else Path("clvsync-demo.db").resolve()
            database_url = f"sqlite:///{path}"
        run_demo(customers, seed, database_url, ports, once, devstore_errors, as_json)
