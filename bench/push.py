"""Write-back push benchmark: tag changes for 100,000 customers, per call and in bulk.

    .venv/bin/python bench/push.py [--customers 100000] [--compression 20] [--seed 5]
                                   [--bulk-poll-seconds 1] [--document-cache 16]
                                   [--no-gc-freeze]

A temporary SQLite database is built through the migrations with one shop and its customers,
their scores (a segment and some flags each, as desired tags) and, for most of them, a pushed
state from an earlier push: nothing pushed yet, an older segment and flags to replace, a stale
flag to remove, or already in sync. The models are not run. The dev store holds the same
customers with tags of the merchant's own and the `clv:` tags the pushed state records. Then,
each from that same fresh state (a new database, a new dev store with a full bucket), the plan
(`plan_changes`) is pushed:

1. per call (`Pusher.tags_per_call`): aliased tagsRemove / tagsAdd mutations, 50 per request,
   paced by the client against the dev store's leaky bucket on Shopify's Standard limits (2,000
   points, restoring 100 points a second), over real HTTP on 127.0.0.1;
2. in bulk (`Pusher.tags_in_bulk`): one bulk mutation for the removals, one for the additions,
   over a staged JSONL upload, the result files read back (polling as production does: every
   second, growing to ten; `--bulk-poll-seconds`).

It prints, for the per-call path, the achieved cost rate as a share of the restore rate (the
total actual cost charged divided by the elapsed seconds times the restore rate; target at
least 0.9), and for both paths the API cost per changed customer, the wall time, THROTTLED
responses received and those left unretried (target 0), and the end state: every customer's
tags under the prefix equal the desired ones, the tags outside it are untouched, and a fresh
plan finds nothing left to push. The last line of stdout is one JSON object.

Time compression. The per-call path costs 10 to 20 points per customer: 100,000 customers
take hours at 100 points a second. So the dev store's clock runs K = `--compression` times
faster than real time (its leaky bucket reads `clock = lambda: K * time.monotonic()`), the
AdminClient gets the same clock and a `sleep` that sleeps seconds / K of real time, and the
per-call path's elapsed time is measured on that compressed clock: one second of it is one
second of Shopify's bucket. This holds only while the dev store keeps up: if its real time per
request, times K, approaches the time the bucket takes to restore a request's cost, the figure
measures this machine rather than the client's pacing. The script measures the dev store's own
time per request and the whole round trip's (client, HTTP and recording included), reports
both as a share of the restore interval, and warns when they come close; a smaller
`--compression` re-runs more slowly and more faithfully. The same goes for anything that stops
the whole process: a full garbage collection over the set-up's objects (the dev store's
customers, the plan) takes one to two seconds of real time here, 20 to 40 s on the compressed
clock, longer than the 20 s a full bucket lasts, so restored points would overflow and the cost
rate would measure the collector. The set-up's objects are therefore frozen out of the
collector (`gc.freeze()`) before each path (`--no-gc-freeze` leaves them in). And the dev
store's cache of parsed documents is cut from its default (64) to `--document-cache` (16)
entries: every per-call request's document is different (its aliases depend on which customers
have removals and additions), so the cache never hits, and when it held 512 of them, some 2.4
million objects, every full collection walked them, two seconds each. The collector's pauses
during the push are measured and printed, as are the points the bucket restored that no call
used (it was full).
Everything stays on this machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import anyio
import httpx
from bench_databases import sqlite_database
from sqlalchemy import Engine, insert
from sqlmodel import Session
from starlette.types import ASGIApp, Receive, Scope, Send

from jobs.writeback import Planned, Pusher, plan_changes, shop_writeback_settings
from plugin.devstore.config import DEFAULT_TOKEN, DevStoreConfig
from plugin.devstore.server import create_devstore_app
from plugin.devstore.state import DevStoreState
from plugin.domain.flags import FLAGS
from plugin.domain.segments import SEGMENTS
from plugin.serving import serve_in_thread
from plugin.settings import load_settings
from plugin.shopify.bulk import BulkRunner
from plugin.shopify.client import AdminClient
from plugin.store.db import make_engine, upgrade
from plugin.store.models import Customer, CustomerScore, CustomerSync, Shop
from plugin.store.shops import add_shop
from plugin.store.tokens import TokenCipher

SHOP = "bench-push.myshopify.com"
API_VERSION = "2026-10"
PREFIX = "clv:"  # the default tag prefix (the shop's settings are left at their defaults)
AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
CUSTOMER_BASE = 6_000_000_000
MERCHANT_TAGS = ("newsletter", "wholesale", "vip", "local-pickup", "b2b", "staff", "gift")
FLAG_SHARE = 0.15  # each flag is desired for about this share of customers
INSERT_ROWS = 10_000
DEFAULT_COMPRESSION = 20.0
DOCUMENT_CACHE = 16  # the dev store's parsed-document cache (its default, 64: see above)
PROGRESS_SECONDS = 10.0
SERVER_LOAD_WARN = 0.5  # dev store time per request x K, as a share of the restore interval
ROUND_TRIP_WARN = 0.8  # the same for the whole round trip


# --- the shop -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    """Every customer's desired tags (no prefix), pushed state and merchant tags, by index."""

    ids: list[int]
    segments: list[str]
    desired: list[tuple[str, ...]]
    pushed: list[tuple[str, ...] | None]  # full tags; None: nothing pushed yet
    store_tags: list[list[str]]  # what the dev store holds at the start
    merchant: list[list[str]]  # the store's tags outside the prefix, in order
    kinds: dict[str, int] = field(default_factory=dict)


