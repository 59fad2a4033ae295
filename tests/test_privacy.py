"""Secrets and personal data never reach the logs, the command line's output or the database.

The whole flow runs once per database (SQLite, PostgreSQL) with every logger open, down to
uvicorn's TRACE: the app's, uvicorn's (access lines included), httpx's and httpcore's,
SQLAlchemy's statements with their parameters and the rows they return, Alembic's. A generated
store whose customers carry distinctive names, emails, phones and addresses is delivered by the
dev store's sender over HTTP on loopback with real HMACs (orders, customers, refunds, the
compliance topics), with deliveries the app refuses (a tampered signature, a body that is not
JSON, payloads the processor parks, an unknown shop, a topic it does not handle); the
operator's commands run (shop add, backfill, recompute, recommend, push, reconcile, export,
replay); the store refuses a token (401); the database goes away; the app is uninstalled.
Then nothing captured (log lines, the commands' output, whatever any thread printed) holds a
personal value of the payloads or a secret (the access tokens, the API secrets, the
token-encryption keys, the database password), no line of the app's holds the URL of a bulk
operation's result file (a credential to the shop's export), and no row of any table holds any
of them.
"""

# ruff: noqa: F811  (the dev store's fixtures are imported, and used by name)

from __future__ import annotations

import contextlib
import io
import json
import logging
import secrets
import threading
import time
import traceback
from collections.abc import Mapping
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy import Engine, MetaData, make_url
from sqlmodel import Session, SQLModel, col, select
from starlette.types import ASGIApp, Receive, Scope, Send

from jobs.context import JobContext
from jobs.runs import run_job
from jobs.writeback import push_shop
from plugin.app import create_app
from plugin.cli import main
from plugin.devstore.config import DevStoreConfig
from plugin.devstore.gen_config import GeneratorConfig
from plugin.devstore.generator import GeneratedStore, WebhookEvent, generate_store
from plugin.devstore.sender import DeliveryFaults, RetrySchedule, WebhookSender
from plugin.devstore.server import create_devstore_app
from plugin.devstore.state import DevStoreState
from plugin.serving import serve_in_thread
from plugin.settings import Settings, load_settings
from plugin.store import shops
from plugin.store.db import make_engine
from plugin.store.models import InboxEvent
from tests.devstore.conftest import AppSwitch, live_switch  # noqa: F401
from tests.helpers import sign
from webhooks.processor import Processor

# What a delivery, a customer or an address carries that this app must never keep or say.
PERSONAL_KEYS = frozenset(
    {"email", "contact_email", "first_name", "last_name", "phone", "address1", "address2"}
    | {"city", "zip", "shop_owner", "customer_email"}
)
EVERY_LEVEL = 1  # below DEBUG: uvicorn's TRACE too


# --- the capture ---------------------------------------------------------------------------


class Capture(logging.Handler):
    """Every record of every logger, formatted with its exception and stack."""

    def __init__(self) -> None:
        super().__init__(level=EVERY_LEVEL)
        self.lines: list[tuple[str, str, str]] = []  # (logger, thread, line)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a record that cannot be formatted is still looked at
            text = f"{record.msg!r} {record.args!r}"
        self.lines.append((record.name, record.threadName or "", text))


class OpenLoggers:
    """Opens every logger (the root and every named one, whatever level, propagation or
    disabling a library or a server's log config gave it) into the capture, again at each
    step: uvicorn configures its loggers anew for each server, the CLI sets Alembic's level.
    Everything is put back as it was on `close`."""

    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.saved: dict[str, tuple[logging.Logger, int, bool, bool]] = {}
        root = logging.getLogger()
        self.saved[""] = (root, root.level, root.propagate, root.disabled)
        root.addHandler(capture)

    def open(self) -> None:
        root = logging.getLogger()
        root.setLevel(EVERY_LEVEL)
        for name, logger in list(logging.Logger.manager.loggerDict.items()):
            if not isinstance(logger, logging.Logger):
                continue
            self.saved.setdefault(name, (logger, logger.level, logger.propagate, logger.disabled))
            logger.setLevel(EVERY_LEVEL)
            logger.propagate = True
            logger.disabled = False

    def close(self) -> None:
        logging.getLogger().removeHandler(self.capture)
        for logger, level, propagate, disabled in self.saved.values():
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled


