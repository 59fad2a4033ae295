"""The job scheduler: the job table and its triggers, per-shop times, the shop list re-read, and
jobs fired for real (quick fake ones) with their runs recorded."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from jobs import queue, runs
from jobs.context import JobContext
from jobs.runs import FAILED, OK, RUNNING
from jobs.scheduler import (
    STANDARD_JOBS,
    JobScheduler,
    JobSpec,
    ScheduleError,
    build_scheduler,
    shop_schedule,
)
from plugin.store.models import JobLease, JobRun, Shop
from tests.helpers import T0, add_shop
from tests.test_job_runs import NOW, context, hold_lease, leases_of, runs_of
from tests.test_lease_loss import ThreadBatches

pytestmark = pytest.mark.anyio

QUICK = timedelta(milliseconds=50)


def set_shop(engine: Engine, shop: Shop, **values: Any) -> None:
    with Session(engine) as session, session.begin():
        stored = session.get(Shop, shop.id)
        assert stored is not None
        for name, value in values.items():
            setattr(stored, name, value)


def with_schedule(engine: Engine, domain: str, schedule: Any) -> Shop:
    shop = add_shop(engine, domain)
    set_shop(engine, shop, settings=json.dumps({"schedule": schedule}))
    shop.settings = json.dumps({"schedule": schedule})
    return shop


@asynccontextmanager
async def running(
    engine: Engine,
    jobs: tuple[JobSpec, ...] = STANDARD_JOBS,
    clock: Callable[[], datetime] = lambda: NOW,
    **options: Any,
) -> AsyncIterator[JobScheduler]:
    """A scheduler running in this event loop for the block (its first shop read done)."""
    async with httpx.AsyncClient() as http, anyio.create_task_group() as tasks:
        scheduler = build_scheduler(context(engine, http, clock=clock), jobs, **options)
        stop = anyio.Event()
        await tasks.start(scheduler.run, stop)
        try:
            yield scheduler
        finally:
            stop.set()


def triggers(scheduler: JobScheduler, shop: Shop | None = None) -> dict[str, str]:
    return {
        job.job: job.trigger
        for job in scheduler.jobs()
        if shop is None or job.shop_id in (shop.id, None)
    }


async def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await anyio.sleep(0.02)


async def test_standard_jobs_default_triggers_one_instance_coalesced(engine: Engine) -> None:
    # given an installed shop
    shop = add_shop(engine)
    # when the scheduler runs the standard jobs
    async with running(engine) as scheduler:
        planned = scheduler.jobs()
    # then the shop has its jobs at the default times, and the shop list is re-read
    assert {job.job: job.trigger for job in planned} == {
        "rescore": "interval[0:15:00]",
        "refit": "cron[hour='2', minute='0']",
        "push": "interval[0:05:00]",
        "reconcile": "cron[hour='4', minute='0']",
        "prune": "cron[hour='3', minute='0']",
        "recommend": "cron[hour='1', minute='0']",
        "costs": "cron[hour='1', minute='0']",
        "backfill": "cron[hour='0', minute='0']",
        "shops": "interval[0:01:00]",
    }
    assert {job.shop_id for job in planned} == {shop.id, None}
    # and no job runs twice at once, missed runs are coalesced into one, late ones have grace
    assert all(job.max_instances == 1 and job.coalesce for job in planned)
    assert all(job.misfire_grace_seconds and job.misfire_grace_seconds >= 60 for job in planned)
    assert all(job.next_run_at is not None for job in planned)


async def test_shop_schedule_overrides_apply_per_shop(engine: Engine) -> None:
    # given one shop with its own times and one without
    custom = with_schedule(engine, "custom.myshopify.com", {"rescore_minutes": 30, "refit_hour": 3})
    plain = add_shop(engine, "plain.myshopify.com")
    # when the scheduler plans them
    async with running(engine) as scheduler:
        # then each shop has its own times
        assert triggers(scheduler, custom) == {
            "rescore": "interval[0:30:00]",
            "refit": "cron[hour='3', minute='0']",
            "push": "interval[0:05:00]",
            "reconcile": "cron[hour='4', minute='0']",
            "prune": "cron[hour='3', minute='0']",
            "recommend": "cron[hour='1', minute='0']",
            "costs": "cron[hour='1', minute='0']",
            "backfill": "cron[hour='0', minute='0']",
            "shops": "interval[0:01:00]",
        }
        assert triggers(scheduler, plain)["rescore"] == "interval[0:15:00]"
        assert triggers(scheduler, plain)["refit"] == "cron[hour='2', minute='0']"


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"rescore_minute": 30}, "unknown setting 'rescore_minute'"),
        ({"push_minutes": 0}, "push_minutes must be a whole number from 1 to 1440, not 0"),
        ({"push_minutes": True}, "push_minutes must be a whole number from 1 to 1440"),
        ({"refit_hour": "2"}, "refit_hour must be a whole number from 0 to 23, not '2'"),
        ({"reconcile_hour": 24}, "reconcile_hour must be a whole number from 0 to 23, not 24"),
        ({"refit_hour": 2.5}, "refit_hour must be a whole number"),
        ([15, 5], '"schedule" must be an object'),
    ],
)
def test_shop_schedule_unknown_key_or_bad_value_is_refused_naming_it(
    schedule: Any, message: str
) -> None:
    shop = Shop(
        domain="bad.myshopify.com",
        installed_at=T0,
        settings=json.dumps({"schedule": schedule}),
    )
    with pytest.raises(ScheduleError) as raised:
        shop_schedule(shop)
    assert str(raised.value).startswith("bad.myshopify.com: ")
    assert message in str(raised.value)


def test_shop_schedule_reports_every_problem_at_once() -> None:
    shop = Shop(
        domain="bad.myshopify.com",
        installed_at=T0,
        settings=json.dumps({"schedule": {"nope": 1, "push_minutes": -5, "refit_hour": 7}}),
    )
    with pytest.raises(ScheduleError) as raised:
        shop_schedule(shop)
    assert "'nope'" in str(raised.value) and "push_minutes" in str(raised.value)
    assert "refit_hour must" not in str(raised.value)


async def test_scheduler_bad_schedule_is_logged_and_that_shop_gets_the_defaults(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # given a shop with a misspelt schedule key beside a shop with a good one
    bad = with_schedule(engine, "bad.myshopify.com", {"rescore_minute": 30, "refit_hour": 5})
    good = with_schedule(engine, "good.myshopify.com", {"rescore_minutes": 30})
    # when the scheduler plans them, and re-reads the shops again
    async with running(engine) as scheduler:
        await scheduler.sync_shops()
        # then the bad shop runs at the default times, the good one at its own
        assert triggers(scheduler, bad)["rescore"] == "interval[0:15:00]"
        assert triggers(scheduler, bad)["refit"] == "cron[hour='2', minute='0']"
        assert triggers(scheduler, good)["rescore"] == "interval[0:30:00]"
        assert scheduler.running
    # and the problem was logged once, naming the shop and the key
    errors = [r.getMessage() for r in caplog.records if "rescore_minute'" in r.getMessage()]
    assert len(errors) == 1 and "bad.myshopify.com" in errors[0]
    assert "default times" in errors[0]


async def test_scheduler_push_and_reconcile_only_for_shops_whose_token_works(
    engine: Engine,
) -> None:
    # given a shop that needs re-authorising, and one uninstalled
    reauth = add_shop(engine, "reauth.myshopify.com")
    set_shop(engine, reauth, needs_reauth=True)
    gone = add_shop(engine, "gone.myshopify.com")
    set_shop(engine, gone, uninstalled_at=gone.installed_at + timedelta(days=1))
    # when the scheduler plans them
    async with running(engine) as scheduler:
        planned = {(job.job, job.shop_id) for job in scheduler.jobs()}
    # then the first is only recomputed, the uninstalled one has no jobs at all
    assert planned == {
        ("rescore", reauth.id),
        ("refit", reauth.id),
        ("prune", reauth.id),
        ("recommend", reauth.id),
        ("shops", None),
    }


async def test_scheduler_shop_reread_plans_added_and_drops_uninstalled_shops(
    engine: Engine,
) -> None:
    # given a running scheduler with one shop
    first = add_shop(engine, "first.myshopify.com")
    async with running(engine) as scheduler:
        assert {job.shop_id for job in scheduler.jobs()} == {first.id, None}
        # when a shop is added, the first uninstalled, and the shops re-read
        second = add_shop(engine, "second.myshopify.com")
        set_shop(engine, first, uninstalled_at=first.installed_at + timedelta(days=1))
        await scheduler.sync_shops()
        # then the new shop has its jobs and the uninstalled one none
        assert {job.shop_id for job in scheduler.jobs()} == {second.id, None}
        # when the second needs re-authorising, then is authorised again
        set_shop(engine, second, needs_reauth=True)
        await scheduler.sync_shops()
        assert set(triggers(scheduler, second)) == {
            "rescore",
            "refit",
            "prune",
            "recommend",
            "shops",
        }
        set_shop(engine, second, needs_reauth=False)
        await scheduler.sync_shops()
        # then it loses the jobs that call the store meanwhile and gets them back
        assert set(triggers(scheduler, second)) == {
            "rescore",
            "refit",
            "push",
            "reconcile",
            "prune",
            "recommend",
            "costs",
            "backfill",
            "shops",
        }
        # and a changed schedule is re-planned at the next read
        set_shop(engine, second, settings=json.dumps({"schedule": {"push_minutes": 10}}))
        await scheduler.sync_shops()
        assert triggers(scheduler, second)["push"] == "interval[0:10:00]"


async def test_scheduler_rereads_the_shops_on_its_own(engine: Engine) -> None:
    # given a scheduler re-reading the shops every 50 ms, and no shop yet
    async with running(engine, shops_every_seconds=0.05) as scheduler:
        assert [job.job for job in scheduler.jobs()] == ["shops"]
        # when a shop is installed
        shop = add_shop(engine)
        # then it gets its jobs without a restart
        await eventually(lambda: len(triggers(scheduler, shop)) == len(STANDARD_JOBS) + 1)


def quick_jobs(fn: Callable[..., Any], every: timedelta = QUICK, **spec: Any) -> tuple[JobSpec]:
    return (JobSpec("tick", fn, every=every, **spec),)


async def test_scheduler_fires_jobs_records_runs_and_one_failing_shop_stops_no_other(
    engine: Engine,
) -> None:
    # given two shops, and a quick job that always fails for the first
    broken = add_shop(engine, "broken.myshopify.com")
    good = add_shop(engine, "good.myshopify.com")

    async def tick(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        if shop.domain == broken.domain:
            raise RuntimeError("this shop's job is broken")
        return {"ticks": 1}

    # when the scheduler runs it for a while
    async with running(engine, quick_jobs(tick)) as scheduler:

        def enough() -> bool:
            outcomes = [(r.shop_id, r.outcome) for r in runs_of(engine) if r.finished_at]
            return outcomes.count((broken.id, FAILED)) >= 2 and outcomes.count((good.id, OK)) >= 2

        await eventually(enough)
        assert scheduler.running
    # then both shops' runs were recorded, again and again, each with its outcome
    for run in runs_of(engine):
        if run.shop_id == good.id and run.outcome == OK:
            assert json.loads(run.counts) == {"ticks": 1} and run.error is None
        elif run.outcome == FAILED:
            assert run.error == "RuntimeError: this shop's job is broken"


async def test_scheduler_never_runs_a_shops_job_twice_at_once(engine: Engine) -> None:
    # given a job that lasts three times its interval
    add_shop(engine)
    active, most = 0, 0

    async def slow(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        nonlocal active, most
        active += 1
        most = max(most, active)
        await anyio.sleep(0.15)
        active -= 1
        return {}

    # when it has been due many times
    async with running(engine, quick_jobs(slow)):
        await eventually(lambda: len([r for r in runs_of(engine) if r.outcome == OK]) >= 2)
    # then it never ran beside itself
    assert most == 1


async def test_scheduler_stop_lets_a_running_job_finish_within_the_grace(engine: Engine) -> None:
    # given a job in the middle of a run when the process is told to stop
    add_shop(engine)
    started = anyio.Event()

    async def short(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        started.set()
        await anyio.sleep(0.2)
        return {"finished": 1}

    async with running(engine, quick_jobs(short, every=timedelta(seconds=0.1))) as scheduler:
        with anyio.fail_after(5):
            await started.wait()
    # then the run finished and was recorded, and the scheduler is stopped
    assert not scheduler.running
    assert [(r.outcome, r.counts) for r in runs_of(engine)] == [(OK, '{"finished": 1}')]


async def test_scheduler_stop_cancels_a_job_past_the_grace_and_records_it(engine: Engine) -> None:
    # given a job that would never end, and a 50 ms shutdown grace
    add_shop(engine)
    started = anyio.Event()

    async def endless(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        started.set()
        await anyio.sleep_forever()
        return {}

    jobs = quick_jobs(endless)
    async with running(engine, jobs, shutdown_grace_seconds=0.05) as scheduler:
        with anyio.fail_after(5):
            await started.wait()
    # then the stop did not wait for it: the run is recorded as cancelled, the lease is free
    assert not scheduler.running
    [run] = runs_of(engine)
    assert run.outcome == FAILED and run.error is not None and run.error.startswith("Cancelled")
    assert leases_of(engine) == []


async def test_scheduler_stop_past_the_grace_stops_a_job_in_a_worker_thread(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a job working in a worker thread (as the recompute does), 30 batches of 0.1 s,
    # a 0.1 s shutdown grace and a 0.1 s clean-up window before its threads are stopped
    monkeypatch.setattr(runs, "CLEANUP_SECONDS", 0.1)
    add_shop(engine)
    job = ThreadBatches(30)
    async with running(engine, quick_jobs(job), shutdown_grace_seconds=0.1):
        with anyio.fail_after(5):
            await job.started.wait()
        await anyio.sleep(0.2)
        stopping = time.monotonic()
    # then the stop waited for the grace and one batch, not for the thread's 3 s
    assert time.monotonic() - stopping < 1.0
    assert job.ended == "JobStoppedError" and len(job.written) < 10
    # and the run is recorded as cancelled, the lease free
    [run] = runs_of(engine)
    assert run.outcome == FAILED and run.error is not None and run.error.startswith("Cancelled")
    assert leases_of(engine) == []


def test_job_spec_needs_exactly_one_trigger() -> None:
    async def job(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        return {}

    with pytest.raises(ValueError, match="one of them"):
        JobSpec("both", job, every=QUICK, daily_at_hour=2)
    with pytest.raises(ValueError, match="one of them"):
        JobSpec("neither", job)


async def test_scheduler_spreads_shops_interval_jobs_over_the_interval(engine: Engine) -> None:
    # given many shops
    shops = [add_shop(engine, f"shop-{n}.myshopify.com") for n in range(8)]
    # when the scheduler plans them
    async with running(engine) as scheduler:
        planned = [j for j in scheduler.jobs() if j.job == "push"]
    # then their pushes fire at different times, each within one interval from now
    times = [j.next_run_at for j in planned if j.next_run_at is not None]
    assert len(times) == len(shops) and max(times) - min(times) > timedelta(seconds=30)
    now = datetime.now(UTC)
    assert all(now - timedelta(seconds=1) <= t <= now + timedelta(minutes=5) for t in times)
    # and a shop keeps its times when planned again (a restart does not start over)
    async with running(engine) as again:
        replanned = {j.shop_id: j.next_run_at for j in again.jobs() if j.job == "push"}
    assert {j.shop_id: j.next_run_at for j in planned} == replanned


TICK = (NOW - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)


def daily_job(ran: list[str]) -> tuple[JobSpec]:
    """A daily job whose last tick (TICK, an hour before NOW) is within its grace."""

    async def job(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        ran.append(shop.domain)
        return {}

    return (JobSpec("daily", job, daily_at_hour=TICK.hour, misfire_grace_seconds=3 * 3600),)


def left_running(engine: Engine, shop: Shop, worker: str, lease_until: datetime) -> None:
    """A run of the daily job begun after TICK, still "running", its worker's lease as given."""
    assert shop.id is not None
    hold_lease(engine, shop, "daily", worker, lease_until)
    with Session(engine) as session, session.begin():
        started = TICK + timedelta(minutes=1)
        session.add(JobRun(shop_id=shop.id, job="daily", worker=worker, started_at=started))


