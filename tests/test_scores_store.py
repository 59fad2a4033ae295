"""The scores store on a real database: the ledger read as arrays, exactly; scores written
for an existing shop only, and deleted with it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic import command
from sqlalchemy import BigInteger, Engine, Float, and_, cast, func, inspect, literal, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, col
from sqlmodel import select as model_select

from plugin.store.db import alembic_config, is_postgres, make_engine, upgrade
from plugin.store.models import Customer, CustomerScore, Order, OrderLine
from plugin.store.scores import (
    SCORE_COLUMNS,
    LedgerArrays,
    MissingShopError,
    _concatenated,
    _fetch,
    _lines_query,
    day_stamps,
    load_ledger,
    replace_scores,
)
from tests.helpers import SHOP, add_shop, enqueue, order_payload
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


def test_load_ledger_lines_carry_the_quantities_still_held(engine: Engine) -> None:
    # given lines of one and of three units, one partly refunded (four bought, two held), one
    # refunded whole, and one of five, in two customers' orders
    shop = add_shop(engine)
    assert shop.id is not None
    bought = {1: [(7001, 1, 1), (7002, 3, 3)], 2: [(7003, 4, 2), (7004, 2, 0), (7005, 5, 5)]}
    for k, lines in bought.items():
        payload = order_payload(k, customer_id=500 + k)
        first = payload["line_items"][0]
        payload["line_items"] = [
            {**first, "id": 10 * k + j, "product_id": product, "quantity": quantity}
            | {"current_quantity": current}
            for j, (product, quantity, current) in enumerate(lines)
        ]
        enqueue(engine, "orders/create", payload, f"o-{k}")
    Processor(engine).drain()
    # when the ledger is read, the whole shop's (as text on SQLite) and one customer's (row by row)
    whole, one = load_ledger(engine, shop.id), load_ledger(engine, shop.id, [502])
    # then each line comes with what is left of it, aligned with its customer and product, and
    # the line refunded whole is not there
    assert held(whole) == [(501, 7001, 1), (501, 7002, 3), (502, 7003, 2), (502, 7005, 5)]
    assert held(one) == [(502, 7003, 2), (502, 7005, 5)]
    assert whole.line_quantity.dtype == np.int64


def held(ledger: LedgerArrays) -> list[tuple[int, int, int]]:
    """The ledger's lines as (customer, product, quantity), sorted."""
    columns = (ledger.line_customer, ledger.line_product, ledger.line_quantity)
    return sorted(zip(*(column.tolist() for column in columns), strict=True))


def score_row(shop_id: int, customer_id: int) -> tuple[Any, ...]:
    values: dict[str, Any] = dict.fromkeys(SCORE_COLUMNS, 1.0)
    values.update(shop_id=shop_id, customer_id=customer_id, run_id=1, ledger_version=1)
    values.update(expected_next_order_at=None, reorder_due_at=None, segment="new")
    values.update(tags="new", reasons="{}", mean_days_between_orders=None)
    values.update(recency_score=1, frequency_score=1, monetary_score=1)
    return tuple(values[name] for name in SCORE_COLUMNS)


def add_customers(engine: Engine, shop_id: int, *customer_ids: int) -> None:
    """Customers' rows: scores are written for customers the shop holds only."""
    with Session(engine) as session, session.begin():
        session.add_all(Customer(shop_id=shop_id, customer_id=c) for c in customer_ids)


def shop_scores(engine: Engine, shop_id: int) -> int:
    with Session(engine) as session:
        query = select(func.count()).select_from(CustomerScore)
        return int(session.execute(query.where(CustomerScore.shop_id == shop_id)).scalar_one())


def test_replace_scores_for_a_missing_shop_writes_nothing(engine: Engine) -> None:
    # given no shop 99
    # when scores are written for it
    with pytest.raises(MissingShopError):
        replace_scores(engine, 99, [score_row(99, 1)], None)
    # then none were
    assert shop_scores(engine, 99) == 0


def test_what_the_database_refuses_is_sqlalchemys_error_and_changes_nothing(
    engine: Engine,
) -> None:
    # given a shop with a customer's scores
    shop = add_shop(engine)
    assert shop.id is not None
    add_customers(engine, shop.id, 1)
    replace_scores(engine, shop.id, [score_row(shop.id, 1)], None)
    # when the database refuses a write (the same customer twice) and a read (no such
    # function) made on the driver's own connection
    with pytest.raises(IntegrityError):
        replace_scores(engine, shop.id, [score_row(shop.id, 1)] * 2, None)
    with pytest.raises(DBAPIError):
        _fetch(engine, select(func.no_such_function(1)), 1)
    # then each is SQLAlchemy's error, as every other query's is (the jobs' and serve's
    # handlers catch those, not the driver's own), and the scores held are as they were
    assert shop_scores(engine, shop.id) == 1


def test_shop_redact_deletes_the_shops_scores_only(engine: Engine) -> None:
    # given two shops with scores
    first, second = add_shop(engine), add_shop(engine, "other.myshopify.com")
    assert first.id is not None and second.id is not None
    add_customers(engine, first.id, 1, 2)
    add_customers(engine, second.id, 1)
    replace_scores(engine, first.id, [score_row(first.id, c) for c in (1, 2)], None)
    replace_scores(engine, second.id, [score_row(second.id, 1)], None)
    # when the first shop is redacted
    enqueue(engine, "app/uninstalled", {"id": 1, "myshopify_domain": SHOP}, "bye")
    enqueue(engine, "shop/redact", {"shop_id": 1, "shop_domain": SHOP}, "shop-redact")
    assert Processor(engine).drain().by_outcome["done"] == 2
    # then its scores went with it, and the other shop's stayed
    assert shop_scores(engine, first.id) == 0 and shop_scores(engine, second.id) == 1


