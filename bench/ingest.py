"""Webhook ingestion benchmark: `POST /webhooks` against a bare Starlette endpoint, side by side.

For each backend (SQLite, then PostgreSQL if reachable), this script starts two servers as
separate processes with the same uvicorn settings, `clvsync serve`'s (`plugin.serving.limits`:
h11, its head limit, its cap on connections, raised above what the chosen concurrency needs):
the real app (as `clvsync serve` runs it, inbox processor included) and a bare Starlette app
whose endpoint only reads the body. It then
drives both from this process over loopback with signed, realistic order webhooks:

1. throughput: REQUESTS requests, CONCURRENCY at a time -> requests/s, and their ratio;
2. latency at a fixed 200 requests/s for RATE_SECONDS -> p50 and p99 (counted from each
   request's scheduled time, so a server that falls behind shows it);

and counts webhooks acknowledged with 200 but missing from the inbox (`lost`). Last, it times
the work the endpoint must do before storing anything (Shopify's verifier, the JSON parse, the
minimised copy) and prints the ratio the app could reach at best were storage free
(`ratio_bound_without_storage`, see `work_floor`). Everything stays on 127.0.0.1 and stops by
itself. The last line of stdout is one JSON object.

    .venv/bin/python bench/ingest.py [--requests 3000] [--concurrency 32] [--rate-seconds 10]
                                     [--processor inline|off]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_databases import postgres_database, sqlite_database

ROOT = Path(__file__).resolve().parent.parent
SHOP = "bench-shop.myshopify.com"
SECRET = "bench-secret"
ENV = {
    "CLVSYNC_ENV": "production",
    "SHOPIFY_API_KEY": "bench-key",
    "SHOPIFY_API_SECRET": SECRET,
    "TOKEN_ENCRYPTION_KEY": "Y2x2c3luYy10ZXN0LWFuZC1iZW5jaC1rZXktMzJieSE=",
    "CLVSYNC_LOG_LEVEL": "WARNING",
}
RATE = 200
KEEP_ALIVE_SECONDS = 4.0  # uvicorn closes keep-alive connections idle for 5 s


def order_body(order_id: int) -> bytes:
    """An order webhook shaped and sized like Shopify's (about 4 KB, three line items)."""

    def money(amount: str) -> dict[str, Any]:
        return {
            "shop_money": {"amount": amount, "currency_code": "USD"},
            "presentment_money": {"amount": amount, "currency_code": "USD"},
        }

    address = {
        "first_name": "Jane",
        "last_name": "Doe",
        "address1": "1 Main St",
        "city": "Ottawa",
        "zip": "K1A 0B1",
        "country": "Canada",
        "phone": "+15555550100",
    }
    lines = [
        {
            "id": order_id * 10 + i,
            "product_id": 7000 + i,
            "variant_id": 8000 + i,
            "quantity": 1,
            "current_quantity": 1,
            "price": "19.99",
            "price_set": money("19.99"),
            "total_discount": "0.00",
            "sku": f"SKU-{i}",
            "gift_card": False,
            "product_type": "Tea",
            "title": "Green tea",
            "name": "Green tea - 100 g",
            "vendor": "Leaf Co",
            "properties": [],
            "tax_lines": [{"price": "2.60", "rate": 0.13, "title": "HST"}],
        }
        for i in range(3)
    ]
    created = "2026-10-01T12:00:00-04:00"
    payload = {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "email": "jane@example.com",
        "name": f"#{order_id}",
        "currency": "USD",
        "presentment_currency": "USD",
        "total_price_set": money("59.97"),
        "current_total_price_set": money("59.97"),
        "financial_status": "paid",
        "cancelled_at": None,
        "created_at": created,
        "processed_at": created,
        "updated_at": created,
        "test": False,
        "source_name": "web",
        "refunds": [],
        "customer": {
            "id": 100000 + order_id % 5000,
            "email": "jane@example.com",
            "first_name": "Jane",
            "last_name": "Doe",
            "default_address": address,
        },
        "billing_address": address,
        "shipping_address": address,
        "line_items": lines,
        "note": None,
        "tags": "",
        "browser_ip": "203.0.113.7",
    }
    return json.dumps(payload).encode()


def headers_for(body: bytes, webhook_id: str) -> dict[str, str]:
    signature = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest())
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Hmac-Sha256": signature.decode(),
        "X-Shopify-Shop-Domain": SHOP,
        "X-Shopify-API-Version": "2026-10",
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Triggered-At": "2026-10-01T16:00:00Z",
    }


# --- servers --------------------------------------------------------------------------------


def bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def receive(request: Request) -> PlainTextResponse:
        await request.body()
        return PlainTextResponse("ok\n")

    return Starlette(routes=[Route("/webhooks", receive, methods=["POST"])])


def real_app() -> Any:
    from plugin.app import create_app
    from plugin.settings import load_settings

    inline = os.environ.get("CLVSYNC_BENCH_PROCESSOR", "inline") == "inline"
    return create_app(load_settings(env_file=None), run_processor=inline, run_jobs=False)


