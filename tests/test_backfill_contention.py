"""The backfill beside other writers on PostgreSQL: a batch of orders that PostgreSQL aborts for
another transaction's sake (a processor's batch of webhooks holding its customers' locks) is
applied again in a new transaction; before, the deadlock failed the whole run, bulk query
and all. And a batch that waits on the shop's erasure (shop/redact) ends the run cleanly."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from jobs.backfill import apply_orders
from jobs.context import JobContext
from plugin.store import shops
from plugin.store.db import _lock_id
from plugin.store.models import Order, Shop
from tests.helpers import add_shop, make_settings
from tests.test_backfill import LINE, ORDER, export_of
from tests.test_processor_contention import waiting_locks


def test_a_batch_aborted_by_another_transactions_locks_is_applied_again(
    postgres_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # given an export holding order 10 of customer 7, and another transaction (a processor's
    # batch) that holds customer 7's lock and will wait for order 10's
    engine = postgres_engine
    shop = add_shop(engine, "race.myshopify.com")
    assert shop.id is not None
    export = export_of(tmp_path / "orders.jsonl", [ORDER, LINE])
    ctx = JobContext(engine, make_settings(), http=None)  # type: ignore[arg-type]
    counts: list[dict[str, int]] = []
    failures: list[BaseException] = []

    def backfill() -> None:
        try:
            counts.append(apply_orders(ctx, shop, export))
        except BaseException as exc:
            failures.append(exc)

    caplog.set_level(logging.INFO, logger="jobs.backfill")
    with engine.connect() as other:
        other.execute(text("SET deadlock_timeout = '10s'"))  # the backfill's wait detects it
        lock = text("SELECT pg_advisory_xact_lock(:key)")
        other.execute(lock, {"key": _lock_id("customer", shop.id, 7)})
        # when the backfill's batch locks order 10, then waits for customer 7
        thread = threading.Thread(target=backfill)
        thread.start()
        deadline = time.monotonic() + 10
        while waiting_locks(engine) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        # and the other transaction asks for order 10's lock: each waits for the other
        other.execute(lock, {"key": _lock_id("order", shop.id, 10)})
        other.rollback()
    thread.join(timeout=30)
    # then PostgreSQL aborted the backfill's batch, which was applied again, and the run went on
    assert not failures, repr(failures[0])[:300]
    assert counts and counts[0]["applied"] == 1
    again = [r.getMessage() for r in caplog.records if "applied again" in r.getMessage()]
    assert len(again) == 1 and "deadlock detected" in again[0], again
    with Session(engine) as session:
        order = session.get(Order, (shop.id, 10))
    assert order is not None and order.customer_id == 7


@pytest.mark.parametrize(
    "currency",
    [None, "EUR"],
    ids=["writes-the-shop", "writes-orders-of-the-shop"],  # where the batch waits
)
def test_a_batch_waiting_on_the_shops_erasure_ends_the_run_cleanly(
    postgres_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture, currency: str | None
) -> None:
    # given a shop/redact's transaction that has deleted the shop and not yet committed
    engine = postgres_engine
    shop = add_shop(engine, "erasing.myshopify.com")
    with Session(engine) as session, session.begin():
        stored = session.get(Shop, shop.id)
        assert stored is not None
        stored.currency = currency  # unknown: the batch's first order sets it
    export = export_of(tmp_path / "orders.jsonl", [ORDER, LINE])
    ctx = JobContext(engine, make_settings(), http=None)  # type: ignore[arg-type]
    counts: list[dict[str, int]] = []
    failures: list[BaseException] = []

    def backfill() -> None:
        try:
            counts.append(apply_orders(ctx, shop, export))
        except BaseException as exc:
            failures.append(exc)

    with Session(engine) as erasing, erasing.begin():
        stored = erasing.get(Shop, shop.id)
        assert stored is not None
        shops.forget_shop(erasing, stored)
        # when a backfill's batch, which still sees the shop, writes and waits for it
        thread = threading.Thread(target=backfill)
        thread.start()
        deadline = time.monotonic() + 10
        while waiting_row_locks(engine) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert waiting_row_locks(engine) > 0
    # and the erasure commits
    thread.join(timeout=30)
    # then the run ends without an error, saying why, with nothing applied
    assert not failures, repr(failures[0])[:300]
    assert counts and (counts[0]["applied"], counts[0]["erased"]) == (0, 1)
    assert any("the shop was erased" in r.getMessage() for r in caplog.records)
    with Session(engine) as session:
        assert session.exec(select(Order)).first() is None


def waiting_row_locks(engine: Engine) -> int:
    with engine.connect() as connection:
        query = "SELECT count(*) FROM pg_locks WHERE NOT granted"
        return int(connection.execute(text(query)).scalar_one())
