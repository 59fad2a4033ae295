"""Undoing a push run: its customers' tags and metafields taken back to where it found them.

`clvsync push --shop SHOP --undo RUN` reads what the run applied from the audit
(`sync_changes`, kept 180 days with the run: `plugin.store.retention`, which also keeps the
older values an undo puts back), works out what still stands (`plugin.domain.undo`: what later
runs changed again is left alone), and pushes the reverse through the push's own path: paced or
bulk calls, the pushed state kept, each change audited with the reason "undo of job run RUN".

The shop's push must be paused first (its `dry_run` setting): otherwise the next scheduled push
would put the desired state straight back. The usual course: pause, undo, fix the settings that
caused the bad run, recompute, check with a dry run, resume. Product recommendation metafields
are not undone: the nightly recommendations job rewrites them anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
from sqlalchemy import Engine, Exists, exists, or_
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from jobs.context import JobContext
from jobs.plan import Plan, Planned
from jobs.pusher import Pusher
from jobs.shop_settings import WritebackError, shop_writeback_settings
from jobs.writeback import read_back_uncertain, with_pusher
from plugin.domain.undo import RunChange, undo_change
from plugin.store.models import JobRun, Shop, SyncChange
from plugin.store.retention import SYNC_CHANGES_KEEP
from plugin.store.sync import (
    APPLIED,
    gone_customers,
    pushed_state,
    run_record,
    values_before,
)

UNDOABLE_JOBS = ("push", "reconcile", "undo")
_BATCH = 500


def check_undo(ctx: JobContext, shop: Shop, target: int, *, dry_run: bool = False) -> None:
    """A WritebackError unless `target` is one of the shop's runs that changed the store and
    (for a real undo) the shop's push is paused."""
    with Session(ctx.engine) as session:
        run = session.get(JobRun, target)
    if run is None or run.shop_id != shop.id:
        raise WritebackError(
            f"{shop.domain} has no job run {target} (a run that changed the store is kept, and "
            f"can be undone, for {SYNC_CHANGES_KEEP.days} days)"
        )
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
    # a customer deleted in the store since is sent nothing, as by the push (their pushed state
    # was dropped with them, so every change of the run would look still in place)
    customers = sorted(set(record.changes) - gone_customers(ctx.engine, shop.id, record.changes))
    before = values_before(ctx.engine, shop.id, customers, record.first_id)
    pushed = pushed_state(ctx.engine, shop.id, customers)
    later = touched_later(ctx.engine, shop.id, target, customers)
    for customer_id in customers:
        tags, values = pushed.get(customer_id, (frozenset(), {}))
        undo = undo_change(
            customer_id,
            [RunChange(*change) for change in record.changes[customer_id]],
            before.get(customer_id, {}),
            tags,
            values,
            f"undo of job run {target}",
            later=later.get(customer_id, frozenset()),
        )
        superseded += undo.superseded
        if undo.change is not None:
            target_tags = (tags - set(undo.change.remove)) | set(undo.change.add)
            plan.items.append(Planned(undo.change, tags, values, frozenset(target_tags)))
    return plan, superseded


def touched_later(
    engine: Engine, shop_id: int, target: int, customer_ids: Sequence[int]
) -> dict[int, frozenset[tuple[str, str]]]:
    """By customer, the (kind, name) pairs of run `target`'s changes that a later audited change
    (another run's, or one made outside any run) touched again, whatever it left in the store."""
    # The store's current state alone cannot tell: a tag run `target` added, a later run removed
    # and another added back looks untouched, yet it is the last run's to keep.
    done = SyncChange
    found: dict[int, set[tuple[str, str]]] = {}
    with Session(engine) as session:
        for start in range(0, len(customer_ids), _BATCH):
            chunk = list(customer_ids[start : start + _BATCH])
            query = select(col(done.customer_id), col(done.kind), col(done.name)).where(
                col(done.shop_id) == shop_id,
                col(done.job_run_id) == target,
                col(done.customer_id).in_(chunk),
                col(done.action).in_(APPLIED),
                _touched_again(shop_id, target, chunk),
            )
            for customer_id, kind, name in session.execute(query):
                found.setdefault(customer_id, set()).add((kind, name))
    return {customer_id: frozenset(pairs) for customer_id, pairs in found.items()}


def _touched_again(shop_id: int, target: int, chunk: list[int]) -> Exists:
    """A later applied change, outside run `target`, to the same customer's same tag or key as
    the outer query's row. The chunk is repeated inside so that, whichever join the database
    picks, it reads only these customers' audit rows (by ix_sync_changes_customer)."""
    done, again = SyncChange, aliased(SyncChange)
    return exists().where(
        col(again.shop_id) == shop_id,
        col(again.customer_id).in_(chunk),
        col(again.customer_id) == col(done.customer_id),
        col(again.id) > col(done.id),
        col(again.kind) == col(done.kind),
        col(again.name) == col(done.name),
        col(again.action).in_(APPLIED),
        or_(col(again.job_run_id).is_(None), col(again.job_run_id) != target),
    )


async def undo_run(
    ctx: JobContext, shop: Shop, run_id: int | None, *, target: int, dry_run: bool = False
) -> dict[str, Any]:
    """Take back push run `target` (module docstring); with `dry_run`, only say what would be."""
    await anyio.to_thread.run_sync(lambda: check_undo(ctx, shop, target, dry_run=dry_run))
    if dry_run:
        plan, superseded = await anyio.to_thread.run_sync(undo_plan, ctx, shop, target)
        return {"undo_of_run": target, "superseded": superseded, **plan.summary()}

    async def work(pusher: Pusher) -> dict[str, Any]:
        # what the store holds of customers an earlier push left uncertain, read first: the
        # undo's changes are worked out from it
        await read_back_uncertain(ctx, pusher)
        plan, superseded = await anyio.to_thread.run_sync(undo_plan, ctx, shop, target)
        await pusher.push(plan)
        return {
            "undo_of_run": target,
            "customers_undone": len(plan.items),
            "superseded": superseded,
        }

    return await with_pusher(ctx, shop, run_id, work)
