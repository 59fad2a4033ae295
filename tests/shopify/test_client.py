"""The Admin GraphQL client's retry and pacing rules, against httpx.MockTransport fakes of
Shopify's answers (the live dev store runs are in tests/writeback)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from plugin.shopify.client import (
    AdminClient,
    AuthError,
    QueryError,
    ThrottledError,
    TransientError,
)

pytestmark = pytest.mark.anyio
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def cost(requested: int, available: float, maximum: int = 2000, rate: int = 100) -> dict[str, Any]:
    status = {"maximumAvailable": maximum, "currentlyAvailable": available, "restoreRate": rate}
    return {
        "cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": requested,
            "throttleStatus": status,
        }
    }


def ok(data: dict[str, Any], requested: int = 10, available: float = 1990) -> httpx.Response:
    return httpx.Response(200, json={"data": data, "extensions": cost(requested, available)})


def throttled(status_code: int = 200, available: float = 0) -> httpx.Response:
    error = {"message": "Throttled", "extensions": {"code": "THROTTLED"}}
    body = {"errors": [error], "extensions": cost(100, available)}
    return httpx.Response(status_code, json=body)


class Fake:
    """Answers from a script, one per request; records the requests and the waits."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.waits: list[float] = []
        self.now = 0.0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def client(self, **options: Any) -> AdminClient:
        http = httpx.AsyncClient(transport=httpx.MockTransport(self.handle))
        return AdminClient(
            http,
            "shop.myshopify.com",
            "shpat_secret_token",
            api_version="2026-10",
            sleep=self.sleep,
            clock=lambda: self.now,
            rng=random.Random(1),
            **options,
        )


async def test_client_sends_the_token_to_the_versioned_endpoint_and_returns_data() -> None:
    fake = Fake(ok({"shop": {"name": "x"}}))
    data = await fake.client().execute("{ shop { name } }")
    request = fake.requests[0]
    assert data == {"shop": {"name": "x"}}
    assert str(request.url) == "https://shop.myshopify.com/admin/api/2026-10/graphql.json"
    assert request.headers["X-Shopify-Access-Token"] == "shpat_secret_token"
    assert json.loads(request.content)["query"] == "{ shop { name } }"


@pytest.mark.parametrize("status_code", [200, 429])
async def test_client_throttled_as_200_or_429_waits_for_the_points_and_retries(
    status_code: int,
) -> None:
    # given a throttled answer (bucket empty, the call asked for 100 at 100 points/s)
    fake = Fake(throttled(status_code), ok({"done": True}))
    client = fake.client()
    # when called
    data = await client.execute("mutation { x }", cost=100)
    # then it waited about a second for the points, and retried once
    assert data == {"done": True} and len(fake.requests) == 2
    assert 1.0 <= sum(fake.waits) <= 1.2
    assert client.stats.throttled == 1 and client.stats.throttled_unretried == 0


async def test_client_honours_retry_after_on_429() -> None:
    fake = Fake(httpx.Response(429, headers={"Retry-After": "3.0"}), ok({}))
    await fake.client().execute("{ shop { name } }")
    assert sum(fake.waits) >= 3.0


async def test_client_retries_5xx_and_dropped_connections_with_growing_backoff() -> None:
    fake = Fake(
        httpx.Response(503),
        httpx.RemoteProtocolError("peer closed connection"),
        httpx.ReadTimeout("timed out"),
        ok({"done": True}),
    )
    client = fake.client(backoff_seconds=0.5)
    assert await client.execute("{ a }") == {"done": True}
    assert len(fake.requests) == 4 and client.stats.retries == 3
    waits = [w for w in fake.waits if w > 0]
    assert waits == sorted(waits) and 0.25 <= waits[0] <= 0.5 and waits[-1] <= 2.0


async def test_client_gives_up_after_max_attempts_with_a_transient_error() -> None:
    fake = Fake(*[httpx.Response(502) for _ in range(3)])
    with pytest.raises(TransientError, match="3 attempts"):
        await fake.client(max_attempts=3).execute("{ a }")
    assert len(fake.requests) == 3


async def test_client_gives_up_on_endless_throttling_and_counts_it() -> None:
    fake = Fake(*[throttled() for _ in range(8)])
    client = fake.client(max_attempts=2)
    with pytest.raises(ThrottledError):
        await client.execute("{ a }", cost=100)
    assert client.stats.throttled_unretried == 1 and len(fake.requests) == 8


async def test_client_401_is_an_auth_error_and_never_retried() -> None:
    fake = Fake(httpx.Response(401, json={"errors": "[API] Invalid API key or access token"}))
    with pytest.raises(AuthError):
        await fake.client().execute("{ a }")
    assert len(fake.requests) == 1


async def test_client_query_errors_are_not_retried() -> None:
    body = {"errors": [{"message": "Field 'nope' doesn't exist on type 'QueryRoot'"}]}
    fake = Fake(httpx.Response(200, json=body))
    with pytest.raises(QueryError, match="nope"):
        await fake.client().execute("{ nope }")
    assert len(fake.requests) == 1


async def test_client_user_errors_come_back_as_data_without_retry() -> None:
    payload = {"tagsAdd": {"userErrors": [{"field": ["tags"], "message": "Tags cannot be more"}]}}
    fake = Fake(ok(payload))
    assert await fake.client().execute("mutation { tagsAdd }") == payload
    assert len(fake.requests) == 1


