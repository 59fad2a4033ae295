"""One run of a shop's job: a lease so that no two processes run it at once, and a record of it.

`run_job` is what the scheduler and `clvsync jobs run` call. It takes the (shop, job) lease in
`job_leases`, records a `JobRun` (started, finished, outcome ok or failed, counts, error), keeps
the lease alive while the job runs, and releases it at the end. A failure is recorded and logged,
never raised: one shop's broken job does not stop the others.

A run whose lease is held by another worker is skipped and NOT recorded (a tick taken while the
shop's job, or one sharing its lease, still runs elsewhere: a long refit meets the next
rescores): recording skips would fill `job_runs` with noise. The caller gets the outcome
"skipped", who holds the lease, and `lease_held` (the scheduler puts such a tick back in the
queue, to wait for the lease). A run for a tick (`due_at`) that a run of the job begun after it
and ended ok has served is skipped too: a tick made up behind a run still going when the
scheduler took the lead, say, which has ended ok since.

A run left "running" by a worker that died is closed as failed ("Abandoned: ...") by the next
run to take its lease, or, once its worker no longer holds the lease (it expired), by the
scheduler's make-up as it looks at the runs (`close_abandoned_runs`).

A run that loses its lease (another worker took it over, or renewals failed until it expired
by this worker's clock) is cancelled there and recorded as failed ("lease lost to ..."): from
then on another worker may be running a job that writes the same state.

Cancelling does not stop the work a job runs in a worker thread (the recompute, the prune, the
recommendations, the backfill's applying): anyio waits for the thread to end. So the job is
given its own engine (`ctx.engine` with the same pool) whose every statement first checks a
stop flag, set when the lease is lost, or CLEANUP_SECONDS after the run is cancelled (a
shutdown: the job's own clean-up, such as the push recording what the store confirmed, writes
first): the thread stops with JobStoppedError at its next statement, within one batch (each of
a re-score's or a backfill's batches begins with one), its transaction rolled back, and the
run is recorded as lease lost, or cancelled. (A refit's model fitting, or a score write
through a raw connection, runs to its end first: neither issues a statement on the way.)
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import ColumnElement, Connection, Engine, case, delete, event, exists, or_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from jobs.context import JobContext
from plugin.store.db import insert_for
from plugin.store.models import JobLease, JobRun, Shop

log = logging.getLogger(__name__)

OK, FAILED, SKIPPED, RUNNING = "ok", "failed", "skipped", "running"
DEFAULT_LEASE_SECONDS = 600.0
# The lease is renewed three times per lease length: a worker that dies frees its shop's job
# within one lease length, and a slow job never loses it while its worker lives.
RENEWALS_PER_LEASE = 3
_MAX_ERROR_CHARS = 1000
ABANDONED = "Abandoned: its worker stopped before the job finished"
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


def lease_of(job: ColumnElement[str]) -> ColumnElement[str]:
    """`lease_name` in SQL, of a column of job names."""
    return case(SHARED_LEASES, value=job, else_=job)


def _sharing(job: str) -> list[str]:
    """The jobs under `job`'s lease, itself included."""
    return sorted({name for name in SHARED_LEASES if lease_name(name) == lease_name(job)} | {job})


JobFn = Callable[[JobContext, Shop, int | None], Awaitable[Mapping[str, Any]]]


class LeaseLostError(Exception):
    """The run's lease is no longer its own: another worker may run the job now."""


# On a shutdown, how long a job's clean-up may still write before its threads are stopped.
CLEANUP_SECONDS = 2.0


class JobStoppedError(Exception):
    """Raised at a stopped run's next database statement (module docstring)."""


@dataclass(frozen=True)
class RunResult:
    outcome: str  # ok | failed | skipped
    run_id: int | None  # the JobRun recorded (None when skipped, or when nothing could be)
    counts: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None  # failed: exception type and message; skipped: who holds the lease
    lease_held: bool = False  # skipped because another worker holds the lease (not: uninstalled)


