"""The queue of due jobs: ticks join one waiting, the oldest is taken first and only once, and a
tick past its misfire grace is dropped; the scheduler takes only what it has room for."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import Engine

from jobs import queue
from jobs.context import JobContext
from jobs.queue import Due
from jobs.scheduler import JobSpec, build_scheduler
from plugin.store.models import Shop
from tests.helpers import add_shop
from tests.test_job_runs import NOW, context
from tests.test_scheduler import eventually

pytestmark = pytest.mark.anyio

GRACES = {"push": 120.0, "refit": 6 * 3600.0}


def test_a_tick_joins_the_one_waiting_and_the_oldest_is_taken_first(engine: Engine) -> None:
    a, b = add_shop(engine, "a.myshopify.com"), add_shop(engine, "b.myshopify.com")
    assert a.id is not None and b.id is not None
    queue.enqueue(engine, [Due("push", b.id, NOW - timedelta(seconds=30))])
    queue.enqueue(engine, [Due("push", a.id, NOW - timedelta(seconds=60))])
    queue.enqueue(engine, [Due("push", a.id, NOW)])  # a's again: joins the one waiting
    assert [(t.shop_id, t.due_at) for t in queue.waiting(engine)] == [
        (a.id, NOW - timedelta(seconds=60)),
        (b.id, NOW - timedelta(seconds=30)),
    ]
    assert queue.take(engine, GRACES, NOW) == (Due("push", a.id, NOW - timedelta(seconds=60)), 0)
    assert queue.take(engine, GRACES, NOW) == (Due("push", b.id, NOW - timedelta(seconds=30)), 0)
    assert queue.take(engine, GRACES, NOW) == (None, 0)


def test_a_tick_past_its_grace_is_dropped_and_one_of_another_job_is_left(engine: Engine) -> None:
    shop = add_shop(engine)
    assert shop.id is not None
    late = Due("push", shop.id, NOW - timedelta(seconds=121))
    other = Due("backfill", shop.id, NOW - timedelta(hours=1))
    refit = Due("refit", shop.id, NOW - timedelta(hours=5))
    queue.enqueue(engine, [late, other, refit])
    # the refit, 5 h late of its 6 h grace, is taken; the push, 121 s late of 120, is dropped
    assert queue.take(engine, GRACES, NOW) == (refit, 0)
    assert queue.take(engine, GRACES, NOW) == (None, 1)
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
        while (tick := queue.take(engine, GRACES, NOW)[0]) is not None:
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

    # (due half a day from now: no tick of it to make up at the start)
    hour = (NOW.hour + 12) % 24
    jobs = (JobSpec("heavy", heavy, daily_at_hour=hour, heavy=True, misfire_grace_seconds=60),)
    async with httpx.AsyncClient() as http, anyio.create_task_group() as tasks:
        scheduler = build_scheduler(
            context(engine, http), jobs, heavy_at_once=2, take_every_seconds=0.05
        )
        stop = anyio.Event()
        await tasks.start(scheduler.run, stop)
        await anyio.to_thread.run_sync(
            queue.enqueue, engine, [Due("heavy", s.id, NOW) for s in shops if s.id is not None]
        )
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

    hour = (NOW.hour + 12) % 24  # (no tick of it to make up at the start)
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
