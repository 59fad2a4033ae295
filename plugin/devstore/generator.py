"""Seeded, reproducible generator of realistic stores with planted, exported truth.

`generate_store` returns a small store in memory (products, customers, orders as of the end,
the time-ordered webhook history, and the planted truth); `write_store_files` streams a store of
any size (1,000,000 customers and more) to files chunk by chunk in bounded memory. Both run the
same chunked simulation, so for one config and seed they describe the same store.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import heapq
import json
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from plugin.devstore.gen_catalog import Catalogue, build_catalogue
from plugin.devstore.gen_chunk import Chunk, generate_chunk
from plugin.devstore.gen_config import CUSTOMER_ID_BASE, GeneratorConfig, PopulationParams
from plugin.devstore.gen_payloads import ChunkRenderer, RawEvent, money
from plugin.devstore.gen_simulate import KIND_NAMES, PURCHASE, REFILL

CATALOGUE_STREAM = 2**31 - 1


class WebhookEvent(NamedTuple):
    """One webhook the store emits: topic, payload, when it was triggered, Shopify's event id."""

    topic: str
    payload: dict[str, Any]
    triggered_at: datetime
    event_id: str


@dataclass(frozen=True)
class PlantedTruth:
    """What the generator planted, for tests to measure the app against.

    Per customer (aligned arrays, time unit days): lam, the repeat-purchase rate while alive;
    p_drop, the chance of dropping out after each repeat; spend_mean, the mean order value in
    shop currency before partial refunds (Gamma-Gamma p / nu); alive_at_end; first_purchase_day
    (days since the start). Complements are (anchor product id, partner product id); consumables
    map product id to its refill cycle in days. order_kinds (in-memory stores only) maps an order
    id to purchase, refill, cancelled, full_refund, test or guest.
    """

    customer_ids: NDArray[np.int64]
    lam: NDArray[np.float64]
    p_drop: NDArray[np.float64]
    spend_mean: NDArray[np.float64]
    alive_at_end: NDArray[np.bool_]
    first_purchase_day: NDArray[np.float64]
    complements: tuple[tuple[int, int], ...]
    consumables: dict[int, float]
    population: PopulationParams
    time_unit: str = "day"
    order_kinds: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Transaction:
    """One counted purchase, as in the backtest CSV: customer, date (UTC), net shop amount."""

    customer_id: int
    date: date
    amount: Decimal


@dataclass(frozen=True)
class GeneratedStore:
    """A generated store in memory; events are in time order.

    Payloads share nested objects (money sets, line items, addresses) between versions of an
    order and between orders: treat them as read-only.
    """

    config: GeneratorConfig
    seed: int
    products: list[dict[str, Any]]
    customers: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    events: list[WebhookEvent]
    transactions: list[Transaction]
    truth: PlantedTruth

    @property
    def shop_domain(self) -> str:
        """The generated shop's myshopify domain."""
        return self.config.shop_domain

    @property
    def shop_currency(self) -> str:
        """The shop's currency (every shop_money amount is in it)."""
        return self.config.shop_currency


@dataclass(frozen=True)
class FilesSummary:
    """What write_store_files wrote, and how long it took."""

    customers: int
    orders: int
    events: int
    transactions: int
    seconds: float
    paths: dict[str, str]


def catalogue_for(config: GeneratorConfig, seed: int) -> Catalogue:
    """The store's catalogue (its own random stream, independent of the number of customers)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, CATALOGUE_STREAM]))
    return build_catalogue(rng, config.catalogue)


def chunks(config: GeneratorConfig, seed: int, catalogue: Catalogue) -> Iterator[Chunk]:
    """The store's chunks of config.chunk_customers customers, in order."""
    size = config.chunk_customers
    for index, first in enumerate(range(0, config.customers, size)):
        yield generate_chunk(
            config, catalogue, seed, index, first, min(size, config.customers - first)
        )


def _chunk_events(renderer: ChunkRenderer) -> tuple[list[RawEvent], list[dict[str, Any]]]:
    events = list(renderer.customer_events())
    finals = []
    for i in range(renderer.order_count()):
        order_events, final = renderer.order_events(i)
        events.extend(order_events)
        finals.append(final)
    # Stable sort on fixed-format ISO strings: time order, ties in generation order.
    events.sort(key=lambda e: e[0])
    return events, finals


def _transactions(chunk: Chunk) -> Iterator[tuple[int, float, int]]:
    """(customer id, day, net cents) for each counted purchase, by customer then time."""
    o = chunk.orders
    counted = (o.customer >= 0) & ((o.kind == PURCHASE) | (o.kind == REFILL))
    idx = np.flatnonzero(counted)
    idx = idx[np.lexsort((o.day[idx], o.customer[idx]))]
    ids = CUSTOMER_ID_BASE + chunk.customers.index[o.customer[idx]] + 1
    yield from zip(ids.tolist(), o.day[idx].tolist(), o.current_total[idx].tolist(), strict=True)