# --- distinctive personal data and secrets -------------------------------------------------


def _hex() -> str:
    return secrets.token_hex(5)


def _distinctive(key: str) -> str:
    """A value no log line could hold by chance, shaped like what `key` holds."""
    if key in ("email", "contact_email", "customer_email"):
        return f"p{_hex()}@privacy.example"
    if key == "phone":
        return f"+1{secrets.randbelow(9 * 10**9) + 10**9}"
    if key in ("address1", "address2"):
        return f"{secrets.randbelow(900) + 100} St{_hex()} Road"
    return f"{key.replace('_', '')[:4].title()}{_hex()}"


class Personal:
    """Replaces the personal values of payloads with distinctive ones, and keeps them all."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}  # value -> the key it was found under
        self._given: dict[tuple[str, str], str] = {}

    def value(self, key: str, original: str | None = None) -> str:
        chosen = self._given.setdefault((key, original or _hex()), _distinctive(key))
        self.values[chosen] = key
        return chosen

    def rewrite(self, node: Any) -> None:
        """In place: payloads share nested objects, so a value already given is left alone."""
        if isinstance(node, list):
            for item in node:
                self.rewrite(item)
        if not isinstance(node, dict):
            return
        for key, item in node.items():
            if key in PERSONAL_KEYS and isinstance(item, str) and item not in self.values:
                node[key] = self.value(key, item)
            else:
                self.rewrite(item)


@dataclass(frozen=True)
class Secrets:
    token: str = field(default_factory=lambda: f"shpat_{secrets.token_hex(16)}")
    refused_token: str = field(default_factory=lambda: f"shpat_{secrets.token_hex(16)}")
    api_secret: str = field(default_factory=lambda: f"apisecret{secrets.token_hex(16)}")
    previous_secret: str = field(default_factory=lambda: f"oldsecret{secrets.token_hex(16)}")
    token_key: str = field(default_factory=lambda: Fernet.generate_key().decode())
    database_password: str = field(default_factory=lambda: f"dbpw{secrets.token_hex(12)}")
    other_key: str = field(default_factory=lambda: Fernet.generate_key().decode())
    not_a_key: str = field(default_factory=lambda: f"notafernetkey{secrets.token_hex(16)}")

    def named(self) -> dict[str, str]:
        return {
            "access token": self.token,
            "refused access token": self.refused_token,
            "SHOPIFY_API_SECRET": self.api_secret,
            "SHOPIFY_API_SECRET_PREVIOUS": self.previous_secret,
            "TOKEN_ENCRYPTION_KEY": self.token_key,
            "database password": self.database_password,
            "another TOKEN_ENCRYPTION_KEY": self.other_key,
            "a TOKEN_ENCRYPTION_KEY that is none": self.not_a_key,
        }


# --- the flow ------------------------------------------------------------------------------


@dataclass
class Flow:
    """What one run of the whole flow left to look at."""

    database_url: str
    personal: dict[str, str]
    secrets: dict[str, str]
    logs: list[tuple[str, str, str]] = field(default_factory=list)  # (logger, thread, line)
    cli: list[tuple[str, int, str]] = field(default_factory=list)  # (command, exit code, text)
    streams: str = ""  # what any thread printed outside the commands (uvicorn's handlers too)
    statuses: dict[str, int] = field(default_factory=dict)  # failure deliveries' answers
    refused_webhook_ids: list[str] = field(default_factory=list)
    shop_needed_reauth: bool = False
    # The bulk operations' result URLs the dev store issued: each is a bearer credential (on
    # Shopify a signed storage URL, good for a week), the dev store's random file name in it.
    result_files: dict[str, str] = field(default_factory=dict)
    devstore_threads: set[str] = field(default_factory=set)  # Shopify's side: its own logs

    def app_logs(self) -> list[tuple[str, str]]:
        """The app's lines (not the dev store server's), as (where, line)."""
        return [
            (f"log of {name}", text)
            for name, thread, text in self.logs
            if thread not in self.devstore_threads
        ]

    def every_log(self) -> list[tuple[str, str]]:
        return [(f"log of {name} ({thread})", text) for name, thread, text in self.logs]


def with_personal_notes(store: GeneratedStore, personal: Personal) -> None:
    """What merchants and customers type into free text: an order note, an engraving on a line,
    a refund note, each naming the customer; and the buyer's IP address and browser, which
    Shopify's order payloads carry (`browser_ip`, `client_details`)."""
    for event in store.events:
        payload = event.payload
        customer = payload.get("customer")
        if event.topic.startswith("orders/") and isinstance(customer, dict):
            payload["note"] = f"gift for {customer['first_name']}, call {customer['phone']}"
            address = personal.value("browser_ip", str(customer["id"]))
            payload["browser_ip"] = address
            payload["client_details"] = {
                "browser_ip": address,
                "user_agent": personal.value("user_agent", str(customer["id"])),
            }
            payload["line_items"] = [
                {**line, "properties": [{"name": "Engraving", "value": customer["last_name"]}]}
                for line in payload["line_items"]
            ]
        if event.topic == "refunds/create":
            payload["note"] = f"asked for by {personal.value('email')}"