async def test_a_restart_makes_up_the_tick_of_a_run_its_crashed_worker_left(
    engine: Engine,
) -> None:
    # given a run of the daily job since its tick, left "running" by a worker that crashed,
    # its lease expired
    shop = add_shop(engine)
    left_running(engine, shop, "worker-dead", NOW - timedelta(minutes=5))
    ran: list[str] = []
    # when a process starts
    async with running(engine, daily_job(ran)):
        # then it makes the tick up: the dead run did not serve it
        await eventually(lambda: ran == [shop.domain])
    # and the dead run is closed as abandoned, the new one recorded
    dead, made_up = runs_of(engine)
    assert (dead.worker, dead.outcome, dead.finished_at) == ("worker-dead", FAILED, NOW)
    assert dead.error == "Abandoned: its worker stopped before the job finished"
    assert (made_up.worker, made_up.outcome) == ("worker-a", OK)


async def test_a_tick_made_up_behind_a_run_whose_lease_lasts_waits_for_its_end(
    engine: Engine,
) -> None:
    # given two shops' runs of the daily job since its tick, still "running", their workers'
    # leases lasting 10 minutes more: one worker has crashed, the other is alive
    crashed, alive = add_shop(engine, "crashed.myshopify.com"), add_shop(engine)
    assert crashed.id is not None and alive.id is not None
    for shop, worker in ((crashed, "worker-dead"), (alive, "worker-b")):
        left_running(engine, shop, worker, NOW + timedelta(minutes=10))
    ran: list[str] = []
    now = [NOW]
    # when a process starts
    async with running(engine, daily_job(ran), clock=lambda: now[0], take_every_seconds=0.05):
        await anyio.sleep(0.3)
        # then it runs neither shop's job while the leases last: the ticks wait in the queue
        assert ran == [] and len(queue.waiting(engine)) == 2
        assert [r.outcome for r in runs_of(engine)] == [RUNNING, RUNNING]
        # when the live worker's run ends ok (its lease released), and the other lease expires
        with Session(engine) as session, session.begin():
            live = session.exec(select(JobRun).where(JobRun.worker == "worker-b")).one()
            live.outcome, live.finished_at = OK, NOW
            session.delete(session.get(JobLease, (alive.id, "daily")))
        now[0] = NOW + timedelta(minutes=11)
        # then the crashed worker's tick is made up, and the other, served, is not run again
        await eventually(lambda: ran == [crashed.domain] and queue.waiting(engine) == [])
        await anyio.sleep(0.2)
    assert ran == [crashed.domain]
    outcomes = sorted((r.worker, r.outcome) for r in runs_of(engine))
    assert outcomes == [("worker-a", OK), ("worker-b", OK), ("worker-dead", FAILED)]