def synthesise(customers: int, seed: int) -> Fixture:
    rng = random.Random(seed)
    fixture = Fixture([], [], [], [], [], [])
    kinds: dict[str, int] = {}
    for n in range(customers):
        segment = rng.choice(SEGMENTS)
        desired = (segment, *(f for f in FLAGS if rng.random() < FLAG_SHARE))
        wanted = [PREFIX + t for t in desired]
        roll = rng.random()
        pushed: tuple[str, ...] | None
        if roll < 0.35:
            kind, pushed = "never pushed", None
        elif roll < 0.75:  # an older segment and flags: removals and additions
            old = rng.choice([s for s in SEGMENTS if s != segment])
            flags = [f for f in FLAGS if rng.random() < FLAG_SHARE]
            kind, pushed = "older segment", tuple(PREFIX + t for t in (old, *flags))
        elif roll < 0.85:  # one flag that no longer applies: a removal only
            stale = rng.choice([f for f in FLAGS if f not in desired])
            kind, pushed = "stale flag", (*wanted, PREFIX + stale)
        else:
            kind, pushed = "in sync", tuple(wanted)
        kinds[kind] = kinds.get(kind, 0) + 1
        merchant = rng.sample(MERCHANT_TAGS, rng.randint(0, 3))
        held = merchant + list(pushed or ())
        rng.shuffle(held)
        fixture.ids.append(CUSTOMER_BASE + n)
        fixture.segments.append(segment)
        fixture.desired.append(desired)
        fixture.pushed.append(pushed)
        fixture.store_tags.append(held)
        fixture.merchant.append([t for t in held if not t.startswith(PREFIX)])
    fixture.kinds.update(sorted(kinds.items()))
    return fixture


def build_database(url: str, fixture: Fixture) -> tuple[Engine, Shop]:
    """Migrate, register the shop (development token key), insert customers, scores, pushed
    state in bulk. No model run: tags do not need one."""
    engine = make_engine(url)
    upgrade(engine)
    settings = load_settings({"CLVSYNC_ENV": "development", "DATABASE_URL": url}, None)
    cipher = TokenCipher(settings.token_encryption_key)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        shop = add_shop(session, SHOP, DEFAULT_TOKEN, cipher, AS_OF)
        shop.currency = "USD"
    assert shop.id is not None
    shop_id = shop.id
    rng = random.Random(len(fixture.ids))
    customers, scores, synced = [], [], []
    for n, customer_id in enumerate(fixture.ids):
        customers.append(
            {
                "shop_id": shop_id,
                "customer_id": customer_id,
                "created_at": AS_OF,
                "updated_at": AS_OF,
                "state": "enabled",
                "orders": 1 + n % 7,
                "net_spend": Decimal(50 + n % 400),
                "first_order_at": AS_OF,
                "last_order_at": AS_OF,
                "ledger_version": 1,
            }
        )
        value = rng.uniform(20.0, 900.0)
        desired = fixture.desired[n]
        scores.append(
            {
                "shop_id": shop_id,
                "customer_id": customer_id,
                "run_id": 1,
                "ledger_version": 1,
                "aov": value / 3,
                "mean_days_between_orders": 60.0,
                "trailing_12m_spend": value / 2,
                "historical_clv": value,
                "p_alive": 0.5,
                "expected_purchases": 1.0,
                "expected_next_order_at": None,
                "expected_spend_per_order": value / 3,
                "predicted_clv": value,
                "recency_score": 1 + n % 5,
                "frequency_score": 1 + n % 5,
                "monetary_score": 1 + n % 5,
                "segment": fixture.segments[n],
                "reorder_due_at": None,
                "tags": " ".join(desired),
                "reasons": json.dumps({t: f"bench: {t}" for t in desired}),
            }
        )
        pushed = fixture.pushed[n]
        if pushed is not None:
            synced.append(
                {
                    "shop_id": shop_id,
                    "customer_id": customer_id,
                    "tags": json.dumps(sorted(pushed)),
                    "metafields": "{}",
                    "pushed_at": AS_OF,
                }
            )
    tables = (
        (Customer.__table__, customers),  # type: ignore[attr-defined]
        (CustomerScore.__table__, scores),  # type: ignore[attr-defined]
        (CustomerSync.__table__, synced),  # type: ignore[attr-defined]
    )
    for table, rows in tables:
        with engine.begin() as connection:
            for start in range(0, len(rows), INSERT_ROWS):
                connection.execute(insert(table), rows[start : start + INSERT_ROWS])
    return engine, shop