def compliance_events(store: GeneratedStore, personal: Personal) -> list[WebhookEvent]:
    """A data request for one customer, a redaction of another, a shop/redact while the shop
    is installed (refused, logged), each with the customer's contact fields as Shopify sends."""
    with_orders: dict[int, list[int]] = {}
    for order in store.orders:
        if order.get("customer") and not order.get("test"):
            with_orders.setdefault(order["customer"]["id"], []).append(order["id"])
    asked, redacted = list(with_orders)[:2]
    contact = {c["id"]: c for c in store.customers}
    now = datetime.now(UTC)

    def customer(cid: int) -> dict[str, Any]:
        return {"id": cid, "email": contact[cid]["email"], "phone": contact[cid]["phone"]}

    domain = store.shop_domain
    return [
        WebhookEvent(
            "customers/data_request",
            {
                "shop_id": 1,
                "shop_domain": domain,
                "customer": customer(asked),
                "orders_requested": with_orders[asked],
                "data_request": {"id": 77},
            },
            now,
            "privacy-data-request",
        ),
        WebhookEvent(
            "customers/redact",
            {
                "shop_id": 1,
                "shop_domain": domain,
                "customer": customer(redacted),
                "orders_to_redact": with_orders[redacted],
            },
            now,
            "privacy-redact",
        ),
        WebhookEvent("shop/redact", {"shop_id": 1, "shop_domain": domain}, now, "privacy-shop"),
    ]


def headers(topic: str, body: bytes, secret: str, domain: str, webhook_id: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": sign(body, secret),
        "X-Shopify-Shop-Domain": domain,
        "X-Shopify-API-Version": "2026-10",
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
    }


def an_order(store: GeneratedStore, personal: Personal, **changes: Any) -> dict[str, Any]:
    """A copy of an order of the store's, for a new customer with every contact field."""
    order = json.loads(json.dumps(next(o for o in store.orders if o.get("customer"))))
    order["customer"] = {
        "id": 91_000_000_001,
        "email": personal.value("email"),
        "first_name": personal.value("first_name"),
        "last_name": personal.value("last_name"),
        "phone": personal.value("phone"),
    }
    order["billing_address"] = {
        "first_name": personal.value("first_name"),
        "address1": personal.value("address1"),
        "address2": personal.value("address2"),
        "city": personal.value("city"),
        "zip": personal.value("zip"),
    }
    return {**order, "id": 92_000_000_000 + secrets.randbelow(10**6), **changes}