async def run_job(
    ctx: JobContext,
    shop_id: int,
    job: str,
    fn: JobFn,
    *,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    due_at: datetime | None = None,
) -> RunResult:
    """Run `fn(ctx, shop, run_id)` for the shop under the (shop, job) lease, and record it;
    for the tick of `due_at`, skipped if a run of the job begun after it has ended ok.

    Never raises (except the cancellation of the caller, after recording the run as failed).
    Jobs that share a lease (push and reconcile, rescore and refit) run one at a time in this
    process: the lease keeps processes apart, but a worker takes a lease it holds again, so
    the one process running every job would otherwise run a shop's push and reconcile at once.
    """
    lock = ctx.lease_locks.setdefault((shop_id, lease_name(job)), anyio.Lock())
    async with lock:
        return await _run_job_now(ctx, shop_id, job, fn, lease_seconds, due_at)


async def _run_job_now(
    ctx: JobContext,
    shop_id: int,
    job: str,
    fn: JobFn,
    lease_seconds: float,
    due_at: datetime | None,
) -> RunResult:
    now = ctx.clock()
    try:
        begun = await anyio.to_thread.run_sync(
            _begin, ctx.engine, shop_id, job, ctx.worker, now, lease_seconds, due_at
        )
    except SQLAlchemyError as exc:
        error = describe_error(exc)
        log.error("%s for shop %d not started, the database failed: %s", job, shop_id, error)
        return RunResult(FAILED, None, error=error)
    if isinstance(begun, _Skipped):
        log.debug("%s for shop %d skipped: %s", job, shop_id, begun.reason)
        return RunResult(SKIPPED, None, error=begun.reason, lease_held=begun.lease_held)
    if begun is None:
        log.error("%s for shop %d not started: no such shop", job, shop_id)
        return RunResult(FAILED, None, error=f"no shop with id {shop_id}")
    shop, run_id = begun
    lease = _Lease(job, lease_seconds, now + timedelta(seconds=lease_seconds))
    return await _run_recorded(ctx, shop, fn, run_id, lease)


@dataclass
class _Lease:
    job: str
    seconds: float
    until: datetime  # when it expires, by this worker's clock, unless renewed


async def _run_recorded(
    ctx: JobContext, shop: Shop, fn: JobFn, run_id: int, lease: _Lease
) -> RunResult:
    assert shop.id is not None
    job = lease.job
    started = time.monotonic()
    outcome, counts, error = FAILED, dict[str, Any](), None
    try:
        counts = dict(await _call_keeping_lease(ctx, shop, fn, run_id, lease))
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
            outcome, error = await _finish_quietly(ctx, shop, job, run_id, outcome, counts, error)
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
    ctx: JobContext, shop: Shop, fn: JobFn, run_id: int, lease: _Lease
) -> Mapping[str, Any]:
    """`fn`'s counts, the lease renewed meanwhile; `fn`'s exception raised as it is (not in a
    group: the run records its own type and message). LeaseLostError, `fn` cancelled, when the
    lease is lost before `fn` ends."""
    results: list[Mapping[str, Any]] = []
    failures: list[Exception] = []
    lost: list[str] = []
    stop = threading.Event()
    stoppable = replace(ctx, engine=_stoppable(ctx.engine, stop, lease.job))

    ended = anyio.Event()

    async def call(scope: anyio.CancelScope) -> None:
        try:
            results.append(await fn(stoppable, shop, run_id))
        except Exception as exc:
            failures.append(exc)
        finally:
            ended.set()
            scope.cancel()  # stops the renewals

    async def keep(scope: anyio.CancelScope) -> None:
        try:
            lost.append(await _keep_lease(ctx, shop, lease))
        except BaseException:  # cancelled: the job ended, or the process is stopping
            # The job's own clean-up first (the push records what the store confirmed, in a
            # shielded write); then its threads stop too, at their next statement.
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_SECONDS):
                await ended.wait()
            stop.set()
            raise
        stop.set()  # lost: at once, for another worker may be running the job
        scope.cancel()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(keep, tasks.cancel_scope)
        tasks.start_soon(call, tasks.cancel_scope)
    if lost:  # first, even if `fn` ended meanwhile: it may have overlapped another run
        raise LeaseLostError(lost[0])
    if failures:
        raise failures[0]
    if not results:
        raise RuntimeError("the job ended without a result")
    return results[0]


def _stoppable(engine: Engine, stop: threading.Event, job: str) -> Engine:
    """`engine`, sharing its pool, for one run: each statement raises JobStoppedError once
    `stop` is set."""
    own = engine.execution_options()  # its listeners are its own, the engine's apply too

    @event.listens_for(own, "before_cursor_execute")
    def check(*_: Any) -> None:
        if stop.is_set():
            raise JobStoppedError(f"{job} stopped: its lease was lost or the process is stopping")

    return own


