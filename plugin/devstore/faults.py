"""Seeded fault injection for the Admin GraphQL endpoint and for the storage endpoints (staged
uploads, bulk result files).

GraphQL, per request, in this order: added latency; a 5xx before anything executes (the request
had no effect); and, for mutations only, a dropped response after the mutation was applied, so a
client that retries must be idempotent. A drop is either HTTP 502 after applying
(`drop_mode="status"`) or an aborted response (`drop_mode="abort"`: headers and half a body are
sent, then the connection is closed, which httpx reports as a RemoteProtocolError).

Storage, per request: a 5xx before anything is stored or served; or a response cut part-way
through its body (`cut_mode="abort"`: the declared length is not reached before the connection
closes, a RemoteProtocolError; `cut_mode="truncate"`: the part is served as the whole file, a
clean 200 that only its content shows to be short). A staged upload is stored before its answer
is cut, as a GraphQL drop applies the mutation first.

The storage draws come from a stream of their own (seeded from the same seed), so turning file
faults on, or serving files at all, leaves the GraphQL fault sequence of a seed as it was.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FaultPlan:
    latency_seconds: float = 0.0
    error_status: int | None = None
    drop_after_apply: bool = False


@dataclass(frozen=True, slots=True)
class FilePlan:
    """One storage request's fate: `cut_at` is a share of the body (0 <= cut_at < 1) sent
    before the response is cut, or None for a whole response."""

    error_status: int | None = None
    cut_at: float | None = None

    def cut_length(self, size: int) -> int | None:
        """How many of a body's `size` bytes are sent: always fewer than all (None: all)."""
        if self.cut_at is None or size == 0:
            return None
        return min(size - 1, int(self.cut_at * size))


class FaultInjector:
    """Draws the same three numbers for every request, so one seed gives one fault sequence
    (one for GraphQL requests and, apart, one for storage requests)."""

    def __init__(
        self,
        *,
        error_share: float = 0.0,
        error_status: int = 503,
        latency_seconds: float = 0.0,
        latency_jitter_seconds: float = 0.0,
        drop_share: float = 0.0,
        file_error_share: float = 0.0,
        file_cut_share: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.error_share = error_share
        self.error_status = error_status
        self.latency_seconds = latency_seconds
        self.latency_jitter_seconds = latency_jitter_seconds
        self.drop_share = drop_share
        self.file_error_share = file_error_share
        self.file_cut_share = file_cut_share
        self._random = random.Random(seed)
        self._file_random = random.Random(f"storage:{seed}")
        self._lock = threading.Lock()

    def plan(self) -> FaultPlan:
        with self._lock:
            error_draw, drop_draw, jitter_draw = (self._random.random() for _ in range(3))
        return FaultPlan(
            latency_seconds=self.latency_seconds + jitter_draw * self.latency_jitter_seconds,
            error_status=self.error_status if error_draw < self.error_share else None,
            drop_after_apply=drop_draw < self.drop_share,
        )

    def plan_file(self) -> FilePlan:
        with self._lock:
            error_draw, cut_draw, where_draw = (self._file_random.random() for _ in range(3))
        if error_draw < self.file_error_share:
            return FilePlan(error_status=self.error_status)
        return FilePlan(cut_at=where_draw if cut_draw < self.file_cut_share else None)
