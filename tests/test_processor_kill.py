"""A processor killed between claiming and committing loses nothing, counts nothing twice."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, select

from plugin.store.models import DONE, PENDING, Customer, InboxEvent, Order
from tests.helpers import add_shop, enqueue, order_payload
from webhooks.processor import Processor

ROOT = Path(__file__).resolve().parent.parent


def test_processor_killed_before_commit_loses_nothing_and_counts_once(
    engine: Engine, migrated_url: str
) -> None:
    # given one order webhook in the inbox
    add_shop(engine)
    enqueue(engine, "orders/create", order_payload(1, total="42.00"), "wh-1")
    # when a processor process claims and applies it, and is SIGKILLed before committing
    result = subprocess.run(
        [sys.executable, "-m", "tests.kill_processor", migrated_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == -9, result.stderr
    assert "dying before commit" in result.stdout
    # then the event is still pending and the ledger holds nothing of it
    with Session(engine) as session:
        assert session.exec(select(InboxEvent.status)).one() == PENDING
        assert session.exec(select(Order)).all() == []
    # and another processor applies it exactly once
    assert Processor(engine).drain().by_outcome["done"] == 1
    with Session(engine) as session:
        assert session.exec(select(InboxEvent.status)).one() == DONE
        stored = session.exec(select(Customer)).one()
    assert (stored.orders, stored.net_spend) == (1, Decimal("42.00"))
