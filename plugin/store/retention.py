"""How long the records that only grow are kept, and their pruning (the nightly prune job).

- Processed webhook events: a fortnight (`inbox.prune_done`; Shopify retries a delivery for
  about 4 hours and may deliver a day late, so their ids de-duplicate that long).
- The audit of applied changes (`sync_changes`): 180 days, enough to answer a merchant asking
  why a tag came or went this season.
- Job runs: 90 days of finished runs; a run still marked running is never deleted.
- Model runs: 90 days, except the shop's latest full run (the re-score's models) and every run
  a stored score still points to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, select
from sqlmodel import Session, col

from plugin.store import inbox
from plugin.store.models import CustomerScore, JobRun, ModelRun, SyncChange

INBOX_KEEP = timedelta(days=14)
SYNC_CHANGES_KEEP = timedelta(days=180)
JOB_RUNS_KEEP = timedelta(days=90)
MODEL_RUNS_KEEP = timedelta(days=90)


@dataclass(frozen=True)
class Pruned:
    inbox_events_deleted: int
    sync_changes_deleted: int
    job_runs_deleted: int
    model_runs_deleted: int


def prune_shop(session: Session, shop_id: int, shop_domain: str, now: datetime) -> Pruned:
    """Delete the shop's records past their keep (module docstring); how many of each."""
    connection = session.connection()
    changes = connection.execute(
        delete(SyncChange).where(
            col(SyncChange.shop_id) == shop_id, col(SyncChange.applied_at) < now - SYNC_CHANGES_KEEP
        )
    )
    runs = connection.execute(
        delete(JobRun).where(
            col(JobRun.shop_id) == shop_id,
            col(JobRun.finished_at).is_not(None),
            col(JobRun.started_at) < now - JOB_RUNS_KEEP,
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
    return Pruned(
        inbox_events_deleted=inbox.prune_done(session, shop_domain, now - INBOX_KEEP),
        sync_changes_deleted=int(changes.rowcount or 0),
        job_runs_deleted=int(runs.rowcount or 0),
        model_runs_deleted=int(models.rowcount or 0),
    )
