"""The processor's loop in `clvsync serve`: it outlives a batch that fails as a whole; and its
batches step aside for the webhooks being stored (webhooks/gate.py)."""

from __future__ import annotations

import time
from datetime import timedelta

import anyio
import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session, select

from plugin.store import inbox
from plugin.store.models import InboxEvent, Order
from tests.helpers import SHOP, T0, add_shop, enqueue, order_payload
from webhooks.gate import IngestGate
from webhooks.processor import GROUP_SIZE, Counts, Processor

pytestmark = pytest.mark.anyio


class FailsFirst(Processor):
    """A processor whose first drain fails as a whole, as a lost connection or a refused
    commit would make it (this cannot be made to happen on cue with a real database)."""

    def __init__(self, engine: Engine, error: Exception) -> None:
        super().__init__(engine, idle_seconds=0.01)
        self.error: Exception | None = error

    def drain(self, limit: int | None = None) -> Counts:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return super().drain(limit)


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("SELECT 1", {}, Exception("server closed the connection")),
        InterfaceError("COMMIT", {}, Exception("connection already closed")),
        RuntimeError("anything else"),
    ],
    ids=["operational", "interface", "other"],
)
async def test_a_failed_batch_is_retried_and_the_processor_keeps_running(
    engine: Engine, error: Exception
) -> None:
    # given an order waiting in the inbox, and a processor whose first batch fails
    add_shop(engine)
    enqueue(engine, "orders/create", order_payload(1, customer_id=501), "order-1")
    processor, stop = FailsFirst(engine, error), anyio.Event()

    def applied() -> bool:
        with Session(engine) as session:
            return session.exec(select(Order)).first() is not None

    # when it runs
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(processor.run, stop)
        with anyio.fail_after(10):
            while not await anyio.to_thread.run_sync(applied):
                await anyio.sleep(0.02)
        stop.set()
    # then it went on after the failure and applied the order
    assert processor.error is None


ORDERS = 30  # three groups of GROUP_SIZE


def pending_orders(engine: Engine) -> None:
    add_shop(engine)
    for n in range(1, ORDERS + 1):
        enqueue(engine, "orders/create", order_payload(n, customer_id=500 + n), f"order-{n}")


def test_a_batch_ends_after_its_first_group_when_a_webhook_waits_to_be_stored(
    engine: Engine,
) -> None:
    # given 30 orders pending, a batch given all the time it wants, and a webhook being stored
    pending_orders(engine)
    gate = IngestGate(serialise_writes=False)
    processor = Processor(engine, gate=gate, batch_seconds=60, quiet_batch_seconds=60)
    with gate.storing():
        # when a batch runs, then it ends after one group, leaving the rest for later
        assert len(processor.process_batch(ORDERS)) == GROUP_SIZE
    # and once the webhook is stored, the next batch takes the rest
    assert len(processor.process_batch(ORDERS)) == ORDERS - GROUP_SIZE


def test_a_batch_ends_on_time_while_webhooks_come_and_takes_all_once_they_stop(
    engine: Engine,
) -> None:
    # given 30 orders pending, applied one at a time, and a webhook stored a moment ago
    pending_orders(engine)
    gate = IngestGate(serialise_writes=False)
    with gate.storing():
        pass
    processor = Processor(
        engine, gate=gate, batch_seconds=0, quiet_batch_seconds=60, group_min=ORDERS + 1
    )
    # when a batch runs, then it ends on time, after its first event
    assert len(processor.process_batch(ORDERS)) == 1
    # and when none has come for a second, a batch takes every event left
    time.sleep(1.0)
    assert len(processor.process_batch(ORDERS)) == ORDERS - 1


def test_the_oldest_due_events_are_claimed_first(engine: Engine) -> None:
    # given five events, the first of them tried once already and due again by now (on
    # PostgreSQL its row, updated, now lies after the others)
    add_shop(engine)
    for n in range(1, 6):
        enqueue(engine, "orders/create", order_payload(n, customer_id=500 + n), f"order-{n}")
    with Session(engine) as session, session.begin():
        first = min(session.exec(select(InboxEvent)).all(), key=lambda e: e.id or 0)
        inbox.mark_failed(first, "tried", T0, max_attempts=8)
    now = T0 + timedelta(hours=1)
    # when two are claimed, then they are the two received first
    with Session(engine) as session, session.begin():
        claimed = [e.webhook_id for e in inbox.claim_due(session, now, 2)]
    assert claimed == ["order-1", "order-2"]


def stored_event(engine: Engine, webhook_id: str, topic: str, payload: str) -> None:
    """An inbox row as an earlier release, or a hand, may have left it."""
    with Session(engine) as session, session.begin():
        session.add(
            InboxEvent(
                shop_domain=SHOP,
                webhook_id=webhook_id,
                topic=topic,
                received_at=T0,
                payload=payload,
                next_attempt_at=T0,
            )
        )


def test_an_event_the_processor_cannot_apply_is_retried_saying_why_never_done(
    engine: Engine,
) -> None:
    # given stored events of a topic no handler takes, with a payload that is no JSON object,
    # and whose error runs past 500 characters (a currency of 3,000 letters)
    add_shop(engine)
    stored_event(engine, "unknown-topic", "products/update", '{"id": 1}')
    stored_event(engine, "not-an-object", "orders/create", "[1, 2]")
    payload = order_payload(1)
    payload["currency"] = "X" * 3000
    enqueue(engine, "orders/create", payload, "long-error")
    # when they are processed
    counts = Processor(engine, clock=lambda: T0).drain()
    # then none is done: each waits for another attempt, its error saying why, cut to 500
    assert counts.by_outcome == {"retry": 3}
    with Session(engine) as session:
        errors = {e.webhook_id: e.last_error for e in session.exec(select(InboxEvent))}
    assert errors["unknown-topic"] == "ValueError: no handler for topic 'products/update'"
    assert errors["not-an-object"] == "ValueError: stored payload is not a JSON object"
    long_error = errors["long-error"]
    assert long_error is not None and len(long_error) == 500
    assert long_error.startswith("PayloadError: currency: expected the shop's 3-letter currency")


def test_drain_stops_at_its_limit(engine: Engine) -> None:
    add_shop(engine)
    for n in range(1, 8):
        enqueue(engine, "orders/create", order_payload(n, customer_id=500 + n), f"order-{n}")
    processor = Processor(engine, batch_size=5, clock=lambda: T0)
    assert processor.drain(limit=6).total == 6
    assert processor.drain().total == 1
