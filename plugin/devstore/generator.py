"""Seeded, reproducible generator of realistic stores with planted, exported truth.

`generate_store` returns a small store in memory (products, customers, orders as of the end,
the time-ordered webhook history, and the planted truth); `write_store_files` streams a store of
any size (1,000,000 customers and more) to files chunk by chunk in bounded memory. Both run the
same chunked simulation, so for one config and seed they describe the same store.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import heapq
import json
import multiprocessing
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, NamedTuple, cast

import numpy as np
from numpy.typing import NDArray

from plugin.devstore.gen_catalog import TIERS, Catalogue, build_catalogue
from plugin.devstore.gen_chunk import Chunk, generate_chunk
from plugin.devstore.gen_config import CUSTOMER_ID_BASE, GeneratorConfig, PopulationParams
from plugin.devstore.gen_payloads import ChunkRenderer, RawEvent, money
from plugin.devstore.gen_simulate import KIND_NAMES, PURCHASE, REFILL

CATALOGUE_STREAM = 2**31 - 1
CSV_HEADER = "customer_id,date,amount\n"
TRUTH_HEADER = "customer_id,lambda_per_day,p_drop,spend_mean,alive_at_end,first_purchase_day\n"


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
    id to purchase, refill, cancelled, full_refund, test or guest. preferred_types and
    preferred_tier (only with config.customer_taste > 0) map a customer id to the product types
    and the price tier their taste draws from (plugin.devstore.gen_taste).

    The BG/NBD and Gamma-Gamma truth describes the "purchase" orders. Refill orders come on top
    when config.consumable_refills is on, as in a real shop; turn it off to get a store whose
    counted orders are pure BG/NBD. Each unit of a consumable lasts one cycle: the first refill
    comes about quantity x cycle days after the customer's first purchase line of the product,
    then one unit at list price every cycle days (jittered by catalogue.refill_noise) until the
    customer abandons the product (catalogue.refill_abandon_probability per refill) or dies.
    Cancelled, fully refunded, test and guest orders never count and never change the truth.
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
    preferred_types: dict[int, tuple[str, ...]] = field(default_factory=dict)
    preferred_tier: dict[int, str] = field(default_factory=dict)


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

    types: dict[int, tuple[str, ...]] = {}
    tiers: dict[int, str] = {}
    names = list(dict.fromkeys(catalogue.product_types))
    for c in parts:
        if c.taste is None:
            continue
        ids = (CUSTOMER_ID_BASE + c.customers.index + 1).tolist()
        for cid, row, tier in zip(ids, c.taste.types.tolist(), c.taste.tier.tolist(), strict=True):
            types[cid] = tuple(names[t] for t in row)
            tiers[cid] = TIERS[tier][0]

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
        preferred_types=types,
        preferred_tier=tiers,
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

PART_NAMES = ("transactions", "truth", "customers", "orders")


@dataclass(frozen=True)
class _ChunkJob:
    """One chunk's share of write_store_files; picklable, so it can run in a worker process."""

    config: GeneratorConfig
    seed: int
    index: int
    first: int
    size: int
    tmp: str
    events: bool
    final_state: bool
    compress: bool


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


def _open_text(path: Path, mode: str, compress: bool) -> IO[str]:
    # Level 1: webhook JSON shrinks about tenfold even at the fastest level, and the encoder,
    # not the compressor, stays the bottleneck.
    if compress:
        return cast(IO[str], gzip.open(path, mode + "t", compresslevel=1, encoding="utf-8"))
    return path.open(mode, encoding="utf-8")


def _part(job: _ChunkJob, name: str) -> Path:
    return Path(job.tmp) / f"{name}-{job.index:06d}"


def _run_path(tmp: str, index: int, compress: bool) -> Path:
    return Path(tmp) / f"run-{index:06d}.jsonl{'.gz' if compress else ''}"


def _write_transactions(job: _ChunkJob, chunk: Chunk) -> int:
    start = np.datetime64(job.config.start.replace(tzinfo=None), "D")
    rows = list(_transactions(chunk))
    days = np.floor(np.array([r[1] for r in rows], dtype=np.float64)).astype("timedelta64[D]")
    dates = np.datetime_as_string(start + days, unit="D").tolist()
    with _part(job, "transactions").open("w", encoding="utf-8") as out:
        out.writelines(
            f"{cid},{d},{money(cents)}\n" for (cid, _, cents), d in zip(rows, dates, strict=True)
        )
    return len(rows)


def _write_truth_rows(job: _ChunkJob, chunk: Chunk) -> None:
    c = chunk.customers
    columns = zip(
        (CUSTOMER_ID_BASE + c.index + 1).tolist(),
        c.lam.tolist(),
        c.p_drop.tolist(),
        c.spend_mean.tolist(),
        c.alive.tolist(),
        c.birth_day.tolist(),
        strict=True,
    )
    with _part(job, "truth").open("w", encoding="utf-8") as out:
        out.writelines(
            f"{cid},{lam:.9g},{p:.9g},{m:.6f},{int(alive)},{b:.6f}\n"
            for cid, lam, p, m, alive, b in columns
        )


def _run_chunk_job(job: _ChunkJob) -> dict[str, int]:
    """Generate one chunk and write its parts; returns its counts."""
    with _gc_paused():
        return _chunk_job(job)


