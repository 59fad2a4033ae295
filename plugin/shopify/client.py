"""The Admin GraphQL client: one shop, one injected `httpx.AsyncClient`, paced by the cost bucket.

Shopify charges each call its requested cost from a leaky bucket (`maximumAvailable` points,
restored at `restoreRate` points a second) and refunds the difference once the actual cost is
known; every response reports the bucket in `extensions.cost.throttleStatus`. The client keeps
its own picture of that bucket and, before each call, waits until the bucket holds what the call
will be charged, so a single paced caller is never throttled. When it is throttled anyway (other
apps' calls do not share our bucket, but a second process of ours would), it waits for the
missing points and retries; 5xx answers, timeouts and dropped connections are retried with
exponential backoff and full jitter. User errors come back inside `data` and are the caller's:
they are never retried. A 401 means the token is gone: `AuthError`, and the shop needs
re-authorisation.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

log = logging.getLogger(__name__)

# Before the first response tells the real bucket: Shopify's largest single-query cost.
_ASSUMED_BUCKET = 1000.0
_ASSUMED_RESTORE_RATE = 50.0
DEFAULT_EXPECTED_COST = 50.0
_KNOWN_COSTS_MAX = 256  # queries whose last cost is remembered (callers of varying documents
# pass their cost, so this holds the few fixed queries: reads, polls)


class ShopifyError(Exception):
    """A call to the Admin API that did not succeed."""


class AuthError(ShopifyError):
    """The access token was refused (401): the shop must authorise the app again."""


class TransientError(ShopifyError):
    """5xx answers, timeouts or dropped connections, still failing after every retry."""


class ThrottledError(TransientError):
    """Still throttled after every retry."""


class QueryError(ShopifyError):
    """The API refused the request itself (bad query, missing scope, cost above the maximum):
    sending it again would not help."""


@dataclass
class CallStats:
    """Counts over the client's life, for job summaries and benchmarks."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0  # THROTTLED responses received (each one was retried, or raised)
    throttled_unretried: int = 0  # THROTTLED responses given up on (ThrottledError raised)
    server_errors: int = 0
    transport_errors: int = 0
    cost_requested: float = 0.0
    cost_actual: float = 0.0
    paced_seconds: float = 0.0  # time spent waiting for the bucket before calls


@dataclass
class Bucket:
    """What the client knows of its bucket: `available` points at monotonic time `at`."""

    maximum: float = _ASSUMED_BUCKET
    available: float = _ASSUMED_BUCKET
    restore_rate: float = _ASSUMED_RESTORE_RATE
    at: float = 0.0

    def level(self, now: float) -> float:
        return min(self.maximum, self.available + max(0.0, now - self.at) * self.restore_rate)

    def seconds_until(self, cost: float, now: float) -> float:
        # A call dearer than the whole bucket can never be afforded; ask for a full bucket.
        missing = min(cost, self.maximum) - self.level(now)
        return max(0.0, missing / self.restore_rate)

    def take(self, cost: float, now: float) -> None:
        self.available, self.at = self.level(now) - cost, now

    def observe(self, status: Mapping[str, Any], now: float) -> None:
        self.maximum = float(status.get("maximumAvailable") or self.maximum)
        self.restore_rate = float(status.get("restoreRate") or self.restore_rate)
        self.available, self.at = float(status.get("currentlyAvailable", self.available)), now


Sleep = Callable[[float], Awaitable[None]]


