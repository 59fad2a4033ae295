"""Undoing a push run: its customers' tags and metafields taken back to where it found them.

`clvsync push --shop SHOP --undo RUN` reads what the run applied from the audit
(`sync_changes`), works out what still stands (`plugin.domain.undo`: what later runs changed
again is left alone), and pushes the reverse through the push's own path: paced or bulk calls,
the pushed state kept, each change audited with the reason "undo of job run RUN".

The shop's push must be paused first (its `dry_run` setting): otherwise the next scheduled push
would put the desired state straight back. The usual course: pause, undo, fix the settings that
caused the bad run, recompute, check with a dry run, resume. Product recommendation metafields
are not undone: the nightly recommendations job rewrites them anyway.
"""

from __future__ import annotations

from typing import Any

import anyio
from sqlmodel import Session

from jobs.context import JobContext
from jobs.plan import Plan, Planned, WritebackError, shop_writeback_settings
from jobs.pusher import Pusher
from jobs.writeback import with_pusher
from plugin.domain.undo import RunChange, undo_change
from plugin.store.models import JobRun, Shop
from plugin.store.sync import pushed_state, run_record, values_before

UNDOABLE_JOBS = ("push", "reconcile", "undo")


def check_undo(ctx: JobContext, shop: Shop, target: int, *, dry_run: bool = False) -> None:
    """A WritebackError unless `target` is one of the shop's runs that changed the store and
    (for a real undo) the shop's push is paused."""
    with Session(ctx.engine) as session:
        run = session.get(JobRun, target)
    if run is None or run.shop_id != shop.id:
        raise WritebackError(f"{shop.domain} has no job run {target}")
    if run.job not in UNDOABLE_JOBS:
        raise WritebackError(
            f"job run {target} is a {run.job} run: only {', '.join(UNDOABLE_JOBS)} runs change "
            "the store"
        )
    if not dry_run and not shop_writeback_settings(shop).dry_run:
        raise WritebackError(
            f"{shop.domain}: pause its push first (clvsync shop settings {shop.domain} --set "
            "dry_run=true), or the next push puts the desired state straight back"
        )


def undo_plan(ctx: JobContext, shop: Shop, target: int) -> tuple[Plan, int]:
    """The changes that take back run `target` for the shop's customers, and how many of the
    run's changes a later one replaced (left alone)."""
    assert shop.id is not None
    record = run_record(ctx.engine, shop.id, target)
    plan, superseded = Plan(), 0
    if record.first_id is None:
        return plan, superseded
    customers = sorted(record.changes)
    before = values_before(ctx.engine, shop.id, customers, record.first_id)
    pushed = pushed_state(ctx.engine, shop.id, customers)
    for customer_id in customers:
        tags, values = pushed.get(customer_id, (frozenset(), {}))
        undo = undo_change(
            customer_id,
            [RunChange(*change) for change in record.changes[customer_id]],
            before.get(customer_id, {}),
            tags,
            values,
            f"undo of job run {target}",
        )
        superseded += undo.superseded
        if undo.change is not None:
            target_tags = (tags - set(undo.change.remove)) | set(undo.change.add)
            plan.items.append(Planned(undo.change, tags, values, frozenset(target_tags)))
    return plan, superseded


async def undo_run(
    ctx: JobContext, shop: Shop, run_id: int | None, *, target: int, dry_run: bool = False
) -> dict[str, Any]:
    """Take back push run `target` (module docstring); with `dry_run`, only say what would be."""
    await anyio.to_thread.run_sync(lambda: check_undo(ctx, shop, target, dry_run=dry_run))
    plan, superseded = await anyio.to_thread.run_sync(undo_plan, ctx, shop, target)
    if dry_run:
        return {"undo_of_run": target, "superseded": superseded, **plan.summary()}

    async def work(pusher: Pusher) -> dict[str, Any]:
        await pusher.push(plan)
        return {"undo_of_run": target, "customers_undone": len(plan.items)}

    return {"superseded": superseded, **await with_pusher(ctx, shop, run_id, work)}
