"""Every scheduled job and its trigger, and the APScheduler 3 scheduler that fires them per shop.

The one module that imports APScheduler. Each installed shop gets the jobs in `STANDARD_JOBS`
(those that call the store only while its token works), with the shop's own times from its
settings' "schedule" key; the shop list is re-read every minute, so shops installed, uninstalled or
re-authorised later get or lose their jobs without a restart.

The job store is in memory, always: APScheduler 3 must never share one between processes. Of
several processes on one PostgreSQL database, only the elected one fires the ticks (`jobs.leader`):
each tick is a row in the job queue (`jobs.queue`), and every process, the leader too, takes
from the queue what it has room for, so the jobs spread over the workers (DESIGN, process
model). A tick whose lease is busy (the shop's job, or one sharing its lease, runs here or in
another process) waits in the queue until it is free: the 02:00 refit comes after the rescore
running then, not never. The others keep the same plan, to take the lead at once when the
leader goes.

On taking the lead (at start, or from a leader that died), a process queues the last tick of
each job, within its misfire grace, that no run of that shop's job begun since has ended ok:
the ticks let pass while no process led, or while the process was down (a restart at 02:30
still makes the 02:00 refit). A run still "running" whose worker no longer holds its lease died
with its worker: it is closed as abandoned there. One whose worker still holds the lease may be
alive, or dead with its lease not yet expired: its tick is queued all the same, waits for the
lease, and is skipped as served (`run_job`'s `due_at`) if that run ends ok. Should two processes
run a shop's job all the same, the lease in `jobs.runs.run_job` keeps the runs apart.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.abc
from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from jobs import queue
from jobs.backfill import last_backfill_start, scheduled_backfill
from jobs.context import JobContext
from jobs.costs import read_costs
from jobs.leader import Election
from jobs.queue import Due
from jobs.recommend import recommend_shop
from jobs.recompute import full_recompute, rescore_changed
from jobs.runs import (
    DEFAULT_LEASE_SECONDS,
    OK,
    JobFn,
    close_abandoned_runs,
    describe_error,
    lease_name,
    run_job,
)
from jobs.shop_settings import (
    ShopSettingsError,
    settings_fix_hint,
    shop_writeback_settings,
    stored_settings,
)
from jobs.writeback import push_shop, reconcile_shop
from plugin.store.models import JobRun, Shop
from plugin.store.retention import Pruned, prune_shop

log = logging.getLogger(__name__)

SCHEDULE_KEY = "schedule"  # the shop settings' key that overrides the times below
SHOPS_JOB = "shops"  # the scheduler's own job: re-read the shop list
MAX_EVERY_MINUTES = 24 * 60
QUEUE_KEEP = timedelta(days=1)  # a tick no worker took in this long is of a job gone: deleted
SQLITE_LOOK_SECONDS = 60.0  # how often a lone SQLite process looks at the queue unwoken


@dataclass(frozen=True)
class JobSpec:
    """A job run for every installed shop: every so often, or daily at an hour (UTC)."""

    name: str
    run: JobFn
    every: timedelta | None = None
    daily_at_hour: int | None = None
    needs_token: bool = False  # only for shops whose access token works (calls Shopify)
    heavy: bool = False  # loads a whole shop: only a few at once per process
    misfire_grace_seconds: int = 300  # a run this late (the loop was busy, the process down) is
    # still made; a later one is dropped, as the next tick is as good
    lease_seconds: float = DEFAULT_LEASE_SECONDS

    def __post_init__(self) -> None:
        if (self.every is None) == (self.daily_at_hour is None):
            raise ValueError(f"job {self.name!r}: give `every` or `daily_at_hour`, one of them")

    @property
    def setting(self) -> str:
        """The "schedule" key that sets this job's time for a shop."""
        return f"{self.name}_minutes" if self.every is not None else f"{self.name}_hour"

    def default_when(self) -> When:
        return When(self.every, self.daily_at_hour)

    @property
    def grace(self) -> timedelta:
        return timedelta(seconds=self.misfire_grace_seconds)