def refused_deliveries(store: GeneratedStore, personal: Personal) -> list[tuple[str, Any]]:
    """(topic, payload) the endpoint takes and the processor refuses, each with personal data
    beside the field at fault: an order whose date is no date, a customer's update likewise, a
    data request that names another shop."""
    a_customer = store.customers[0]
    return [
        ("orders/create", an_order(store, personal, created_at="last Tuesday")),
        ("customers/update", {**a_customer, "updated_at": "after lunch"}),
        (
            "customers/data_request",
            {
                "shop_domain": "someone-else.myshopify.com",
                "customer": {"id": a_customer["id"], "email": a_customer["email"]},
                "data_request": {"id": 5},
            },
        ),
    ]


class App:
    """The app under uvicorn on loopback, and an HTTP client to post webhooks to it."""

    def __init__(self, url: str, secret: str, domain: str) -> None:
        self.url, self.secret, self.domain = url, secret, domain
        self.client = httpx.Client(timeout=10)

    def post(
        self,
        topic: str,
        body: bytes,
        *,
        domain: str | None = None,
        signature_of: bytes | None = None,
        webhook_id: str | None = None,
    ) -> httpx.Response:
        sent = headers(
            topic,
            body if signature_of is None else signature_of,
            self.secret,
            domain or self.domain,
            webhook_id or f"privacy-{_hex()}",
        )
        return self.client.post(f"{self.url}/webhooks", content=body, headers=sent)


def send_history(app_url: str, secret: str, domain: str, events: list[WebhookEvent]) -> None:
    async def send() -> None:
        async with httpx.AsyncClient() as client:
            sender = WebhookSender(
                client,
                app_url=app_url,
                secret=secret,
                shop_domain=domain,
                schedule=RetrySchedule(),
                faults=DeliveryFaults(duplicate_share=0.05, reorder_window=10),
                concurrency=4,
                seed=1,
                keep_records=False,
            )
            summary = await sender.send(events)
        assert summary.failed == 0 and summary.acknowledged == summary.sent

    anyio.run(send)


def broken_url(database_url: str, tmp: Path) -> str:
    """The same database's URL with the database gone: a name the PostgreSQL server does not
    have (the password still sent), a SQLite file in a directory that does not exist."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{tmp / 'gone' / _hex() / 'clvsync.db'}"
    return url.set(database=f"clvsync_gone_{_hex()}").render_as_string(hide_password=False)


class Steps:
    """The flow's steps, each opening the loggers again before it runs."""

    def __init__(self, flow: Flow, loggers: OpenLoggers, env: dict[str, str]) -> None:
        self.flow, self.loggers, self.env = flow, loggers, env

    def cli(self, *args: str, expect: int = 0, **env: str) -> str:
        self.loggers.open()
        result = CliRunner().invoke(main, list(args), env={**self.env, **env})
        text = result.stdout + result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            text += "".join(traceback.format_exception(result.exception))
        self.flow.cli.append((" ".join(args), result.exit_code, text))
        assert result.exit_code == expect, (args, text)
        self.loggers.open()
        return result.stdout

    def wait_for(self, text: str, seconds: float = 10.0) -> None:
        """Until a line holding `text` is captured (another thread logs it)."""
        deadline = time.monotonic() + seconds
        while not any(text in line for _, _, line in self.loggers.capture.lines):
            assert time.monotonic() < deadline, f"no line with {text!r} in {seconds} s"
            time.sleep(0.01)


def settings_of(env: Mapping[str, str]) -> Settings:
    return load_settings(env, env_file=None)


class ThreadsOf:
    """An ASGI app that notes the threads it is served from (the dev store's server's)."""

    def __init__(self, app: ASGIApp, threads: set[str]) -> None:
        self.app, self.threads = app, threads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.threads.add(threading.current_thread().name)
        await self.app(scope, receive, send)