def _truth(config: GeneratorConfig, catalogue: Catalogue, parts: list[Chunk]) -> PlantedTruth:
    def cat(name: str) -> Any:
        return np.concatenate([getattr(c.customers, name) for c in parts])

    return PlantedTruth(
        customer_ids=CUSTOMER_ID_BASE + cat("index") + 1,
        lam=cat("lam"),
        p_drop=cat("p_drop"),
        spend_mean=cat("spend_mean"),
        alive_at_end=cat("alive"),
        first_purchase_day=cat("birth_day"),
        complements=catalogue.complements,
        consumables=catalogue.consumables,
        population=config.population,
        order_kinds={
            int(oid): KIND_NAMES[int(k)]
            for c in parts
            for oid, k in zip(c.orders.order_id.tolist(), c.orders.kind.tolist(), strict=True)
        },
    )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    # Building hundreds of thousands of long-lived dicts makes the cyclic collector rescan the
    # growing heap again and again (more than half the run time); nothing here makes cycles.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            # Freeze what was built so the first collection after this does not walk it all;
            # frozen objects are still freed by reference counting.
            gc.freeze()
            gc.enable()


def generate_store(config: GeneratorConfig | None = None, seed: int = 0) -> GeneratedStore:
    """A whole store in memory; meant for small stores (thousands of customers)."""
    with _gc_paused():
        return _generate_store(config or GeneratorConfig(), seed)


def _generate_store(config: GeneratorConfig, seed: int) -> GeneratedStore:
    catalogue = catalogue_for(config, seed)
    parts = list(chunks(config, seed, catalogue))
    customers: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []
    raw: list[tuple[str, str, str, dict[str, Any]]] = []
    transactions: list[Transaction] = []
    for chunk in parts:
        renderer = ChunkRenderer(config, catalogue, chunk, seed)
        events, finals = _chunk_events(renderer)
        raw.extend((at, renderer.next_event_id(), topic, payload) for at, topic, payload in events)
        customers.extend(renderer.final_customers())
        orders.extend(finals)
        transactions.extend(
            Transaction(cid, _day_to_date(config, day), Decimal(money(cents)))
            for cid, day, cents in _transactions(chunk)
        )
    raw.sort(key=lambda e: e[0])
    return GeneratedStore(
        config=config,
        seed=seed,
        products=catalogue.products,
        customers=customers,
        orders=sorted(orders, key=lambda o: (o["created_at"], o["id"])),
        events=[WebhookEvent(t, p, datetime.fromisoformat(at), eid) for at, eid, t, p in raw],
        transactions=transactions,
        truth=_truth(config, catalogue, parts),
    )


def _day_to_date(config: GeneratorConfig, day: float) -> date:
    return (config.start + timedelta(days=day)).date()


# ---- files ----------------------------------------------------------------------------------


def _event_line(at: str, event_id: str, topic: str, payload: dict[str, Any]) -> str:
    body = json.dumps(payload, separators=(",", ":"))
    return f'{{"topic":"{topic}","event_id":"{event_id}","triggered_at":"{at}","payload":{body}}}\n'


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, separators=(",", ":")) + "\n")
            count += 1
    return count


class _FileSinks:
    """Open output files of write_store_files; per-chunk event runs wait in a temp dir."""

    def __init__(self, out_dir: Path, events: bool, final_state: bool, tmp: Path):
        self.out_dir, self.events, self.final_state, self.tmp = out_dir, events, final_state, tmp
        self.runs: list[Path] = []
        self.csv = (out_dir / "transactions.csv").open("w", encoding="utf-8", newline="")
        self.csv.write("customer_id,date,amount\n")
        self.truth = (out_dir / "truth_customers.csv").open("w", encoding="utf-8", newline="")
        self.truth.write(
            "customer_id,lambda_per_day,p_drop,spend_mean,alive_at_end,first_purchase_day\n"
        )
        self.customers = self._optional("customers.jsonl", final_state)
        self.orders = self._optional("orders.jsonl", final_state)
        self.counts = {"customers": 0, "orders": 0, "events": 0, "transactions": 0}

    def _optional(self, name: str, wanted: bool) -> IO[str] | None:
        return (self.out_dir / name).open("w", encoding="utf-8") if wanted else None

    def close(self) -> None:
        for handle in (self.csv, self.truth, self.customers, self.orders):
            if handle is not None:
                handle.close()


