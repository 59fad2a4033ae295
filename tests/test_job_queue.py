"""The queue of due jobs: ticks join one waiting, the oldest is taken first and only once, and a
tick past its misfire grace is dropped; the scheduler takes only what it has room for."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import Engine, delete, event
from sqlmodel import Session

from jobs import queue
from jobs.context import JobContext
from jobs.queue import Due, Taken
from jobs.runs import FAILED, OK, SKIPPED, JobFn, run_job
from jobs.scheduler import JobSpec, build_scheduler
from plugin.store.db import make_engine, upgrade
from plugin.store.models import JobLease, JobRun, Shop
from plugin.store.shops import uninstall_shop
from tests.helpers import add_shop
from tests.test_job_runs import NOW, context, hold_lease, runs_of
from tests.test_scheduler import eventually, running

pytestmark = pytest.mark.anyio

GRACES = {"push": 120.0, "refit": 6 * 3600.0}


def quiet_hour() -> int:
    """A daily hour with no tick to make up at the start (the jobs' clock is NOW) and no tick
    on the wall clock, which APScheduler fires on, within the next hour: half a day from both
    where it can be. ((NOW.hour + 12) alone fired on the wall clock at 12:00 UTC mid-test.)"""
    wall = datetime.now(UTC).hour
    return next(h for h in (12, 18, 6) if h not in (NOW.hour, wall, (wall + 1) % 24))


def test_the_oldest_tick_is_taken_first(engine: Engine) -> None:
    a, b = add_shop(engine, "a.myshopify.com"), add_shop(engine, "b.myshopify.com")
    assert a.id is not None and b.id is not None
    queue.enqueue(engine, [Due("push", b.id, NOW - timedelta(seconds=30))])
    queue.enqueue(engine, [Due("push", a.id, NOW - timedelta(seconds=60))])
    assert [(t.shop_id, t.due_at) for t in queue.waiting(engine)] == [
        (a.id, NOW - timedelta(seconds=60)),
        (b.id, NOW - timedelta(seconds=30)),
    ]
    assert queue.take(engine, GRACES, NOW) == Taken(Due("push", a.id, NOW - timedelta(seconds=60)))
    assert queue.take(engine, GRACES, NOW) == Taken(Due("push", b.id, NOW - timedelta(seconds=30)))
    assert queue.take(engine, GRACES, NOW) == Taken(None)


def test_a_tick_joining_a_stale_one_keeps_the_newer_time(engine: Engine) -> None:
    # given a push tick waiting 300 s (past its 120 s grace), when a fresh one comes
    shop = add_shop(engine)
    assert shop.id is not None
    queue.enqueue(engine, [Due("push", shop.id, NOW - timedelta(seconds=300))])
    queue.enqueue(engine, [Due("push", shop.id, NOW - timedelta(seconds=5))])
    # and an older one comes late: it changes nothing
    queue.enqueue(engine, [Due("push", shop.id, NOW - timedelta(seconds=200))])
    # then the fresh tick is taken, not dropped with the stale one it joined
    assert queue.take(engine, GRACES, NOW).tick == Due("push", shop.id, NOW - timedelta(seconds=5))


def test_a_waiting_shop_keeps_its_turn_when_a_newer_tick_joins(engine: Engine) -> None:
    a, b = add_shop(engine, "a.myshopify.com"), add_shop(engine, "b.myshopify.com")
    assert a.id is not None and b.id is not None
    queue.enqueue(engine, [Due("push", a.id, NOW - timedelta(seconds=60))])
    queue.enqueue(engine, [Due("push", b.id, NOW - timedelta(seconds=30))])
    queue.enqueue(engine, [Due("push", a.id, NOW - timedelta(seconds=5))])
    # a waited longest: it goes first, with its newest time
    assert queue.take(engine, GRACES, NOW).tick == Due("push", a.id, NOW - timedelta(seconds=5))


def test_a_tick_past_its_grace_is_dropped_and_one_of_another_job_is_left(engine: Engine) -> None:
    shop = add_shop(engine)
    assert shop.id is not None
    late = Due("push", shop.id, NOW - timedelta(seconds=121))
    other = Due("backfill", shop.id, NOW - timedelta(hours=1))
    refit = Due("refit", shop.id, NOW - timedelta(hours=5))
    queue.enqueue(engine, [late, other, refit])
    # the refit, 5 h late of its 6 h grace, is taken; the push, 121 s late of 120, is dropped
    assert queue.take(engine, GRACES, NOW) == Taken(refit)
    assert queue.take(engine, GRACES, NOW) == Taken(None, dropped=1)
    # and a job the taker does not run ("backfill" is not in its graces) stays for another
    assert queue.waiting(engine) == [other]
    # and one queued before a given time is deleted when no worker took it
    assert queue.forget_older_than(engine, NOW) == 1
    assert queue.waiting(engine) == []


def test_two_takers_at_once_never_take_the_same_tick(postgres_engine: Engine) -> None:
    engine = postgres_engine
    shops = [add_shop(engine, f"shop-{n}.myshopify.com") for n in range(40)]
    queue.enqueue(engine, [Due("push", s.id, NOW) for s in shops if s.id is not None])
    taken: list[Due] = []
    lock = threading.Lock()

    def take_all() -> None:
        while (tick := queue.take(engine, GRACES, NOW).tick) is not None:
            with lock:
                taken.append(tick)

    workers = [threading.Thread(target=take_all) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(t.shop_id for t in taken) == sorted(s.id for s in shops if s.id is not None)


async def test_the_scheduler_takes_only_what_it_has_room_for(engine: Engine) -> None:
    # given six shops with a heavy job queued, and a process with room for two heavy jobs
    shops = [add_shop(engine, f"shop-{n}.myshopify.com") for n in range(6)]
    active, most = 0, 0
    release = anyio.Event()

    async def heavy(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        nonlocal active, most
        active += 1
        most = max(most, active)
        await release.wait()
        active -= 1
        return {}

    # (due hours from now: no tick of it to make up at the start, none while the test runs)
    hour = quiet_hour()
    jobs = (JobSpec("heavy", heavy, daily_at_hour=hour, heavy=True, misfire_grace_seconds=60),)
    async with httpx.AsyncClient() as http, anyio.create_task_group() as tasks:
        scheduler = build_scheduler(
            context(engine, http), jobs, heavy_at_once=2, take_every_seconds=0.05
        )
        stop = anyio.Event()
        await tasks.start(scheduler.run, stop)
        # when the ticks come (APScheduler's calls, played here)
        for shop in shops:
            assert shop.id is not None
            await scheduler._fire("heavy", shop.id)
        # then two run, the others wait in the queue
        await eventually(lambda: active == 2)
        await anyio.sleep(0.3)
        assert most == 2 and len(queue.waiting(engine)) == 4
        # and once they end, the rest are taken
        release.set()
        await eventually(lambda: queue.waiting(engine) == [] and active == 0)
        stop.set()
    assert most == 2


async def test_a_tick_taken_as_the_process_stops_is_left_in_the_queue(engine: Engine) -> None:
    shop = add_shop(engine)
    assert shop.id is not None

    async def never(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        raise AssertionError("a stopping process started a job")

    hour = quiet_hour()  # (no tick of it to make up at the start, none while the test runs)
    jobs = (JobSpec("late", never, daily_at_hour=hour, misfire_grace_seconds=60),)
    async with httpx.AsyncClient() as http, anyio.create_task_group() as tasks:
        scheduler = build_scheduler(context(engine, http), jobs, take_every_seconds=60)
        stop = anyio.Event()
        await tasks.start(scheduler.run, stop)
        await anyio.sleep(0.2)  # its first look at the (empty) queue done
        # when the process takes a tick just as it begins to stop (its loop, played here)
        scheduler._stopping = True
        tick = Due("late", shop.id, NOW)
        await anyio.to_thread.run_sync(queue.enqueue, engine, [tick])
        assert not await scheduler._take_one()
        stop.set()
    # then the tick waits in the queue for the next process
    assert queue.waiting(engine) == [tick]


LATER = quiet_hour()  # a daily hour with no tick to make up at the start


def test_a_tick_whose_lease_is_busy_waits_in_the_queue(engine: Engine) -> None:
    # given a shop's refit and reconcile due, while another worker holds its scoring lease (a
    # rescore) and the taker itself runs its writeback (a push)
    shop, other = add_shop(engine), add_shop(engine, "other.myshopify.com")
    assert shop.id is not None and other.id is not None
    refit, reconcile = Due("refit", shop.id, NOW), Due("reconcile", shop.id, NOW)
    queue.enqueue(engine, [refit, reconcile])
    hold_lease(engine, shop, "rescore", "worker-b", NOW + timedelta(minutes=10))
    graces = {"refit": 3600.0, "reconcile": 3600.0}
    busy = {("writeback", shop.id)}
    # when worker-a looks at the queue
    taken = queue.take(engine, graces, NOW, holder="worker-a", busy=busy)
    # then it takes neither: both wait, and it is told one waits for another worker's lease
    assert taken == Taken(None, dropped=0, held=1)
    assert queue.waiting(engine) == [refit, reconcile]
    # and another shop's writeback is not busy, nor is a lease worker-a holds itself
    queue.enqueue(engine, [Due("reconcile", other.id, NOW)])
    hold_lease(engine, other, "reconcile", "worker-a", NOW + timedelta(minutes=10))
    assert queue.take(engine, graces, NOW, holder="worker-a", busy=busy).tick == Due(
        "reconcile", other.id, NOW
    )
    # and once the lease has expired, the refit is taken; once the push ended, the reconcile
    later = NOW + timedelta(minutes=11)
    assert queue.take(engine, graces, later, holder="worker-a", busy=busy).tick == refit
    assert queue.take(engine, graces, later, holder="worker-a").tick == reconcile


async def test_a_tick_whose_lease_runs_here_waits_and_takes_no_slot(engine: Engine) -> None:
    # given shop a's rescore running, and room for two heavy jobs
    a, b = add_shop(engine, "a.myshopify.com"), add_shop(engine, "b.myshopify.com")
    assert a.id is not None and b.id is not None
    started: list[tuple[str, str]] = []
    release = anyio.Event()

    def heavy(name: str) -> JobFn:
        async def run(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
            started.append((shop.domain, name))
            if name == "rescore":
                await release.wait()
            return {}

        return run

    jobs = tuple(
        JobSpec(name, heavy(name), daily_at_hour=LATER, heavy=True, misfire_grace_seconds=60)
        for name in ("refit", "rescore")
    )
    async with running(engine, jobs, heavy_at_once=2, take_every_seconds=0.05) as scheduler:
        await scheduler._fire("rescore", a.id)  # (APScheduler's calls, played here)
        await eventually(lambda: started == [("a.myshopify.com", "rescore")])
        # when a's refit (sharing the scoring lease) and b's refit are due
        await scheduler._fire("refit", a.id)
        await scheduler._fire("refit", b.id)
        # then b's refit takes the second slot; a's refit waits in the queue, not dropped
        await eventually(lambda: len(started) == 2)
        assert started[1] == ("b.myshopify.com", "refit")
        await anyio.sleep(0.2)
        assert [(t.job, t.shop_id) for t in queue.waiting(engine)] == [("refit", a.id)]
        # and once a's rescore ends, a's refit runs
        release.set()
        await eventually(lambda: ("a.myshopify.com", "refit") in started)
    assert started[-1] == ("a.myshopify.com", "refit") and queue.waiting(engine) == []
    assert sorted((r.job, r.outcome) for r in runs_of(engine)) == [
        ("refit", OK),
        ("refit", OK),
        ("rescore", OK),
    ]


async def test_a_tick_whose_lease_another_worker_holds_waits_for_it(engine: Engine) -> None:
    # given another worker in the middle of the shop's push (the writeback lease)
    shop = add_shop(engine)
    assert shop.id is not None
    hold_lease(engine, shop, "push", "worker-b", NOW + timedelta(minutes=10))
    ran: list[int | None] = []

    async def reconcile(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        ran.append(run_id)
        return {}

    jobs = (JobSpec("reconcile", reconcile, daily_at_hour=LATER, misfire_grace_seconds=3600),)
    async with running(engine, jobs, take_every_seconds=0.05) as scheduler:
        # when the reconcile is due meanwhile
        await scheduler._fire("reconcile", shop.id)
        await anyio.sleep(0.3)
        # then it waits in the queue, neither run nor dropped
        assert ran == [] and runs_of(engine) == []
        assert [t.job for t in queue.waiting(engine)] == ["reconcile"]
        # and once the other worker's push ends (its lease released), it runs
        with Session(engine) as session, session.begin():
            session.execute(delete(JobLease))
        await eventually(lambda: len(ran) == 1)
    assert [(r.job, r.worker, r.outcome) for r in runs_of(engine)] == [
        ("reconcile", "worker-a", OK)
    ]
    assert queue.waiting(engine) == []


async def test_a_tick_skipped_for_a_lease_taken_meanwhile_goes_back_in_the_queue(
    engine: Engine,
) -> None:
    # given a refit tick taken off the queue, and another worker taking the scoring lease
    # before this one's run begins
    shop = add_shop(engine)
    assert shop.id is not None
    tick = Due("refit", shop.id, NOW - timedelta(minutes=1))

    async def never(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        raise AssertionError("ran under another worker's lease")

    jobs = (JobSpec("refit", never, daily_at_hour=LATER, misfire_grace_seconds=3600),)
    async with running(engine, jobs, take_every_seconds=0.05) as scheduler:
        hold_lease(engine, shop, "rescore", "worker-b", NOW + timedelta(minutes=10))
        # when the run is started (as the scheduler's take does)
        scheduler._running.add(f"refit:{shop.id}")
        await scheduler._run(jobs[0], tick)
        # then it is skipped, unrecorded, and the tick waits in the queue again
        assert runs_of(engine) == []
        assert queue.waiting(engine) == [tick]
        assert scheduler._running == set()


async def test_a_run_cancelled_by_a_shutdown_does_not_serve_its_tick(engine: Engine) -> None:
    # given a daily job whose tick was an hour ago, and since then a run of it for shop a that
    # a shutdown cancelled, and one for shop b that ended ok
    a, b = add_shop(engine, "a.myshopify.com"), add_shop(engine, "b.myshopify.com")
    hour = (NOW - timedelta(hours=1)).hour
    ran: list[str] = []

    async def job(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        ran.append(shop.domain)
        return {}

    since = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(minutes=30)
    with Session(engine) as session, session.begin():
        for shop, outcome in ((a, FAILED), (b, OK)):
            assert shop.id is not None
            session.add(
                JobRun(
                    shop_id=shop.id,
                    job="daily",
                    worker="gone",
                    started_at=since,
                    finished_at=since,
                    outcome=outcome,
                    error="Cancelled: the process shut down" if outcome == FAILED else None,
                )
            )
    daily = (JobSpec("daily", job, daily_at_hour=hour, misfire_grace_seconds=3 * 3600),)
    # when a process starts
    async with running(engine, daily):
        # then it makes up a's tick, and only a's
        await eventually(lambda: ran == ["a.myshopify.com"])
        await anyio.sleep(0.2)
    assert ran == ["a.myshopify.com"]


async def test_a_tick_for_an_uninstalled_shop_is_not_run(engine: Engine) -> None:
    shop = add_shop(engine)
    assert shop.id is not None
    queue.enqueue(engine, [Due("push", shop.id, NOW)])
    # the uninstall takes the shop's queued ticks away
    with Session(engine) as session, session.begin():
        stored = session.get(Shop, shop.id)
        assert stored is not None and uninstall_shop(session, stored, NOW)
    assert queue.waiting(engine) == []

    async def job(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        raise AssertionError("ran for an uninstalled shop")

    # and a tick taken all the same (queued by a process that had not seen it) is skipped
    async with httpx.AsyncClient() as http:
        result = await run_job(context(engine, http), shop.id, "push", job)
    assert result.outcome == SKIPPED and result.error == "the shop is uninstalled"


async def test_on_sqlite_an_idle_process_does_not_poll_the_queue(sqlite_path: Path) -> None:
    engine = make_engine(f"sqlite:///{sqlite_path}")
    upgrade(engine)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(str(args[2])))

    async def job(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        return {}

    jobs = (JobSpec("daily", job, daily_at_hour=LATER, misfire_grace_seconds=60),)
    async with running(engine, jobs, take_every_seconds=0.05):
        await anyio.sleep(0.3)
        statements.clear()
        await anyio.sleep(0.5)
    # (a look at the queue takes SQLite's one write lock, which webhooks wait for)
    assert not [s for s in statements if "job_queue" in s]
    engine.dispose()
