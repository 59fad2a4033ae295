"""`create_app(settings)`: the one place where the web app, the store, the processor and the
job scheduler meet; `run_worker` runs the processor and the scheduler without the web app."""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import anyio
import anyio.abc
import httpx
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from jobs.context import JobContext
from jobs.scheduler import STANDARD_JOBS, JobScheduler, JobSpec, build_scheduler
from plugin.settings import Settings
from plugin.store.db import checkpoint, make_engine
from webhooks.gate import IngestGate
from webhooks.processor import Processor, utcnow
from webhooks.receive import webhook_endpoint
from webhooks.writer import InboxWriter

log = logging.getLogger(__name__)

# Shopify calls: a connection is set up within 10 s, and no read or write waits more than 30 s.
HTTP_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
HTTP_LIMITS = httpx.Limits(max_connections=50, max_keepalive_connections=20)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    run_processor: bool = True,
    run_jobs: bool = True,
    jobs: Sequence[JobSpec] = STANDARD_JOBS,
    clock: Callable[[], datetime] = utcnow,
) -> Starlette:
    """The ASGI app. With `run_processor`, the inbox processor runs beside it in its event loop;
    with `run_jobs`, the scheduler of `jobs` does too. While the app runs, `app.state.http` is
    the HTTP client the jobs share and `app.state.scheduler` the scheduler (None without jobs).

    The schema is not created here: run the migrations first (`clvsync serve` does).
    """
    engine = engine or make_engine(settings.database_url)
    gate = IngestGate(serialise_writes=engine.dialect.name == "sqlite")
    writer = InboxWriter(engine, clock, gate)

    async def health(_: Request) -> JSONResponse:
        try:
            await anyio.to_thread.run_sync(_ping, engine)
        except SQLAlchemyError:
            return JSONResponse({"status": "unavailable", "database": False}, status_code=503)
        return JSONResponse({"status": "ok", "database": True})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            async with background(
                settings,
                engine,
                run_processor=run_processor,
                run_jobs=run_jobs,
                jobs=jobs,
                clock=clock,
                gate=gate,
            ) as running:
                app.state.http, app.state.scheduler = running.http, running.scheduler
                yield
        finally:
            writer.stop()

    return Starlette(
        routes=[
            Route("/webhooks", webhook_endpoint(settings, writer), methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


@dataclass(frozen=True)
class Background:
    http: httpx.AsyncClient  # shared by every job of the process
    scheduler: JobScheduler | None


@contextlib.asynccontextmanager
async def background(
    settings: Settings,
    engine: Engine,
    *,
    run_processor: bool = True,
    run_jobs: bool = True,
    jobs: Sequence[JobSpec] = STANDARD_JOBS,
    clock: Callable[[], datetime] = utcnow,
    gate: IngestGate | None = None,
) -> AsyncIterator[Background]:
    """The work besides answering requests, for as long as the block lasts: SQLite's
    checkpoints, the inbox processor, and the job scheduler with the HTTP client its jobs share.

    On leaving, the scheduler lets running jobs finish (see JobScheduler.run) before the HTTP
    client is closed.
    """
    stop = anyio.Event()
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, limits=HTTP_LIMITS) as http:
        scheduler = None
        if run_jobs:
            scheduler = build_scheduler(JobContext(engine, settings, http, clock=clock), jobs)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_checkpoints, engine, stop)
            if run_processor:
                processor = Processor(
                    engine,
                    max_attempts=settings.processor_max_attempts,
                    batch_size=settings.processor_batch_size,
                    idle_seconds=settings.processor_idle_seconds,
                    clock=clock,
                    gate=gate,
                )
                tasks.start_soon(processor.run, stop)
                log.info("inbox processor started")
            if scheduler is not None:
                await tasks.start(scheduler.run, stop)
            freeze_startup_objects()
            try:
                yield Background(http, scheduler)
            finally:
                stop.set()


_frozen = False


def freeze_startup_objects() -> None:
    """Move what exists once the process has started (the imported libraries, the app, the
    settings) out of the garbage collector's reach, once per process.

    Full collections otherwise walk all of it, tens of milliseconds each, and the requests that
    arrive meanwhile wait: at 200 webhooks/s with the processor draining a backlog, p99 latency
    was 33-64 ms on SQLite and 50-52 ms on PostgreSQL without this, 18-21 ms with it, in runs
    side by side (bench/ingest.py)."""
    global _frozen
    if not _frozen:
        gc.freeze()
        _frozen = True


async def run_worker(
    settings: Settings,
    engine: Engine,
    *,
    stop: anyio.Event | None = None,
    jobs: Sequence[JobSpec] = STANDARD_JOBS,
    clock: Callable[[], datetime] = utcnow,
    task_status: anyio.abc.TaskStatus[Background] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """The inbox processor and the scheduled jobs without the web app, until SIGINT or SIGTERM
    (or `stop`); then a clean shutdown, as the app's."""
    stop = stop or anyio.Event()
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            background(settings, engine, jobs=jobs, clock=clock) as running,
            anyio.create_task_group() as tasks,
        ):
            tasks.start_soon(_stop_on_signal, signals, stop)
            log.info("worker started: inbox processor and scheduled jobs")
            task_status.started(running)
            await stop.wait()
            tasks.cancel_scope.cancel()
    log.info("worker stopped")


async def _stop_on_signal(signals: AsyncIterator[int], stop: anyio.Event) -> None:
    async for signum in signals:
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()
        return


async def _checkpoints(engine: Engine, stop: anyio.Event, every_seconds: float = 1.0) -> None:
    """SQLite's WAL checkpoints, off the request path (see plugin/store/db.py)."""
    while not stop.is_set():
        with anyio.move_on_after(every_seconds):
            await stop.wait()
        try:
            await anyio.to_thread.run_sync(checkpoint, engine)
        except SQLAlchemyError as exc:
            log.warning("WAL checkpoint failed, will retry: %s", type(exc).__name__)


def _ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