@dataclass
class Setting:
    """What every step is given: the store, the keys, the environment, the engine."""

    store: GeneratedStore
    personal: Personal
    keys: Secrets
    env: dict[str, str]
    engine: Engine
    steps: Steps

    @property
    def domain(self) -> str:
        return self.store.shop_domain

    @property
    def settings(self) -> Settings:
        return settings_of(self.env)

    @property
    def flow(self) -> Flow:
        return self.steps.flow

    def serve(self, engine: Engine | None = None, **background: bool) -> ContextManager[str]:
        app = create_app(
            self.settings,
            engine=engine or self.engine,
            **{"run_processor": False, "run_jobs": False, **background},
        )
        return serve_in_thread(app)


def run_flow(url: str, switch: AppSwitch, devstore_url: str, tmp: Path) -> Flow:
    keys = Secrets()
    is_postgres = make_url(url).get_backend_name() == "postgresql"
    if is_postgres:  # PostgreSQL's trust authentication takes any password: one is sent
        url = make_url(url).set(password=keys.database_password).render_as_string(False)
    personal = Personal()
    store = generate_store(GeneratorConfig(customers=40), seed=5)
    for part in (store.customers, store.orders, [e.payload for e in store.events]):
        personal.rewrite(part)
    with_personal_notes(store, personal)
    env = {
        "CLVSYNC_ENV": "production",
        "CLVSYNC_LOG_LEVEL": "DEBUG",
        "DATABASE_URL": url,
        "SHOPIFY_API_KEY": "privacy-test-api-key",
        "SHOPIFY_API_SECRET": keys.api_secret,
        "SHOPIFY_API_SECRET_PREVIOUS": keys.previous_secret,
        "TOKEN_ENCRYPTION_KEY": keys.token_key,
        "SHOPIFY_ADMIN_URL": devstore_url,
    }
    flow = Flow(url, {}, keys.named())
    capture = Capture()
    loggers = OpenLoggers(capture)
    state = DevStoreState(domain=store.shop_domain, currency_code=store.shop_currency)
    state.load(products=store.products, customers=store.customers, orders=store.orders)
    devstore = create_devstore_app(
        state, DevStoreConfig(access_tokens={keys.token: store.shop_domain})
    )
    switch.target = ThreadsOf(devstore, flow.devstore_threads)
    engine = make_engine(url)
    setting = Setting(store, personal, keys, env, engine, Steps(flow, loggers, env))
    streams = io.StringIO()  # what is printed, outside the commands, by any thread
    try:
        with contextlib.redirect_stdout(streams), contextlib.redirect_stderr(streams):
            loggers.open()
            # the operator registers the shop with its token, then Shopify delivers
            setting.steps.cli("shop", "add", setting.domain, "--token", keys.token)
            deliveries(setting)
            operator_commands(setting)
            refused_token(setting)
            misconfigured(setting)
            database_outage(setting, broken_url(url, tmp))
            uninstall(setting)
    finally:
        engine.dispose()
        switch.target = None
        loggers.close()
    flow.streams = streams.getvalue()
    flow.logs = capture.lines
    flow.personal = dict(personal.values)
    flow.result_files = {name: "a bulk operation's result URL" for name in state.bulk_results}
    return flow


