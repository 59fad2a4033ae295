"""Write-back: push each customer's desired tags and metafields to the store, and reconcile.

The push compares each customer's desired state (from the last score) with the state the store
was last known to hold, and sends only the difference: tagsRemove / tagsAdd for tags under the
shop's prefix (never another tag), metafieldsSet / metafieldsDelete for the app's metafields.
Few changes go as batched calls (many aliased mutations per request, paced by the client); from
`bulk_threshold` customers up, one bulk mutation per kind over a staged JSONL upload, whose
result file is read back to confirm each line. Whatever the store confirms is recorded with its
reason as each batch returns; a change that got no answer marks its customers uncertain, and
the next push reads them back before it plans (`read_back_uncertain`). A tag change the store
refuses (a customer at the 250-tag cap, a deleted one) is recorded as refused and not sent
again until the desired tags change or a reconcile re-reads the customer. A refused metafield
value takes none of its owner's other values with it (`pusher.set_apart`), and one naming a
product the store does not have teaches the app that the product is gone. Then each product's
recommendation metafields go the same way (`jobs/product_push.py`).

The reconcile reads the store's state back (pages of customers, or a bulk query for large
shops), replaces the recorded pushed state with it, and pushes: drift from a lost call or from
someone editing the store is repaired either way; products' recommendation metafields are
read back (by pages) and repaired the same way, except Shopify's complementary products where
the app did not write them (the merchant's), and the products the read does not find are gone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
from sqlalchemy import Engine, func, select, update
from sqlmodel import Session, col

from jobs.context import JobContext
from jobs.plan import Plan, Planned, plan_changes
from jobs.product_push import ProductPusher, plan_products, split_name
from jobs.pusher import PushCounts, Pusher
from jobs.readback import (
    Found,
    PastPagination,
    ReadBackError,
    owned_state,
    read_customers,
    read_in_bulk,
    read_pages,
    read_product_pages,
    read_products_in_bulk,
)
from jobs.shop_profile import read_shop_profile
from jobs.shop_settings import WritebackError, shop_writeback_settings
from plugin.domain.writeback import COMPLEMENTARY_PRODUCTS
from plugin.shopify.bulk import BulkRunner
from plugin.shopify.client import AdminClient, AuthError
from plugin.store.models import Customer, OrderLine, Shop
from plugin.store.recommendations import (
    record_product_read_back,
    record_products_read,
    unanswered_products,
)
from plugin.store.sync import (
    pushed_state,
    pushed_tags,
    record_customers_found,
    record_customers_missing,
    record_read_back,
    uncertain_customers,
    unrecorded_customers,
)
from plugin.store.tokens import settings_cipher

__all__ = [
    "Plan",
    "Planned",
    "PushCounts",
    "Pusher",
    "WritebackError",
    "admin_client",
    "plan_changes",
    "push_shop",
    "read_back_uncertain",
    "reconcile_shop",
    "shop_writeback_settings",
    "with_pusher",
]

log = logging.getLogger(__name__)

BULK_READ_ABOVE = 5000  # known customers (or products) from which the reconcile reads in bulk
Read = TypeVar("Read")


def needs_reauth_message(domain: str) -> str:
    """What to say of a shop whose token the store refused (a 401 marked it), and the fix."""
    return (
        f"{domain} needs to authorise the app again: the store refused its access token (401). "
        f"For a custom app, store a new Admin API token with `clvsync shop add {domain} --token "
        "TOKEN`; push, reconcile and backfill resume from then on"
    )


def admin_client(ctx: JobContext, shop: Shop) -> AdminClient:
    if not shop.installed or shop.access_token_encrypted is None:
        raise WritebackError(f"{shop.domain} is not installed: no token to call the store with")
    if shop.needs_reauth:
        raise WritebackError(needs_reauth_message(shop.domain))
    token = settings_cipher(ctx.settings).decrypt(shop.access_token_encrypted)
    return AdminClient(
        ctx.http,
        shop.domain,
        token,
        api_version=ctx.settings.api_version,
        admin_url=ctx.settings.admin_url,
        sleep=ctx.sleep,
        clock=ctx.monotonic,
    )


def _mark_needs_reauth(engine: Engine, shop_id: int, refused: str | None) -> bool:
    """Mark the shop as needing re-authorisation if it still holds the refused token (as
    encrypted: each encryption differs, so a token stored again, even the same one, is new);
    whether it was marked."""
    table = Shop.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        marked = connection.execute(
            update(table)
            .where(table.c.id == shop_id, table.c.access_token_encrypted == refused)
            .values(needs_reauth=True)
        )
        return bool(marked.rowcount)


@contextlib.asynccontextmanager
async def marking_refused_token(ctx: JobContext, shop: Shop) -> AsyncIterator[None]:
    """Around a job's calls to the shop with `shop`'s token: a refused token (401) marks the
    shop as needing re-authorisation, so that no job calls it again until a new token is
    stored; unless a new one was stored while the job ran (`clvsync shop add`, or the shop
    installed again), which the 401 says nothing of."""
    assert shop.id is not None
    refused = shop.access_token_encrypted
    try:
        yield
    except AuthError:
        if await anyio.to_thread.run_sync(_mark_needs_reauth, ctx.engine, shop.id, refused):
            log.warning(
                "%s: the access token was refused; marked as needing re-authorisation",
                shop.domain,
            )
        else:
            log.warning(
                "%s: the access token was refused, but a new one was stored since the job "
                "began: not marked as needing re-authorisation",
                shop.domain,
            )
        raise


async def with_pusher(
    ctx: JobContext,
    shop: Shop,
    run_id: int | None,
    work: Callable[[Pusher], Any],
) -> dict[str, Any]:
    """`work(pusher)` with a pusher on the shop's client; its counts, the client's, and what
    `work` returned. A refused token marks the shop as needing re-authorisation."""
    assert shop.id is not None
    settings = shop_writeback_settings(shop)
    client = admin_client(ctx, shop)
    pusher = Pusher(
        ctx.engine,
        shop,
        client,
        BulkRunner(client, ctx.http, sleep=ctx.sleep),
        settings,
        job_run_id=run_id,
        clock=ctx.clock,
    )
    async with marking_refused_token(ctx, shop):
        extra = await work(pusher)
    stats = client.stats
    return {
        **vars(pusher.counts),
        **(extra or {}),
        "api_requests": stats.requests,
        "api_cost": round(stats.cost_actual, 1),
        "throttled": stats.throttled,
        "retries": stats.retries,
        "server_errors": stats.server_errors,
        "transport_errors": stats.transport_errors,
    }


async def push_shop(
    ctx: JobContext, shop: Shop, run_id: int | None, *, dry_run: bool = False
) -> dict[str, Any]:
    """Send the differences between the desired and the pushed state; counts of what was done.
    A dry run (asked for, or the shop's setting) reports the plan and calls nothing."""
    assert shop.id is not None
    shop_id = shop.id
    settings = shop_writeback_settings(shop)
    if dry_run or settings.dry_run:
        plan = await anyio.to_thread.run_sync(plan_changes, ctx.engine, shop, settings)
        products = await anyio.to_thread.run_sync(plan_products, ctx.engine, shop_id, settings)
        to_read = await anyio.to_thread.run_sync(
            lambda: customers_to_read(ctx.engine, shop_id, first_writes=True)
        )
        unanswered = await anyio.to_thread.run_sync(unanswered_products, ctx.engine, shop_id)
        return {
            "dry_run": True,
            **plan.summary(),
            "products_with_changes": len(products),
            "customers_to_read_back": len(to_read),
            "products_to_read_back": len(unanswered),
        }

    async def work(pusher: Pusher) -> dict[str, Any]:
        await read_back_uncertain(ctx, pusher, first_writes=True)
        plan = await anyio.to_thread.run_sync(plan_changes, ctx.engine, shop, settings)
        await pusher.push(plan)
        return {"skipped_refused": plan.skipped_refused, **await _push_products(ctx, pusher)}

    return await with_pusher(ctx, shop, run_id, work)


async def reconcile_shop(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
    """Read the store's state back, repair drift, then push; counts of what was done."""
    assert shop.id is not None
    shop_id = shop.id
    settings = shop_writeback_settings(shop)
    if settings.dry_run:
        return {"dry_run": True, "skipped": "reconcile reads and repairs; off in dry-run mode"}

    async def work(pusher: Pusher) -> dict[str, Any]:
        # the days the next recompute counts, and the dates the plan below writes
        shop.iana_timezone = await read_shop_profile(ctx.engine, shop, pusher.client)
        read_started = ctx.clock()
        found = await _read_customers(ctx, pusher)
        pushed = await anyio.to_thread.run_sync(pushed_tags, ctx.engine, shop_id)
        state = owned_state(found, settings.tag_prefix, pushed)
        # first the deletion marks the read settles, so that the customers it finds after all
        # get the state it read (a customer marked deleted has none)
        gone = await anyio.to_thread.run_sync(
            record_customers_found, ctx.engine, shop_id, found.keys(), read_started, ctx.clock()
        )
        drifted = await anyio.to_thread.run_sync(
            lambda: record_read_back(
                ctx.engine, shop_id, state, ctx.clock(), job_run_id=pusher.job_run_id
            )
        )
        if gone:
            log.info("%s: %d customers gone from the store, marked deleted", shop.domain, len(gone))
        pusher.counts.customers_gone += len(gone)
        await read_back_uncertain(ctx, pusher, found)
        # the products first: the customers' plan leaves out the products the read did not find
        products_read = await _read_products(ctx, pusher)
        plan = await anyio.to_thread.run_sync(plan_changes, ctx.engine, shop, settings)
        await pusher.push(plan)
        products = await _push_products(ctx, pusher)
        return {
            "customers_read": len(state),
            "drifted": drifted,
            **products_read,
            **products,
        }

    return await with_pusher(ctx, shop, run_id, work)


def customers_to_read(engine: Engine, shop_id: int, *, first_writes: bool) -> list[int]:
    """The customers `read_back_uncertain` reads, in id order."""
    uncertain = uncertain_customers(engine, shop_id)
    if not first_writes:
        return uncertain
    return sorted(set(uncertain).union(unrecorded_customers(engine, shop_id)))


async def read_back_uncertain(
    ctx: JobContext, pusher: Pusher, whole: Found | None = None, *, first_writes: bool = False
) -> None:
    """Read back the customers an earlier push left uncertain (a change sent without an
    answer, `jobs.pusher`) and record what the store holds of the app's, so that the plan
    compares against the store and not against a record that may be wrong either way. With
    `first_writes` (the push), the scored customers of whom nothing is recorded too, before the
    app's first write to them: the store may hold some of the app's tags or values already (left
    by an earlier install of the app, or put there by the merchant), and taken as absent they
    would be sent again, audited as the push's, and taken off by its undo. By id for a few; a
    bulk read of the whole store from the shop's `bulk_threshold` or BULK_READ_ABOVE customers
    (the push of as many goes in bulk too), or `whole`, one just made (the reconcile's). Those
    the read does not find are deleted in the store: marked deleted, as the reconcile marks
    those its read misses, and no longer pushed to (their values would be refused at every push
    until then)."""
    engine, shop_id = ctx.engine, pusher.shop_id
    uncertain = await anyio.to_thread.run_sync(
        lambda: customers_to_read(engine, shop_id, first_writes=first_writes)
    )
    if not uncertain:
        return
    log.info("%s: reading back %d customers before the push", pusher.shop.domain, len(uncertain))
    by_id = len(uncertain) < min(BULK_READ_ABOVE, pusher.settings.bulk_threshold)
    if whole is None and by_id:
        found = await read_customers(pusher.client, pusher.settings.metafield_namespace, uncertain)
    else:
        whole = whole if whole is not None else await _read_customers(ctx, pusher, bulk=True)
        found = {c: whole[c] for c in uncertain if c in whole}
    pushed = await anyio.to_thread.run_sync(pushed_state, engine, shop_id, list(found))
    state = owned_state(
        found, pusher.settings.tag_prefix, {c: tags for c, (tags, _) in pushed.items()}
    )
    await anyio.to_thread.run_sync(
        lambda: record_read_back(engine, shop_id, state, ctx.clock(), job_run_id=pusher.job_run_id)
    )
    # a read of the whole store that found no customer at all is not a credible one
    credible = whole is None or bool(whole)
    missing = [c for c in uncertain if c not in found] if credible else []
    await anyio.to_thread.run_sync(record_customers_missing, engine, shop_id, missing, ctx.clock())
    pusher.counts.customers_read_back += len(uncertain)
    pusher.counts.customers_gone += len(missing)


async def _read_customers(ctx: JobContext, pusher: Pusher, *, bulk: bool = False) -> Found:
    """Every customer's tags and the app's metafields; with `bulk`, in bulk whatever the
    shop's size."""
    namespace = pusher.settings.metafield_namespace
    known = await anyio.to_thread.run_sync(_known_customers, ctx.engine, pusher.shop_id)
    return await _read_store(
        pusher,
        not bulk and known < BULK_READ_ABOVE,
        lambda: read_pages(pusher.client, namespace),
        lambda: read_in_bulk(pusher.bulk, namespace),
    )


async def _read_store(
    pusher: Pusher,
    pages_first: bool,
    by_pages: Callable[[], Awaitable[Read]],
    in_bulk: Callable[[], Awaitable[Read]],
) -> Read:
    """A read of the store's customers or products: by pages first if `pages_first` (the app
    knows fewer than BULK_READ_ABOVE of them), with a bulk query otherwise, or when the pages
    reach pagination's limit."""
    if pages_first:
        try:
            return await by_pages()
        except PastPagination:
            pass
    try:
        read = await in_bulk()
    except ReadBackError as exc:
        raise WritebackError(f"{pusher.shop.domain}: {exc}") from None
    pusher.counts.bulk_operations += 1
    return read


async def _read_products(ctx: JobContext, pusher: Pusher) -> dict[str, int]:
    """Read the products' recommendation metafields back and take them as pushed (Shopify's
    complementary products only where the app wrote it: elsewhere a value is the merchant's,
    kept); the products the read did not find are gone."""
    settings, shop_id = pusher.settings, pusher.shop_id
    shared = COMPLEMENTARY_PRODUCTS if settings.complementary_products else None
    namespace = settings.metafield_namespace
    extra = split_name(shared) if shared else None
    known = await anyio.to_thread.run_sync(_known_products, ctx.engine, shop_id)
    read = await _read_store(
        pusher,
        known < BULK_READ_ABOVE,
        lambda: read_product_pages(pusher.client, namespace, extra),
        lambda: read_products_in_bulk(pusher.bulk, namespace, extra),
    )

    def record() -> dict[str, int]:
        now = ctx.clock()
        drifted = record_product_read_back(
            ctx.engine, shop_id, read.values, now, namespace=namespace, shared=shared
        )
        gone = record_products_read(ctx.engine, shop_id, read.seen, now)
        return {"products_drifted": drifted, "products_not_found": gone}

    return await anyio.to_thread.run_sync(record)


async def _push_products(ctx: JobContext, pusher: Pusher) -> dict[str, int]:
    """The products' recommendation metafields, through the same client (and bucket)."""
    changes = await anyio.to_thread.run_sync(
        plan_products, ctx.engine, pusher.shop_id, pusher.settings
    )
    products = ProductPusher(
        ctx.engine,
        pusher.shop_id,
        pusher.client,
        job_run_id=pusher.job_run_id,
        clock=ctx.clock,
        settings=pusher.settings,
    )
    return await products.push(changes)


def _known_customers(engine: Engine, shop_id: int) -> int:
    with Session(engine) as session:
        query = select(func.count()).select_from(Customer).where(col(Customer.shop_id) == shop_id)
        return int(session.execute(query).scalar_one())


def _known_products(engine: Engine, shop_id: int) -> int:
    """The products the shop's orders name (the catalogue holds these at least)."""
    with Session(engine) as session:
        query = select(func.count(func.distinct(col(OrderLine.product_id)))).where(
            col(OrderLine.shop_id) == shop_id
        )
        return int(session.execute(query).scalar_one())