async def test_a_restart_makes_up_a_tick_only_for_shops_no_ok_run_served_since(
    engine: Engine,
) -> None:
    # given three shops whose daily job last ran ok: the day before its tick, at the tick
    # itself, and after it
    shops = [add_shop(engine, f"shop{n}.myshopify.com") for n in range(3)]
    with Session(engine) as session, session.begin():
        for shop, started in zip(
            shops, (TICK - timedelta(days=1), TICK, TICK + timedelta(minutes=1)), strict=True
        ):
            assert shop.id is not None
            session.add(
                JobRun(
                    shop_id=shop.id, job="daily", worker="worker-b", started_at=started,
                    finished_at=started, outcome=OK,
                )
            )  # fmt: skip
    ran: list[str] = []
    # when a process starts
    async with running(engine, daily_job(ran)):
        await eventually(lambda: ran != [])
        await anyio.sleep(0.2)
    # then only the first shop's tick is made up
    assert ran == [shops[0].domain]


async def test_the_scheduler_runs_at_most_jobs_at_once_jobs_together(engine: Engine) -> None:
    # given three shops' ticks to make up, of a job that takes a while
    for n in range(3):
        add_shop(engine, f"shop{n}.myshopify.com")
    active, most, done = 0, 0, 0

    async def slow(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        nonlocal active, most, done
        active += 1
        most = max(most, active)
        await anyio.sleep(0.5)
        active, done = active - 1, done + 1
        return {}

    job = JobSpec("daily", slow, daily_at_hour=TICK.hour, misfire_grace_seconds=3 * 3600)
    # when a process that runs two jobs at once starts
    async with running(engine, (job,), jobs_at_once=2, take_every_seconds=0.02):
        await eventually(lambda: done == 3)
    # then no more than two ran together
    assert most == 2
