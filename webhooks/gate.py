"""Ingestion before processing: the processor steps aside while webhooks are being stored.

Shopify waits 5 s for an answer. In one process the processor competes with the endpoint for
the GIL and, on SQLite, for the single write lock. So the processor waits, before each batch,
until no webhook is being stored, but never longer than `max_wait_seconds`, so that it cannot
be starved either; and it ends a batch early when one arrives.

While webhooks keep coming, a batch is also capped in time (see webhooks/processor.py); once
none has come for a while (`quiet_for`), the processor takes whole batches: one commit, one
fsync, for many events, which is what clears a backlog.

On SQLite the two also take turns through `writing()`, a lock in this process, instead of
through SQLite's busy handler, which polls with sleeps of up to 100 ms: a webhook that found
the database locked for a millisecond could wait tens of milliseconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class IngestGate:
    def __init__(self, *, serialise_writes: bool, max_wait_seconds: float = 0.05) -> None:
        self._max_wait_seconds = max_wait_seconds
        self._write_lock = threading.Lock() if serialise_writes else None
        self._active = 0
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._last_stored = float("-inf")  # monotonic seconds

    @contextmanager
    def storing(self) -> Iterator[None]:
        with self._lock:
            self._active += 1
            self._idle.clear()
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                self._last_stored = time.monotonic()
                if self._active == 0:
                    self._idle.set()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the in-process write turn (SQLite) for a write transaction."""
        if self._write_lock is None:
            yield
            return
        with self._write_lock:
            yield

    @property
    def busy(self) -> bool:
        """Whether a webhook is being stored right now."""
        return not self._idle.is_set()

    def quiet_for(self, seconds: float) -> bool:
        """No webhook stored, nor being stored, for the last `seconds`."""
        return not self.busy and time.monotonic() - self._last_stored >= seconds

    def wait_for_quiet(self) -> None:
        self._idle.wait(self._max_wait_seconds)