def serve(kind: str, port: int, concurrency: int) -> None:
    import uvicorn

    from plugin.serving import limits
    from plugin.settings import MAX_CONNECTIONS, MAX_HEADER_BYTES

    app = real_app() if kind == "app" else bare_app()
    # uvicorn counts a finished request for one more turn of its loop: a client sending back to
    # back can count twice, so the cap is set above twice the concurrency the bench offers
    connections = max(MAX_CONNECTIONS, 2 * concurrency + 8)
    config = limits(connections, MAX_HEADER_BYTES)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, **config)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, kind: str, database_url: str, processor: str, concurrency: int) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            **ENV,
            "DATABASE_URL": database_url,
            "CLVSYNC_BENCH_PROCESSOR": processor,
        }
        command = [sys.executable, __file__, "--serve", kind, "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--concurrency", str(concurrency)],
            cwd=ROOT,
            env=env,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{kind} server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


# --- load -------------------------------------------------------------------------------------
# A lean HTTP/1.1 keep-alive client on raw asyncio streams, with every request signed before the
# clock starts: a general-purpose client (httpx) spends more CPU per request than the bare
# endpoint does, and on two cores the client would be what is measured.


@dataclass
class Result:
    requests: int
    seconds: float
    latencies_ms: list[float]
    acknowledged: list[str]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def prepared_requests(port: int, count: int) -> list[tuple[str, bytes]]:
    """(webhook id, raw HTTP request) pairs, each a distinct signed order webhook."""
    prepared = []
    for _ in range(count):
        webhook_id = uuid.uuid4().hex
        body = order_body(int(webhook_id[:12], 16) % 10**12)
        head = [
            "POST /webhooks HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            f"Content-Length: {len(body)}",
        ]
        head += [f"{k}: {v}" for k, v in headers_for(body, webhook_id).items()]
        prepared.append((webhook_id, ("\r\n".join(head) + "\r\n\r\n").encode() + body))
    return prepared


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.last_used = time.monotonic()

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, raw: bytes) -> int:
        """Send one request, read the whole response; its status code."""
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        self.last_used = time.monotonic()
        status = int(head[9:12])
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                await self.reader.readexactly(int(line[15:]))
        return status

    def close(self) -> None:
        self.writer.close()


async def throughput(port: int, prepared: list[tuple[str, bytes]], concurrency: int) -> Result:
    result = Result(len(prepared), 0.0, [], [])
    queue = iter(prepared)

    async def worker() -> None:
        connection = await Connection.open(port)
        for webhook_id, raw in queue:
            begin = time.perf_counter()
            if await connection.send(raw) == 200:
                result.acknowledged.append(webhook_id)
            result.latencies_ms.append((time.perf_counter() - begin) * 1000)
        connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - start
    return result


async def fixed_rate(port: int, prepared: list[tuple[str, bytes]]) -> Result:
    """RATE requests per second, each sent at its scheduled time; latency counts from then."""
    result = Result(len(prepared), len(prepared) / RATE, [], [])
    idle: list[Connection] = []

    async def connection_for_now() -> Connection:
        while idle:
            connection = idle.pop()  # the most recently used: least likely to have timed out
            if time.monotonic() - connection.last_used < KEEP_ALIVE_SECONDS:
                return connection
            connection.close()
        return await Connection.open(port)

    async def send(webhook_id: str, raw: bytes, due: float) -> None:
        connection = await connection_for_now()
        if await connection.send(raw) == 200:
            result.acknowledged.append(webhook_id)
        result.latencies_ms.append((time.perf_counter() - due) * 1000)
        idle.append(connection)

    start = time.perf_counter()
    tasks = []
    for i, (webhook_id, raw) in enumerate(prepared):
        due = start + i / RATE
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(send(webhook_id, raw, due)))
    await asyncio.gather(*tasks)
    for connection in idle:
        connection.close()
    return result


# --- databases --------------------------------------------------------------------------------


def prepare_database(url: str) -> None:
    """Migrate the schema and register the benchmark shop."""
    from datetime import UTC, datetime

    from sqlmodel import Session

    from plugin.store.db import make_engine, upgrade
    from plugin.store.shops import add_shop
    from plugin.store.tokens import TokenCipher

    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session, session.begin():
        add_shop(
            session,
            SHOP,
            "shpat_bench",
            TokenCipher(ENV["TOKEN_ENCRYPTION_KEY"]),
            datetime.now(UTC),
        )
    engine.dispose()


def stored_ids(url: str) -> set[str]:
    from sqlmodel import Session, select

    from plugin.store.db import make_engine
    from plugin.store.models import InboxEvent

    engine = make_engine(url)
    with Session(engine) as session:
        ids = set(session.exec(select(InboxEvent.webhook_id)))
    engine.dispose()
    return ids


