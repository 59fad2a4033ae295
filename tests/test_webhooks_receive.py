"""POST /webhooks over real HTTP: signatures, limits, headers, de-duplication, durability."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import Engine, func, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from plugin.app import create_app
from plugin.serving import serve_in_thread
from plugin.store import inbox, shops
from plugin.store.models import InboxEvent
from tests.helpers import (
    PREVIOUS_SECRET,
    SECRET,
    SHOP,
    T0,
    add_shop,
    body_of,
    make_settings,
    order_payload,
    sign,
    webhook_headers,
)
from webhooks.gate import IngestGate
from webhooks.processor import Processor
from webhooks.writer import InboxWriter


@pytest.fixture
def app_url(engine: Engine) -> Iterator[str]:
    add_shop(engine)
    app = create_app(make_settings(), engine=engine, run_processor=False, run_jobs=False)
    with serve_in_thread(app) as url:
        yield url


def inbox_rows(engine: Engine) -> list[InboxEvent]:
    with Session(engine) as session:
        return list(session.exec(select(InboxEvent)))


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{url}/webhooks", content=body, headers=headers, timeout=10)


def test_receive_valid_signature_stores_event_and_answers_200(app_url: str, engine: Engine) -> None:
    # given a signed order webhook
    body = body_of(order_payload(1001))
    headers = webhook_headers(body, "orders/create", webhook_id="wh-valid")
    # when it is delivered
    response = post(app_url, body, headers)
    # then it is acknowledged and stored once, with its delivery headers
    assert response.status_code == 200
    [row] = inbox_rows(engine)
    assert (row.shop_domain, row.webhook_id, row.topic) == (SHOP, "wh-valid", "orders/create")
    assert row.event_id == headers["X-Shopify-Event-Id"]
    assert row.triggered_at is not None and row.api_version == "2026-10"


def test_receive_previous_secret_is_accepted(app_url: str, engine: Engine) -> None:
    body = body_of(order_payload(1002))
    response = post(app_url, body, webhook_headers(body, "orders/create", secret=PREVIOUS_SECRET))
    assert response.status_code == 200
    assert len(inbox_rows(engine)) == 1


@pytest.mark.parametrize(
    "tamper", ["body", "signature", "last-character", "missing", "unknown-secret"]
)
def test_receive_bad_signature_answers_401_and_stores_nothing(
    app_url: str, engine: Engine, tamper: str
) -> None:
    # given a webhook whose signature does not match its body
    body = body_of(order_payload(1003))
    headers = webhook_headers(body, "orders/create")
    if tamper == "body":
        body = body.replace(b"100.00", b"900.00")
    elif tamper == "signature":
        headers["X-Shopify-Hmac-Sha256"] = headers["X-Shopify-Hmac-Sha256"][::-1]
    elif tamper == "last-character":  # all but the last base64 digit right
        signature = headers["X-Shopify-Hmac-Sha256"]
        headers["X-Shopify-Hmac-Sha256"] = (
            signature[:-2] + ("A" if signature[-2] != "A" else "B") + "="
        )
    elif tamper == "missing":
        del headers["X-Shopify-Hmac-Sha256"]
    else:
        headers = webhook_headers(body, "orders/create", secret="someone-else")
    # when it is delivered, then it is refused and nothing is kept
    assert post(app_url, body, headers).status_code == 401
    assert inbox_rows(engine) == []


def test_receive_oversized_body_answers_413_without_reading_it(
    app_url: str, engine: Engine
) -> None:
    # given a body past the 64 KiB limit of the test settings, streamed without a length
    chunk = b" " * 16384

    def stream() -> Iterator[bytes]:
        for _ in range(1000):  # 16 MB if it were all read
            yield chunk

    headers = {"X-Shopify-Hmac-Sha256": "x", "X-Shopify-Topic": "orders/create"}
    # when it is delivered
    response = httpx.post(f"{app_url}/webhooks", content=stream(), headers=headers, timeout=10)
    # then it is refused as too large
    assert response.status_code == 413
    assert inbox_rows(engine) == []


def test_receive_body_not_sent_in_time_answers_408(engine: Engine) -> None:
    # given an app that waits 0.5 s for a body, and a client that sends the headers and a first
    # part of the body, then nothing more
    settings = replace(make_settings(), webhook_read_seconds=0.5)
    app = create_app(settings, engine=engine, run_processor=False, run_jobs=False)
    body = body_of(order_payload(1))
    headers = webhook_headers(body, "orders/create") | {"Content-Length": str(len(body))}
    with serve_in_thread(app) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as client:
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            client.sendall(f"POST /webhooks HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode())
            client.sendall(body[:100])
            started = time.monotonic()
            answer = client.recv(4096)
            waited = time.monotonic() - started
    # then the app gives up on it within about that time, with 408, and keeps nothing
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert 0.4 < waited < 5
    assert inbox_rows(engine) == []


def padded_order(size: int) -> bytes:
    """A signed-to-be order body of exactly `size` bytes (spaces before its closing brace)."""
    body = body_of(order_payload(1020))
    return body[:-1] + b" " * (size - len(body)) + b"}"


@pytest.mark.parametrize("sent", ["with-length", "streamed"])
def test_receive_limit_is_inclusive_one_byte_more_answers_413(
    app_url: str, engine: Engine, sent: str
) -> None:
    # given bodies of exactly the test settings' limit (64 KiB) and one byte more, sent with a
    # Content-Length or streamed without one
    limit = make_settings().webhook_max_bytes
    answers = []
    for size in (limit, limit + 1):
        body = padded_order(size)
        headers = webhook_headers(body, "orders/create")
        content = body if sent == "with-length" else iter([body[: size // 2], body[size // 2 :]])
        response = httpx.post(f"{app_url}/webhooks", content=content, headers=headers, timeout=10)
        answers.append(response.status_code)
    # then the first is stored and the second refused as too large
    assert answers == [200, 413]
    assert len(inbox_rows(engine)) == 1


def test_receive_declared_oversized_body_answers_413(app_url: str) -> None:
    body = b"{" + b" " * (70 * 1024) + b"}"
    response = post(app_url, body, webhook_headers(body, "orders/create"))
    assert response.status_code == 413


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"', b""])
def test_receive_verified_body_not_a_json_object_answers_400(
    app_url: str, engine: Engine, body: bytes
) -> None:
    response = post(app_url, body, webhook_headers(body, "orders/create"))
    assert response.status_code == 400
    assert "JSON" in response.text
    assert inbox_rows(engine) == []


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


UNREADABLE = {
    "nested": (b"[" * 5000 + b"]" * 5000, "nested too deeply"),  # past the parsers' depth
    "kept-part-nested": (  # past orjson's depth when what is kept is written
        json.dumps(order_payload(1) | {"total_price_set": nested(300)}).encode(),
        "nested too deeply",
    ),
    "huge-number": (b'{"id": ' + b"9" * 5000 + b"}", "not JSON"),  # past int() of a str
    "not-utf-8": ('{"note": "café"}'.encode("latin-1"), "not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_receive_verified_body_that_cannot_be_read_answers_400(
    app_url: str, engine: Engine, case: str
) -> None:
    body, message = UNREADABLE[case]
    response = post(app_url, body, webhook_headers(body, "orders/create"))
    assert response.status_code == 400
    assert message in response.text
    assert inbox_rows(engine) == []


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_receive_forged_body_is_refused_401_before_it_is_read(
    app_url: str, engine: Engine, case: str
) -> None:
    # given a body no parser can read, under a signature that is not its own
    body, _ = UNREADABLE[case]
    headers = webhook_headers(body, "orders/create", secret="someone-else")
    # when it is delivered, then it is refused for its signature, before anything reads it
    assert post(app_url, body, headers).status_code == 401
    assert inbox_rows(engine) == []


@pytest.mark.parametrize(
    "header",
    ["X-Shopify-Topic", "X-Shopify-Shop-Domain", "X-Shopify-API-Version", "X-Shopify-Webhook-Id"],
)
def test_receive_missing_required_header_answers_400_naming_it(
    app_url: str, engine: Engine, header: str
) -> None:
    body = body_of(order_payload(1004))
    headers = webhook_headers(body, "orders/create")
    del headers[header]
    response = post(app_url, body, headers)
    assert response.status_code == 400
    assert header.lower() in response.text
    assert inbox_rows(engine) == []


@pytest.mark.parametrize("header", ["X-Shopify-Topic", "X-Shopify-Webhook-Id"])
def test_receive_empty_required_header_answers_400_naming_it(
    app_url: str, engine: Engine, header: str
) -> None:
    body = body_of(order_payload(1016))
    headers = webhook_headers(body, "orders/create") | {header: ""}
    response = post(app_url, body, headers)
    assert response.status_code == 400
    assert header.lower() in response.text
    assert inbox_rows(engine) == []


def test_receive_repeated_header_the_first_counts(app_url: str, engine: Engine) -> None:
    # given two deliveries each with two signatures, the right one first in one, last in the
    # other
    answers = []
    for right_first in (True, False):
        body = body_of(order_payload(1017 + right_first))
        headers = webhook_headers(body, "orders/create")
        right = headers.pop("X-Shopify-Hmac-Sha256")
        wrong = sign(body, "someone-else")
        pairs = list(headers.items())
        pairs += [
            ("X-Shopify-Hmac-Sha256", s)
            for s in ((right, wrong) if right_first else (wrong, right))
        ]
        answers.append(httpx.post(f"{app_url}/webhooks", content=body, headers=pairs, timeout=10))
    # then the first signature is the one checked, as Starlette's Headers.get takes it
    assert [a.status_code for a in answers] == [200, 401]
    assert len(inbox_rows(engine)) == 1


def test_receive_topic_is_read_in_any_case(app_url: str, engine: Engine) -> None:
    body = body_of(order_payload(1019))
    response = post(app_url, body, webhook_headers(body, "Orders/Create"))
    assert response.status_code == 200 and response.text.strip() == "stored"
    [row] = inbox_rows(engine)
    assert row.topic == "orders/create"


def test_receive_unknown_shop_is_acknowledged_and_dropped(
    app_url: str, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    body = body_of(order_payload(1005))
    headers = webhook_headers(body, "orders/create", shop="stranger.myshopify.com")
    response = post(app_url, body, headers)
    assert response.status_code == 200
    assert inbox_rows(engine) == []
    said = "webhook orders/create for unknown shop stranger.myshopify.com acknowledged and dropped"
    assert said in [r.getMessage() for r in caplog.records]


def test_receive_uninstalled_shop_is_acknowledged_and_dropped_saying_so(
    app_url: str, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # given the shop uninstalled the app
    with Session(engine) as session, session.begin():
        shop = shops.get_shop(session, SHOP)
        assert shop is not None and shops.uninstall_shop(session, shop, T0)
    # when an order webhook for it arrives, then it is dropped, and the log says why in words
    body = body_of(order_payload(1015))
    response = post(app_url, body, webhook_headers(body, "orders/create"))
    assert response.status_code == 200 and response.text.strip() == "not_installed"
    assert inbox_rows(engine) == []
    said = f"webhook orders/create for uninstalled shop {SHOP} acknowledged and dropped"
    assert said in [r.getMessage() for r in caplog.records]


def test_receive_stores_no_personal_data(app_url: str, engine: Engine) -> None:
    body = body_of(order_payload(1006))
    assert post(app_url, body, webhook_headers(body, "orders/create")).status_code == 200
    [row] = inbox_rows(engine)
    for personal in ("jane", "Jane", "Doe", "Main St", "5555550100", "Green tea"):
        assert personal not in row.payload
    stored = json.loads(row.payload)
    assert stored["customer"] == {"id": 501}
    assert stored["line_items"][0]["product_id"] == 9001


@pytest.mark.anyio
async def test_receive_same_delivery_ten_times_concurrently_is_stored_once(
    app_url: str, engine: Engine
) -> None:
    # given one delivery, sent 10 times at once (as Shopify's retries and duplicates can)
    body = body_of(order_payload(1007))
    headers = webhook_headers(body, "orders/create", webhook_id="wh-dup")
    statuses: list[int] = []
    answers: list[str] = []
    async with httpx.AsyncClient(timeout=10) as client:

        async def send() -> None:
            response = await client.post(f"{app_url}/webhooks", content=body, headers=headers)
            statuses.append(response.status_code)
            answers.append(response.text.strip())

        async with anyio.create_task_group() as tasks:
            for _ in range(10):
                tasks.start_soon(send)
    # then every copy is acknowledged, exactly one as stored, and exactly one is stored
    assert statuses == [200] * 10
    assert sorted(answers) == ["duplicate"] * 9 + ["stored"]
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(InboxEvent)).one() == 1


def test_store_two_copies_in_one_batch_first_stored_second_duplicate(engine: Engine) -> None:
    add_shop(engine)
    copy = inbox.Delivery(SHOP, "wh-twice", "orders/create", None, None, "2026-10", "{}")
    assert inbox.store_deliveries(engine, [copy, copy], T0) == [
        inbox.Stored.STORED,
        inbox.Stored.DUPLICATE,
    ]
    assert inbox.store_deliveries(engine, [copy], T0) == [inbox.Stored.DUPLICATE]
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(InboxEvent)).one() == 1


@pytest.mark.parametrize(
    "dead_url",
    ["postgresql+psycopg://postgres@127.0.0.1:1/nowhere", "sqlite:////nonexistent/dir/x.db"],
)
def test_receive_database_down_answers_503(dead_url: str) -> None:
    # given an app whose database cannot be reached
    from plugin.store.db import make_engine

    app = create_app(
        make_settings(), engine=make_engine(dead_url), run_processor=False, run_jobs=False
    )
    body = body_of(order_payload(1008))
    with serve_in_thread(app) as url:
        response = post(url, body, webhook_headers(body, "orders/create"))
    # then the webhook is not acknowledged, so Shopify retries it
    assert response.status_code == 503


def test_logs_carry_no_secret_token_or_personal_data(
    app_url: str, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # given webhooks of every outcome, carrying personal data, then processed
    caplog.set_level(logging.DEBUG)
    body = body_of(order_payload(1009))
    post(app_url, body, webhook_headers(body, "orders/create"))
    post(app_url, body, webhook_headers(body, "orders/create", shop="stranger.myshopify.com"))
    post(app_url, body, webhook_headers(body, "orders/create", secret="wrong"))
    bad = body_of({**order_payload(1010), "currency": None})
    post(app_url, bad, webhook_headers(bad, "orders/create"))
    request = body_of({"shop_domain": SHOP, "customer": {"id": 501, "email": "jane@example.com"}})
    post(app_url, request, webhook_headers(request, "customers/data_request"))
    Processor(engine).drain()
    # then no log line holds a secret, the shop token, or the customer's details
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "data request" in text and "failed" in text  # the lines above were logged
    for leak in (
        SECRET,
        PREVIOUS_SECRET,
        "shpat_test_token",
        "jane",
        "Jane",
        "Doe",
        "5555550100",
        "Main St",
    ):
        assert leak not in text


@pytest.mark.anyio
async def test_receive_many_concurrent_deliveries_are_all_stored(
    app_url: str, engine: Engine
) -> None:
    # given 60 different webhooks sent at once (stored together by the group-committing writer)
    bodies = [body_of(order_payload(2000 + i)) for i in range(60)]
    async with httpx.AsyncClient(timeout=10) as client:

        async def send(body: bytes, index: int) -> int:
            headers = webhook_headers(body, "orders/create", webhook_id=f"many-{index}")
            return (
                await client.post(f"{app_url}/webhooks", content=body, headers=headers)
            ).status_code

        statuses = [0] * len(bodies)

        async def record(index: int) -> None:
            statuses[index] = await send(bodies[index], index)

        async with anyio.create_task_group() as tasks:
            for index in range(len(bodies)):
                tasks.start_soon(record, index)
    # then each one is acknowledged and stored
    assert statuses == [200] * 60
    assert sorted(row.webhook_id for row in inbox_rows(engine)) == sorted(
        f"many-{i}" for i in range(60)
    )


def test_unreadable_optional_headers_are_kept_short_or_dropped_not_refused(
    app_url: str, engine: Engine
) -> None:
    # given a webhook whose optional headers are out of range: a Triggered-At past year 9999
    # once in UTC, and an Event-Id longer than its column
    body = body_of(order_payload(1011))
    headers = webhook_headers(body, "orders/create")
    headers["X-Shopify-Triggered-At"] = "9999-12-31T23:59:59-01:00"
    headers["X-Shopify-Event-Id"] = "e" * 300
    # when it is delivered, then it is stored, the time dropped and the id cut to 255
    assert post(app_url, body, headers).status_code == 200
    [row] = inbox_rows(engine)
    assert row.triggered_at is None and row.event_id == "e" * 255


def test_overlong_required_headers_are_cut_to_their_columns(app_url: str, engine: Engine) -> None:
    # given a webhook whose id and API version are longer than their columns (255 and 32)
    body = body_of(order_payload(1012))
    headers = webhook_headers(body, "orders/create", webhook_id="w" * 300)
    headers["X-Shopify-API-Version"] = "v" * 40
    headers["X-Shopify-Event-Id"] = ""
    # when it is delivered, then it is stored with both cut, and an empty Event-Id held as none
    assert post(app_url, body, headers).status_code == 200
    [row] = inbox_rows(engine)
    assert (row.webhook_id, row.api_version, row.event_id) == ("w" * 255, "v" * 32, None)


def test_a_row_the_database_refuses_fails_only_its_own_request(engine: Engine) -> None:
    # given a batch of three deliveries, the middle one breaking a NOT NULL constraint
    add_shop(engine)
    writer = InboxWriter(engine, lambda: T0, IngestGate(serialise_writes=False))

    def delivery(webhook_id: str, topic: str | None) -> inbox.Delivery:
        return inbox.Delivery(SHOP, webhook_id, topic, None, None, "2026-10", "{}")  # type: ignore[arg-type]

    batch = [delivery("good-1", "orders/create"), delivery("bad", None)]
    batch.append(delivery("good-2", "orders/create"))
    # when the writer stores them together (its kept connection closed after: the writer's
    # thread, which closes it on stop, is not started here)
    try:
        outcomes = writer._write(batch)
    finally:
        writer._close()
    # then the good ones are stored and answered, and only the bad one fails
    assert outcomes[0] == outcomes[2] == inbox.Stored.STORED
    assert isinstance(outcomes[1], IntegrityError)
    assert sorted(row.webhook_id for row in inbox_rows(engine)) == ["good-1", "good-2"]


def test_a_dropped_writer_connection_costs_no_request(postgres_engine: Engine) -> None:
    # given an app that has stored a webhook, on the connection its writer keeps open
    add_shop(postgres_engine)
    app = create_app(make_settings(), engine=postgres_engine, run_processor=False, run_jobs=False)
    with serve_in_thread(app) as url:
        first = body_of(order_payload(1201))
        assert post(url, first, webhook_headers(first, "orders/create")).status_code == 200
        # when the database drops that connection (a restart, an idle timeout) and the next
        # webhook comes
        with postgres_engine.begin() as connection:
            dropped = connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).all()
        assert dropped, "no other connection to drop"
        second = body_of(order_payload(1202))
        answer = post(url, second, webhook_headers(second, "orders/create"))
    # then it is stored and acknowledged on a new connection, not refused with 503
    assert answer.status_code == 200
    assert len(inbox_rows(postgres_engine)) == 2