async def _keep_lease(ctx: JobContext, shop: Shop, lease: _Lease) -> str:
    """Renews the lease every third of its length; returns, saying why, once it is no longer
    ours: another worker holds it or has released it, or it expired by our clock while the
    renewals failed or hung (from then on another worker may take it, unseen by us)."""
    assert shop.id is not None
    last_error = "no renewal answered in time"
    while True:
        with anyio.move_on_after((lease.until - ctx.clock()).total_seconds()):
            await anyio.sleep(lease.seconds / RENEWALS_PER_LEASE)
            now = ctx.clock()
            try:
                lost = await anyio.to_thread.run_sync(
                    _renew,
                    ctx.engine,
                    shop.id,
                    lease.job,
                    ctx.worker,
                    now,
                    lease.seconds,
                    abandon_on_cancel=True,  # a hung renewal must not outlast the lease
                )
            except SQLAlchemyError as exc:  # retried while the lease lasts
                last_error = describe_error(exc)
                log.warning("%s for %s: lease not renewed: %s", lease.job, shop.domain, last_error)
                continue
            if lost is not None:
                return lost
            lease.until = now + timedelta(seconds=lease.seconds)
            continue
        return f"lease lost: it expired at {lease.until.isoformat()} unrenewed ({last_error})"


async def _finish_quietly(
    ctx: JobContext,
    shop: Shop,
    job: str,
    run_id: int,
    outcome: str,
    counts: Mapping[str, Any],
    error: str | None,
) -> tuple[str, str | None]:
    """The outcome and error recorded: failed, if the job ended ok but the lease was lost."""
    assert shop.id is not None
    try:
        return await anyio.to_thread.run_sync(
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
        return outcome, error


def describe_error(exc: BaseException) -> str:
    """The exception's type and message, with anything shaped like a Shopify token blanked."""
    text = _TOKEN.sub("[token]", f"{type(exc).__name__}: {exc}".strip())
    return text[:_MAX_ERROR_CHARS]


# --- the store side (plain SQL, run in a worker thread) ---------------------------------------


@dataclass(frozen=True)
class _Skipped:
    reason: str
    lease_held: bool = True


def _begin(
    engine: Engine,
    shop_id: int,
    job: str,
    worker: str,
    now: datetime,
    lease_seconds: float,
    due_at: datetime | None,
) -> tuple[Shop, int] | _Skipped | None:
    """In one transaction: the shop, its job's lease, and a JobRun "running". None when there is
    no such shop; why not, when it is uninstalled, the tick of `due_at` was served, or another
    worker holds the lease (the run is skipped)."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        shop = session.get(Shop, shop_id)
        if shop is None:
            return None
        if shop.uninstalled_at is not None:  # a tick queued before the uninstall, say
            return _Skipped("the shop is uninstalled", lease_held=False)
        if due_at is not None and (served := _served_by(session, shop_id, job, due_at)):
            return _Skipped(f"its tick was served by run {served}", lease_held=False)
        if not take_lease(session, shop_id, lease_name(job), worker, now, lease_seconds):
            lease = session.get(JobLease, (shop_id, lease_name(job)))
            if lease is None:
                return _Skipped("the lease was just released by another worker")
            return _Skipped(
                f"running on {lease.holder} (lease until {lease.expires_at.isoformat()})"
            )
        _close_abandoned(session, shop_id, job, now)
        run = JobRun(shop_id=shop_id, job=job, worker=worker, started_at=now, outcome=RUNNING)
        session.add(run)
        session.flush()
        assert run.id is not None
        return shop, run.id


def _served_by(session: Session, shop_id: int, job: str, due_at: datetime) -> int | None:
    """A run of the job begun after `due_at` that ended ok: it served that tick."""
    query = select(JobRun.id).where(
        JobRun.shop_id == shop_id,
        JobRun.job == job,
        JobRun.outcome == OK,
        col(JobRun.started_at) > due_at,
    )
    return session.exec(query.limit(1)).first()


def close_abandoned_runs(
    session: Session, now: datetime, jobs: Collection[str], shop_ids: Collection[int]
) -> int:
    """Close as failed the runs of `jobs` for `shop_ids` still "running" whose worker no longer
    holds their lease, unexpired at `now`: it died (or stalled past its lease), and the run will
    not end; how many. (A live run's worker holds its lease: `_begin` takes it and records the
    run in one transaction, and `_finish` records the end and releases it in one.)"""
    runs, leases = JobRun.__table__, JobLease.__table__  # type: ignore[attr-defined]
    held = exists().where(
        leases.c.shop_id == runs.c.shop_id,
        leases.c.job == lease_of(runs.c.job),
        leases.c.holder == runs.c.worker,
        leases.c.expires_at > now,
    )
    closed = session.connection().execute(
        update(runs)
        .where(
            runs.c.outcome == RUNNING,
            runs.c.job.in_(jobs),
            runs.c.shop_id.in_(shop_ids),
            ~held,
        )
        .values(outcome=FAILED, finished_at=now, error=ABANDONED)
    )
    return int(closed.rowcount or 0)


def _close_abandoned(session: Session, shop_id: int, job: str, now: datetime) -> None:
    """Runs still "running" when their lease is taken were left by a worker that died (or
    stalled past its lease): recorded as failed, so that no run stays "running" for ever. Those
    of every job sharing the lease: a reconcile taking over a dead push's lease closes its run.
    (None of them is a live run of this process: its jobs under one lease run one at a time.)"""
    table = JobRun.__table__  # type: ignore[attr-defined]
    session.connection().execute(
        update(table)
        .where(
            table.c.shop_id == shop_id,
            table.c.outcome == RUNNING,
            table.c.job.in_(_sharing(job)),
        )
        .values(outcome=FAILED, finished_at=now, error=ABANDONED)
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
    # RETURNING, not rowcount: psycopg reports no row count for INSERT ... ON CONFLICT
    created = connection.execute(
        insert_for(connection)(table)
        .values(shop_id=shop_id, job=job, holder=holder, expires_at=until)
        .on_conflict_do_nothing(index_elements=["shop_id", "job"])
        .returning(table.c.holder)
    ).first()
    return created is not None


def _renew(
    engine: Engine, shop_id: int, job: str, holder: str, now: datetime, lease_seconds: float
) -> str | None:
    """None when the lease is renewed; otherwise who has it now (see `_lost_to`)."""
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
        if renewed:
            return None
        return _lost_to(connection, shop_id, job)


def _lost_to(connection: Connection, shop_id: int, job: str) -> str:
    """Why a lease we held is not ours any more, read in the caller's transaction."""
    table = JobLease.__table__  # type: ignore[attr-defined]
    holder = connection.execute(
        select(table.c.holder).where(table.c.shop_id == shop_id, table.c.job == lease_name(job))
    ).scalar()
    if holder is not None:
        return f"lease lost to {holder}"
    shops = Shop.__table__  # type: ignore[attr-defined]
    if connection.execute(select(shops.c.id).where(shops.c.id == shop_id)).first() is None:
        return "lease lost: the shop was deleted"
    return "lease lost: another worker took it over and has released it"


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
) -> tuple[str, str | None]:
    """Record how the run ended and release the lease (only if it is still ours). A job that
    ended ok after its lease was taken (its worker stalled past the lease, unable to notice)
    is recorded as failed: another run may have written the same state meanwhile."""
    table = JobLease.__table__  # type: ignore[attr-defined]
    with Session(engine) as session, session.begin():
        released = session.connection().execute(
            delete(table)
            .where(
                table.c.shop_id == shop_id,
                table.c.job == lease_name(job),
                table.c.holder == holder,
            )
            .returning(table.c.holder)
        )
        kept = released.first() is not None
        if outcome == OK and not kept:
            outcome = FAILED
            error = f"{LeaseLostError.__name__}: {_lost_to(session.connection(), shop_id, job)}"
        run = session.get(JobRun, run_id)
        if run is not None:  # gone only if the shop was deleted meanwhile
            run.finished_at, run.outcome, run.error = now, outcome, error
            run.counts = json.dumps(dict(counts), sort_keys=True, default=str)
    return outcome, error


def recent_runs(engine: Engine, shop_id: int | None = None, limit: int = 20) -> list[JobRun]:
    """The newest job runs first (of one shop, or of all)."""
    query = select(JobRun).order_by(col(JobRun.id).desc()).limit(limit)
    if shop_id is not None:
        query = query.where(JobRun.shop_id == shop_id)
    with Session(engine) as session:
        return list(session.exec(query))