def devstore_state(fixture: Fixture) -> DevStoreState:
    state = DevStoreState(domain=SHOP, currency_code="USD")
    stamp = "2025-06-01T00:00:00Z"
    state.load(
        customers=(
            {
                "id": customer_id,
                "created_at": stamp,
                "updated_at": stamp,
                "state": "enabled",
                "tags": list(fixture.store_tags[n]),
            }
            for n, customer_id in enumerate(fixture.ids)
        )
    )
    return state


# --- measuring ------------------------------------------------------------------------------


class TimedApp:
    """The dev store app, timing each GraphQL request from its start to its last byte sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seconds: list[float] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/graphql.json"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        await self.app(scope, receive, send)
        self.seconds.append(time.perf_counter() - started)


@dataclass
class PathResult:
    path: str
    customers: int  # customers with tag changes pushed
    wall_seconds: float
    store_seconds: float  # on the dev store's (compressed) clock
    stats: dict[str, Any]
    counts: dict[str, Any]
    server_seconds: list[float]
    check: dict[str, int]
    bucket_left: float
    gc_pauses: list[float]

    @property
    def cost(self) -> float:
        return float(self.stats["cost_actual"])

    @property
    def cost_per_customer(self) -> float:
        return self.cost / self.customers if self.customers else 0.0

    @property
    def in_sync(self) -> bool:
        return not any(self.check.values())


def check_end_state(state: DevStoreState, fixture: Fixture) -> dict[str, int]:
    """Customers whose store tags are wrong under the prefix, wrong outside it, duplicated."""
    wrong_owned = wrong_merchant = duplicated = 0
    for n, customer_id in enumerate(fixture.ids):
        tags = state.customers[customer_id].tags
        owned = {t for t in tags if t.startswith(PREFIX)}
        wrong_owned += owned != {PREFIX + t for t in fixture.desired[n]}
        wrong_merchant += [t for t in tags if not t.startswith(PREFIX)] != fixture.merchant[n]
        duplicated += len(tags) != len(set(tags))
    return {
        "prefix_tags_wrong": wrong_owned,
        "merchant_tags_changed": wrong_merchant,
        "duplicated_tags": duplicated,
    }


async def _report_progress(label: str, pusher: Pusher, client: AdminClient, total: int) -> None:
    started = time.perf_counter()
    while True:
        await anyio.sleep(PROGRESS_SECONDS)
        stats = client.stats
        print(
            f"  {label}: {pusher.counts.customers_tagged:,}/{total:,} customers recorded, "
            f"{stats.requests:,} requests, cost {stats.cost_actual:,.0f}, "
            f"{time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )


class GcPauses:
    """The garbage collector's pauses (real seconds) while `active`: a pause stops both the
    client and the dev store, and K stretches it on the compressed clock."""

    def __init__(self) -> None:
        self.active = False
        self.seconds: list[float] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self.active:
            self.seconds.append(time.perf_counter() - self._started)


@dataclass
class Pushed:
    pusher: Pusher
    client: AdminClient
    wall_seconds: float
    store_seconds: float
    bucket_left: float  # points in the dev store's bucket when the push ended


async def _push(
    path: str,
    engine: Engine,
    shop: Shop,
    items: list[Planned],
    base_url: str,
    clock: Callable[[], float],
    bucket_level: Callable[[], float],
    compression: float,
    bulk_poll_seconds: float,
) -> Pushed:
    """One path's push, timed in real seconds and on `clock`, the dev store's own."""

    async def sleep(seconds: float) -> None:
        await anyio.sleep(seconds / compression)

    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0)) as http:
        client = AdminClient(
            http,
            SHOP,
            DEFAULT_TOKEN,
            api_version=API_VERSION,
            admin_url=base_url,
            sleep=sleep,
            clock=clock,
        )
        # Bulk polling sleeps in real time, on production's schedule: it is wall time, and
        # no bucket is involved.
        bulk = BulkRunner(client, http, sleep=anyio.sleep, poll_seconds=bulk_poll_seconds)
        pusher = Pusher(
            engine,
            shop,
            client,
            bulk,
            shop_writeback_settings(shop),
            job_run_id=None,
            clock=lambda: datetime.now(UTC),
        )
        work: Callable[[list[Planned]], Any] = (
            pusher.tags_per_call if path == "per-call" else pusher.tags_in_bulk
        )
        async with anyio.create_task_group() as group:
            group.start_soon(_report_progress, path, pusher, client, len(items))
            started_wall, started_store = time.perf_counter(), clock()
            await work(items)
            wall, store = time.perf_counter() - started_wall, clock() - started_store
            left = bucket_level()
            group.cancel_scope.cancel()
    return Pushed(pusher, client, wall, store, left)


@dataclass(frozen=True)
class Options:
    compression: float
    bulk_poll_seconds: float
    freeze: bool
    document_cache: int


def run_path(path: str, fixture: Fixture, options: Options) -> PathResult:
    compression, bulk_poll_seconds = options.compression, options.bulk_poll_seconds
    freeze, document_cache = options.freeze, options.document_cache
    print(f"{path}: building the database and the dev store ...", file=sys.stderr)
    with sqlite_database() as url:
        started = time.perf_counter()
        engine, shop = build_database(url, fixture)
        state = devstore_state(fixture)
        settings = shop_writeback_settings(shop)
        plan = plan_changes(engine, shop, settings)
        items = [item for item in plan.items if item.change.tags_changed]
        print(
            f"{path}: {len(fixture.ids):,} customers loaded, {len(items):,} with tag changes "
            f"planned ({time.perf_counter() - started:.0f} s, not timed); pushing ...",
            file=sys.stderr,
        )

        def store_clock() -> float:
            return compression * time.monotonic()

        devstore = create_devstore_app(state, DevStoreConfig(), clock=store_clock)
        graphql = devstore.state.devstore.graphql
        graphql.documents.size = document_cache  # see the module's docstring
        throttle = graphql.throttle

        def bucket_level() -> float:
            return float(throttle.status(DEFAULT_TOKEN).currently_available)

        app = TimedApp(devstore)
        pauses = GcPauses()
        gc.callbacks.append(pauses)
        if freeze:  # the set-up's objects, out of the collector's full passes (see above)
            gc.collect()
            gc.freeze()
        try:
            with serve_in_thread(app) as base_url:
                pauses.active = True
                pushed = anyio.run(
                    _push,
                    path,
                    engine,
                    shop,
                    items,
                    base_url,
                    store_clock,
                    bucket_level,
                    compression,
                    bulk_poll_seconds,
                )
                pauses.active = False
        finally:
            gc.callbacks.remove(pauses)
            gc.unfreeze()
        check = check_end_state(state, fixture)
        left = plan_changes(engine, shop, settings)
        check["left_to_push"] = sum(item.change.tags_changed for item in left.items)
        engine.dispose()
    result = PathResult(
        path,
        len(items),
        pushed.wall_seconds,
        pushed.store_seconds,
        vars(pushed.client.stats).copy(),
        vars(pushed.pusher.counts).copy(),
        app.seconds,
        check,
        pushed.bucket_left,
        pauses.seconds,
    )
    print(
        f"{path}: done in {pushed.wall_seconds:.1f} s, in sync: {result.in_sync}",
        file=sys.stderr,
    )
    return result


# --- reporting ------------------------------------------------------------------------------


def _milliseconds(seconds: list[float], share: float) -> float:
    if not seconds:
        return 0.0
    ordered = sorted(seconds)
    return 1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(
    fixture: Fixture, per_call: PathResult, bulk: PathResult, options: Options
) -> dict[str, Any]:
    compression, poll, freeze = options.compression, options.bulk_poll_seconds, options.freeze
    config = DevStoreConfig()
    restore = config.restore_rate
    stats = per_call.stats
    requests = max(1, int(stats["requests"]))
    budget = per_call.store_seconds * restore
    ratio = per_call.cost / budget if budget else 0.0
    # The bucket starts full: its first 2,000 points are a gift no steady state repeats.
    steady = max(0.0, per_call.cost - config.bucket_size) / budget if budget else 0.0
    # Whether the bucket or this machine set the pace: real time per request, times K, as a
    # share of the time the bucket takes to restore one request's cost.
    restore_interval = per_call.cost / requests / restore
    server_mean = statistics.fmean(per_call.server_seconds) if per_call.server_seconds else 0.0
    active = per_call.wall_seconds - stats["paced_seconds"] / compression
    round_trip = max(0.0, active) / requests
    server_load = server_mean * compression / restore_interval if restore_interval else 0.0
    round_trip_load = round_trip * compression / restore_interval if restore_interval else 0.0
    paced_share = stats["paced_seconds"] / per_call.store_seconds if per_call.store_seconds else 0
    # Points the bucket restored that no call took: it was full (the client did not send).
    lost = config.bucket_size + budget - per_call.cost - per_call.bucket_left
    full_bucket_seconds = config.bucket_size / restore
    longest_pause = max(per_call.gc_pauses, default=0.0)

    print(
        f"shop: {len(fixture.ids):,} customers ("
        + ", ".join(f"{k} {v:,}" for k, v in fixture.kinds.items())
        + f"); {per_call.customers:,} with tag changes"
    )
    print(
        f"limits: Standard, bucket {config.bucket_size:.0f} points restoring {restore:.0f}/s; "
        f"HTTP on 127.0.0.1"
    )
    print(
        f"time compression K = {compression:g}: the dev store's bucket clock and the client's "
        f"clock are K x time.monotonic(), the client sleeps seconds/K of real time; per-call "
        f"elapsed is measured on that clock"
    )
    print(
        f"per call: {per_call.wall_seconds:.1f} s wall = {per_call.store_seconds:,.0f} s "
        f"({per_call.store_seconds / 3600:.2f} h) on the store's clock, {requests:,} requests, "
        f"actual cost {per_call.cost:,.0f} (requested {stats['cost_requested']:,.0f})"
    )
    print(
        f"  cost rate: {per_call.cost:,.0f} / ({per_call.store_seconds:,.0f} s x {restore:.0f}/s)"
        f" = {ratio:.3f} of the restore rate (target >= 0.9); without the full bucket it "
        f"started with: {steady:.3f}; the client waited for the bucket {paced_share:.0%} of "
        f"the elapsed time"
    )
    print(
        f"  points restored but never used (the bucket was full): {lost:,.0f} = "
        f"{lost / budget if budget else 0:.1%} of the restore over the elapsed time"
    )
    print(f"  API cost per changed customer: {per_call.cost_per_customer:.2f} points")
    print(
        f"  dev store time per request: mean {1000 * server_mean:.1f} ms, p95 "
        f"{_milliseconds(per_call.server_seconds, 0.95):.1f} ms real; x K = "
        f"{server_mean * compression:.2f} s against {restore_interval:.2f} s to restore a "
        f"request's cost ({server_load:.0%})"
    )
    print(
        f"  whole round trip (pacing sleeps excluded): {1000 * round_trip:.1f} ms real per "
        f"request, of which the client's side (building, HTTP, recording the results) "
        f"{1000 * (round_trip - server_mean):.1f} ms; x K = {round_trip * compression:.2f} s "
        f"({round_trip_load:.0%} of the restore interval)"
    )
    print(
        f"  garbage collector: {len(per_call.gc_pauses):,} collections during the push, "
        f"{sum(per_call.gc_pauses):.1f} s in all, the longest {1000 * longest_pause:.0f} ms real"
        f" = {longest_pause * compression:.1f} s on the store's clock (a full bucket lasts "
        f"{full_bucket_seconds:.0f} s); set-up objects "
        + ("frozen out of it (gc.freeze)" if freeze else "not frozen (--no-gc-freeze)")
        + f", the dev store's document cache at {options.document_cache} entries"
    )
    stalled = longest_pause * compression > full_bucket_seconds / 2
    if server_load > SERVER_LOAD_WARN or round_trip_load > ROUND_TRIP_WARN or stalled:
        print(
            "  WARNING: at this compression the machine, not the bucket, comes close to setting "
            "the pace (per request, or in pauses of the whole process): the cost rate measures "
            "this machine; re-run with a smaller --compression"
        )
    else:
        print(
            "  the bucket set the pace (the machine used a fraction of each restore interval): "
            "the cost rate measures the client's pacing"
        )
    print(
        f"  THROTTLED responses: {stats['throttled']} received, "
        f"{stats['throttled_unretried']} left unretried (target 0); retries {stats['retries']}"
    )
    print(
        f"in bulk: {bulk.wall_seconds:.1f} s wall, {bulk.counts['bulk_operations']} bulk "
        f"operations, {bulk.stats['requests']} requests, actual cost {bulk.cost:,.0f} = "
        f"{bulk.cost_per_customer:.4f} points per changed customer (polling every "
        f"{poll:g} s, growing x1.5 to 10 s)"
    )
    print(
        f"  THROTTLED responses: {bulk.stats['throttled']} received, "
        f"{bulk.stats['throttled_unretried']} left unretried"
    )
    for result in (per_call, bulk):
        print(
            f"end state, {result.path}: "
            + ("in sync" if result.in_sync else "NOT in sync")
            + " ("
            + ", ".join(f"{k} {v}" for k, v in result.check.items())
            + f"); tags added {result.counts['tags_added']:,}, removed "
            f"{result.counts['tags_removed']:,}, refused {result.counts['customers_refused']}"
        )
    return {
        "cost_rate_ratio": round(ratio, 4),
        "cost_rate_ratio_steady": round(steady, 4),
        "cost_per_customer": round(per_call.cost_per_customer, 3),
        "bulk_cost_per_customer": round(bulk.cost_per_customer, 5),
        "per_call_seconds": round(per_call.wall_seconds, 1),
        "per_call_store_seconds": round(per_call.store_seconds, 1),
        "bulk_seconds": round(bulk.wall_seconds, 1),
        "throttled_unretried": int(stats["throttled_unretried"])
        + int(bulk.stats["throttled_unretried"]),
        "throttled": int(stats["throttled"]) + int(bulk.stats["throttled"]),
        "in_sync": per_call.in_sync and bulk.in_sync,
        "in_sync_per_call": per_call.in_sync,
        "in_sync_bulk": bulk.in_sync,
        "customers": len(fixture.ids),
        "changed_customers": per_call.customers,
        "compression": compression,
        "requests": requests,
        "server_ms_per_request": round(1000 * server_mean, 2),
        "round_trip_ms_per_request": round(1000 * round_trip, 2),
        "server_load": round(server_load, 3),
        "round_trip_load": round(round_trip_load, 3),
        "paced_share": round(paced_share, 3),
        "lost_points": round(lost),
        "gc_pause_max_seconds": round(longest_pause, 3),
        "gc_freeze": freeze,
        "document_cache": options.document_cache,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument(
        "--compression",
        type=float,
        default=DEFAULT_COMPRESSION,
        help="K: the dev store's and the client's clock run K times faster than real time",
    )
    parser.add_argument("--bulk-poll-seconds", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--document-cache",
        type=int,
        default=DOCUMENT_CACHE,
        help="entries in the dev store's cache of parsed documents (its own default: 64)",
    )
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="leave the set-up's objects to the garbage collector (its pauses, times K, then "
        "show in the cost rate)",
    )
    args = parser.parse_args()
    if args.compression <= 0 or args.customers < 1 or args.document_cache < 1:
        parser.error("--compression must be positive, --customers and --document-cache >= 1")
    started = time.perf_counter()
    fixture = synthesise(args.customers, args.seed)
    options = Options(
        args.compression, args.bulk_poll_seconds, not args.no_gc_freeze, args.document_cache
    )
    per_call = run_path("per-call", fixture, options)
    bulk = run_path("bulk", fixture, options)
    summary = report(fixture, per_call, bulk, options)
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