class AdminClient:
    """Admin GraphQL calls for one shop.

    `admin_url` replaces `https://{shop}` (for the dev store); `sleep` and `clock` are injected so
    tests and benchmarks can compress time. Calls through one client share its bucket picture,
    so give each shop one client per process.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        shop_domain: str,
        access_token: str,
        *,
        api_version: str,
        admin_url: str | None = None,
        max_attempts: int = 8,
        backoff_seconds: float = 0.5,
        backoff_cap_seconds: float = 30.0,
        sleep: Sleep = anyio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        base = admin_url or f"https://{shop_domain}"
        self.shop_domain = shop_domain
        self.endpoint = f"{base}/admin/api/{api_version}/graphql.json"
        self.stats = CallStats()
        self.bucket = Bucket(at=clock())
        self._http = http
        self._headers = {"X-Shopify-Access-Token": access_token}
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._backoff_cap = backoff_cap_seconds
        self._sleep = sleep
        self._clock = clock
        self._random = rng or random.Random()
        self._pacing = anyio.Lock()
        self._known_costs: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"AdminClient({self.shop_domain!r})"  # never the token

    def now(self) -> float:
        """The client's monotonic time (injected in tests, as its waits are)."""
        return self._clock()

    async def execute(
        self, query: str, variables: Mapping[str, Any] | None = None, *, cost: float | None = None
    ) -> dict[str, Any]:
        """The response's `data`, once the call succeeded. `cost` is what the call is expected
        to be charged; by default, what the same query text was charged last time."""
        expected = cost if cost is not None else self._known_costs.get(query, DEFAULT_EXPECTED_COST)
        body = {"query": query, "variables": dict(variables or {})}
        failures = 0
        throttles = 0
        while True:
            await self._pace(expected)
            outcome = await self._attempt(body)
            if isinstance(outcome, dict):
                if cost is None and len(self._known_costs) < _KNOWN_COSTS_MAX:
                    self._known_costs[query] = self._charged(outcome, expected)
                data: dict[str, Any] = outcome.get("data") or {}
                return data
            wait, throttled = outcome
            if throttled:
                throttles += 1
                if throttles >= 4 * self._max_attempts:
                    self.stats.throttled_unretried += 1
                    raise ThrottledError(f"{self.shop_domain}: still throttled after retries")
            else:
                failures += 1
                if failures >= self._max_attempts:
                    raise TransientError(
                        f"{self.shop_domain}: the Admin API kept failing ({failures} attempts)"
                    )
                wait = max(wait, self._backoff_delay(failures))
            self.stats.retries += 1
            await self._sleep(wait)

    async def _pace(self, cost: float) -> None:
        async with self._pacing:
            wait = self.bucket.seconds_until(cost, self._clock())
            if wait > 0:
                self.stats.paced_seconds += wait
                await self._sleep(wait)
            self.bucket.take(cost, self._clock())

    def _backoff_delay(self, failures: int) -> float:
        ceiling = min(self._backoff_cap, self._backoff * 2 ** (failures - 1))
        return self._random.uniform(0.5 * ceiling, ceiling)

    def _charged(self, response: Mapping[str, Any], expected: float) -> float:
        cost = _cost(response)
        requested = cost.get("requestedQueryCost")
        return float(requested) if requested is not None else expected

    async def _attempt(self, body: Mapping[str, Any]) -> dict[str, Any] | tuple[float, bool]:
        """The decoded response, or (seconds to wait, throttled?) before trying again."""
        self.stats.requests += 1
        try:
            response = await self._http.post(self.endpoint, json=body, headers=self._headers)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            self.stats.transport_errors += 1
            log.warning(
                "%s: Admin API call failed (%s), retrying", self.shop_domain, type(exc).__name__
            )
            return 0.0, False
        if response.status_code == 401:
            raise AuthError(f"{self.shop_domain}: the access token was refused (401)")
        if response.status_code == 429:
            return self._throttled(_json(response), response.headers.get("Retry-After"))
        if response.status_code >= 500:
            self.stats.server_errors += 1
            log.warning(
                "%s: Admin API answered %d, retrying", self.shop_domain, response.status_code
            )
            return 0.0, False
        decoded = _json(response)
        if response.status_code != 200 or decoded is None:
            raise QueryError(
                f"{self.shop_domain}: the Admin API answered {response.status_code}: "
                f"{_error_text(decoded) or response.text[:200]}"
            )
        return self._decoded(decoded)

    def _decoded(self, decoded: dict[str, Any]) -> dict[str, Any] | tuple[float, bool]:
        status = _cost(decoded).get("throttleStatus")
        if status:
            self.bucket.observe(status, self._clock())
        codes = {_code(error) for error in decoded.get("errors") or ()}
        if "THROTTLED" in codes:
            return self._throttled(decoded, None)
        if "INTERNAL_SERVER_ERROR" in codes:
            self.stats.server_errors += 1
            return 0.0, False
        if codes:
            raise QueryError(f"{self.shop_domain}: {_error_text(decoded)}")
        cost = _cost(decoded)
        self.stats.cost_requested += float(cost.get("requestedQueryCost") or 0)
        self.stats.cost_actual += float(cost.get("actualQueryCost") or 0)
        return decoded

    def _throttled(
        self, decoded: dict[str, Any] | None, retry_after: str | None
    ) -> tuple[float, bool]:
        """How long to wait for the points the throttled call asked for."""
        self.stats.throttled += 1
        cost = _cost(decoded or {})
        if cost.get("throttleStatus"):
            self.bucket.observe(cost["throttleStatus"], self._clock())
        requested = float(cost.get("requestedQueryCost") or DEFAULT_EXPECTED_COST)
        wait = self.bucket.seconds_until(requested, self._clock())
        if retry_after:
            with contextlib.suppress(ValueError):
                wait = max(wait, float(retry_after))
        # The restore may be a moment behind our picture of it: never retry instantly.
        return max(wait, 0.05) + self._random.uniform(0.0, 0.05), True


def _json(response: httpx.Response) -> dict[str, Any] | None:
    try:
        decoded = response.json()
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _cost(decoded: Mapping[str, Any]) -> dict[str, Any]:
    extensions = decoded.get("extensions")
    cost = extensions.get("cost") if isinstance(extensions, dict) else None
    return cost if isinstance(cost, dict) else {}


def _code(error: Any) -> str | None:
    if not isinstance(error, dict):
        return None
    extensions = error.get("extensions")
    return extensions.get("code") if isinstance(extensions, dict) else None


def _error_text(decoded: Mapping[str, Any] | None) -> str:
    if not decoded:
        return ""
    errors = decoded.get("errors")
    if isinstance(errors, str):
        return errors
    if isinstance(errors, list):
        texts = (str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
        return "; ".join(texts)
    return ""
