"""Dev store fixtures: a real uvicorn server on a loopback port per test, driven with httpx."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from plugin.devstore.config import DEFAULT_TOKEN, DevStoreConfig
from plugin.devstore.generator import GeneratedStore, GeneratorConfig, generate_store
from plugin.devstore.server import create_devstore_app
from plugin.devstore.state import DevStoreState

VERSION = "2026-10"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def seed42_store() -> GeneratedStore:
    """The 3,000-customer store of seed 42, generated once for the generator's tests."""
    return generate_store(GeneratorConfig(customers=3_000), seed=42)


@dataclass
class FakeClock:
    """Monotonic seconds that only move when a test says so."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def customer_payload(customer_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": customer_id,
        "created_at": "2025-01-01T00:00:00Z",
        "updated_at": "2025-01-02T00:00:00Z",
        "state": "enabled",
        **extra,
    }


def product_payload(product_id: int, price: str = "12.00", **extra: Any) -> dict[str, Any]:
    return {
        "id": product_id,
        "title": f"Product {product_id}",
        "product_type": "tea",
        "handle": f"product-{product_id}",
        "variants": [{"id": product_id * 10, "price": price}],
        "tags": [],
        **extra,
    }


def order_payload(order_id: int, customer_id: int | None, product_id: int) -> dict[str, Any]:
    return {
        "id": order_id,
        "customer": None if customer_id is None else {"id": customer_id},
        "current_total_price_set": {
            "shop_money": {"amount": "24.00", "currency_code": "USD"},
            "presentment_money": {"amount": "22.00", "currency_code": "EUR"},
        },
        "created_at": "2025-02-01T10:00:00Z",
        "processed_at": "2025-02-01T10:00:00Z",
        "updated_at": "2025-02-01T10:00:00Z",
        "cancelled_at": None,
        "test": False,
        "line_items": [
            {
                "id": order_id * 100,
                "product_id": product_id,
                "variant_id": product_id * 10,
                "quantity": 2,
                "price": "12.00",
            }
        ],
    }


def make_state(
    customers: int = 5, products: int = 3, orders_per_customer: int = 1
) -> DevStoreState:
    state = DevStoreState()
    state.load(
        products=[product_payload(1000 + i) for i in range(products)],
        customers=[customer_payload(i) for i in range(1, customers + 1)],
        orders=[
            order_payload(5000 + c * 10 + k, c, 1000 + (c + k) % max(products, 1))
            for c in range(1, customers + 1)
            for k in range(orders_per_customer)
        ],
    )
    return state


@contextmanager
def serve(app: ASGIApp, lifespan: Literal["on", "off"] = "on") -> Iterator[str]:
    """Run `app` under uvicorn on a socket bound to a free loopback port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="critical", lifespan=lifespan, ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the dev store did not start")
        time.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class LiveDevStore:
    base_url: str
    state: DevStoreState
    config: DevStoreConfig
    clock: FakeClock
    client: httpx.Client
    token: str = DEFAULT_TOKEN
    version: str = VERSION
    sent: list[httpx.Response] = field(default_factory=list)

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}/admin/api/{self.version}/graphql.json"

    def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent_headers = {"X-Shopify-Access-Token": self.token, **(headers or {})}
        body = {"query": query, "variables": variables or {}}
        return self.client.post(self.graphql_url, json=body, headers=sent_headers)

    def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST a query that must succeed at the HTTP level; return the JSON body."""
        response = self.post(query, variables)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


DevStoreFactory = Callable[..., LiveDevStore]


class AppSwitch:
    """An ASGI app that forwards to whichever dev store app the current test installed.

    One uvicorn server serves the whole session (starting one per test cost most of the run);
    each test still gets a fresh app, state, config and clock behind it, over real HTTP.
    """

    def __init__(self) -> None:
        self.target: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.target is not None, "no dev store app installed for this test"
        await self.target(scope, receive, send)


@pytest.fixture(scope="session")
def live_switch() -> Iterator[tuple[AppSwitch, str]]:
    switch = AppSwitch()
    with serve(switch, lifespan="off") as base_url:
        yield switch, base_url


@pytest.fixture
def devstore_factory(live_switch: tuple[AppSwitch, str]) -> Iterator[DevStoreFactory]:
    """Install a dev store with a given state and config behind the live server (one per test)."""
    switch, base_url = live_switch
    with ExitStack() as stack:

        def start(
            state: DevStoreState | list[DevStoreState] | None = None,
            config: DevStoreConfig | None = None,
        ) -> LiveDevStore:
            """One shop (`state`, or a fresh one) or several; the first is the store's `state`."""
            clock = FakeClock()
            if state is None:
                state = make_state()
            states = state if isinstance(state, list) else [state]
            chosen_config = config or DevStoreConfig()
            switch.target = create_devstore_app(states, chosen_config, clock=clock)
            client = stack.enter_context(httpx.Client(timeout=10))
            return LiveDevStore(base_url, states[0], chosen_config, clock, client)

        yield start
        switch.target = None


@pytest.fixture
def devstore(devstore_factory: DevStoreFactory) -> LiveDevStore:
    """A dev store with 5 customers, 3 products and one order per customer, default config."""
    return devstore_factory()