def deliveries(setting: Setting) -> None:
    """The store's history and the compliance topics, by the dev store's sender; deliveries
    refused at the door (401, 400) or taken and dropped (unknown shop, unhandled topic);
    payloads the processor refuses, alone and among others applied together (parked)."""
    store, personal, flow, engine = setting.store, setting.personal, setting.flow, setting.engine
    with setting.serve() as app_url:
        setting.steps.loggers.open()
        poster = App(app_url, setting.keys.api_secret, setting.domain)
        every = [*store.events, *compliance_events(store, personal)]
        send_history(app_url, setting.keys.api_secret, setting.domain, every)
        body = json.dumps(an_order(store, personal)).encode()
        flow.statuses["tampered"] = poster.post(
            "orders/create", body, signature_of=body.replace(b"}", b" }", 1)
        ).status_code
        not_json = f"email={personal.value('email')}&name={personal.value('first_name')}"
        flow.statuses["not json"] = poster.post("orders/create", not_json.encode()).status_code
        flow.statuses["unknown shop"] = poster.post(
            "orders/create", body, domain="nobody-here.myshopify.com"
        ).status_code
        flow.statuses["unhandled topic"] = poster.post("checkouts/create", body).status_code
        Processor(engine).drain()
        # four good orders with the bad one: the processor applies them together first
        for _ in range(4):
            good = json.dumps(an_order(store, personal)).encode()
            assert poster.post("orders/create", good).status_code == 200
        for topic, payload in refused_deliveries(store, personal):
            webhook_id = f"privacy-refused-{_hex()}"
            answer = poster.post(topic, json.dumps(payload).encode(), webhook_id=webhook_id)
            assert answer.status_code == 200, answer.text
            flow.refused_webhook_ids.append(webhook_id)
        setting.steps.loggers.open()
        Processor(engine, max_attempts=1).drain()
        poster.client.close()


def operator_commands(setting: Setting) -> None:
    cli, domain = setting.steps.cli, setting.domain
    cli("webhooks", "status")
    cli("webhooks", "replay", "--failed", "--shop", domain, expect=1)
    cli("backfill", "--shop", domain, "--json")
    cli("recompute", "--shop", domain)
    cli("jobs", "run", "recommend", "--shop", domain)
    cli("push", "--shop", domain, "--dry-run")
    cli("push", "--shop", domain)
    cli("jobs", "run", "reconcile", "--shop", domain)
    cli("export", "--shop", domain)
    asked = compliance_events(setting.store, setting.personal)[0].payload["customer"]["id"]
    cli("export", "--shop", domain, "--customer", str(asked))
    cli("jobs", "runs")


def refused_token(setting: Setting) -> None:
    """The store refuses a token (401): the reconcile fails, the shop needs authorising again,
    and the push and backfill say so."""
    cli, domain = setting.steps.cli, setting.domain
    cli("shop", "add", domain, "--token", setting.keys.refused_token)
    cli("jobs", "run", "reconcile", "--shop", domain, expect=1)
    cli("push", "--shop", domain, expect=1)
    cli("backfill", "--shop", domain, expect=1)
    cli("shop", "list")
    with Session(setting.engine) as session:
        held = shops.get_shop(session, domain)
        setting.flow.shop_needed_reauth = held is not None and held.needs_reauth
    cli("shop", "add", domain, "--token", setting.keys.token)


def misconfigured(setting: Setting) -> None:
    """Commands refused for their configuration, each with a secret in what is wrong: a key
    that is not a Fernet key, another key than the token was stored with, a database URL that
    does not parse, a shop domain that is not one given with the token."""
    cli, domain, keys = setting.steps.cli, setting.domain, setting.keys
    cli("webhooks", "status", expect=1, TOKEN_ENCRYPTION_KEY=keys.not_a_key)
    cli("jobs", "run", "reconcile", "--shop", domain, expect=1, TOKEN_ENCRYPTION_KEY=keys.other_key)
    garbled = f"postgresql://clvsync:{keys.database_password}@127.0.0.1:port/clvsync"
    cli("webhooks", "status", expect=1, DATABASE_URL=garbled)
    cli("shop", "add", "not a shop", "--token", keys.token, expect=2)


