"""The scheduler's election: of several processes on one PostgreSQL database only one fires the
jobs, and a standby takes over when the leader stops or loses its connection. Each "process" is
a scheduler with an engine (a connection pool) of its own, in this event loop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import Engine, text

from jobs import queue
from jobs.context import JobContext, utcnow
from jobs.leader import Election, current_leader
from jobs.runs import run_job
from jobs.scheduler import JobScheduler, JobSpec, build_scheduler
from plugin.store.db import make_engine
from plugin.store.models import Shop
from tests.helpers import add_shop
from tests.test_app_jobs import ROOT, cli
from tests.test_compliance import cli_env
from tests.test_job_runs import context
from tests.test_scheduler import eventually, quick_jobs, running

pytestmark = pytest.mark.anyio

ELECT_EVERY = 0.1


async def tick(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
    """The job: counts its runs per worker, and per (worker, shop domain)."""
    FIRED[ctx.worker] += 1
    FIRED[f"{ctx.worker} {shop.domain}"] += 1
    return {}


FIRED: Counter[str] = Counter()


@asynccontextmanager
async def ticking(
    url: str, jobs: tuple[JobSpec, ...] | None = None, **options: Any
) -> AsyncIterator[tuple[Counter[str], Any]]:
    """A way to start schedulers ("processes") that run `jobs` (by default `tick` for every
    shop every QUICK) on the wall clock: `start(worker)` -> (scheduler, its stop event); and the
    runs counted."""
    FIRED.clear()
    engines: list[Engine] = []
    stops: list[anyio.Event] = []
    async with httpx.AsyncClient() as http, anyio.create_task_group() as tasks:

        async def start(worker: str) -> tuple[JobScheduler, anyio.Event]:
            own = make_engine(url)
            engines.append(own)
            scheduler = build_scheduler(
                context(own, http, worker=worker, clock=utcnow),
                jobs or quick_jobs(tick),
                elect_every_seconds=ELECT_EVERY,
                take_every_seconds=ELECT_EVERY,
                **options,
            )
            stop = anyio.Event()
            stops.append(stop)
            await tasks.start(scheduler.run, stop)
            return scheduler, stop

        try:
            yield FIRED, start
        finally:
            for stop in stops:
                stop.set()
    for own in engines:
        own.dispose()


async def test_a_lone_scheduler_leads(engine: Engine) -> None:
    add_shop(engine)
    async with running(engine) as scheduler:
        assert scheduler.leading


async def test_of_two_schedulers_only_the_elected_fires_and_both_run_the_jobs(
    postgres_engine: Engine, postgres_url: str
) -> None:
    engine = postgres_engine
    shops = [add_shop(engine, f"shop-{n}.myshopify.com") for n in range(4)]

    async def slow(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        await anyio.sleep(0.1)
        return await tick(ctx, shop, run_id)

    # given two processes' schedulers, each running one job at a time, the first started first
    async with ticking(postgres_url, quick_jobs(slow), jobs_at_once=1) as (fired, start):
        first, stop_first = await start("worker-a")
        second, _ = await start("worker-b")
        assert first.leading and not second.leading
        # then the jobs, queued by the leader alone, are run by both processes
        await eventually(lambda: fired["worker-a"] >= 3 and fired["worker-b"] >= 3)
        # and when the first stops, the second takes the lead and runs every shop's job
        stop_first.set()
        await eventually(lambda: second.leading)
        before = {shop.domain: fired[f"worker-b {shop.domain}"] for shop in shops}
        await eventually(
            lambda: all(fired[f"worker-b {shop.domain}"] > before[shop.domain] for shop in shops)
        )


async def test_a_standby_queues_no_tick(postgres_engine: Engine, postgres_url: str) -> None:
    shop = add_shop(postgres_engine)
    assert shop.id is not None
    hourly = quick_jobs(tick, every=timedelta(hours=1), misfire_grace_seconds=1)
    async with ticking(postgres_url, hourly) as (_, start):
        first, _ = await start("worker-a")
        second, _ = await start("worker-b")
        assert first.leading and not second.leading
        # when the tick comes (APScheduler's call, played here), the standby queues nothing
        await second._fire("tick", shop.id)
        assert queue.waiting(postgres_engine) == []
        # and the leader queues it, for either process to run
        await first._fire("tick", shop.id)
        await eventually(lambda: FIRED["worker-a"] + FIRED["worker-b"] == 1)


async def test_a_leader_whose_connection_is_cut_steps_down_and_the_standby_takes_over(
    postgres_engine: Engine, postgres_url: str
) -> None:
    engine = postgres_engine
    add_shop(engine)
    async with ticking(postgres_url) as (fired, start):
        first, _ = await start("worker-a")
        second, _ = await start("worker-b")
        await eventually(lambda: fired["worker-a"] + fired["worker-b"] >= 2)
        # when the connection holding the lead is cut (as a network failure would)
        with engine.begin() as connection:
            cut = connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                    " AND granted AND database ="
                    " (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).all()
        assert cut == [(True,)]
        # then the first steps down and the second leads, and the jobs go on
        await eventually(lambda: not first.leading and second.leading)
        before = fired["worker-a"] + fired["worker-b"]
        await eventually(lambda: fired["worker-a"] + fired["worker-b"] >= before + 3)
        # and the first, standing by, does not take the lead back
        assert not first.leading


async def test_on_taking_the_lead_a_process_makes_up_only_the_ticks_no_run_served(
    postgres_engine: Engine, postgres_url: str
) -> None:
    engine = postgres_engine
    served = add_shop(engine, "served.myshopify.com")
    add_shop(engine, "missed.myshopify.com")
    # given a daily job whose last tick, an hour or two ago, is within its grace
    hour = (utcnow() - timedelta(hours=1)).hour
    daily = (JobSpec("tick", tick, daily_at_hour=hour, misfire_grace_seconds=3 * 3600),)
    # and a run of it for one shop since that tick
    async with httpx.AsyncClient() as http:
        assert served.id is not None
        await run_job(context(engine, http, clock=utcnow), served.id, "tick", tick)
    FIRED.clear()
    async with ticking(postgres_url, daily) as (fired, start):
        # when a process starts (the others were all down at the tick), it makes up the tick
        # no run served, and only that one
        _, stop_first = await start("worker-a")
        await eventually(lambda: fired["worker-a missed.myshopify.com"] == 1)
        # and a standby taking the lead from it makes up nothing more
        second, _ = await start("worker-b")
        stop_first.set()
        await eventually(lambda: second.leading)
        await anyio.sleep(5 * ELECT_EVERY)
        assert fired["worker-a served.myshopify.com"] == 0
        assert fired["worker-a missed.myshopify.com"] == 1
        assert fired["worker-b"] == 0


def test_election_on_postgres_one_holder_at_a_time_and_resigning_frees_it(
    postgres_engine: Engine, postgres_url: str
) -> None:
    engine = postgres_engine
    other = make_engine(postgres_url)
    first, second = Election(engine), Election(other)
    try:
        assert first.try_lead() and first.still_leads()
        assert not second.try_lead()
        # a standby is not a leader
        assert not second.still_leads()
        first.resign()
        assert second.try_lead()
        assert not first.try_lead()
    finally:
        first.resign()
        second.resign()
        other.dispose()


def test_election_on_sqlite_always_leads_and_holds_no_connection(sqlite_path: Path) -> None:
    engine = make_engine(f"sqlite:///{sqlite_path}")
    first, second = Election(engine), Election(engine)
    assert first.try_lead() and second.try_lead()
    assert first.still_leads() and second.still_leads()
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    engine.dispose()


def test_current_leader_names_the_worker_holding_the_lock(
    postgres_engine: Engine, postgres_url: str
) -> None:
    assert current_leader(postgres_engine) is None
    other = make_engine(postgres_url)
    election = Election(other, "host-a:4242")
    try:
        assert election.try_lead()
        leader = current_leader(postgres_engine)
        assert leader is not None and leader.worker == "host-a:4242"
        assert leader.client == "127.0.0.1"
        # and the CLI says so
        code, out, _ = cli(postgres_url, "jobs", "leader")
        assert code == 0 and out.startswith("host-a:4242 runs the scheduled jobs")
        assert "(its lock connection from 127.0.0.1, opened " in out
    finally:
        election.resign()
        other.dispose()
    # with no process leading, the CLI says how to start one, and exits 1
    code, _, err = cli(postgres_url, "jobs", "leader")
    assert code == 1 and "start `clvsync worker`" in err


def test_jobs_leader_on_sqlite_says_there_is_no_election(sqlite_path: Path) -> None:
    code, out, _ = cli(f"sqlite:///{sqlite_path}", "jobs", "leader")
    assert code == 0 and "there is no election" in out


def test_two_worker_processes_one_leads_and_the_other_takes_over_when_it_is_killed(
    postgres_engine: Engine, postgres_url: str
) -> None:
    # given two `clvsync worker` processes on one PostgreSQL database
    env = {**os.environ, **cli_env(postgres_url), "CLVSYNC_LOG_LEVEL": "WARNING"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "plugin.cli", "worker"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        # then one of them leads
        first = wait_for_leader(postgres_engine, {w.pid for w in workers})
        # when the leader is killed outright
        leader = next(w for w in workers if w.pid == first)
        leader.kill()
        leader.wait(timeout=30)
        # then the other takes over within seconds
        (other,) = (w.pid for w in workers if w.pid != first)
        assert wait_for_leader(postgres_engine, {other}) == other
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()


def wait_for_leader(engine: Engine, pids: set[int], seconds: float = 30.0) -> int:
    """The pid of the leading worker, once it is one of `pids`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        leader = current_leader(engine)
        pid = int(leader.worker.rpartition(":")[2]) if leader is not None else None
        if pid in pids:
            return pid
        time.sleep(0.1)
    raise AssertionError(f"none of {sorted(pids)} led within {seconds} s")
