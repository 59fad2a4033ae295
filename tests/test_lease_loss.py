"""run_job on a real database when a run's lease is lost: the job is stopped and recorded as
failed; and a run abandoned under a shared lease is closed by whichever job takes it over."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from jobs import runs
from jobs.context import JobContext, utcnow
from jobs.runs import FAILED, OK, RUNNING, RunResult, close_abandoned_runs, run_job, take_lease
from plugin.store.models import JobLease, JobRun, Shop, SyncChange
from tests.helpers import add_shop
from tests.test_job_runs import NOW, context, hold_lease, leases_of, runs_of

pytestmark = pytest.mark.anyio


class Watched:
    """A job that ticks for `seconds` unless stopped, noting whether it finished or was stopped."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started, self.stopped = anyio.Event(), anyio.Event()
        self.finished = False

    async def __call__(self, ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        self.started.set()
        try:
            deadline = time.monotonic() + self.seconds
            while time.monotonic() < deadline:
                await anyio.sleep(0.02)
            self.finished = True
            return {"ticked": 1}
        finally:
            self.stopped.set()


class ThreadBatches:
    """A job shaped like the re-score or the backfill's applying: in a worker thread, batches
    of `seconds` each, every one a transaction through the job's engine that writes an audit
    row; noting the batches written and how the thread ended."""

    def __init__(self, batches: int, seconds: float = 0.1) -> None:
        self.batches, self.seconds = batches, seconds
        self.started = anyio.Event()
        self.written: list[float] = []  # when each batch was committed (time.monotonic)
        self.ended: str | None = None

    async def __call__(self, ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        self.started.set()
        return await anyio.to_thread.run_sync(self.work, ctx.engine, shop)

    def work(self, engine: Engine, shop: Shop) -> Mapping[str, Any]:
        assert shop.id is not None
        try:
            for n in range(self.batches):
                with Session(engine) as session, session.begin():
                    session.add(
                        SyncChange(shop_id=shop.id, customer_id=n, kind="tag", name=f"b{n}",
                                   action="add", via="call", applied_at=utcnow())
                    )  # fmt: skip
                self.written.append(time.monotonic())
                time.sleep(self.seconds)
        except Exception as exc:
            self.ended = type(exc).__name__
            raise
        self.ended = "done"
        return {"batches": self.batches}


@contextmanager
def lease_row_locked(engine: Engine) -> Iterator[None]:
    """Another transaction holding the lease rows: on PostgreSQL a row lock, on SQLite the
    write lock (every transaction begins IMMEDIATE). A renewal waits on it, as on a stuck
    database."""
    with engine.connect() as connection, connection.begin():
        connection.execute(select(JobLease).with_for_update()).all()
        yield


async def test_run_job_lease_taken_over_stops_the_job_and_records_it_failed(
    engine: Engine,
) -> None:
    # given worker A pushing a shop for 3 s under a 1 s lease (renewed every 1/3 s)
    shop = add_shop(engine)
    assert shop.id is not None
    push = Watched(seconds=3.0)
    results: dict[str, RunResult] = {}

    async def reconcile(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        with anyio.move_on_after(5):  # until A stops (it never would, were the loss ignored)
            await push.stopped.wait()
        return {"drifted": 0}

    async with httpx.AsyncClient() as http:

        async def a() -> None:
            assert shop.id is not None
            ctx = context(engine, http, "worker-a", clock=utcnow)
            results["a"] = await run_job(ctx, shop.id, "push", push, lease_seconds=1.0)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(a)
                with anyio.fail_after(5):
                    await push.started.wait()
                # when worker B, whose clock runs an hour ahead, finds A's lease expired and takes
                # it over for a reconcile (which writes the same pushed state)
                ahead = context(
                    engine, http, "worker-b", clock=lambda: utcnow() + timedelta(hours=1)
                )
                results["b"] = await run_job(ahead, shop.id, "reconcile", reconcile)
    # then A's push was stopped at its next renewal and recorded as failed, naming B
    assert not push.finished
    assert (results["a"].outcome, results["a"].error) == (
        FAILED,
        "LeaseLostError: lease lost to worker-b",
    )
    assert [(r.job, r.worker, r.outcome, r.error) for r in runs_of(engine)] == [
        ("push", "worker-a", FAILED, "LeaseLostError: lease lost to worker-b"),
        ("reconcile", "worker-b", OK, None),
    ]
    # and B's lease was left to B, which released it
    assert results["b"].outcome == OK and leases_of(engine) == []


async def run_with_renewals_held(
    engine: Engine, job: Watched, lease_seconds: float, held_seconds: float
) -> RunResult:
    """`job` run under a lease of `lease_seconds` on the real clock; once it has started, the
    lease rows are locked (renewals wait, as on a stuck database) for up to `held_seconds`, or
    until the job stops."""
    shop = add_shop(engine)
    assert shop.id is not None
    results: list[RunResult] = []

    async with httpx.AsyncClient() as http:

        async def run() -> None:
            assert shop.id is not None
            ctx = context(engine, http, clock=utcnow)
            results.append(await run_job(ctx, shop.id, "refit", job, lease_seconds=lease_seconds))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(run)
                with anyio.fail_after(5):
                    await job.started.wait()
                with lease_row_locked(engine), anyio.move_on_after(held_seconds):
                    await job.stopped.wait()
    return results[0]


async def test_run_job_renewals_stuck_until_the_lease_expires_stop_the_job(
    engine: Engine,
) -> None:
    # given a 2 s job under a 0.3 s lease, on the real clock
    job = Watched(seconds=2.0)
    # when the database stops answering its renewals, for longer than the lease
    result = await run_with_renewals_held(engine, job, lease_seconds=0.3, held_seconds=3.0)
    # then the job was stopped once the lease had expired by its own clock (another worker
    # could have taken it from then on), and recorded as failed, saying so
    assert not job.finished
    assert result.outcome == FAILED and result.error is not None
    assert result.error.startswith("LeaseLostError: lease lost: it expired at ")
    [run] = runs_of(engine)
    assert (run.outcome, run.error) == (FAILED, result.error)
    assert leases_of(engine) == []


async def test_run_job_renewal_delayed_within_the_lease_carries_on(engine: Engine) -> None:
    # given a 2 s job under a 1.5 s lease (renewed every 0.5 s), on the real clock
    job = Watched(seconds=2.0)
    # when the database holds up the first renewal for a while, but not past the lease
    result = await run_with_renewals_held(engine, job, lease_seconds=1.5, held_seconds=0.7)
    # then the renewal went through late and the job ran to its end
    assert job.finished and result.outcome == OK
    assert [(r.outcome, r.error) for r in runs_of(engine)] == [(OK, None)]


async def test_run_job_stalled_past_its_lease_is_not_recorded_ok(engine: Engine) -> None:
    # given a job that blocks its event loop past its 0.2 s lease (a stalled worker cannot
    # renew, nor notice), while another worker takes the lease over, and then ends well
    shop = add_shop(engine)
    assert shop.id is not None

    async def stalling(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        assert shop.id is not None
        time.sleep(0.4)
        with Session(engine) as session, session.begin():
            assert take_lease(session, shop.id, "writeback", "worker-b", utcnow(), 600.0)
        return {"pushed": 1}

    # when it is run
    async with httpx.AsyncClient() as http:
        ctx = context(engine, http, clock=utcnow)
        result = await run_job(ctx, shop.id, "push", stalling, lease_seconds=0.2)
    # then it is recorded as failed: the other worker may have written the same state
    assert (result.outcome, result.error) == (FAILED, "LeaseLostError: lease lost to worker-b")
    assert [(r.outcome, r.error) for r in runs_of(engine)] == [(FAILED, result.error)]
    # and the other worker's lease is left alone
    assert [lease.holder for lease in leases_of(engine)] == ["worker-b"]


async def test_run_job_taking_over_a_shared_lease_closes_the_dead_sibling_run(
    engine: Engine,
) -> None:
    # given a push left "running" by a worker that died (its writeback lease expired), and a
    # refit "running" on a live worker (another lease)
    shop = add_shop(engine)
    assert shop.id is not None
    hold_lease(engine, shop, "push", "worker-b", NOW - timedelta(seconds=1))
    hold_lease(engine, shop, "refit", "worker-c", NOW + timedelta(hours=1))
    started: datetime = NOW - timedelta(minutes=20)
    with Session(engine) as session, session.begin():
        for job, worker in (("push", "worker-b"), ("refit", "worker-c")):
            session.add(JobRun(shop_id=shop.id, job=job, worker=worker, started_at=started))

    async def reconcile(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        return {"drifted": 0}

    # when this worker runs the reconcile, which shares the push's lease
    async with httpx.AsyncClient() as http:
        result = await run_job(context(engine, http), shop.id, "reconcile", reconcile)
    # then it took the lease over, and the dead push's run no longer claims to be running
    assert result.outcome == OK
    runs = {(r.job, r.worker): r for r in runs_of(engine)}
    push = runs[("push", "worker-b")]
    assert (push.outcome, push.finished_at) == (FAILED, NOW)
    assert push.error == "Abandoned: its worker stopped before the job finished"
    # and the refit, under another lease, is left running
    assert runs[("refit", "worker-c")].outcome == RUNNING
    assert runs[("reconcile", "worker-a")].outcome == OK


async def test_run_job_siblings_in_the_same_process_run_one_after_the_other(
    engine: Engine,
) -> None:
    # given this process (one context) in the middle of a shop's push, as when the one process
    # running every job has the push and the reconcile, which share a lease, due together
    shop = add_shop(engine)
    assert shop.id is not None
    push = Watched(seconds=1.5)
    results: dict[str, RunResult] = {}
    reconcile_started_after_push: list[bool] = []

    async def reconcile(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        reconcile_started_after_push.append(push.finished)
        return {"drifted": 0}

    async with httpx.AsyncClient() as http:
        ctx = context(engine, http, clock=utcnow)

        async def run_push() -> None:
            assert shop.id is not None
            results["push"] = await run_job(ctx, shop.id, "push", push, lease_seconds=1.0)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(run_push)
                with anyio.fail_after(5):
                    await push.started.wait()
                # when the same process runs the reconcile meanwhile
                results["reconcile"] = await run_job(ctx, shop.id, "reconcile", reconcile)
    # then the reconcile waited for the push to end (it did not run beside it), and the push,
    # renewing its lease, was neither stopped nor closed as abandoned: both are recorded ok
    assert reconcile_started_after_push == [True]
    assert [(r.outcome, r.error) for r in results.values()] == [(OK, None), (OK, None)]
    assert [(r.job, r.outcome, r.error) for r in runs_of(engine)] == [
        ("push", OK, None),
        ("reconcile", OK, None),
    ]
    # and the lease was released at the end
    assert leases_of(engine) == []


def test_close_abandoned_runs_closes_those_whose_worker_no_longer_holds_the_lease(
    engine: Engine,
) -> None:
    # given runs still "running": a refit whose worker holds its lease, a push whose worker's
    # lease expired, a rescore whose lease another worker has taken, a backfill with no lease
    # at all; and a prune (not asked about) with none
    shop = add_shop(engine)
    assert shop.id is not None
    hold_lease(engine, shop, "refit", "worker-live", NOW + timedelta(minutes=5))
    hold_lease(engine, shop, "push", "worker-dead", NOW - timedelta(seconds=1))
    started = NOW - timedelta(minutes=20)
    with Session(engine) as session, session.begin():
        for job, worker in (
            ("refit", "worker-live"),
            ("rescore", "worker-dead"),
            ("push", "worker-dead"),
            ("backfill", "worker-dead"),
            ("prune", "worker-dead"),
        ):
            session.add(JobRun(shop_id=shop.id, job=job, worker=worker, started_at=started))
    # when the runs of all but the prune are looked at
    with Session(engine) as session, session.begin():
        asked = ("refit", "rescore", "push", "backfill")
        closed = close_abandoned_runs(session, NOW, asked, [shop.id])
    # then the three whose worker is gone are closed as abandoned, the others left running
    assert closed == 3
    outcomes = {r.job: (r.outcome, r.finished_at, r.error) for r in runs_of(engine)}
    abandoned = (FAILED, NOW, "Abandoned: its worker stopped before the job finished")
    assert outcomes == {
        "refit": (RUNNING, None, None),
        "rescore": abandoned,
        "push": abandoned,
        "backfill": abandoned,
        "prune": (RUNNING, None, None),
    }


async def test_run_job_lease_lost_stops_the_jobs_worker_thread_within_a_batch(
    engine: Engine,
) -> None:
    # given worker A refitting a shop in a worker thread, 30 batches of 0.1 s, under a 0.6 s
    # lease (renewed every 0.2 s)
    shop = add_shop(engine)
    assert shop.id is not None
    refit = ThreadBatches(30)
    results: dict[str, RunResult] = {}
    took_over: list[float] = []
    a_ended: list[float] = []

    async def rescore(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        took_over.append(time.monotonic())
        with anyio.move_on_after(5):  # until A's thread ends (3 s in, were it not stopped)
            while refit.ended is None:
                await anyio.sleep(0.02)
        return {}

    async with httpx.AsyncClient() as http:

        async def a() -> None:
            assert shop.id is not None
            ctx = context(engine, http, "worker-a", clock=utcnow)
            results["a"] = await run_job(ctx, shop.id, "refit", refit, lease_seconds=0.6)
            a_ended.append(time.monotonic())

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(a)
                with anyio.fail_after(5):
                    await refit.started.wait()
                await anyio.sleep(0.3)
                # when worker B, its clock an hour ahead, takes the scoring lease over
                ahead = context(
                    engine, http, "worker-b", clock=lambda: utcnow() + timedelta(hours=1)
                )
                results["b"] = await run_job(ahead, shop.id, "rescore", rescore)
    # then A's thread stopped at its next batch once A saw the lease lost (at its next
    # renewal): it did not write on to the end, and A's run ended with it, soon after
    assert refit.ended == "JobStoppedError"
    assert len(refit.written) < 15
    assert a_ended[0] - took_over[0] < 1.0
    assert [w for w in refit.written if w > a_ended[0]] == []
    # and A's run is recorded as lease lost, B's as ok
    assert [(r.job, r.worker, r.outcome, r.error) for r in runs_of(engine)] == [
        ("refit", "worker-a", FAILED, "LeaseLostError: lease lost to worker-b"),
        ("rescore", "worker-b", OK, None),
    ]


async def test_run_job_cancelled_stops_the_jobs_worker_thread_within_a_batch(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a shop's recompute in a worker thread, 30 batches of 0.1 s, and a clean-up window
    # (which the job gets before its threads are stopped) of 0.1 s
    monkeypatch.setattr(runs, "CLEANUP_SECONDS", 0.1)
    shop = add_shop(engine)
    assert shop.id is not None
    refit = ThreadBatches(30)
    # when the process shuts down (its task is cancelled) a moment after it started
    async with httpx.AsyncClient() as http:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                ctx = context(engine, http, clock=utcnow)
                tasks.start_soon(run_job, ctx, shop.id, "refit", refit)
                with anyio.fail_after(5):
                    await refit.started.wait()
                await anyio.sleep(0.3)
                cancelled = time.monotonic()
                tasks.cancel_scope.cancel()
            stopped = time.monotonic()
    # then the thread stopped at its next batch after the window, and the cancellation waited
    # only for that
    assert refit.ended == "JobStoppedError" and len(refit.written) < 10
    assert stopped - cancelled < 0.5
    # and the run is recorded as cancelled, its lease released
    [run] = runs_of(engine)
    assert run.outcome == FAILED and run.error is not None and run.error.startswith("Cancelled")
    assert leases_of(engine) == []
