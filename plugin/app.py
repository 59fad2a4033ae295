"""`create_app(settings)`: the one place where the web app, the store and the processor meet."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import anyio
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from plugin.settings import Settings
from plugin.store.db import checkpoint, make_engine
from webhooks.gate import IngestGate
from webhooks.processor import Processor, utcnow
from webhooks.receive import webhook_endpoint
from webhooks.writer import InboxWriter

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    run_processor: bool = True,
    clock: Callable[[], datetime] = utcnow,
) -> Starlette:
    """The ASGI app. With `run_processor`, the inbox processor runs beside it in its event loop.

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
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        stop = anyio.Event()
        try:
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
                try:
                    yield
                finally:
                    stop.set()
        finally:
            writer.stop()

    return Starlette(
        routes=[
            Route("/webhooks", webhook_endpoint(settings, writer), methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


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
