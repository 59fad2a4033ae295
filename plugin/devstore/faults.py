"""Seeded fault injection for the Admin GraphQL endpoint.

Per request, in this order: added latency; a 5xx before anything executes (the request had no
effect); and, for mutations only, a dropped response after the mutation was applied, so a client
that retries must be idempotent. A drop is either HTTP 502 after applying (`drop_mode="status"`) or
an aborted response (`drop_mode="abort"`: headers and half a body are sent, then the connection is
closed, which httpx reports as a RemoteProtocolError).
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


class FaultInjector:
    """Draws the same three numbers for every request, so one seed gives one fault sequence."""

    def __init__(
        self,
        *,
        error_share: float = 0.0,
        error_status: int = 503,
        latency_seconds: float = 0.0,
        latency_jitter_seconds: float = 0.0,
        drop_share: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.error_share = error_share
        self.error_status = error_status
        self.latency_seconds = latency_seconds
        self.latency_jitter_seconds = latency_jitter_seconds
        self.drop_share = drop_share
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def plan(self) -> FaultPlan:
        with self._lock:
            error_draw, drop_draw, jitter_draw = (self._random.random() for _ in range(3))
        return FaultPlan(
            latency_seconds=self.latency_seconds + jitter_draw * self.latency_jitter_seconds,
            error_status=self.error_status if error_draw < self.error_share else None,
            drop_after_apply=drop_draw < self.drop_share,
        )