_PHASE_ORIGIN = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class When:
    every: timedelta | None
    daily_at_hour: int | None

    def trigger(self, phase: str = "") -> IntervalTrigger | CronTrigger:
        """The APScheduler trigger. An interval job's runs are shifted by a fixed share of the
        interval drawn from `phase` (shop and job): shops' jobs do not all fire at once, and a
        restarted process keeps each shop's times instead of starting the interval over."""
        if self.every is not None:
            seconds = self.every.total_seconds()
            shift = int.from_bytes(hashlib.sha256(phase.encode()).digest()[:4]) % max(1, seconds)
            start = _PHASE_ORIGIN + timedelta(seconds=shift)
            return IntervalTrigger(seconds=seconds, start_date=start, timezone=UTC)
        return CronTrigger(hour=self.daily_at_hour, minute=0, timezone=UTC)

    def last_tick(self, phase: str, now: datetime, grace: timedelta) -> datetime | None:
        """The latest tick at or before `now` and within `grace` of it, if any."""
        trigger = self.trigger(phase)
        tick, latest = trigger.get_next_fire_time(None, now - grace), None
        while tick is not None and tick <= now:
            latest, tick = tick, trigger.get_next_fire_time(tick, tick + timedelta(microseconds=1))
        return latest


# --- the jobs ---------------------------------------------------------------------------------


