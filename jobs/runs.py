"""One run of a shop's job: a lease so that no two processes run it at once, and a record of it.

`run_job` is what the scheduler and `clvsync jobs run` call. It takes the (shop, job) lease in
`job_leases`, records a `JobRun` (started, finished, outcome ok or failed, counts, error), keeps
the lease alive while the job runs, and releases it at the end. A failure is recorded and logged,
never raised: one shop's broken job does not stop the others.

A run whose lease is held by another worker is skipped and NOT recorded: with several workers,
every one of them fires every tick and all but one skip, so recording skips would fill
`job_runs` with noise. The caller gets the outcome "skipped" and who holds the lease.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import Engine, delete, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from jobs.context import JobContext
from plugin.store.models import JobLease, JobRun, Shop

log = logging.getLogger(__name__)

OK, FAILED, SKIPPED, RUNNING = "ok", "failed", "skipped", "running"
DEFAULT_LEASE_SECONDS = 600.0
# The lease is renewed three times per lease length: a worker that dies frees its shop's job
# within one lease length, and a slow job never loses it while its worker lives.
RENEWALS_PER_LEASE = 3
_MAX_ERROR_CHARS = 1000
# Shopify access tokens and API secrets (shpat_, shpca_, shppa_, shpss_ ...): never stored.
_TOKEN = re.compile(r"shp[a-z]{2}_\w+")

# Jobs that must not overlap for one shop share one lease: the push, the reconcile (which
# pushes) and the undo of a push all write the pushed state; the refit and the re-score both
# write the scores.
SHARED_LEASES = {
    "push": "writeback",
    "reconcile": "writeback",
    "undo": "writeback",
    "refit": "scoring",
    "rescore": "scoring",
}


def lease_name(job: str) -> str:
    return SHARED_LEASES.get(job, job)


JobFn = Callable[[JobContext, Shop, int | None], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True)
class RunResult:
    outcome: str  # ok | failed | skipped
    run_id: int | None  # the JobRun recorded (None when skipped, or when nothing could be)
    counts: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None  # failed: exception type and message; skipped: who holds the lease


async def run_job(
    ctx: JobContext,
    shop_id: int,
    job: str,
    fn: JobFn,
    *,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> RunResult:
    """Run `fn(ctx, shop, run_id)` for the shop under the (shop, job) lease, and record it.

    Never raises (except the cancellation of the caller, after recording the run as failed).
    """
    try:
        begun = await anyio.to_thread.run_sync(
            _begin, ctx.engine, shop_id, job, ctx.worker, ctx.clock(), lease_seconds
        )
    except SQLAlchemyError as exc:
        error = describe_error(exc)
        log.error("%s for shop %d not started, the database failed: %s", job, shop_id, error)
        return RunResult(FAILED, None, error=error)
    if isinstance(begun, str):
        log.debug("%s for shop %d skipped: %s", job, shop_id, begun)
        return RunResult(SKIPPED, None, error=begun)
    if begun is None:
        log.error("%s for shop %d not started: no such shop", job, shop_id)
        return RunResult(FAILED, None, error=f"no shop with id {shop_id}")
    shop, run_id = begun
    return await _run_recorded(ctx, shop, job, fn, run_id, lease_seconds)


async def _run_recorded(
    ctx: JobContext, shop: Shop, job: str, fn: JobFn, run_id: int, lease_seconds: float
) -> RunResult:
    assert shop.id is not None
    started = time.monotonic()
    outcome, counts, error = FAILED, dict[str, Any](), None
    try:
        counts = dict(await _call_keeping_lease(ctx, shop, job, fn, run_id, lease_seconds))
        outcome = OK
    except anyio.get_cancelled_exc_class():
        error = "Cancelled: the process shut down before the job finished"
        log.warning("%s for %s cancelled: the process is shutting down", job, shop.domain)
        raise
    except Exception as exc:  # recorded and logged: never stops another shop's job
        error = describe_error(exc)
        log.error("%s for %s failed: %s", job, shop.domain, error)
        log.debug("%s for %s failed", job, shop.domain, exc_info=True)
    finally:
        # Recorded and released even while being cancelled: a shutdown leaves no run "running".
        with anyio.CancelScope(shield=True):
            await _finish_quietly(ctx, shop, job, run_id, outcome, counts, error)
    if outcome == OK:
        log.info(
            "%s for %s: ok in %.1f s %s",
            job,
            shop.domain,
            time.monotonic() - started,
            json.dumps(counts, default=str),
        )
    return RunResult(outcome, run_id, counts, error)


async def _call_keeping_lease(
    ctx: JobContext, shop: Shop, job: str, fn: JobFn, run_id: int, lease_seconds: float
) -> Mapping[str, Any]:
    """`fn`'s counts, the lease renewed meanwhile; `fn`'s exception raised as it is (not in a
    group: the run records its own type and message)."""
    results: list[Mapping[str, Any]] = []
    failures: list[Exception] = []

    async def call(scope: anyio.CancelScope) -> None:
        try:
            results.append(await fn(ctx, shop, run_id))
        except Exception as exc:
            failures.append(exc)
        finally:
            scope.cancel()  # stops the renewals

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_renew_lease, ctx, shop, job, lease_seconds)
        tasks.start_soon(call, tasks.cancel_scope)
    if failures:
        raise failures[0]
    if not results:
        raise RuntimeError("the job ended without a result")
    return results[0]


async def _renew_lease(ctx: JobContext, shop: Shop, job: str, lease_seconds: float) -> None:
    assert shop.id is not None
    while True:
        await anyio.sleep(lease_seconds / RENEWALS_PER_LEASE)
        try:
            kept = await anyio.to_thread.run_sync(
                _renew, ctx.engine, shop.id, job, ctx.worker, ctx.clock(), lease_seconds
            )
        except SQLAlchemyError as exc:
            log.warning("%s for %s: lease not renewed: %s", job, shop.domain, describe_error(exc))
            continue
        if not kept:
            log.warning("%s for %s: the lease was lost to another worker", job, shop.domain)


async def _finish_quietly(
    ctx: JobContext,
    shop: Shop,
    job: str,
    run_id: int,
    outcome: str,
    counts: Mapping[str, Any],
    error: str | None,
) -> None:
    assert shop.id is not None
    try:
        await anyio.to_thread.run_sync(
            _finish,
            ctx.engine,
            run_id,
            shop.id,
            job,
            ctx.worker,
            ctx.clock(),
            outcome,
            counts,
            error,
        )
    except SQLAlchemyError as exc:
        # The lease expires by itself; the run stays "running" in the record.
        log.error(
            "%s for %s: run %d not recorded: %s", job, shop.domain, run_id, describe_error(exc)
        )


def describe_error(exc: BaseException) -> str:
    """The exception's type and message, with anything shaped like a Shopify token blanked."""
    text = _TOKEN.sub("[token]", f"{type(exc).__name__}: {exc}".strip())
    return text[:_MAX_ERROR_CHARS]