def _chunk_job(job: _ChunkJob) -> dict[str, int]:
    config = job.config
    catalogue = catalogue_for(config, job.seed)
    chunk = generate_chunk(config, catalogue, job.seed, job.index, job.first, job.size)
    counts = {"customers": job.size, "orders": int(chunk.orders.order_id.shape[0]), "events": 0}
    counts["transactions"] = _write_transactions(job, chunk)
    _write_truth_rows(job, chunk)
    if not (job.events or job.final_state):
        return counts
    renderer = ChunkRenderer(config, catalogue, chunk, job.seed)
    events, finals = _chunk_events(renderer)
    if job.final_state:
        _write_jsonl(_part(job, "customers"), renderer.final_customers())
        _write_jsonl(_part(job, "orders"), finals)
    if job.events:
        with _open_text(_run_path(job.tmp, job.index, job.compress), "w", job.compress) as out:
            out.writelines(_event_line(at, renderer.next_event_id(), t, p) for at, t, p in events)
        counts["events"] = len(events)
    return counts


def _event_time(line: str) -> str:
    # Lines start with topic and event id, then triggered_at (fixed-length ISO, sortable).
    start = line.index('"triggered_at":"') + 16
    return line[start : start + 25]


def _merge_runs(runs: list[Path], target: Path, compress: bool) -> None:
    # Runs are each sorted by time; a k-way merge keeps memory at one line per run.
    handles = [_open_text(run, "r", compress) for run in runs]
    try:
        with _open_text(target, "w", compress) as out:
            out.writelines(heapq.merge(*handles, key=_event_time))
    finally:
        for handle in handles:
            handle.close()


def _concat_parts(tmp: str, name: str, n_chunks: int, target: Path, header: str) -> None:
    with target.open("w", encoding="utf-8") as out:
        out.write(header)
        for index in range(n_chunks):
            part = Path(tmp) / f"{name}-{index:06d}"
            with part.open("r", encoding="utf-8") as src:
                shutil.copyfileobj(src, out, 1 << 20)
            part.unlink()


def _jobs(
    config: GeneratorConfig, seed: int, tmp: str, events: bool, final_state: bool, compress: bool
) -> list[_ChunkJob]:
    size = config.chunk_customers
    return [
        _ChunkJob(config, seed, index, first, min(size, config.customers - first), tmp, events,
                  final_state, compress)
        for index, first in enumerate(range(0, config.customers, size))
    ]  # fmt: skip


def _run_jobs(jobs: list[_ChunkJob], workers: int) -> list[dict[str, int]]:
    if workers <= 1:
        return [_run_chunk_job(job) for job in jobs]
    # Spawned workers: no forked copies of the parent's threads or sockets. Chunks draw from
    # their own seeds, so the files are the same whatever the number of workers.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(_run_chunk_job, jobs))


def write_store_files(
    config: GeneratorConfig,
    seed: int,
    out_dir: Path,
    *,
    events: bool = True,
    final_state: bool = False,
    compress: bool = False,
    workers: int = 1,
) -> FilesSummary:
    """Stream a store of any size to out_dir, chunk by chunk, in bounded memory.

    Writes transactions.csv (customer_id,date,amount: counted purchases, net shop amount, for
    `clvsync backtest`), truth_customers.csv and truth.json (planted truth), products.jsonl,
    events.jsonl (time-ordered webhook events {topic, event_id, triggered_at, payload}; gzipped
    as events.jsonl.gz with compress) unless events is False, and customers.jsonl / orders.jsonl
    (final state) with final_state. Chunks run in `workers` processes; memory is bounded by
    the chunk size (config.chunk_customers) times the workers. Workers are spawned, so a
    script calling this with workers > 1 needs the usual `if __name__ == "__main__":` guard.
    """
    began = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    catalogue = catalogue_for(config, seed)
    _write_jsonl(out_dir / "products.jsonl", catalogue.products)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".parts-") as tmp:
        jobs = _jobs(config, seed, tmp, events, final_state, compress)
        results = _run_jobs(jobs, workers)
        _concat_parts(tmp, "transactions", len(jobs), out_dir / "transactions.csv", CSV_HEADER)
        _concat_parts(tmp, "truth", len(jobs), out_dir / "truth_customers.csv", TRUTH_HEADER)
        if final_state:
            _concat_parts(tmp, "customers", len(jobs), out_dir / "customers.jsonl", "")
            _concat_parts(tmp, "orders", len(jobs), out_dir / "orders.jsonl", "")
        if events:
            runs = [_run_path(tmp, job.index, compress) for job in jobs]
            name = "events.jsonl.gz" if compress else "events.jsonl"
            _merge_runs(runs, out_dir / name, compress)
    _write_truth_json(out_dir / "truth.json", config, seed, catalogue)
    totals = {key: sum(r[key] for r in results) for key in results[0]} if results else {}
    return FilesSummary(
        customers=totals.get("customers", 0),
        orders=totals.get("orders", 0),
        events=totals.get("events", 0),
        transactions=totals.get("transactions", 0),
        seconds=round(time.perf_counter() - began, 3),
        paths={p.name: str(p) for p in sorted(out_dir.iterdir()) if p.is_file()},
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
    """Stream events back from events.jsonl (or .jsonl.gz) written by write_store_files."""
    with _open_text(path, "r", path.suffix == ".gz") as lines:
        for line in lines:
            row = json.loads(line)
            yield WebhookEvent(
                row["topic"],
                row["payload"],
                datetime.fromisoformat(row["triggered_at"]),
                row["event_id"],
            )
