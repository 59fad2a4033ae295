"""How long the records that only grow are kept, and their pruning (the nightly prune job).

- Processed webhook events: a fortnight (`inbox.prune_done`; Shopify retries a delivery for
  about 4 hours and may deliver a day late, so their ids de-duplicate that long).
- The audit of applied changes (`sync_changes`): 180 days, enough to answer a merchant asking
  why a tag came or went this season; except, for each customer and metafield key, the last
  value the app wrote (set or deleted) or a read of the store found before then. The undo of a
  push sets each metafield it changed back to the value before it (`sync.values_before`),
  however old: were that row pruned, the undo of last week's push would delete a value set 200
  days ago instead of restoring it. (Product metafields are never undone, and tags are undone
  from the run's own rows: nothing older is kept for them.)
- Job runs: 90 days of finished runs, and 180 days, as long as their audit, of those the audit
  names (a push, reconcile or undo that changed the store): a push can be undone as long as its
  audit is kept, and its run with it. A run still marked running is never deleted.
- Model runs: 90 days, except the shop's latest full run (the re-score's models) and every run
  a stored score still points to.
- Refunds of an order the ledger does not hold: 30 days after the refund. A refund can arrive
  before its order, and waits for it to be netted from it; but a refund of a test order (never
  part of the ledger) or of an order whose webhooks never came waits for good. Past 30 days
  nothing is lost with it: Shopify retries a webhook for 48 hours, and an order that comes
  later (a late delivery, the backfill) lists its refunds, which are recorded with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, exists, func, or_, select
from sqlmodel import Session, col

from plugin.store import inbox
from plugin.store.models import CustomerScore, JobRun, ModelRun, Order, Refund, SyncChange
from plugin.store.sync import VALUE_HELD

INBOX_KEEP = timedelta(days=14)
SYNC_CHANGES_KEEP = timedelta(days=180)
JOB_RUNS_KEEP = timedelta(days=90)
MODEL_RUNS_KEEP = timedelta(days=90)
ORPHAN_REFUNDS_KEEP = timedelta(days=30)


@dataclass(frozen=True)
class Pruned:
    inbox_events_deleted: int
    sync_changes_deleted: int
    job_runs_deleted: int
    model_runs_deleted: int
    orphan_refunds_deleted: int


def prune_shop(session: Session, shop_id: int, shop_domain: str, now: datetime) -> Pruned:
    """Delete the shop's records past their keep (module docstring); how many of each."""
    connection = session.connection()
    audit_cut = now - SYNC_CHANGES_KEEP
    changes = connection.execute(
        delete(SyncChange).where(
            col(SyncChange.shop_id) == shop_id,
            col(SyncChange.applied_at) < audit_cut,
            ~_needed_by_undo(audit_cut),
        )
    )
    audited = exists().where(
        col(SyncChange.shop_id) == shop_id, col(SyncChange.job_run_id) == col(JobRun.id)
    )
    runs = connection.execute(
        delete(JobRun).where(
            col(JobRun.shop_id) == shop_id,
            col(JobRun.finished_at).is_not(None),
            col(JobRun.started_at) < now - JOB_RUNS_KEEP,
            or_(col(JobRun.started_at) < audit_cut, ~audited),
        )
    )
    latest_full = (
        select(func.max(col(ModelRun.id)))
        .where(col(ModelRun.shop_id) == shop_id, col(ModelRun.kind) == "full")
        .scalar_subquery()
    )
    in_use = select(col(CustomerScore.run_id)).where(col(CustomerScore.shop_id) == shop_id)
    models = connection.execute(
        delete(ModelRun).where(
            and_(
                col(ModelRun.shop_id) == shop_id,
                col(ModelRun.started_at) < now - MODEL_RUNS_KEEP,
                col(ModelRun.id) != func.coalesce(latest_full, -1),
                col(ModelRun.id).not_in(in_use),
            )
        )
    )
    their_order = exists().where(
        col(Order.shop_id) == col(Refund.shop_id), col(Order.order_id) == col(Refund.order_id)
    )
    orphans = connection.execute(
        delete(Refund).where(
            col(Refund.shop_id) == shop_id,
            col(Refund.created_at) < now - ORPHAN_REFUNDS_KEEP,
            ~their_order,
        )
    )
    return Pruned(
        inbox_events_deleted=inbox.prune_done(session, shop_domain, now - INBOX_KEEP),
        sync_changes_deleted=int(changes.rowcount or 0),
        job_runs_deleted=int(runs.rowcount or 0),
        model_runs_deleted=int(models.rowcount or 0),
        orphan_refunds_deleted=int(orphans.rowcount or 0),
    )


def _needed_by_undo(cut: datetime) -> ColumnElement[bool]:
    """An audit row before `cut` that an undo may read: for its customer and metafield key, the
    last value the app wrote before it (module docstring), no later one written before `cut`.
    (An anti-join, not NOT IN a grouped list: PostgreSQL checks NOT IN row by row once that list
    no longer fits its memory for hashing, some 150,000 customer and key pairs.)"""
    later = SyncChange.__table__.alias("later")  # type: ignore[attr-defined]
    superseded = exists().where(
        later.c.shop_id == col(SyncChange.shop_id),
        later.c.customer_id == col(SyncChange.customer_id),
        later.c.name == col(SyncChange.name),
        later.c.kind == "metafield",
        later.c.action.in_(VALUE_HELD),
        later.c.applied_at < cut,
        later.c.id > col(SyncChange.id),
    )
    return and_(
        col(SyncChange.customer_id).is_not(None),
        col(SyncChange.kind) == "metafield",
        col(SyncChange.action).in_(VALUE_HELD),
        ~superseded,
    )
