"""Inbox processor benchmark: webhooks applied one at a time and in groups, side by side.

For each backend (SQLite, then PostgreSQL if reachable), this script fills a fresh inbox with
EVENTS webhooks, minimised as the endpoint stores them: the ingest benchmark's ~4 KB orders as
an order's life sends them (orders/create, then orders/paid once LAG more orders were created,
and orders/updated, fulfilled say, after LAG more, each a newer version, so most find their
order held, about 8 and 16 of the processor's batches later; one order in REFUNDED is then
refunded in part, with refunds/create and the orders/updated that reflects it, LAG orders
later), and before each orders/create a customers/update of its customer. It drains the inbox
twice on a fresh copy: once with every event applied by its own handler (`group_min` past the
batch size), once as `clvsync serve` runs (a shop's order webhooks applied together, and so its
refunds and its customer records; see webhooks/processor.py). It prints events per second and
CPU per event for both and their ratio, and checks that both end in the same ledger (customers'
records too). The last line of stdout is one JSON object.

    .venv/bin/python bench/processor.py [--events 3000]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from bench_databases import postgres_database, sqlite_database
from ingest import SHOP, order_body, prepare_database

LAG = 100  # orders created between two webhooks of an order
LIFE = (  # an order's webhooks, after its customer's record: topic, updated_at
    ("orders/create", None),  # None: the order's created_at
    ("orders/paid", "2026-10-01T12:05:00-04:00"),
    ("orders/updated", "2026-10-02T09:30:00-04:00"),
)
REFUNDED = 10  # one order in REFUNDED is refunded in part, LAG orders after its orders/updated
REFUND = {"amount": "9.99", "at": "2026-10-05T15:00:00-04:00", "left": "49.98"}


def inbox_deliveries(events: int) -> list[Any]:
    from plugin.store.inbox import Delivery
    from webhooks.payloads import minimise

    def delivery(topic: str, payload: dict[str, Any]) -> Delivery:
        kept = json.dumps(minimise(topic, payload), separators=(",", ":"))
        return Delivery(SHOP, uuid.uuid4().hex, topic, None, None, "2026-10", kept)

    deliveries = []
    for n in range(events):
        order = json.loads(order_body(10**6 + n))
        record = {**order["customer"], "created_at": order["created_at"], "state": "enabled"}
        deliveries.append(
            delivery("customers/update", {**record, "updated_at": order["created_at"]})
        )
        for step, (topic, stamp) in enumerate(LIFE):
            if n >= step * LAG:
                payload = json.loads(order_body(10**6 + n - step * LAG))
                payload["updated_at"] = stamp or payload["created_at"]
                deliveries.append(delivery(topic, payload))
        refunded = n - len(LIFE) * LAG
        if refunded >= 0 and refunded % REFUNDED == 0:
            deliveries += [delivery(*webhook) for webhook in refund_webhooks(10**6 + refunded)]
    return deliveries[:events]


def refund_webhooks(order_id: int) -> list[tuple[str, dict[str, Any]]]:
    """A refund of one line, and the order's version that reflects it, as Shopify sends them."""
    refund = {
        "id": 5 * 10**6 + order_id,
        "order_id": order_id,
        "created_at": REFUND["at"],
        "refund_line_items": [{"line_item_id": order_id * 10, "quantity": 1}],
        "order_adjustments": [],
        "transactions": [
            {"amount": REFUND["amount"], "currency": "USD", "kind": "refund", "status": "success"}
        ],
    }
    order = json.loads(order_body(order_id))
    left = {"amount": REFUND["left"], "currency_code": "USD"}
    order["current_total_price_set"] = {"shop_money": left, "presentment_money": left}
    order |= {"updated_at": REFUND["at"], "financial_status": "partially_refunded"}
    return [("refunds/create", refund), ("orders/updated", {**order, "refunds": [refund]})]


def ledger_state(url: str) -> Any:
    from sqlalchemy import text

    from plugin.store.db import make_engine

    engine = make_engine(url)
    with engine.connect() as connection:
        orders = connection.execute(
            text("SELECT order_id, net_amount, updated_at FROM orders ORDER BY order_id")
        ).all()
        customers = connection.execute(
            text(
                "SELECT customer_id, orders, net_spend, updated_at, state FROM customers"
                " ORDER BY customer_id"
            )
        ).all()
    engine.dispose()
    return [tuple(map(str, row)) for row in orders], [tuple(map(str, r)) for r in customers]


def drain(url: str, deliveries: list[Any], *, grouped: bool) -> dict[str, Any]:
    from plugin.store.db import make_engine
    from plugin.store.inbox import store_deliveries
    from webhooks.processor import GROUP_MIN, Processor

    prepare_database(url)
    engine = make_engine(url)
    for low in range(0, len(deliveries), 500):
        store_deliveries(engine, deliveries[low : low + 500], datetime.now(UTC))
    processor = Processor(engine, group_min=GROUP_MIN if grouped else len(deliveries) + 1)
    cpu, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    counts = processor.drain()
    seconds = time.perf_counter() - start
    used = resource.getrusage(resource.RUSAGE_SELF)
    engine.dispose()
    assert counts.by_outcome == {"done": len(deliveries)}, counts.by_outcome
    cpu_seconds = used.ru_utime - cpu.ru_utime + used.ru_stime - cpu.ru_stime
    return {
        "events_per_s": round(len(deliveries) / seconds, 1),
        "cpu_ms_per_event": round(cpu_seconds / len(deliveries) * 1000, 3),
    }


def measure(backend: str, database: Any, deliveries: list[Any]) -> dict[str, Any] | None:
    figures: dict[str, Any] = {}
    states = []
    for kind in ("one_at_a_time", "grouped"):
        with database() as url:
            if url is None:
                return None
            figures[kind] = drain(url, deliveries, grouped=kind == "grouped")
            states.append(ledger_state(url))
    same = states[0] == states[1]
    ratio = figures["grouped"]["events_per_s"] / figures["one_at_a_time"]["events_per_s"]
    print(f"\n{backend}: {len(deliveries)} webhooks")
    print(f"  {'':14} {'events/s':>9} {'CPU ms/event':>13}")
    for kind in ("one_at_a_time", "grouped"):
        f = figures[kind]
        print(f"  {kind:14} {f['events_per_s']:>9} {f['cpu_ms_per_event']:>13}")
    print(f"  ratio grouped/one at a time {ratio:.2f}; same ledger: {same}")
    return {**figures, "ratio": round(ratio, 2), "same_ledger": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    args = parser.parse_args()
    deliveries = inbox_deliveries(args.events)
    results = {}
    for backend, database in (("sqlite", sqlite_database), ("postgresql", postgres_database)):
        result = measure(backend, database, deliveries)
        if result is not None:
            results[backend] = result
    summary = {
        "ratio": min(r["ratio"] for r in results.values()),
        "same_ledger": all(r["same_ledger"] for r in results.values()),
        "by_backend": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