def measure(backend: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    prepare_database(url)
    figures: dict[str, Any] = {}
    for kind in ("bare", "app"):
        server = Server(kind, url, args.processor, args.concurrency)
        warm = prepared_requests(server.port, 200)
        burst_requests = prepared_requests(server.port, args.requests)
        steady_requests = prepared_requests(server.port, int(RATE * args.rate_seconds))
        try:
            asyncio.run(throughput(server.port, warm, 8))  # warm-up: connections, caches
            burst = asyncio.run(throughput(server.port, burst_requests, args.concurrency))
            steady = asyncio.run(fixed_rate(server.port, steady_requests))
        finally:
            server.stop()
        figures[kind] = {
            "requests_per_s": round(burst.rps, 1),
            "p50_ms": round(steady.percentile(0.50), 2),
            "p99_ms": round(steady.percentile(0.99), 2),
            "acknowledged": len(burst.acknowledged) + len(steady.acknowledged),
            "acknowledged_ids": burst.acknowledged + steady.acknowledged,
        }
    acknowledged = set(figures["app"].pop("acknowledged_ids"))
    figures["bare"].pop("acknowledged_ids")
    lost = len(acknowledged - stored_ids(url))
    ratio = figures["app"]["requests_per_s"] / figures["bare"]["requests_per_s"]
    print(
        f"\n{backend}: {args.requests} requests at concurrency {args.concurrency}, then "
        f"{RATE}/s for {args.rate_seconds:g} s; processor {args.processor}"
    )
    print(f"  {'':6} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'acked':>7}")
    for kind in ("bare", "app"):
        f = figures[kind]
        print(
            f"  {kind:6} {f['requests_per_s']:>9} {f['p50_ms']:>8} {f['p99_ms']:>8} "
            f"{f['acknowledged']:>7}"
        )
    print(f"  ratio app/bare {ratio:.2f}; acknowledged but not stored: {lost}")
    return {
        "ratio_vs_bare": round(ratio, 3),
        "p99_ms": figures["app"]["p99_ms"],
        "lost": lost,
        "bare": figures["bare"],
        "app": figures["app"],
    }


def work_floor(bare_rps: float) -> dict[str, Any]:
    """What the endpoint must do beyond the bare one before it stores anything, timed here on
    the same body, call by call as `webhooks.receive` makes them: Shopify's verifier, parsing
    the JSON (`parse_body`), and minimising and re-encoding it. Were storage, the framework
    and the hand-over to the writer free, the app could serve at most 1 / (1 / bare + that):
    the bound on the ratio. (1 / bare is the bare endpoint's time per request as measured, its
    client's share included, which only raises the bound.)"""
    import timeit

    from webhooks.payloads import minimise
    from webhooks.receive import parse_body
    from webhooks.verify import verify_webhook

    body = order_body(1)
    headers = headers_for(body, "floor")
    payload, encode_kept = parse_body(body)

    def seconds_per_call(call: Any, number: int = 2000) -> float:
        return min(timeit.repeat(call, number=number, repeat=3)) / number

    verify = seconds_per_call(lambda: verify_webhook(body, headers, SECRET, None))
    parse = seconds_per_call(lambda: parse_body(body))
    encode = seconds_per_call(lambda: encode_kept(minimise("orders/create", payload)))
    bare = 1.0 / bare_rps
    bound = bare / (bare + verify + parse + encode)
    print(
        f"\nwork per request beyond the bare endpoint, before storing: Shopify's verifier "
        f"{verify * 1e6:.1f} us, JSON parse {parse * 1e6:.1f} us, minimise and encode "
        f"{encode * 1e6:.1f} us; the bare endpoint {bare * 1e6:.1f} us a request. With storage "
        f"free, the ratio could be at most {bound:.2f}"
    )
    return {
        "verify_us": round(verify * 1e6, 1),
        "parse_us": round(parse * 1e6, 1),
        "minimise_encode_us": round(encode * 1e6, 1),
        "bare_us": round(bare * 1e6, 1),
        "ratio_bound_without_storage": round(bound, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument(
        "--processor",
        choices=["inline", "off"],
        default="inline",
        help="inline: the inbox processor runs in the app process, as `clvsync serve` does; "
        "off: ingestion alone (as a web process whose processing runs elsewhere)",
    )
    parser.add_argument("--serve", choices=["app", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.concurrency)
        return
    results: dict[str, Any] = {}
    with sqlite_database() as url:
        results["sqlite"] = measure("sqlite", url, args)
    with postgres_database() as postgres_url:
        if postgres_url is not None:
            results["postgresql"] = measure("postgresql", postgres_url, args)
    floor = work_floor(max(r["bare"]["requests_per_s"] for r in results.values()))
    summary = {
        "ratio_vs_bare": min(r["ratio_vs_bare"] for r in results.values()),
        "p99_ms": max(r["p99_ms"] for r in results.values()),
        "lost": sum(r["lost"] for r in results.values()),
        "ratio_bound_without_storage": floor["ratio_bound_without_storage"],
        "work_floor": floor,
        "by_backend": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
