"""Full recompute benchmark: a shop of 1,000,000 customers and about 5,000,000 orders.

    .venv/bin/python bench/recompute.py [--customers 1000000] [--backend sqlite|postgresql|both]
                                        [--costs]

For each backend it fills a fresh database with a synthetic shop (bulk loaded: this set-up is
not timed), then runs one full recompute in a child process: the ledger read from the
database, the models fitted, every customer scored, segmented and flagged, and the scores and
desired tags written back. It prints the time and the child's peak memory; the last line of
stdout is JSON with `seconds` and `peak_rss_mb` (the worst backend) and the figures per
backend. Targets: under 60 s and under 2 GiB. Everything stays on this machine. With `--costs`
a second recompute of the same database follows, with historical CLV as gross margin from
product costs (`scoring.margin_from_costs`: each order's cost of goods priced from the
ledger's own read of the lines, which then carries each line's variant), and the two times
are printed side by side.

The synthetic shop: first orders spread over three years, a Poisson number of repeat orders
(mean about 4) at uniform times after it, Gamma order values, one to three lines per order
drawn from 2,000 products (Zipf-like), each line's variant the product's number, nine products
in ten with a cost per item. It is for timing, not for model quality: the dev store's
generator is the realistic one, and too slow to write five million orders as webhooks here.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from bench_databases import postgres_database, sqlite_database
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHOP = "bench-recompute.myshopify.com"
AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
DAY0 = (AS_OF - datetime(1970, 1, 1, tzinfo=UTC)).days - 3 * 365  # history starts 3 years back
CUSTOMER_BASE, ORDER_BASE, LINE_BASE, PRODUCT_BASE = 6_000_000_000, 5_000_000_000, 1, 7_000_000


@dataclass(frozen=True)
class Shop:
    customer_id: NDArray[np.int64]
    order_id: NDArray[np.int64]
    order_customer: NDArray[np.int64]
    order_day: NDArray[np.float64]
    order_amount: NDArray[np.float64]
    line_order: NDArray[np.int64]
    line_product: NDArray[np.int64]


def synthesise(customers: int, seed: int = 7) -> Shop:
    rng = np.random.default_rng(seed)
    first = DAY0 + rng.uniform(0, 3 * 365, customers)
    repeats = rng.poisson(rng.gamma(0.8, 5.0, customers))  # heterogeneous, mean about 4
    orders_per = 1 + repeats
    owner = np.repeat(np.arange(customers), orders_per)
    span = (DAY0 + 3 * 365) - first
    offset = rng.uniform(0, 1, owner.size) * span[owner]
    starts = np.cumsum(orders_per) - orders_per
    offset[starts] = 0.0  # each customer's first order is at `first`
    day = first[owner] + offset
    amount = np.round(rng.gamma(6.0, 10.0, owner.size), 2)
    lines_per = rng.integers(1, 4, owner.size)
    line_order = np.repeat(np.arange(owner.size), lines_per)
    product = np.minimum(rng.zipf(1.3, line_order.size), 2000) + PRODUCT_BASE
    return Shop(
        customer_id=CUSTOMER_BASE + np.arange(customers, dtype=np.int64),
        order_id=ORDER_BASE + np.arange(owner.size, dtype=np.int64),
        order_customer=CUSTOMER_BASE + owner.astype(np.int64),
        order_day=day,
        order_amount=amount,
        line_order=line_order.astype(np.int64),
        line_product=product.astype(np.int64),
    )


def _timestamps(days: NDArray[np.float64], sep: str, suffix: str) -> NDArray[np.str_]:
    """Days since the epoch as the text each database reads back as a UTC datetime."""
    moments = (days * 86_400_000_000).astype("datetime64[us]")
    text = np.datetime_as_string(moments, unit="us")
    return np.char.add(np.char.replace(text, "T", sep), suffix)


def _customer_rows(shop: Shop, shop_id: int, sep: str, suffix: str) -> Iterator[tuple[Any, ...]]:
    order_counts = np.bincount(shop.order_customer - CUSTOMER_BASE, minlength=shop.customer_id.size)
    spend = np.bincount(
        shop.order_customer - CUSTOMER_BASE,
        weights=shop.order_amount,
        minlength=shop.customer_id.size,
    )
    first = np.full(shop.customer_id.size, np.inf)
    last = np.full(shop.customer_id.size, -np.inf)
    np.minimum.at(first, shop.order_customer - CUSTOMER_BASE, shop.order_day)
    np.maximum.at(last, shop.order_customer - CUSTOMER_BASE, shop.order_day)
    first_text, last_text = _timestamps(first, sep, suffix), _timestamps(last, sep, suffix)
    scaled = np.round(spend * 10_000).astype(np.int64)
    for i in range(shop.customer_id.size):
        yield (
            shop_id,
            int(shop.customer_id[i]),
            int(order_counts[i]),
            int(scaled[i]),
            str(first_text[i]),
            str(last_text[i]),
            1,
        )


def _order_rows(shop: Shop, shop_id: int, sep: str, suffix: str) -> Iterator[tuple[Any, ...]]:
    stamps = _timestamps(shop.order_day, sep, suffix)
    scaled = np.round(shop.order_amount * 10_000).astype(np.int64)
    for i in range(shop.order_id.size):
        stamp, value = str(stamps[i]), int(scaled[i])
        yield (
            shop_id,
            int(shop.order_id[i]),
            int(shop.order_customer[i]),
            stamp,
            stamp,
            stamp,
            "bench",
            "USD",
            value,
            value,
            "paid",
            value,
            True,
        )


def _line_rows(shop: Shop, shop_id: int) -> Iterator[tuple[Any, ...]]:
    for i in range(shop.line_order.size):
        yield (
            shop_id,
            int(shop.order_id[shop.line_order[i]]),
            LINE_BASE + i,
            int(shop.line_product[i]),
            int(shop.line_product[i]),
            1,
            1,
            100_000,
            0,
            False,
        )


CUSTOMER_COLUMNS = (
    "shop_id",
    "customer_id",
    "orders",
    "net_spend",
    "first_order_at",
    "last_order_at",
    "ledger_version",
)
ORDER_COLUMNS = (
    "shop_id",
    "order_id",
    "customer_id",
    "created_at",
    "processed_at",
    "updated_at",
    "version_digest",
    "currency",
    "total",
    "current_total",
    "financial_status",
    "net_amount",
    "counted",
)
LINE_COLUMNS = (
    "shop_id",
    "order_id",
    "line_id",
    "product_id",
    "variant_id",
    "quantity",
    "current_quantity",
    "price",
    "total_discount",
    "gift_card",
)


def load(url: str, shop: Shop) -> None:
    """Migrate, register the shop, bulk-load its ledger (COPY on PostgreSQL)."""
    from sqlmodel import Session

    from plugin.store.db import make_engine, upgrade
    from plugin.store.shops import add_shop
    from plugin.store.tokens import TokenCipher

    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session, session.begin():
        cipher = TokenCipher("Y2x2c3luYy1kZXZlbG9wbWVudC1vbmx5LWtleS0zMmI=")
        shop_row = add_shop(session, SHOP, "shpat_bench", cipher, AS_OF)
        shop_row.currency = "USD"
        shop_row.iana_timezone = "America/New_York"  # days on the shop's calendar, as in use
        shop_id = int(shop_row.id or 0)
    postgres = engine.dialect.name == "postgresql"
    sep, suffix = (" ", "+00") if postgres else (" ", "")
    costs = (
        (shop_id, PRODUCT_BASE + k, 250_000 + k, f"2026-01-01{sep}00:00:00{suffix}")
        for k in range(1, 2001)
        if k % 10
    )
    tables = (
        ("customers", CUSTOMER_COLUMNS, _customer_rows(shop, shop_id, sep, suffix)),
        ("orders", ORDER_COLUMNS, _order_rows(shop, shop_id, sep, suffix)),
        ("order_lines", LINE_COLUMNS, _line_rows(shop, shop_id)),
        ("product_costs", ("shop_id", "variant_id", "unit_cost", "read_at"), costs),
    )
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for table, columns, rows in tables:
            if postgres:
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                cursor.execute("BEGIN")
                marks = ", ".join("?" * len(columns))
                statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
                cursor.executemany(statement, rows)  # type: ignore[arg-type]  # takes iterators
                cursor.execute("COMMIT")
        raw.commit()
    finally:
        raw.close()
    engine.dispose()


def peak_rss_mb() -> float:
    """This process's peak resident memory. From /proc's VmHWM, which belongs to the process's
    own address space: ru_maxrss survives exec on Linux, so a child started by this 2 GB
    parent would report the parent's size, whatever it used itself."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_once(url: str, costs: bool) -> dict[str, Any]:
    """The timed part (in a child process): one full recompute of the shop, with historical CLV
    from product costs or not."""
    from sqlmodel import Session

    from jobs.recompute import full_recompute
    from plugin.store.db import make_engine
    from plugin.store.shops import get_shop

    engine = make_engine(url)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        shop = get_shop(session, SHOP)
        assert shop is not None
        shop.settings = json.dumps({"scoring": {"margin_from_costs": costs}})
    started = time.perf_counter()
    summary = full_recompute(engine, shop, AS_OF)
    seconds = time.perf_counter() - started
    peak_mb = peak_rss_mb()
    engine.dispose()
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb, 1), **summary}


