"""The scores store on a real database: the ledger read as arrays, exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import BigInteger, Engine, Float, cast, literal, select, text
from sqlmodel import Session

from plugin.store.db import is_postgres
from plugin.store.scores import _fetch, load_ledger
from tests.helpers import add_shop, enqueue, order_payload
from webhooks.processor import Processor


def test_fetch_reads_negative_large_and_fractional_values_exactly(engine: Engine) -> None:
    # given a row of a negative id, the largest id a double holds exactly, and odd doubles
    row = select(
        cast(literal(-5), BigInteger),
        cast(literal(2**53), BigInteger),
        cast(literal(-0.1), Float),
        cast(literal(1e-300), Float),
        cast(literal(0), BigInteger),
    )
    # when it is fetched as an array
    fetched = _fetch(engine, row, 5)
    # then every value is the one stored
    assert fetched.tolist() == [[-5.0, 2.0**53, -0.1, 1e-300, 0.0]]


def test_load_ledger_days_are_the_databases_own_day_arithmetic(engine: Engine) -> None:
    # given orders processed at microsecond times, before and after the epoch
    shop = add_shop(engine)
    moments = [
        datetime(2025, 3, 9, 7, 41, 2, 123457, tzinfo=UTC),
        datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1969, 12, 31, 12, 0, 0, 1, tzinfo=UTC),
    ]
    for k in range(len(moments)):
        enqueue(engine, "orders/create", order_payload(k + 1, customer_id=501 + k), f"o-{k}")
    Processor(engine).drain()
    with Session(engine) as session, session.begin():
        for k, moment in enumerate(moments):
            session.execute(
                text("UPDATE orders SET processed_at = :at WHERE order_id = :id"),
                {"at": moment if is_postgres(engine) else moment.isoformat(" ")[:26], "id": k + 1},
            )
    # when the ledger is read
    assert shop.id is not None
    ledger = load_ledger(engine, shop.id)
    # then each day is what the database computes (PostgreSQL: the numeric quotient, rounded
    # once to a double; SQLite: julianday), and near the true day
    day = (
        "extract(epoch FROM processed_at) / 86400.0"
        if is_postgres(engine)
        else "julianday(processed_at) - 2440587.5"
    )
    with Session(engine) as session:
        own = session.execute(text(f"SELECT customer_id, {day} FROM orders")).all()
    expected = [float(d) for _, d in sorted(own)]
    assert ledger.order_day.tolist() == expected
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    true_days = [(m - epoch) / timedelta(days=1) for m in moments]
    assert np.allclose(ledger.order_day, true_days, rtol=0, atol=1e-6)