async def test_client_paces_calls_so_the_bucket_is_never_overdrawn() -> None:
    # given a bucket the last answer said holds 50 points, restoring 100 a second
    fake = Fake(ok({}, requested=10, available=50), ok({}, requested=300, available=0))
    client = fake.client()
    await client.execute("{ a }", cost=10)
    # when the next call needs 300 points
    await client.execute("{ b }", cost=300)
    # then it waited for the 250 missing points before sending: 2.5 s
    assert fake.waits == [pytest.approx(2.5)]
    assert client.stats.throttled == 0


def test_client_repr_never_shows_the_token() -> None:
    client = Fake().client()
    assert "shpat" not in repr(client)


def unmetered(data: dict[str, Any]) -> httpx.Response:
    """An answer without the bucket's status: the client goes by its own picture of the bucket
    (as between calls in flight together)."""
    return httpx.Response(200, json={"data": data})


async def test_client_counts_what_it_sends_against_the_bucket_before_the_answer_says() -> None:
    # given a bucket the last answer said is full (1,000 points, restoring 100 a second)
    fake = Fake(ok({}, available=1000), unmetered({}), unmetered({}))
    client = fake.client()
    await client.execute("{ a }", cost=10)
    # when two calls of 600 points go without the bucket's status in between
    await client.execute("{ b }", cost=600)
    await client.execute("{ c }", cost=600)
    # then the second waited for the 200 points the first left it short: 2 s
    assert fake.waits == [pytest.approx(2.0)]


async def test_client_never_counts_on_more_than_a_full_bucket_after_an_idle_spell() -> None:
    # given a bucket of 2,000 points the last answer said was empty, then a minute idle, in
    # which 6,000 points would have come back were there room for them
    fake = Fake(ok({}, available=0), unmetered({}), unmetered({}))
    client = fake.client()
    await client.execute("{ a }", cost=10)
    fake.now += 60
    # when two calls of 1,500 points go without the bucket's status in between
    await client.execute("{ b }", cost=1500)
    await client.execute("{ c }", cost=1500)
    # then the second waited for the 1,000 points the full bucket left it short: 10 s
    assert fake.waits == [pytest.approx(10.0)]


async def test_client_waits_for_a_full_bucket_for_a_call_dearer_than_the_bucket() -> None:
    # given an empty bucket of 1,000 points restoring 100 a second
    fake = Fake(
        httpx.Response(200, json={"data": {}, "extensions": cost(10, 0, maximum=1000)}),
        ok({}),
    )
    client = fake.client()
    await client.execute("{ a }", cost=10)
    # when a call is expected to cost more than the bucket can hold
    await client.execute("{ b }", cost=1500)
    # then it waits until the bucket is full, 10 s, not for points that can never come
    assert fake.waits == [pytest.approx(10.0)]


async def test_client_backoff_stops_growing_at_its_cap() -> None:
    # given a dozen failed attempts in a row, with backoff from 0.5 s capped at 4 s
    fake = Fake(*[httpx.Response(503) for _ in range(12)], ok({"done": True}))
    client = fake.client(max_attempts=13, backoff_seconds=0.5, backoff_cap_seconds=4.0)
    # when it gets through at last
    assert await client.execute("{ a }") == {"done": True}
    # then no wait was longer than the cap, and the late ones were at least half of it
    waits = [w for w in fake.waits if w > 0]
    assert len(waits) == 12 and max(waits) <= 4.0 and min(waits[-6:]) >= 2.0


async def test_client_retries_throttled_calls_never_at_once() -> None:
    # given a throttled answer whose bucket status says the points are already back
    fake = Fake(throttled(available=2000), ok({"done": True}))
    # when called
    await fake.client().execute("{ a }", cost=100)
    # then it still waited a moment before trying again
    assert len(fake.waits) == 1 and fake.waits[0] >= 0.05


async def test_client_retries_an_internal_error_answered_with_200() -> None:
    # given Shopify's "Internal error. Looks like something went wrong on our end." as a 200
    error = {"message": "Internal error.", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
    fake = Fake(httpx.Response(200, json={"errors": [error]}), ok({"done": True}))
    client = fake.client()
    # when called, then it is retried as a 5xx is, not refused as a bad query
    assert await client.execute("{ a }") == {"done": True}
    assert len(fake.requests) == 2 and client.stats.server_errors == 1


async def test_client_remembers_fixed_queries_costs_beside_many_costed_documents() -> None:
    # given 300 calls of different documents, each with its expected cost given
    answers = [ok({}, requested=5, available=2000) for _ in range(300)]
    fake = Fake(*answers, ok({}, requested=900, available=0), ok({}))
    client = fake.client()
    for n in range(300):
        await client.execute(f"mutation {{ m{n} }}", cost=5)
    # when a fixed query charged 900 points runs twice, the first leaving the bucket empty
    await client.execute("{ page }")
    await client.execute("{ page }")
    # then its second call waited for the 900 points it was charged, not the 50 assumed of a
    # query never seen: the costed documents did not crowd it out of what the client remembers
    assert fake.waits == [pytest.approx(9.0)]