def _write_chunk(
    config: GeneratorConfig, seed: int, catalogue: Catalogue, chunk: Chunk, sinks: _FileSinks
) -> None:
    start = np.datetime64(config.start.replace(tzinfo=None), "D")
    rows = list(_transactions(chunk))
    days = np.array([r[1] for r in rows], dtype=np.float64)
    dates = np.datetime_as_string(
        start + np.floor(days).astype("timedelta64[D]"), unit="D"
    ).tolist()
    sinks.csv.writelines(
        f"{cid},{d},{cents // 100}.{cents % 100:02d}\n"
        for (cid, _, cents), d in zip(rows, dates, strict=True)
    )
    sinks.counts["transactions"] += len(rows)
    _write_truth_rows(chunk, sinks.truth)
    sinks.counts["customers"] += chunk.customers.index.shape[0]
    sinks.counts["orders"] += chunk.orders.order_id.shape[0]
    if not (sinks.events or sinks.final_state):
        return
    renderer = ChunkRenderer(config, catalogue, chunk, seed)
    events, finals = _chunk_events(renderer)
    if sinks.final_state and sinks.customers is not None and sinks.orders is not None:
        for customer in renderer.final_customers():
            sinks.customers.write(json.dumps(customer, separators=(",", ":")) + "\n")
        for order in finals:
            sinks.orders.write(json.dumps(order, separators=(",", ":")) + "\n")
    if sinks.events:
        run = sinks.tmp / f"run-{chunk.index:06d}.jsonl"
        with run.open("w", encoding="utf-8") as out:
            out.writelines(_event_line(at, renderer.next_event_id(), t, p) for at, t, p in events)
        sinks.runs.append(run)
        sinks.counts["events"] += len(events)


def _write_truth_rows(chunk: Chunk, out: IO[str]) -> None:
    c = chunk.customers
    ids = (CUSTOMER_ID_BASE + c.index + 1).tolist()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(
        (cid, f"{lam:.9g}", f"{p:.9g}", f"{m:.6f}", int(alive), f"{b:.6f}")
        for cid, lam, p, m, alive, b in zip(
            ids,
            c.lam.tolist(),
            c.p_drop.tolist(),
            c.spend_mean.tolist(),
            c.alive.tolist(),
            c.birth_day.tolist(),
            strict=True,
        )
    )


def _event_time(line: str) -> str:
    # Every run line starts with topic and event id of bounded length, then triggered_at.
    start = line.index('"triggered_at":"') + 16
    return line[start : start + 25]


def _merge_runs(runs: list[Path], target: Path) -> None:
    # Runs are each sorted by time; a k-way merge keeps memory at one line per run.
    handles = [run.open("r", encoding="utf-8") for run in runs]
    try:
        with target.open("w", encoding="utf-8") as out:
            out.writelines(heapq.merge(*handles, key=_event_time))
    finally:
        for handle in handles:
            handle.close()


def write_store_files(
    config: GeneratorConfig,
    seed: int,
    out_dir: Path,
    *,
    events: bool = True,
    final_state: bool = False,
) -> FilesSummary:
    """Stream a store of any size to out_dir, chunk by chunk, in bounded memory.

    Writes transactions.csv (customer_id,date,amount: counted purchases, net shop amount, for
    `clvsync backtest`), truth_customers.csv and truth.json (planted truth), products.jsonl,
    events.jsonl (time-ordered webhook events {topic, event_id, triggered_at, payload}) unless
    events is False, and customers.jsonl / orders.jsonl (final state) when final_state is True.
    """
    with _gc_paused():
        return _write_store_files(config, seed, out_dir, events, final_state)


def _write_store_files(
    config: GeneratorConfig, seed: int, out_dir: Path, events: bool, final_state: bool
) -> FilesSummary:
    began = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    catalogue = catalogue_for(config, seed)
    _write_jsonl(out_dir / "products.jsonl", catalogue.products)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".runs-") as tmp:
        sinks = _FileSinks(out_dir, events, final_state, Path(tmp))
        try:
            for chunk in chunks(config, seed, catalogue):
                _write_chunk(config, seed, catalogue, chunk, sinks)
        finally:
            sinks.close()
        if events:
            _merge_runs(sinks.runs, out_dir / "events.jsonl")
    _write_truth_json(out_dir / "truth.json", config, seed, catalogue)
    paths = {p.stem: str(p) for p in sorted(out_dir.iterdir()) if p.is_file()}
    return FilesSummary(
        customers=sinks.counts["customers"],
        orders=sinks.counts["orders"],
        events=sinks.counts["events"],
        transactions=sinks.counts["transactions"],
        seconds=round(time.perf_counter() - began, 3),
        paths=paths,
    )


def _write_truth_json(path: Path, config: GeneratorConfig, seed: int, catalogue: Catalogue) -> None:
    truth = {
        "seed": seed,
        "time_unit": "day",
        "start": config.start.isoformat(),
        "end": config.end.isoformat(),
        "customers": config.customers,
        "population": asdict(config.population),
        "complements": [list(pair) for pair in catalogue.complements],
        "consumables": {str(k): v for k, v in catalogue.consumables.items()},
        "shop_currency": config.shop_currency,
    }
    path.write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")


def read_events_jsonl(path: Path) -> Iterator[WebhookEvent]:
    """Stream events back from an events.jsonl written by write_store_files."""
    with path.open("r", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            yield WebhookEvent(
                row["topic"],
                row["payload"],
                datetime.fromisoformat(row["triggered_at"]),
                row["event_id"],
            )
