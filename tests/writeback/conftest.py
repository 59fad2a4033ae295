"""Write-back fixtures: a scored shop in our store, the same customers in a live dev store
(over real HTTP on loopback), and clients whose sleep moves the dev store's clock, so pacing and
backoff are exact and the tests do not wait."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import Engine, delete
from sqlmodel import Session, select

from jobs.context import JobContext
from jobs.plan import Plan, plan_changes
from jobs.recompute import full_recompute
from jobs.writeback import Pusher, shop_writeback_settings
from plugin.devstore.config import DEFAULT_TOKEN, DevStoreConfig
from plugin.devstore.generator import GeneratedStore
from plugin.devstore.state import DevStoreState
from plugin.shopify.bulk import BulkRunner
from plugin.shopify.client import AdminClient
from plugin.store.models import CustomerScore, CustomerSync, Shop, SyncChange
from tests.devstore.conftest import (  # noqa: F401  (fixtures, used by name)
    DevStoreFactory,
    FakeClock,
    LiveDevStore,
    anyio_backend,
    devstore_factory,
    live_switch,
)
from tests.helpers import add_shop, make_settings
from tests.test_recompute import load_store

MERCHANT_TAGS = ("newsletter", "wholesale, north")  # the second is two tags, as Shopify splits


def merchant_tagged(store: GeneratedStore) -> set[int]:
    """The customers the merchant tagged: a third of them."""
    return {int(c["id"]) for n, c in enumerate(store.customers) if n % 3 == 0}


def devstore_state(store: GeneratedStore) -> DevStoreState:
    """The generated store's customers and products, a third of them with merchant tags."""
    state = DevStoreState(domain=store.shop_domain, currency_code=store.shop_currency)
    tagged = merchant_tagged(store)
    customers = [
        {**c, "tags": ", ".join(MERCHANT_TAGS) if int(c["id"]) in tagged else ""}
        for c in store.customers
    ]
    state.load(products=store.products, customers=customers, orders=[])
    return state


def plan_of(pusher: Pusher) -> Plan:
    """What the pusher's shop has to push now, as the scheduled push plans it."""
    return plan_changes(pusher.engine, pusher.shop, pusher.settings)


@dataclass
class Scenario:
    engine: Engine
    store: GeneratedStore
    shop: Shop
    as_of: datetime
    devstore: LiveDevStore

    def refreshed_shop(self) -> Shop:
        with Session(self.engine, expire_on_commit=False) as session:
            shop = session.get(Shop, self.shop.id)
            assert shop is not None
            return shop

    def set_shop_settings(self, **values: object) -> None:
        with Session(self.engine) as session, session.begin():
            stored = session.get(Shop, self.shop.id)
            assert stored is not None
            stored.settings = json.dumps({**json.loads(stored.settings), **values})

    async def sleep(self, seconds: float) -> None:
        """Waiting moves the dev store's clock: pacing and backoff are exact and instant."""
        self.devstore.clock.advance(seconds)
        await anyio.sleep(0.001 if seconds > 0 else 0)

    def client(self, http: httpx.AsyncClient, seed: int = 0) -> AdminClient:
        return AdminClient(
            http,
            self.store.shop_domain,
            DEFAULT_TOKEN,
            api_version="2026-10",
            admin_url=self.devstore.base_url,
            sleep=self.sleep,
            clock=self.devstore.clock,
            rng=random.Random(seed),
        )

    def pusher(self, http: httpx.AsyncClient, client: AdminClient | None = None) -> Pusher:
        client = client or self.client(http)
        shop = self.refreshed_shop()

        async def sleep(seconds: float) -> None:
            await anyio.sleep(min(seconds, 0.01))

        return Pusher(
            self.engine,
            shop,
            client,
            BulkRunner(client, http, sleep=sleep, poll_seconds=0.01),
            shop_writeback_settings(shop),
            job_run_id=None,
            clock=lambda: self.as_of,
        )

    def forget_pushed_state(self) -> None:
        """As if nothing had been pushed yet (to push the same shop again another way)."""
        with Session(self.engine) as session, session.begin():
            for table in (SyncChange, CustomerSync):
                session.execute(delete(table))
            stored = session.get(Shop, self.shop.id)
            assert stored is not None
            stored.definitions_version = 0

    def context(self, http: httpx.AsyncClient) -> JobContext:
        settings = make_settings(SHOPIFY_ADMIN_URL=self.devstore.base_url)
        return JobContext(
            self.engine,
            settings,
            http,
            "test-worker",
            clock=lambda: self.as_of,
            sleep=self.sleep,
            monotonic=self.devstore.clock,
        )

    # what the store holds

    def store_tags(self) -> dict[int, list[str]]:
        return {c.id: list(c.tags) for c in self.devstore.state.customers.values()}

    def store_metafields(self, namespace: str = "clv") -> dict[int, dict[str, str]]:
        return {
            c.id: {k: m.value for (ns, k), m in (c.metafields or {}).items() if ns == namespace}
            for c in self.devstore.state.customers.values()
        }

    def desired(self, prefix: str = "clv:") -> dict[int, set[str]]:
        with Session(self.engine) as session:
            scores = session.exec(select(CustomerScore)).all()
        wanted: dict[int, set[str]] = {c: set() for c in self.devstore.state.customers}
        for score in scores:
            wanted[score.customer_id] = {prefix + t for t in score.tags.split()}
        return wanted


ScenarioFactory = Callable[..., Scenario]


class RewritingAnswers(httpx.AsyncBaseTransport):
    """Forwards to the dev store, and hands each Admin API answer's JSON, with the request's,
    to `rewrite` before the app gets it: a store that answers otherwise than it acted."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not request.url.path.endswith("/graphql.json"):
            return response
        body = json.loads(await response.aread())
        self.rewrite(json.loads(request.content), body)
        return httpx.Response(response.status_code, json=body)

    def rewrite(self, sent: dict[str, Any], body: dict[str, Any]) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        await self.inner.aclose()


class RecordsRequests(RewritingAnswers):
    """Changes no answer; keeps each Admin API request's JSON (its query and variables)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, Any]] = []

    def rewrite(self, sent: dict[str, Any], body: dict[str, Any]) -> None:
        self.sent.append(sent)

    def holding(self, text: str) -> list[dict[str, Any]]:
        """The requests whose query holds `text` (a bulk run's mutation is in a variable)."""
        return [sent for sent in self.sent if text in sent.get("query", "")]


class RefusingDeletes(RewritingAnswers):
    """Answers each metafieldsDelete (which the store applied) with a user error."""

    refused = 0

    def rewrite(self, sent: dict[str, Any], body: dict[str, Any]) -> None:
        answer = (body.get("data") or {}).get("metafieldsDelete")
        if isinstance(answer, dict):
            answer["userErrors"] = [{"field": ["metafields", "0"], "message": "refused (test)"}]
            self.refused += 1


@pytest.fixture
def scenario_factory(
    engine: Engine,
    devstore_factory: DevStoreFactory,  # noqa: F811  (the fixture imported above)
) -> ScenarioFactory:
    """A generated store's history in our ledger, scored; its customers, with tags of the
    merchant's own, in a live dev store."""

    def build(customers: int = 60, seed: int = 3, config: DevStoreConfig | None = None) -> Scenario:
        store, shop, as_of = load_store(engine, customers, seed)
        shop = add_shop(engine, store.shop_domain, DEFAULT_TOKEN)  # the token the store takes
        full_recompute(engine, shop, as_of)
        live = devstore_factory(devstore_state(store), config)
        return Scenario(engine, store, shop, as_of, live)

    return build


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client
