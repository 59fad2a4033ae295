"""Shopify's leaky bucket: one bucket per key (the shop, as a dev store serves one app), charged
the requested cost up front and settled once the actual cost is known: the difference refunded, or
charged when the query cost more than it asked for (Shopify charges the actual cost). The clock
is injected (monotonic seconds), so tests are deterministic and benchmarks can compress time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class ThrottleStatus:
    maximum_available: float
    currently_available: float
    restore_rate: float

    def as_json(self) -> dict[str, float | int]:
        """As Shopify writes it: the bucket's size and restore rate as decimals (1000.0, 50.0),
        the points available as a whole number (666)."""
        return {
            "maximumAvailable": float(self.maximum_available),
            "currentlyAvailable": int(self.currently_available),
            "restoreRate": float(self.restore_rate),
        }


@dataclass(slots=True)
class _Bucket:
    available: float
    updated_at: float


class LeakyBucketThrottle:
    """Buckets of `size` points that restore at `restore_rate` points per second (both > 0:
    DevStoreConfig refuses others)."""

    def __init__(self, size: float, restore_rate: float, clock: Clock) -> None:
        self.size = size
        self.restore_rate = restore_rate
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def _refilled(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.setdefault(key, _Bucket(self.size, now))
        elapsed = max(0.0, now - bucket.updated_at)
        bucket.available = min(self.size, bucket.available + elapsed * self.restore_rate)
        bucket.updated_at = now
        return bucket

    def try_acquire(self, key: str, cost: float) -> bool:
        """Take `cost` points if the bucket holds them; otherwise take nothing."""
        with self._lock:
            bucket = self._refilled(key)
            if cost > bucket.available:
                return False
            bucket.available -= max(0.0, cost)
            return True

    def settle(self, key: str, requested: float, actual: float) -> None:
        """Bring a call charged `requested` up front to its `actual` cost: refund what it did
        not use, take what it used beyond (the bucket never goes below empty or above full)."""
        with self._lock:
            bucket = self._refilled(key)
            settled = bucket.available + max(0.0, requested) - actual
            bucket.available = min(self.size, max(0.0, settled))

    def seconds_until(self, key: str, cost: float) -> float:
        """How long until the bucket holds `cost` points (0 when it already does)."""
        with self._lock:
            missing = cost - self._refilled(key).available
        return max(0.0, missing / self.restore_rate)

    def status(self, key: str) -> ThrottleStatus:
        with self._lock:
            bucket = self._refilled(key)
            return ThrottleStatus(self.size, bucket.available, self.restore_rate)
