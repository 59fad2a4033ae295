"""The webhook sender against a real HTTP receiver: headers, HMAC, retries, disorder, seeds."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from plugin.devstore.generator import GeneratorConfig, WebhookEvent, generate_store
from plugin.devstore.sender import (
    SHOPIFY_RETRY_DELAYS_S,
    DeliveryFaults,
    RetrySchedule,
    WebhookSender,
)
from plugin.serving import free_port
from tests.devstore.conftest_sender import Receiver, receiver, receiver_server
from webhooks.verify import verify_webhook

__all__ = ["receiver", "receiver_server"]  # fixtures, imported for pytest to find

SECRET = "shpss_test_secret"
SHOP = "clvsync-dev.myshopify.com"
# 600x: the first retries wait 0.1 s and 0.2 s, long enough to measure, short enough to run.
FAST = RetrySchedule(time_compression=600.0)
INSTANT = RetrySchedule(time_compression=1e6)


def make_events(n: int) -> list[WebhookEvent]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        WebhookEvent(
            "orders/create",
            {"id": 5_500_000_000_000 + i, "current_total_price": f"{i}.00", "note": "café"},
            start + timedelta(minutes=i),
            f"00000000-0000-4000-8000-{i:012d}",
        )
        for i in range(n)
    ]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


def make_sender(client: httpx.AsyncClient, receiver: Receiver, **options: object) -> WebhookSender:
    return WebhookSender(
        client,
        app_url=receiver.url,
        secret=SECRET,
        shop_domain=SHOP,
        **options,  # type: ignore[arg-type]
    )


def event_index(body: bytes) -> int:
    return int(json.loads(body)["id"]) - 5_500_000_000_000


def test_retry_schedule_default_eight_retries_about_four_hours() -> None:
    # Given Shopify's documented policy (8 retries over about 4 hours, exponential)
    # When the default schedule is read
    schedule = RetrySchedule()
    total_hours = sum(SHOPIFY_RETRY_DELAYS_S) / 3600
    # Then it has 8 doubling waits summing to between 3.5 and 4.5 hours
    assert schedule.max_attempts == 9
    assert 3.5 <= total_hours <= 4.5
    assert all(b == 2 * a for a, b in itertools.pairwise(SHOPIFY_RETRY_DELAYS_S))


@pytest.mark.anyio
async def test_sender_delivery_carries_shopify_headers_and_valid_hmac(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # Given one event
    event = make_events(1)[0]
    # When it is sent
    summary = await make_sender(client, receiver, schedule=INSTANT).send([event])
    # Then the app's own verifier accepts the signature on the raw body, and not another secret
    assert (summary.sent, summary.acknowledged, summary.failed, summary.attempts) == (1, 1, 0, 1)
    [got] = receiver.requests
    assert verify_webhook(got.body, got.headers, SECRET)
    assert not verify_webhook(got.body, got.headers, "another-secret")
    assert not verify_webhook(got.body + b" ", got.headers, SECRET)
    # And Shopify's headers are all there
    assert got.headers["x-shopify-topic"] == "orders/create"
    assert got.headers["x-shopify-shop-domain"] == SHOP
    assert got.headers["x-shopify-api-version"] == "2026-10"
    assert got.headers["x-shopify-event-id"] == event.event_id
    assert got.headers["x-shopify-triggered-at"] == "2026-01-01T00:00:00.000000Z"
    assert len(got.headers["x-shopify-webhook-id"]) == 36
    assert json.loads(got.body) == event.payload


@pytest.mark.anyio
async def test_sender_server_errors_retries_on_schedule_until_success_same_webhook_id(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # Given an app that answers 503 twice, then 200
    event = make_events(1)[0]
    sender = make_sender(client, receiver, schedule=FAST)
    receiver.script[sender.webhook_id(event)] = [(503, 0.0), (500, 0.0)]
    # When the event is sent
    summary = await sender.send([event])
    # Then it took three attempts with the same webhook id, spaced by the compressed schedule
    got = receiver.by_webhook(sender.webhook_id(event))
    assert [r.status for r in summary.records] == [503, 500, 200]
    assert (summary.acknowledged, summary.failed, summary.attempts) == (1, 0, 3)
    assert len(got) == 3
    assert got[1].at - got[0].at >= FAST.wait_s(1) * 0.95
    assert got[2].at - got[1].at >= FAST.wait_s(2) * 0.95
    assert {r.body for r in got} == {got[0].body}


@pytest.mark.anyio
async def test_sender_slow_answer_counts_as_timeout_and_is_retried(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # Given an app whose first answer is a 200 that comes too late
    event = make_events(1)[0]
    sender = make_sender(client, receiver, schedule=INSTANT, timeout_s=0.3)
    receiver.script[sender.webhook_id(event)] = [(200, 2.0)]
    # When the event is sent
    summary = await sender.send([event])
    # Then the late 200 is a failure (timeout) and the retry succeeds
    first, second = summary.records
    assert (first.error, first.ok, first.status) == ("timeout", False, None)
    # (the upper bound is loose: a loaded machine may start the clock late, never 2 s late)
    assert 0.25 <= first.duration_s < 1.5
    assert second.ok
    assert summary.acknowledged == 1


@pytest.mark.anyio
async def test_sender_app_always_failing_gives_up_after_eight_retries(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # Given an app that always answers 500
    receiver.default = (500, 0.0)
    # When two events are sent
    summary = await make_sender(client, receiver, schedule=INSTANT).send(make_events(2))
    # Then each got 1 + 8 attempts and both are reported failed
    assert (summary.sent, summary.acknowledged, summary.failed) == (2, 0, 2)
    assert summary.attempts == 18 == len(receiver.requests)
    assert all(r.status == 500 and not r.ok for r in summary.records)


@pytest.mark.anyio
async def test_sender_duplicates_reuse_webhook_id_of_their_event(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # Given half of the deliveries duplicated
    events = make_events(40)
    sender = make_sender(client, receiver, faults=DeliveryFaults(duplicate_share=0.5), seed=3)
    # When they are sent
    summary = await sender.send(events)
    # Then duplicated events arrived twice, with one webhook id per event
    per_event = Counter(event_index(r.body) for r in receiver.requests)
    ids_per_event: dict[int, set[str]] = {}
    for r in receiver.requests:
        ids_per_event.setdefault(event_index(r.body), set()).add(r.headers["x-shopify-webhook-id"])
    assert summary.events == 40 and summary.sent == 40 + summary.duplicates
    assert 8 <= summary.duplicates <= 32
    assert sorted(per_event.values()).count(2) == summary.duplicates
    assert all(len(ids) == 1 for ids in ids_per_event.values())
    assert len({next(iter(ids)) for ids in ids_per_event.values()}) == 40


@pytest.mark.anyio
async def test_sender_reorder_window_shuffles_within_blocks_only(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # Given a reorder window of 10 and one connection (arrival order = sending order)
    events = make_events(50)
    faults = DeliveryFaults(reorder_window=10)
    sender = make_sender(client, receiver, faults=faults, concurrency=1, seed=5)
    # When they are sent
    await sender.send(events)
    # Then the order changed, nothing was lost, and no event left its block of 10
    arrived = [event_index(r.body) for r in receiver.requests]
    assert arrived != list(range(50))
    assert sorted(arrived) == list(range(50))
    assert all(i // 10 == pos // 10 for pos, i in enumerate(arrived))


@pytest.mark.anyio
async def test_sender_delayed_deliveries_arrive_no_earlier_than_their_delay(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # Given about half of the deliveries held back by up to 0.3 s (180 s Shopify time / 600)
    events = make_events(20)
    faults = DeliveryFaults(delay_share=0.5, max_delay_s=180.0)
    sender = make_sender(client, receiver, faults=faults, schedule=FAST, seed=11)
    delays = {d.event.event_id: d.delay_s for d in sender.plan(events)}
    # When they are sent
    began = time.perf_counter()
    await sender.send(events)
    # Then some were delayed, and none arrived before its delay had passed
    assert 3 <= sum(d > 0 for d in delays.values()) <= 17
    for r in receiver.requests:
        assert r.at - began >= delays[r.headers["x-shopify-event-id"]] * 0.95


def test_sender_same_seed_same_plan_other_seed_other_plan() -> None:
    # Given two senders with the same seed and one with another seed
    events = make_events(60)
    faults = DeliveryFaults(duplicate_share=0.3, reorder_window=7, delay_share=0.3, max_delay_s=60)

    def plan(seed: int) -> list[tuple[str, str, bool, float]]:
        sender = WebhookSender(
            httpx.AsyncClient(),
            app_url="http://127.0.0.1:1",
            secret=SECRET,
            shop_domain=SHOP,
            faults=faults,
            seed=seed,
        )
        return [
            (d.event.event_id, d.webhook_id, d.duplicate, d.delay_s) for d in sender.plan(events)
        ]

    # When each plans the same events
    # Then the same seed gives the same plan, another seed another one
    assert plan(1) == plan(1)
    assert plan(1) != plan(2)


def test_sender_non_loopback_app_url_is_refused() -> None:
    # Given an app URL on another host
    # When a sender is built for it
    # Then it refuses: the dev store only ever talks to a local app
    with pytest.raises(ValueError, match="non-loopback"):
        WebhookSender(
            httpx.AsyncClient(), app_url="https://example.com", secret=SECRET, shop_domain=SHOP
        )


@pytest.mark.anyio
async def test_sender_generated_store_history_all_delivered_and_verified(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # Given the history of a small generated store
    store = generate_store(GeneratorConfig(customers=60), seed=1)
    # When all of it is sent without keeping attempt records
    sender = make_sender(client, receiver, keep_records=False, concurrency=4)
    summary = await sender.send(store.events)
    # Then every event arrived once, signed, with its topic, and the summary still counts
    assert summary.records == ()
    assert summary.sent == summary.acknowledged == summary.attempts == len(store.events)
    assert len(receiver.requests) == len(store.events)
    assert all(verify_webhook(r.body, r.headers, SECRET) for r in receiver.requests)
    assert Counter(r.headers["x-shopify-topic"] for r in receiver.requests) == Counter(
        e.topic for e in store.events
    )


@pytest.mark.anyio
async def test_sender_headers_follow_its_options_and_the_body_stays_utf8(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # Given an event triggered at 01:30 at +02:00, an older API version, a URL ending in "/"
    event = make_events(1)[0]
    event = WebhookEvent(
        event.topic,
        event.payload,
        datetime(2026, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=2))),
        event.event_id,
    )
    sender = WebhookSender(
        client,
        app_url=receiver.url + "/",
        secret=SECRET,
        shop_domain=SHOP,
        api_version="2026-07",
        schedule=INSTANT,
    )
    # When it is sent
    await sender.send([event])
    # Then it reaches /webhooks with the version asked for, the instant in UTC, Shopify's agent
    [got] = receiver.requests
    assert got.headers["x-shopify-api-version"] == "2026-07"
    assert got.headers["x-shopify-triggered-at"] == "2025-12-31T23:30:00.000000Z"
    assert got.headers["user-agent"] == "Shopify-Captain-Hook"
    # And the body holds UTF-8 itself, not \u escapes (the HMAC covers these very bytes)
    assert "café".encode() in got.body


def test_sender_webhook_ids_depend_on_the_seed() -> None:
    event = make_events(1)[0]

    def webhook_id(seed: int) -> str:
        sender = WebhookSender(
            httpx.AsyncClient(),
            app_url="http://127.0.0.1:1",
            secret=SECRET,
            shop_domain=SHOP,
            seed=seed,
        )
        return sender.webhook_id(event)

    # Two runs of one seed give an event one id; another seed's run is another delivery
    assert webhook_id(1) == webhook_id(1)
    assert webhook_id(1) != webhook_id(2)


@pytest.mark.anyio
async def test_sender_records_attempts_by_delivery_then_attempt(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # Given three events, the first answered 503 once (its retry comes after the others)
    events = make_events(3)
    sender = make_sender(client, receiver, schedule=FAST, concurrency=1)
    receiver.script[sender.webhook_id(events[0])] = [(503, 0.0)]
    # When they are sent
    summary = await sender.send(events)
    # Then the records read delivery by delivery, each one's attempts in turn (the retry
    # arrived after the second event at least)
    assert [event_index(r.body) for r in receiver.requests][:2] == [0, 1]
    assert [(r.delivery, r.attempt) for r in summary.records] == [(0, 1), (0, 2), (1, 1), (2, 1)]


@pytest.mark.anyio
async def test_sender_a_redirect_is_not_an_acknowledgement(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # Given an app that first answers 300 (Shopify counts only a 2xx as delivered)
    event = make_events(1)[0]
    sender = make_sender(client, receiver, schedule=INSTANT)
    receiver.script[sender.webhook_id(event)] = [(300, 0.0)]
    # When the event is sent, the 300 failed and was retried
    summary = await sender.send([event])
    assert [(r.status, r.error, r.ok) for r in summary.records] == [
        (300, "HTTP 300", False),
        (200, None, True),
    ]


@pytest.mark.anyio
async def test_sender_to_an_app_that_is_down_names_the_error_and_gives_up(
    client: httpx.AsyncClient,
) -> None:
    # Given no app listening on the port
    sender = WebhookSender(
        client,
        app_url=f"http://127.0.0.1:{free_port()}",
        secret=SECRET,
        shop_domain=SHOP,
        schedule=INSTANT,
    )
    # When an event is sent, every attempt fails to connect and the delivery is given up
    summary = await sender.send(make_events(1))
    assert (summary.acknowledged, summary.failed, summary.attempts) == (0, 1, 9)
    assert {(r.status, r.error) for r in summary.records} == {(None, "ConnectError")}


@pytest.mark.parametrize("url", ["http://localhost:8080", "http://[::1]:8080"])
def test_sender_takes_every_loopback_name(url: str) -> None:
    sender = WebhookSender(httpx.AsyncClient(), app_url=url, secret=SECRET, shop_domain=SHOP)
    assert sender.url == url + "/webhooks"


def test_sender_sends_elsewhere_only_when_told_it_may() -> None:
    sender = WebhookSender(
        httpx.AsyncClient(),
        app_url="https://example.com",
        secret=SECRET,
        shop_domain=SHOP,
        allow_remote=True,
    )
    assert sender.url == "https://example.com/webhooks"