def uninstall(setting: Setting) -> None:
    """The merchant uninstalls the app: Shopify sends the shop, its owner's contact fields and
    all; an order that comes after is dropped, a redaction is still taken."""
    personal = setting.personal
    with setting.serve() as app_url:
        setting.steps.loggers.open()
        poster = App(app_url, setting.keys.api_secret, setting.domain)
        uninstalled = {
            "id": 1,
            "domain": "shop.privacy.example",
            "myshopify_domain": setting.domain,
            **{key: personal.value(key) for key in ("email", "customer_email", "shop_owner")},
            **{key: personal.value(key) for key in ("phone", "address1", "city", "zip")},
        }
        answer = poster.post("app/uninstalled", json.dumps(uninstalled).encode())
        assert answer.status_code == 200, answer.text
        Processor(setting.engine).drain()
        late = json.dumps(an_order(setting.store, personal)).encode()
        assert poster.post("orders/create", late).text.strip() == "not_installed"
        poster.client.close()
    setting.steps.cli("shop", "list")


def database_outage(setting: Setting, gone: str) -> None:
    """Webhooks answered 503 and the processor waiting, a job not started, a command failing:
    each logs or says what the database said, without its password."""
    broken = make_engine(gone)
    try:
        with setting.serve(broken, run_processor=True) as app_url:
            setting.steps.loggers.open()
            poster = App(app_url, setting.keys.api_secret, setting.domain)
            body = json.dumps(an_order(setting.store, setting.personal)).encode()
            answer = poster.post("orders/create", body)
            setting.flow.statuses["outage"] = answer.status_code
            assert poster.client.get(f"{app_url}/healthz").status_code == 503
            poster.client.close()
            setting.steps.wait_for("inbox processor: database unavailable")

        async def push_now() -> None:
            async with httpx.AsyncClient() as http:
                ctx = JobContext(broken, setting.settings, http, "privacy-worker")
                result = await run_job(ctx, 1, "push", push_shop)
                assert result.outcome == "failed"

        setting.steps.loggers.open()
        anyio.run(push_now)
    finally:
        broken.dispose()
    setting.steps.cli("recompute", "--shop", setting.domain, expect=1, DATABASE_URL=gone)