def measure(backend: str, url: str, shop: Shop, costs: bool) -> dict[str, Any]:
    started = time.perf_counter()
    load(url, shop)
    print(
        f"{backend}: loaded {shop.customer_id.size:,} customers, {shop.order_id.size:,} orders,"
        f" {shop.line_order.size:,} lines in {time.perf_counter() - started:.0f} s (not timed)",
        file=sys.stderr,
    )
    result = _recompute(backend, url, costs=False)
    if costs:
        with_costs = _recompute(backend, url, costs=True)
        result["with_costs"] = with_costs
        print(
            f"{backend}: with costs {with_costs['seconds']} s against {result['seconds']} s "
            f"without ({with_costs['seconds'] / result['seconds']:.2f} times), peak "
            f"{with_costs['peak_rss_mb']} MB against {result['peak_rss_mb']} MB"
        )
    return result


def _recompute(backend: str, url: str, costs: bool) -> dict[str, Any]:
    child = subprocess.run(
        [sys.executable, __file__, "--run-once", url] + (["--costs"] if costs else []),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )
    if child.returncode != 0:
        raise RuntimeError(f"recompute failed on {backend}:\n{child.stderr}")
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    print(
        f"{backend}: full recompute{' with costs' if costs else ''} {result['seconds']} s, "
        f"peak {result['peak_rss_mb']} MB: "
        f"{json.dumps({k: v for k, v in result.items() if k not in ('seconds', 'peak_rss_mb')})}"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--costs", action="store_true", help="also recompute with margin_from_costs, and compare"
    )
    parser.add_argument("--run-once", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_once:
        print(json.dumps(run_once(args.run_once, args.costs)))
        return
    shop = synthesise(args.customers)
    results: dict[str, Any] = {}
    if args.backend in ("sqlite", "both"):
        with sqlite_database() as url:
            results["sqlite"] = measure("sqlite", url, shop, args.costs)
    if args.backend in ("postgresql", "both"):
        with postgres_database() as postgres_url:
            if postgres_url is not None:
                results["postgresql"] = measure("postgresql", postgres_url, shop, args.costs)
    print(
        json.dumps(
            {
                "seconds": max(r["seconds"] for r in results.values()),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in results.values()),
                "customers": args.customers,
                "orders": int(shop.order_id.size),
                "by_backend": results,
            }
        )
    )


if __name__ == "__main__":
    main()
