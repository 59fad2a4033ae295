"""Group commit for the inbox: concurrent webhooks are stored together, one commit for many.

A commit that survives a power cut costs an fsync (about 3 ms on SQLite here, similar on
PostgreSQL), so storing each webhook in a transaction of its own caps ingestion at a few
hundred per second. The writer thread takes whatever deliveries are waiting, stores them in one
transaction, and only after the commit answers each request: still no 200 before the event is
durable. A commit that fails because of the database (down, unreachable) fails (503) every
request of its batch; one that fails on a row the database refuses is retried a delivery at a
time, so only that delivery fails.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from plugin.store import inbox
from webhooks.gate import IngestGate

log = logging.getLogger(__name__)


class InboxWriter:
    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], datetime],
        gate: IngestGate,
        max_batch: int = 256,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._gate = gate
        self._max_batch = max_batch
        self._queue: queue.Queue[tuple[inbox.Delivery, Future[inbox.Stored]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def store(self, delivery: inbox.Delivery) -> inbox.Stored:
        """Store `delivery` durably; raises what the database raised if it could not."""
        self._ensure_started()
        future: Future[inbox.Stored] = Future()
        with self._gate.storing():  # counted from queueing, so the processor steps aside early
            self._queue.put((delivery, future))
            return await asyncio.wrap_future(future)

    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:  # stop
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(item)
            self._write(batch)

    def _write(self, batch: list[tuple[inbox.Delivery, Future[inbox.Stored]]]) -> None:
        try:
            with self._gate.writing():
                outcomes = inbox.store_deliveries(
                    self._engine, [d for d, _ in batch], self._clock()
                )
        except Exception as exc:  # every request of the batch is told; none is acknowledged
            if len(batch) > 1 and not isinstance(exc, OperationalError):
                # A row the database refused (DataError, ...), not the database itself: each
                # delivery alone, so the one bad row does not fail the others.
                for item in batch:
                    self._write([item])
                return
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            future.set_result(outcome)