# --- the store side (plain SQL, run in a worker thread) ---------------------------------------


def _begin(
    engine: Engine, shop_id: int, job: str, worker: str, now: datetime, lease_seconds: float
) -> tuple[Shop, int] | str | None:
    """In one transaction: the shop, its job's lease, and a JobRun "running". None when there is
    no such shop; a description of the lease when another worker holds it."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        shop = session.get(Shop, shop_id)
        if shop is None:
            return None
        if not take_lease(session, shop_id, lease_name(job), worker, now, lease_seconds):
            lease = session.get(JobLease, (shop_id, lease_name(job)))
            if lease is None:
                return "the lease was just released by another worker"
            return f"running on {lease.holder} (lease until {lease.expires_at.isoformat()})"
        _close_abandoned(session, shop_id, job, now)
        run = JobRun(shop_id=shop_id, job=job, worker=worker, started_at=now, outcome=RUNNING)
        session.add(run)
        session.flush()
        assert run.id is not None
        return shop, run.id


def _close_abandoned(session: Session, shop_id: int, job: str, now: datetime) -> None:
    """Runs still "running" when their lease is taken were left by a worker that died (or
    stalled past its lease): recorded as failed, so that no run stays "running" for ever."""
    table = JobRun.__table__  # type: ignore[attr-defined]
    session.connection().execute(
        update(table)
        .where(table.c.shop_id == shop_id, table.c.job == job, table.c.outcome == RUNNING)
        .values(
            outcome=FAILED,
            finished_at=now,
            error="Abandoned: its worker stopped before the job finished",
        )
    )


def take_lease(
    session: Session, shop_id: int, job: str, holder: str, now: datetime, lease_seconds: float
) -> bool:
    """Take the (shop, job) lease if it is free, expired or already `holder`'s; False if another
    holder has it. Safe against a concurrent taker on both backends: the UPDATE re-checks its
    condition on the row the other one committed (PostgreSQL) or runs under the single write
    lock (SQLite), and only one INSERT of a new lease can win the primary key."""
    table = JobLease.__table__  # type: ignore[attr-defined]
    until = now + timedelta(seconds=lease_seconds)
    connection = session.connection()
    taken = connection.execute(
        update(table)
        .where(
            table.c.shop_id == shop_id,
            table.c.job == job,
            or_(table.c.expires_at <= now, table.c.holder == holder),
        )
        .values(holder=holder, expires_at=until)
    ).rowcount
    if taken:
        return True
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    # RETURNING, not rowcount: psycopg reports no row count for INSERT ... ON CONFLICT
    created = connection.execute(
        insert(table)
        .values(shop_id=shop_id, job=job, holder=holder, expires_at=until)
        .on_conflict_do_nothing(index_elements=["shop_id", "job"])
        .returning(table.c.holder)
    ).first()
    return created is not None


def _renew(
    engine: Engine, shop_id: int, job: str, holder: str, now: datetime, lease_seconds: float
) -> bool:
    table = JobLease.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        renewed = connection.execute(
            update(table)
            .where(
                table.c.shop_id == shop_id,
                table.c.job == lease_name(job),
                table.c.holder == holder,
            )
            .values(expires_at=now + timedelta(seconds=lease_seconds))
        ).rowcount
    return bool(renewed)


def _finish(
    engine: Engine,
    run_id: int,
    shop_id: int,
    job: str,
    holder: str,
    now: datetime,
    outcome: str,
    counts: Mapping[str, Any],
    error: str | None,
) -> None:
    """Record how the run ended and release the lease (only if it is still ours)."""
    table = JobLease.__table__  # type: ignore[attr-defined]
    with Session(engine) as session, session.begin():
        run = session.get(JobRun, run_id)
        if run is not None:  # gone only if the shop was deleted meanwhile
            run.finished_at, run.outcome, run.error = now, outcome, error
            run.counts = json.dumps(dict(counts), sort_keys=True, default=str)
        session.connection().execute(
            delete(table).where(
                table.c.shop_id == shop_id,
                table.c.job == lease_name(job),
                table.c.holder == holder,
            )
        )


def recent_runs(engine: Engine, shop_id: int | None = None, limit: int = 20) -> list[JobRun]:
    """The newest job runs first (of one shop, or of all)."""
    query = select(JobRun).order_by(col(JobRun.id).desc()).limit(limit)
    if shop_id is not None:
        query = query.where(JobRun.shop_id == shop_id)
    with Session(engine) as session:
        return list(session.exec(query))