def test_migration_0006_drops_the_scores_key_and_its_downgrade_restores_it(tmp_path: Path) -> None:
    # given a SQLite database at 0005, whose scores table has the key (unnamed there)
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine, "0005")
    keys = lambda: inspect(engine).get_foreign_keys("customer_scores")  # noqa: E731
    assert [k["referred_table"] for k in keys()] == ["shops"]
    # when upgraded, then downgraded
    upgrade(engine)
    after_upgrade = keys()
    command.downgrade(alembic_config(engine), "0005")
    # then the key was gone, and is back with its cascade
    assert after_upgrade == []
    assert [(k["referred_table"], k["options"].get("ondelete")) for k in keys()] == [
        ("shops", "CASCADE")
    ]
    engine.dispose()


def test_lines_read_as_text_by_ranges_equal_the_lines_read_row_by_row(engine: Engine) -> None:
    # given orders of one to three lines, among them lines without a product, gift cards and
    # lines of several units, some partly refunded
    shop = add_shop(engine)
    assert shop.id is not None
    kept: list[list[int]] = []  # (order id, product id, current quantity) of the kept lines
    for k in range(1, 9):
        payload = order_payload(k, customer_id=500 + k % 3)
        first = payload["line_items"][0]
        payload["line_items"] = [
            {**first, "id": 100 * k + j, "product_id": 7000 + (k * j) % 5 if j else None}
            | {"quantity": k + j, "current_quantity": k + j - k % 2}
            for j in range(1 + k % 3)
        ]
        payload["line_items"][-1]["gift_card"] = k == 5
        kept += [
            [k, line["product_id"], line["current_quantity"]]
            for line in payload["line_items"]
            if line["product_id"] and not line["gift_card"]
        ]
        enqueue(engine, "orders/create", payload, f"o-{k}")
    Processor(engine).drain()
    if is_postgres(engine):
        return  # the text read is SQLite's
    counted = and_(col(Order.shop_id) == shop.id, col(Order.counted))
    query = _lines_query(engine, shop.id, counted, True)
    order_id = _fetch(engine, select(col(Order.order_id)).where(counted), 1)[:, 0]
    # when the lines are read as text, two orders' worth of ids per range, and row by row
    as_text = _concatenated(engine, query, order_id, per_range=2)
    by_row = _fetch(engine, query, 3)
    # then they are the same lines, with the same quantities, in the same order
    assert as_text is not None and as_text.tolist() == by_row.tolist()
    assert len(by_row) == 17 - 8 - 1  # lines, less the eight without a product and a gift card
    assert by_row.tolist() == kept
    # and a query whose order ids do not ascend is refused, for the row by row read
    backwards = query.order_by(None).order_by(col(OrderLine.order_id).desc())
    assert _concatenated(engine, backwards, order_id, per_range=100) is None


def test_scores_written_read_back_exactly_with_nulls_negatives_and_extremes(engine: Engine) -> None:
    # given score rows with negative, tiny and huge figures, missing values, and moments
    # before the epoch, before 2000 (PostgreSQL's zero) and after, down to the microsecond
    shop = add_shop(engine)
    assert shop.id is not None
    floats = [-0.5, 5e-324, 1.7976931348623157e308, -1e-300, 0.1, 123_456.789]
    days = np.array([-0.25, 10_956.999999988, 20_000.123456789, np.nan, 0.0, 1.5])
    stamps = day_stamps(days, is_postgres(engine))
    rows = []
    for k, (value, stamp) in enumerate(zip(floats, stamps, strict=True)):
        row = dict(zip(SCORE_COLUMNS, score_row(shop.id, k + 1), strict=True))
        row.update(aov=value, p_alive=-value, mean_days_between_orders=None if k % 2 else value)
        row.update(expected_next_order_at=stamp, reorder_due_at=stamps[-1 - k])
        row.update(recency_score=-k, ledger_version=2**31 - 1, run_id=-(2**62))
        row.update(tags="vip \\ \t\n", reasons='{"x": "\\u00e9 \\" é"}', segment="at-risk")
        rows.append(tuple(row[name] for name in SCORE_COLUMNS))
    # when they are written (for customers the shop holds) and read back
    add_customers(engine, shop.id, *range(1, len(rows) + 1))
    replace_scores(engine, shop.id, rows, None)
    with Session(engine) as session:
        stored = session.exec(model_select(CustomerScore).order_by(CustomerScore.customer_id)).all()
    # then every value is the one written, the moments to the microsecond
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    moments = [
        None if np.isnan(d) else epoch + timedelta(microseconds=int(d * 86_400_000_000))
        for d in days.tolist()
    ]
    assert len(stored) == len(rows)
    for k, score in enumerate(stored):
        assert repr(score.aov) == repr(floats[k]) and repr(score.p_alive) == repr(-floats[k])
        assert score.mean_days_between_orders is None or k % 2 == 0
        assert score.expected_next_order_at == moments[k]
        assert score.reorder_due_at == moments[-1 - k]
        assert (score.recency_score, score.ledger_version, score.run_id) == (
            -k,
            2**31 - 1,
            -(2**62),
        )
        assert score.tags == "vip \\ \t\n" and score.reasons == '{"x": "\\u00e9 \\" é"}'