async def rescore(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
    """Re-score the customers whose orders changed (a full refit first if the shop has none)."""
    summary = await anyio.to_thread.run_sync(rescore_changed, ctx.engine, shop, ctx.clock())
    return model_run_counts(summary)


async def refit(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
    """Refit the shop's models and score every customer."""
    summary = await anyio.to_thread.run_sync(full_recompute, ctx.engine, shop, ctx.clock())
    return model_run_counts(summary)


async def push(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
    if (waiting := await _waiting_for_backfill(ctx, shop)) is not None:
        return waiting
    return await push_shop(ctx, shop, run_id)


async def reconcile(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
    if (waiting := await _waiting_for_backfill(ctx, shop)) is not None:
        return waiting
    return await reconcile_shop(ctx, shop, run_id)


WAITING_FOR_BACKFILL = (
    "waiting for the shop's first backfill: nothing is written to the store from a ledger that"
    " holds only the webhooks since the install (`clvsync backfill`, or the queued run)"
)


async def _waiting_for_backfill(ctx: JobContext, shop: Shop) -> dict[str, Any] | None:
    """Until a backfill has read the shop's whole order history, what the scheduled push and
    reconcile report instead of writing to the store (None after it): scores made from the
    webhooks since the install alone would tag long-standing customers as new ones (a merchant's
    Flow may act on a tag). `clvsync push` run by hand is not held back. Settings the push
    cannot read are its error first, backfill or not."""
    assert shop.id is not None
    shop_id = shop.id
    shop_writeback_settings(shop)

    def last_start() -> datetime | None:
        with Session(ctx.engine) as session:
            return last_backfill_start(session, shop_id)

    if await anyio.to_thread.run_sync(last_start) is not None:
        return None
    return {"skipped": WAITING_FOR_BACKFILL}


async def prune(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
    """Delete the shop's records past their keep (`plugin.store.retention`)."""
    assert shop.id is not None
    shop_id = shop.id

    def delete_old() -> Pruned:
        with Session(ctx.engine) as session, session.begin():
            return prune_shop(session, shop_id, shop.domain, ctx.clock())

    return asdict(await anyio.to_thread.run_sync(delete_old))


def model_run_counts(summary: dict[str, Any]) -> dict[str, Any]:
    # "run_id" in a recompute summary is the model run's; the job run has an id of its own
    return {("model_run_id" if key == "run_id" else key): value for key, value in summary.items()}


STANDARD_JOBS: tuple[JobSpec, ...] = (
    JobSpec("rescore", rescore, every=timedelta(minutes=15), heavy=True),
    JobSpec(
        "refit",
        refit,
        daily_at_hour=2,
        heavy=True,
        misfire_grace_seconds=6 * 3600,  # a refit missed at 02:00 is still worth making by 08:00
        lease_seconds=1800.0,
    ),
    JobSpec("push", push, every=timedelta(minutes=5), needs_token=True, misfire_grace_seconds=120),
    JobSpec(
        "reconcile",
        reconcile,
        daily_at_hour=4,
        needs_token=True,
        misfire_grace_seconds=6 * 3600,
        lease_seconds=1800.0,
    ),
    JobSpec("prune", prune, daily_at_hour=3, misfire_grace_seconds=6 * 3600),
    JobSpec(
        "backfill",  # orders updated since the last one: catches webhooks never delivered
        scheduled_backfill,
        daily_at_hour=0,
        needs_token=True,
        misfire_grace_seconds=6 * 3600,
        lease_seconds=1800.0,
    ),
    JobSpec(
        "costs",  # product costs for historical CLV as gross margin, before the 02:00 refit
        read_costs,
        daily_at_hour=1,
        needs_token=True,
        misfire_grace_seconds=6 * 3600,
        lease_seconds=1800.0,
    ),
    JobSpec(
        "recommend",
        recommend_shop,
        daily_at_hour=1,  # before the 02:00 refit, so the morning's pushes carry both
        heavy=True,
        misfire_grace_seconds=6 * 3600,
        lease_seconds=1800.0,
    ),
)


# --- per-shop times -------------------------------------------------------------------------


class ScheduleError(ValueError):
    """A shop's "schedule" setting names a job time that does not exist, or a wrong value."""


def shop_schedule(shop: Shop, jobs: Sequence[JobSpec] = STANDARD_JOBS) -> dict[str, When]:
    """Each job's time for the shop: the defaults, with the overrides in its "schedule" setting,
    e.g. {"rescore_minutes": 15, "push_minutes": 5, "refit_hour": 2, "reconcile_hour": 4}.

    Raises ScheduleError naming every unknown key and bad value, and the command that lists
    every problem of the shop's settings with its fix, as the other jobs' settings errors do.
    """
    try:
        overrides = stored_settings(shop).get(SCHEDULE_KEY, {})
    except ShopSettingsError as exc:  # the scheduler takes its own error: default times
        raise ScheduleError(str(exc)) from None
    if not isinstance(overrides, dict):
        raise ScheduleError(
            f'{shop.domain}: "{SCHEDULE_KEY}" must be an object of job times'
            + settings_fix_hint(shop.domain)
        )
    by_setting = {spec.setting: spec for spec in jobs}
    problems = [
        problem
        for key, value in overrides.items()
        if (problem := _check_override(by_setting, key, value)) is not None
    ]
    if problems:
        raise ScheduleError(
            f"{shop.domain}: schedule: {'; '.join(problems)}" + settings_fix_hint(shop.domain)
        )
    whens = {spec.name: spec.default_when() for spec in jobs}
    for key, value in overrides.items():
        spec = by_setting[key]
        whens[spec.name] = (
            When(timedelta(minutes=value), None) if spec.every is not None else When(None, value)
        )
    return whens


def _check_override(by_setting: dict[str, JobSpec], key: str, value: Any) -> str | None:
    spec = by_setting.get(key)
    if spec is None:
        return f"unknown setting {key!r} (known: {', '.join(sorted(by_setting))})"
    low, high = (1, MAX_EVERY_MINUTES) if spec.every is not None else (0, 23)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return f"{key} must be a whole number from {low} to {high}, not {value!r}"
    return None


# --- the scheduler --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduledJob:
    """A job as the scheduler holds it (for the operator and the tests)."""

    id: str
    job: str
    shop_id: int | None
    trigger: str  # e.g. "interval[0:15:00]", "cron[hour='2', minute='0']" (UTC)
    next_run_at: datetime | None
    max_instances: int
    coalesce: bool
    misfire_grace_seconds: int | None


class JobScheduler:
    """Fires every shop's jobs into the queue while this process leads, and runs what it takes
    from the queue (`run`), through `run_job`: at most `jobs_at_once` at a time, of which at
    most `heavy_at_once` load a whole shop."""

    def __init__(
        self,
        ctx: JobContext,
        jobs: Sequence[JobSpec] = STANDARD_JOBS,
        *,
        shops_every_seconds: float = 60.0,
        jobs_at_once: int = 4,
        heavy_at_once: int = 2,
        take_every_seconds: float = 1.0,
        shutdown_grace_seconds: float = 30.0,
        elect_every_seconds: float = 5.0,
    ) -> None:
        self._ctx = ctx
        self._jobs = {spec.name: spec for spec in jobs}
        self._shops_every_seconds = shops_every_seconds
        self._jobs_at_once = jobs_at_once
        self._heavy_at_once = heavy_at_once
        self._take_every_seconds = take_every_seconds
        self._shutdown_grace_seconds = shutdown_grace_seconds
        self._elect_every_seconds = elect_every_seconds
        self._election = Election(ctx.engine, ctx.worker)
        self._leading = False
        self._stopping = False
        self._queued = anyio.Event()  # set when this process queues a tick: take it at once
        self._held_elsewhere = False  # a queued tick waits for a lease another process holds
        self._scheduler = AsyncIOScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": AsyncIOExecutor()},
            job_defaults={"max_instances": 1, "coalesce": True},
            timezone=UTC,
        )
        self._planned: dict[str, When] = {}
        self._schedule_errors: dict[int, str] = {}
        self._running: set[str] = set()  # job ids ("job:shop id") running in this process
        self._tasks: anyio.abc.TaskGroup | None = None

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    @property
    def leading(self) -> bool:
        """Whether this process's scheduler fires the jobs (`jobs.leader`)."""
        return self._leading

    def jobs(self) -> list[ScheduledJob]:
        return [_describe(job) for job in self._scheduler.get_jobs()]

    async def run(
        self,
        stop: anyio.Event,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Plan every shop's jobs and, while this process leads, fire them; run what it takes
        from the queue, until `stop` is set; then let the running ones finish (up to the grace
        period; cancelled after it, and recorded so) and stop."""
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            self._scheduler.start()
            try:
                await self.sync_shops()
                self._scheduler.add_job(
                    self.sync_shops,
                    IntervalTrigger(seconds=self._shops_every_seconds, timezone=UTC),
                    id=SHOPS_JOB,
                    name=SHOPS_JOB,
                    misfire_grace_time=max(1, int(self._shops_every_seconds)),
                )
                await self._elect()
                log.info(
                    "scheduler started: %d jobs planned, %s",
                    len(self._planned),
                    "leading" if self._leading else "standing by",
                )
                task_status.started()
                tasks.start_soon(self._take_from_queue)
                await self._hold_the_lead(stop)
            finally:
                with anyio.CancelScope(shield=True):
                    await self._wind_down(tasks)
                    await anyio.to_thread.run_sync(self._election.resign)
                    self._leading = False
        self._tasks = None
        with anyio.CancelScope(shield=True):
            await self._shut_down()

    async def _hold_the_lead(self, stop: anyio.Event) -> None:
        """Until `stop`: as leader, check the lead every elect_every_seconds and stand by on
        losing it (running jobs go on, under their leases); standing by, try to take it as
        often."""
        while not stop.is_set():
            with anyio.move_on_after(self._elect_every_seconds):
                await stop.wait()
            if stop.is_set():
                return
            if not self._leading:
                await self._elect()
            elif not await anyio.to_thread.run_sync(self._election.still_leads):
                self._leading = False
                log.warning("scheduler: lost the lead; standing by")

    async def _elect(self) -> None:
        """Try to take the lead; on taking it, make up the ticks no run has served (module
        docstring). The plan needs no re-reading: a standby keeps it current too."""
        if not await anyio.to_thread.run_sync(self._election.try_lead):
            return
        self._leading = True
        if self._election.contested:
            log.info("scheduler: elected to run the jobs")
        await self._make_up()

    async def _make_up(self) -> None:
        """Queue each planned job's last tick within its misfire grace that no run of that
        shop's job begun since has ended ok (module docstring)."""
        now = self._ctx.clock()
        ticks = {}
        for job_id, when in self._planned.items():
            spec = self._jobs[job_id.partition(":")[0]]
            if (tick := when.last_tick(job_id, now, spec.grace)) is not None:
                ticks[job_id] = tick
        if not ticks:
            return
        try:
            started = await anyio.to_thread.run_sync(
                _last_served, self._ctx.engine, set(ticks), now
            )
        except SQLAlchemyError as exc:
            log.error("scheduler: cannot read the runs, no tick made up: %s", describe_error(exc))
            return
        missed = []
        for job_id, tick in sorted(ticks.items()):
            name, _, shop_id = job_id.partition(":")
            last = started.get((name, int(shop_id)))
            if last is None or last < tick:
                log.info("scheduler: making up %s of %s", job_id, tick.isoformat())
                missed.append(Due(name, int(shop_id), tick))
        await self._enqueue(missed)

    async def _enqueue(self, ticks: list[Due]) -> None:
        try:
            await anyio.to_thread.run_sync(queue.enqueue, self._ctx.engine, ticks)
        except SQLAlchemyError as exc:
            which = ", ".join(f"{t.job}:{t.shop_id}" for t in ticks)
            log.error("scheduler: %s not queued: %s", which, describe_error(exc))
            return
        self._queued.set()

    async def _take_from_queue(self) -> None:
        """Take due ticks while there is room, run each in the task group; wait for a tick
        this process queues or room it makes, or look again every take_every_seconds for
        another process's ticks. SQLite serves one process: there it only looks when woken
        (and at SQLITE_LOOK_SECONDS), for a look takes the database's one write lock; but as
        often as on PostgreSQL while a tick waits for a lease another process holds (a
        `clvsync jobs run`, say), which frees it unseen."""
        while not self._stopping:
            try:
                while not self._stopping and await self._take_one():
                    pass
            except SQLAlchemyError as exc:
                log.error("scheduler: cannot read the job queue: %s", describe_error(exc))
            often = self._election.contested or self._held_elsewhere
            with anyio.move_on_after(self._take_every_seconds if often else SQLITE_LOOK_SECONDS):
                await self._queued.wait()
            self._queued = anyio.Event()

    async def _take_one(self) -> bool:
        """Take one tick this process has room for and start it; False when there is none (or
        no room). A tick whose lease runs here, or in another process, is left in the queue
        until it is free: jobs sharing a lease wait for each other, and take no slot meanwhile."""
        heavy = sum(self._jobs[key.partition(":")[0]].heavy for key in self._running)
        if len(self._running) >= self._jobs_at_once or self._tasks is None:
            return False
        graces = {
            name: spec.grace.total_seconds()
            for name, spec in self._jobs.items()
            if heavy < self._heavy_at_once or not spec.heavy
        }
        busy = {
            (lease_name(job), int(shop))
            for job, _, shop in (key.partition(":") for key in self._running)
        }
        engine, now, worker = self._ctx.engine, self._ctx.clock(), self._ctx.worker
        taken = await anyio.to_thread.run_sync(
            lambda: queue.take(engine, graces, now, holder=worker, busy=busy)
        )
        self._held_elsewhere = taken.held > 0
        if taken.dropped:
            log.warning("scheduler: %d ticks past their misfire grace dropped", taken.dropped)
        if (tick := taken.tick) is None:
            return False
        if self._stopping:  # taken as the process began to stop: left for the next one
            with anyio.CancelScope(shield=True):
                await self._enqueue([tick])
            return False
        key = f"{tick.job}:{tick.shop_id}"
        if key not in self._planned:
            await self.sync_shops()  # a shop registered since the last read: its first backfill
        if key not in self._planned:
            log.debug("scheduler: tick %s dropped: the shop lost the job", key)
            return True
        self._running.add(key)
        self._tasks.start_soon(self._run, self._jobs[tick.job], tick)
        return True

    async def _wind_down(self, tasks: anyio.abc.TaskGroup) -> None:
        self._stopping = True
        self._queued.set()
        if self._scheduler.running:
            self._scheduler.pause()
        with anyio.move_on_after(self._shutdown_grace_seconds):
            while self._running:
                await anyio.sleep(0.05)
        if self._running:
            log.warning("scheduler: cancelling %s at shutdown", ", ".join(sorted(self._running)))
        tasks.cancel_scope.cancel()

    async def _shut_down(self) -> None:
        if not self._scheduler.running:
            return
        # AsyncIOScheduler.shutdown takes effect on the loop's next turn.
        self._scheduler.shutdown(wait=False)
        with anyio.move_on_after(5):
            while self._scheduler.running:
                await anyio.sleep(0.01)
        log.info("scheduler stopped")

    async def sync_shops(self) -> None:
        """Plan the jobs of every installed shop, drop those of shops gone, and re-plan those
        whose schedule changed. A database error keeps the current plan until the next time."""
        try:
            shops = await anyio.to_thread.run_sync(_installed_shops, self._ctx.engine)
        except SQLAlchemyError as exc:
            log.error("scheduler: cannot read the shops, keeping the plan: %s", describe_error(exc))
            return
        wanted: dict[str, tuple[JobSpec, Shop, When]] = {}
        for shop in shops:
            whens = self._schedule_of(shop)
            for spec in self._jobs.values():
                if not spec.needs_token or (
                    not shop.needs_reauth and shop.access_token_encrypted is not None
                ):
                    wanted[f"{spec.name}:{shop.id}"] = (spec, shop, whens[spec.name])
        for job_id in sorted(set(self._planned) - set(wanted)):
            self._scheduler.remove_job(job_id)
            del self._planned[job_id]
            log.info("scheduler: %s unplanned", job_id)
        for job_id, (spec, shop, when) in wanted.items():
            if self._planned.get(job_id) != when:
                self._plan(job_id, spec, shop, when)
        if self._leading:
            before = self._ctx.clock() - QUEUE_KEEP
            try:
                await anyio.to_thread.run_sync(queue.forget_older_than, self._ctx.engine, before)
            except SQLAlchemyError as exc:
                log.error("scheduler: old ticks not deleted: %s", describe_error(exc))

    def _plan(self, job_id: str, spec: JobSpec, shop: Shop, when: When) -> None:
        self._scheduler.add_job(
            self._fire,
            when.trigger(f"{spec.name}:{shop.id}"),
            args=(spec.name, shop.id),
            id=job_id,
            name=f"{spec.name} {shop.domain}",
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=spec.misfire_grace_seconds,
        )
        self._planned[job_id] = when

    def _schedule_of(self, shop: Shop) -> dict[str, When]:
        """The shop's job times; the defaults (logged once per distinct problem) if its
        "schedule" setting is wrong: a bad setting never stops the scheduler."""
        assert shop.id is not None
        try:
            whens = shop_schedule(shop, tuple(self._jobs.values()))
        except ScheduleError as exc:
            if self._schedule_errors.get(shop.id) != str(exc):
                log.error("scheduler: %s; using the default times", exc)
                self._schedule_errors[shop.id] = str(exc)
            return {spec.name: spec.default_when() for spec in self._jobs.values()}
        self._schedule_errors.pop(shop.id, None)
        return whens

    async def _fire(self, job: str, shop_id: int) -> None:
        """What APScheduler runs at a tick: queue it, if this process leads (module docstring);
        standing by, nothing."""
        if self._leading and not self._stopping:
            await self._enqueue([Due(job, shop_id, self._ctx.clock())])

    async def _run(self, spec: JobSpec, tick: Due) -> None:
        """Run the job taken from the queue (its key already in `_running`), in the task group,
        where a shutdown can wind it down (anyio cancellation, with the run recorded). Skipped
        because another process took the lease since the tick was taken, the tick goes back in
        the queue to wait for it."""
        key = f"{spec.name}:{tick.shop_id}"
        try:
            result = await run_job(
                self._ctx,
                tick.shop_id,
                spec.name,
                spec.run,
                lease_seconds=spec.lease_seconds,
                due_at=tick.due_at,
            )
            if result.lease_held:
                log.info("scheduler: %s waits for its lease: %s", key, result.error)
                await self._enqueue([tick])
        except Exception as exc:  # run_job records its own failures; this is the last guard
            log.error("scheduler: %s failed outside its run: %s", key, describe_error(exc))
        finally:
            self._running.discard(key)
            self._queued.set()  # room again: look at the queue


def build_scheduler(
    ctx: JobContext, jobs: Sequence[JobSpec] = STANDARD_JOBS, **options: Any
) -> JobScheduler:
    """The process's scheduler over `jobs` (tests pass quick fake ones); see JobScheduler."""
    return JobScheduler(ctx, jobs, **options)


def _last_served(
    engine: Engine, job_ids: set[str], now: datetime
) -> dict[tuple[str, int], datetime]:
    """When a run of each (job, shop) of `job_ids` ("job:shop id") that ended ok last started
    (one cancelled by a shutdown, failed, or still running did not serve its tick, or not yet).
    Their runs left "running" by a worker that no longer holds the lease are closed first."""
    pairs = {(name, int(shop)) for name, _, shop in (j.partition(":") for j in job_ids)}
    names, shops = {name for name, _ in pairs}, {shop for _, shop in pairs}
    with Session(engine) as session, session.begin():
        if closed := close_abandoned_runs(session, now, names, shops):
            log.warning("scheduler: %d runs left running by a worker gone closed as failed", closed)
        rows = session.exec(
            select(JobRun.job, JobRun.shop_id, func.max(JobRun.started_at))
            .where(
                col(JobRun.job).in_(names),
                col(JobRun.shop_id).in_(shops),
                col(JobRun.outcome) == OK,
            )
            .group_by(col(JobRun.job), col(JobRun.shop_id))
        )
        return {(job, shop): started for job, shop, started in rows if (job, shop) in pairs}


def _installed_shops(engine: Engine) -> list[Shop]:
    with Session(engine, expire_on_commit=False) as session:
        return list(
            session.exec(
                select(Shop).where(col(Shop.uninstalled_at).is_(None)).order_by(col(Shop.id))
            )
        )


def _describe(job: Any) -> ScheduledJob:
    kind, _, shop = job.id.partition(":")
    return ScheduledJob(
        id=job.id,
        job=kind,
        shop_id=int(shop) if shop else None,
        trigger=str(job.trigger),
        next_run_at=getattr(job, "next_run_time", None),
        max_instances=job.max_instances,
        coalesce=job.coalesce,
        misfire_grace_seconds=job.misfire_grace_time,
    )
