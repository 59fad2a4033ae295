"""A tiny webhook receiver over real HTTP (uvicorn, 127.0.0.1, background thread) for sender tests.

Imported explicitly by the sender tests (tests/devstore/conftest.py belongs to the dev store's
GraphQL tests). The receiver records every request and answers from a script: per webhook id,
a list of (status, delay in seconds) for successive attempts, then 200.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """Recorded requests and the script of answers; shared between the server thread and tests."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    script: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    default: tuple[int, float] = (200, 0.0)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        """Forget requests and script between tests."""
        with self.lock:
            self.requests.clear()
            self.script.clear()
            self.default = (200, 0.0)

    def answer(self, webhook_id: str) -> tuple[int, float]:
        """The next scripted (status, delay) for this webhook id."""
        with self.lock:
            steps = self.script.get(webhook_id)
            return steps.pop(0) if steps else self.default

    def by_webhook(self, webhook_id: str) -> list[Received]:
        """Requests that carried this X-Shopify-Webhook-Id, in arrival order."""
        return [r for r in self.requests if r.headers["x-shopify-webhook-id"] == webhook_id]


def _app(receiver: Receiver) -> Starlette:
    async def webhooks(request: Request) -> Response:
        body = await request.body()
        arrived = time.perf_counter()
        webhook_id = request.headers.get("x-shopify-webhook-id", "")
        with receiver.lock:
            receiver.requests.append(Received(dict(request.headers), body, arrived))
        status, delay = receiver.answer(webhook_id)
        if delay:
            await asyncio.sleep(delay)
        return Response(status_code=status)

    return Starlette(routes=[Route("/webhooks", webhooks, methods=["POST"])])


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[Receiver]:
    """A running receiver on a free port of 127.0.0.1, stopped after the module."""
    receiver = Receiver()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        _app(receiver),
        log_level="warning",
        lifespan="off",
        loop="asyncio",
        http="h11",
        ws="none",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("receiver did not start")
        time.sleep(0.01)
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


@pytest.fixture
def receiver(receiver_server: Receiver) -> Receiver:
    """The module's receiver, emptied for this test."""
    receiver_server.reset()
    return receiver_server
