"""Two processors on PostgreSQL: an event one of them loses to the other's locks is tried again
a second later, not counted as a failure (counted, a busy shop's events were delayed 5, 10,
20 s ... and could be parked, though nothing was wrong with them)."""

from __future__ import annotations

import gc
import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text
from sqlmodel import Session, select

from plugin.store.db import _lock_id
from plugin.store.inbox import CONTENDED_DELAY
from plugin.store.ledger import apply_order
from plugin.store.models import InboxEvent, Order, Shop
from tests.helpers import add_shop, enqueue, order_payload
from webhooks.payloads import parse_order
from webhooks.processor import Outcome, Processor


def waiting_locks(engine: Engine) -> int:
    with engine.connect() as connection:
        query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        return int(connection.execute(text(query)).scalar_one())


def test_an_event_aborted_by_another_processors_locks_is_tried_again_soon_uncounted(
    postgres_engine: Engine,
) -> None:
    # given two order webhooks, and another processor's batch that holds the lock of the
    # second order's customer and will wait for the first order's lock
    engine = postgres_engine
    shop = add_shop(engine)
    assert shop.id is not None
    enqueue(engine, "orders/create", order_payload(1, customer_id=501), "o-1")
    enqueue(engine, "orders/create", order_payload(2, customer_id=502), "o-2")
    outcomes: list[Outcome] = []
    processor = Processor(engine)
    with engine.connect() as other:
        other.execute(text("SET deadlock_timeout = '10s'"))  # the processor's wait detects it
        lock = text("SELECT pg_advisory_xact_lock(:key)")
        other.execute(lock, {"key": _lock_id("customer", shop.id, 502)})
        # when the processor applies the first order, then waits for the second's customer
        started = datetime.now(UTC)
        batch = threading.Thread(target=lambda: outcomes.extend(processor.process_batch(10)))
        batch.start()
        deadline = time.monotonic() + 10
        while waiting_locks(engine) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        # and the other batch asks for the first order's lock: each waits for the other
        other.execute(lock, {"key": _lock_id("order", shop.id, 1)})
        other.rollback()
    batch.join(timeout=30)
    # then PostgreSQL aborted the processor's second event, the first is applied, and the second
    # is pending with the error, due a second later, its attempt not counted
    assert outcomes == [Outcome.DONE, Outcome.RETRY]
    with Session(engine) as session:
        second = session.exec(select(InboxEvent).where(InboxEvent.webhook_id == "o-2")).one()
        assert second.attempts == 0 and second.status == "pending"
        assert "DeadlockDetected" in (second.last_error or "")
        assert second.next_attempt_at is not None
        due = second.next_attempt_at.replace(tzinfo=UTC)  # the batch's start, and a second
        assert started < due <= started + CONTENDED_DELAY + timedelta(seconds=1)
    # and once due, it is applied
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
    assert processor.drain().by_outcome == {"done": 1}
    with Session(engine) as session:
        assert sorted(session.exec(select(Order.order_id))) == [1, 2]


def test_an_order_read_before_a_lost_lock_wait_is_read_again_not_overwritten_stale(
    postgres_engine: Engine,
) -> None:
    # given an order held at its version of minute 14, and in the inbox its versions of
    # minutes 21 and 22, for one processor to apply one at a time
    engine = postgres_engine
    shop = add_shop(engine)
    assert shop.id is not None
    enqueue(engine, "orders/updated", order_payload(24, customer_id=503, updated=14), "v14")
    Processor(engine).drain()
    enqueue(engine, "orders/updated", order_payload(24, customer_id=503, updated=21), "v21")
    enqueue(engine, "orders/updated", order_payload(24, customer_id=503, updated=22), "v22")
    outcomes: list[Outcome] = []
    processor = Processor(engine, group_min=10, quiet_batch_seconds=30)
    # (the garbage collector held off: an aborted event's exception keeps what it read alive in
    # reference cycles until the collector runs, which it may not do for a while)
    gc.disable()
    try:
        with Session(engine) as other:
            other.execute(text("SET deadlock_timeout = '10s'"))  # the processor's wait detects it
            other.execute(
                text("SELECT pg_advisory_xact_lock(:key)"),
                {"key": _lock_id("customer", shop.id, 503)},
            )
            # when the processor reads the order for minute 21, then waits for its customer
            batch = threading.Thread(target=lambda: outcomes.extend(processor.process_batch(10)))
            batch.start()
            deadline = time.monotonic() + 10
            while waiting_locks(engine) == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            # and another processor, holding that customer, applies the order's version of
            # minute 28: PostgreSQL aborts the minute 21 event (its savepoint's rollback
            # releases its locks)
            held_shop = other.get(Shop, shop.id)
            assert held_shop is not None
            newest = parse_order(order_payload(24, customer_id=503, updated=28))
            assert apply_order(other, held_shop, newest)
            other.commit()
        batch.join(timeout=30)
    finally:
        gc.enable()
    # then the minute 22 version, applied next, found the order as the other left it (minute
    # 28), not as read before the abort (minute 14), and did not overwrite it
    assert outcomes == [Outcome.RETRY, Outcome.DONE]
    with Session(engine) as session:
        order = session.get(Order, (shop.id, 24))
        assert order is not None
        assert order.updated_at == newest.updated_at
