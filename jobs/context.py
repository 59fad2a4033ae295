"""What every scheduled job is given: the store, the settings, one HTTP client, a clock."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
import httpx
from sqlalchemy import Engine

from plugin.settings import Settings


def utcnow() -> datetime:
    return datetime.now(UTC)


def worker_name() -> str:
    """This process, as job runs and leases name it: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class JobContext:
    engine: Engine
    settings: Settings
    http: httpx.AsyncClient  # shared by every job of the process; Shopify calls go through it
    worker: str = field(default_factory=worker_name)
    clock: Callable[[], datetime] = utcnow
    # Waiting and monotonic time for Shopify calls' pacing and backoff (tests and benchmarks
    # compress time through these).
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    monotonic: Callable[[], float] = time.monotonic
    # One lock per (shop, lease name): this process's jobs under one lease run one at a time.
    lease_locks: dict[tuple[int, str], anyio.Lock] = field(
        default_factory=dict, compare=False, repr=False
    )
