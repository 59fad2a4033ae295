"""The processor's loop in `clvsync serve`: it outlives a batch that fails as a whole."""

from __future__ import annotations

import anyio
import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session, select

from plugin.store.models import Order
from tests.helpers import add_shop, enqueue, order_payload
from webhooks.processor import Counts, Processor

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