@pytest.fixture(scope="module")
def flow(
    migrated_url: str,
    live_switch: tuple[AppSwitch, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Flow:
    """The whole flow, run once per database on its emptied tables."""
    emptied = make_engine(migrated_url)
    with emptied.begin() as connection:
        for table in reversed(SQLModel.metadata.sorted_tables):
            connection.execute(table.delete())
    emptied.dispose()
    switch, devstore_url = live_switch
    return run_flow(migrated_url, switch, devstore_url, tmp_path_factory.mktemp("privacy"))


# --- looking -------------------------------------------------------------------------------


def found(needles: Mapping[str, str], texts: list[tuple[str, str]]) -> list[str]:
    """Each (needle, where) of a needle in a text (case-insensitive), with the text's start."""
    hits = []
    folded = {needle.casefold(): name for needle, name in needles.items()}
    for where, text in texts:
        lowered = text.casefold()
        for needle, name in folded.items():
            if needle in lowered:
                at = lowered.index(needle)
                hits.append(f"{name} in {where}: ...{text[max(0, at - 150) : at + 80]!r}")
    return hits


def rows_of_every_table(url: str) -> list[tuple[str, str]]:
    """(table.column, value) of every text value of every row of every table in the database."""
    engine = make_engine(url)
    try:
        metadata = MetaData()
        metadata.reflect(bind=engine)
        values = []
        with engine.connect() as connection:
            for table in metadata.sorted_tables:
                for row in connection.execute(table.select()).mappings():
                    for column, value in row.items():
                        if isinstance(value, bytes | memoryview):
                            value = bytes(value).decode("latin-1")
                        if isinstance(value, str):
                            values.append((f"{table.name}.{column}", value))
        return values
    finally:
        engine.dispose()


def test_flow_ran_through_every_path_it_means_to_check(flow: Flow) -> None:
    # given the whole flow, run with every logger open
    loggers = {name for name, _, _ in flow.logs}
    text = "\n".join(line for _, _, line in flow.logs)
    # then the capture saw each source of log lines, the SQL with its parameters included
    for source in (
        "uvicorn.access",
        "uvicorn.error",
        "httpx",
        "httpcore.http11",
        "sqlalchemy.engine.Engine",
        "alembic.runtime.migration",
        "webhooks.processor",
        "webhooks.receive",
        "webhooks.handlers",
        "jobs.runs",
        "jobs.writeback",
    ):
        assert source in loggers, f"no line from {source}"
    assert "INSERT INTO webhook_inbox" in text and "customers/data_request" in text
    assert "401" in text and "database unavailable" in text and "answering 503" in text
    assert "applied one at a time, as together they failed" in text
    assert flow.result_files and flow.devstore_threads
    assert '"POST /webhooks HTTP/1.1" 200' in flow.streams and len(flow.cli) > 20
    # and the failure paths were taken as meant
    assert flow.statuses == {
        "tampered": 401,
        "not json": 400,
        "unknown shop": 200,
        "unhandled topic": 200,
        "outage": 503,
    }
    assert flow.shop_needed_reauth
    engine = make_engine(flow.database_url)
    try:
        with Session(engine) as session:
            parked = session.exec(
                select(InboxEvent).where(col(InboxEvent.webhook_id).in_(flow.refused_webhook_ids))
            ).all()
    finally:
        engine.dispose()
    assert len(parked) == len(flow.refused_webhook_ids) == 3
    assert all(event.status == "parked" and event.last_error for event in parked)
    # and the values looked for are many, and each distinctive
    kinds = set(flow.personal.values())
    assert {"email", "first_name", "last_name", "phone", "address1", "city", "zip"} <= kinds
    assert len(flow.personal) > 100


def test_logs_of_the_whole_flow_hold_no_personal_data(flow: Flow) -> None:
    # given every line every logger gave, and whatever any thread printed
    printed = [*flow.every_log(), ("printed", flow.streams)]
    # then none holds a customer's (or the shop owner's) name, email, phone or address
    hits = found(flow.personal, printed)
    assert not hits, "\n".join(hits[:20])


def test_logs_of_the_whole_flow_hold_no_secret(flow: Flow) -> None:
    # given every line every logger gave, and whatever any thread printed
    printed = [*flow.every_log(), ("printed", flow.streams)]
    # then none holds a token, an API secret, a key or the database password
    hits = found({v: k for k, v in flow.secrets.items()}, printed)
    assert not hits, "\n".join(hits[:20])


def test_logs_of_the_whole_flow_hold_no_bulk_result_url(flow: Flow) -> None:
    # given the app's lines (the dev store's own access lines for its result files are
    # Shopify's logs, not the app's) and the commands' output
    said = [*flow.app_logs(), *command_outputs(flow)]
    # then none holds the URL of a bulk operation's result file the app read
    hits = found(flow.result_files, said)
    assert not hits, "\n".join(hits[:20])


def command_outputs(flow: Flow) -> list[tuple[str, str]]:
    return [(f"clvsync {command} (exit {code})", text) for command, code, text in flow.cli]


def test_cli_output_of_the_whole_flow_holds_no_personal_data_nor_secret(flow: Flow) -> None:
    # given what each command printed (stdout, stderr, an unexpected exception's traceback)
    # then none holds a personal value or a secret
    needles = {**flow.personal, **{v: k for k, v in flow.secrets.items()}}
    hits = found(needles, command_outputs(flow))
    assert not hits, "\n".join(hits[:20])


def test_database_after_the_whole_flow_holds_no_personal_data_nor_secret_in_clear(
    flow: Flow,
) -> None:
    # given every text value of every row of every table (the inbox's payloads and errors too)
    values = rows_of_every_table(flow.database_url)
    assert any(where == "webhook_inbox.payload" for where, _ in values)
    assert any(where == "webhook_inbox.last_error" for where, _ in values)
    # then none holds a personal value, nor a secret
    secret = {v: k for k, v in flow.secrets.items()}
    hits = found({**flow.personal, **secret, **flow.result_files}, values)
    assert not hits, "\n".join(hits[:20])
