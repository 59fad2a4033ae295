"""customers/redact deletes everything held for the customer, and nothing brings it back: not
the inbox (its rows are deleted too), not a late delivery or a backfill (the redact leaves
tombstones), not a writer of scores, recommendations or pushed state that computed the
customer before the redact (it writes only customers still held, race-free on PostgreSQL)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text
from sqlmodel import Session, col, select

from plugin.store import inbox, ledger
from plugin.store.db import alembic_config, make_engine, upgrade
from plugin.store.models import (
    PARKED,
    Customer,
    CustomerRecommendation,
    CustomerScore,
    CustomerSync,
    InboxEvent,
    Order,
    OrderLine,
    Redaction,
    Refund,
    Shop,
    SyncChange,
)
from plugin.store.recommendations import replace_recommendations
from plugin.store.scores import replace_scores
from plugin.store.sync import Outcome, record_outcomes
from tests.helpers import SHOP, T0, add_shop, enqueue, order_payload, refund_payload
from tests.test_compliance import count
from tests.test_scores_store import score_row
from webhooks.payloads import minimise, parse_order
from webhooks.processor import Processor

FAR = T0 + timedelta(days=3650)  # a retry time no drain in these tests reaches


def redact_payload(customer_id: int, orders: list[int]) -> dict[str, Any]:
    return {
        "shop_id": 1,
        "shop_domain": SHOP,
        "customer": {"id": customer_id, "email": "jane@example.com"},
        "orders_to_redact": orders,
    }


def hold_back(engine: Engine, *webhook_ids: str) -> None:
    """Leave these events pending, not due before the end of the test."""
    with Session(engine) as session, session.begin():
        for event in session.exec(
            select(InboxEvent).where(col(InboxEvent.webhook_id).in_(webhook_ids))
        ):
            event.next_attempt_at = FAR


def inbox_rows(engine: Engine) -> dict[str, tuple[str, str]]:
    with Session(engine) as session:
        return {e.webhook_id: (e.status, e.payload) for e in session.exec(select(InboxEvent))}


def seed(engine: Engine) -> int:
    """Customers 501 (orders 1 and 2, a refund of 2) and 502 (order 3), processed."""
    shop = add_shop(engine)
    enqueue(engine, "orders/create", order_payload(1, customer_id=501), "o1")
    enqueue(engine, "orders/create", order_payload(2, customer_id=501, day=9), "o2")
    enqueue(engine, "refunds/create", refund_payload(71, 2, "5.00"), "r71")
    enqueue(engine, "orders/create", order_payload(3, customer_id=502), "o3")
    Processor(engine).drain()
    assert shop.id is not None
    return shop.id


def redact(engine: Engine, customer_id: int = 501, orders: list[int] | None = None) -> None:
    enqueue(engine, "customers/redact", redact_payload(customer_id, orders or []), "redact")
    assert Processor(engine).drain().by_outcome == {"done": 1}


# --- the inbox ----------------------------------------------------------------------------


def test_redact_deletes_every_inbox_row_naming_the_customer_or_their_orders(
    engine: Engine,
) -> None:
    # given customer 501's processed events, a parked order of theirs, and pending ones: an
    # order seen only in the inbox (4) and its refund, a refund of a redacted order, their
    # record, a data request; and pending events of others (15012's payload holds "501")
    seed(engine)
    bad = order_payload(5, customer_id=501, day=3)
    bad["created_at"] = None  # unreadable: parked at its first failure below
    enqueue(engine, "orders/create", bad, "o5-bad")
    Processor(engine, max_attempts=1).drain()
    pending = {
        "o4": ("orders/create", order_payload(4, customer_id=501, day=20)),
        "r81": ("refunds/create", refund_payload(81, 4, "1.00")),
        "r82": ("refunds/create", refund_payload(82, 1, "2.00")),
        "c501": ("customers/update", {"id": 501, "updated_at": T0.isoformat()}),
        "dr501": (
            "customers/data_request",
            {"shop_domain": SHOP, "customer": {"id": 501}, "data_request": {"id": 9}},
        ),
        "o6": ("orders/create", order_payload(6, customer_id=15012, total="501.00")),
        "r83": ("refunds/create", refund_payload(83, 3, "5.01")),
        "c502": ("customers/update", {"id": 502, "updated_at": T0.isoformat()}),
    }
    for webhook_id, (topic, payload) in pending.items():
        enqueue(engine, topic, payload, webhook_id)
    hold_back(engine, *pending)
    assert inbox_rows(engine)["o5-bad"][0] == PARKED
    # when 501 is redacted (order 1 named, order 2 theirs in the ledger)
    redact(engine, 501, [1])
    # then no row names them any more: the redact's own row is done and empty, the others' stay
    rows = inbox_rows(engine)
    assert rows.pop("redact") == ("done", "{}")
    assert set(rows) == {"o1", "o2", "r71", "o3", "o6", "r83", "c502"}
    assert {rows[done] for done in ("o1", "o2", "r71")} == {("done", "{}")}
    # and no parked event is left to bring anything back
    with Session(engine) as session:
        assert inbox.parked_ids(session) == []
    Processor(engine).drain()
    assert count(engine, Customer, customer_id=501) == 0 and count(engine, Order) == 1


def test_a_redact_listing_many_orders_deletes_the_rows_of_each_whoever_they_name(
    engine: Engine,
) -> None:
    # given pending webhooks of orders 7 (naming customer 502: its customer changed) and 1207
    # (a guest's), and of order 5000 of 502
    seed(engine)
    pending = {
        "o7": order_payload(7, customer_id=502),
        "o1207": order_payload(1207, customer_id=None),
        "o5000": order_payload(5000, customer_id=502),
    }
    for webhook_id, payload in pending.items():
        enqueue(engine, "orders/updated", payload, webhook_id)
    hold_back(engine, *pending)
    # when 501 is redacted, Shopify listing 1,201 orders, 7 and 1207 among them (more ids than
    # one statement of the search takes)
    redact(engine, 501, list(range(7, 1208)))
    # then the rows of the listed orders are gone, whoever they name, and the others stay
    rows = inbox_rows(engine)
    rows.pop("redact")
    assert set(rows) == {"o1", "o2", "r71", "o3", "o5000"}


def test_events_of_the_customer_in_the_redacts_own_batch_are_done_and_keep_nothing(
    engine: Engine,
) -> None:
    # given one batch: 501's order, their redact, then a late version of that order
    add_shop(engine)
    enqueue(engine, "orders/create", order_payload(1, customer_id=501), "o1")
    enqueue(engine, "customers/redact", redact_payload(501, [1]), "redact")
    enqueue(engine, "orders/updated", order_payload(1, customer_id=501, updated=5), "o1-late")
    # when they are processed together
    assert Processor(engine).drain().by_outcome == {"done": 3}
    # then the batch stood, nothing of 501 is kept, and every row of it is empty
    assert count(engine, Customer) == 0 and count(engine, Order) == 0
    assert {p for _, p in inbox_rows(engine).values()} == {"{}"}


# --- what comes after the redact ------------------------------------------------------------


def test_deliveries_after_the_redact_store_nothing_of_the_customer(engine: Engine) -> None:
    # given 501 redacted (order 1 named, order 2 theirs)
    seed(engine)
    redact(engine, 501, [1])
    # when late deliveries come: versions of their orders, a new order of theirs, refunds of
    # their orders, their record and its deletion, and another customer's order
    late = [
        ("orders/paid", order_payload(1, customer_id=501, updated=5), "o1-paid"),
        ("orders/updated", order_payload(2, customer_id=None, updated=5), "o2-guest"),
        ("orders/create", order_payload(5, customer_id=501, day=30), "o5"),
        ("refunds/create", refund_payload(91, 1, "3.00"), "r91"),
        ("refunds/create", refund_payload(92, 2, "3.00"), "r92"),
        ("customers/update", {"id": 501, "updated_at": T0.isoformat(), "state": "x"}, "c501"),
        ("customers/delete", {"id": 501}, "d501"),
        ("orders/create", order_payload(7, customer_id=503), "o7"),
    ]
    for topic, payload, webhook_id in late:
        enqueue(engine, topic, payload, webhook_id)
    assert Processor(engine).drain().by_outcome == {"done": len(late)}
    # then none of 501 is stored again (and the other customer is)
    assert count(engine, Customer, customer_id=501) == 0
    with Session(engine) as session:
        assert sorted(session.exec(select(Order.order_id))) == [3, 7]
        assert sorted(session.exec(select(OrderLine.order_id))) == [3, 7]
        assert session.exec(select(Refund)).all() == []
    assert count(engine, Customer, customer_id=503) == 1


def test_an_order_of_a_redacted_customer_drops_a_refund_recorded_ahead_of_it(
    engine: Engine,
) -> None:
    # given 501 redacted, then a refund of an order never seen (nothing says whose it is)
    seed(engine)
    redact(engine)
    enqueue(engine, "refunds/create", refund_payload(95, 8, "4.00"), "r95")
    Processor(engine).drain()
    assert count(engine, Refund, order_id=8) == 1
    # when the order comes, and it is 501's
    enqueue(engine, "orders/create", order_payload(8, customer_id=501), "o8")
    Processor(engine).drain()
    # then neither it nor its refund is kept, and a later refund of it is not either
    enqueue(engine, "refunds/create", refund_payload(96, 8, "1.00"), "r96")
    Processor(engine).drain()
    assert count(engine, Order, order_id=8) == 0 and count(engine, Refund, order_id=8) == 0


def test_a_backfill_after_the_redact_stores_nothing_of_the_customer(engine: Engine) -> None:
    # given 501 redacted (orders 1 and 2)
    shop_id = seed(engine)
    redact(engine, 501, [1])
    # when a backfill reads their orders from the store again, a new one of theirs too
    versions = [
        parse_order(minimise("orders/updated", order_payload(n, customer_id=c, updated=9)))
        for n, c in ((1, 501), (2, None), (5, 501), (6, 504))
    ]
    with Session(engine) as session, session.begin():
        shop = session.get(Shop, shop_id)
        assert shop is not None
        applied = ledger.apply_order_batch(session, shop, versions)
    # then only the other customer's order is stored
    assert applied == 1
    with Session(engine) as session:
        assert sorted(session.exec(select(Order.order_id))) == [3, 6]
    assert count(engine, Customer, customer_id=501) == 0


def test_shop_redact_deletes_the_shops_tombstones(engine: Engine) -> None:
    # given a redacted customer, so a shop holding tombstones
    seed(engine)
    redact(engine, 501, [1])
    assert count(engine, Redaction, kind="customer") == 1
    assert count(engine, Redaction, kind="order") == 2
    # when the shop uninstalls and is redacted
    uninstall = {"id": 1, "domain": "shop.example.com", "myshopify_domain": SHOP}
    enqueue(engine, "app/uninstalled", uninstall, "bye")
    enqueue(engine, "shop/redact", {"shop_id": 1, "shop_domain": SHOP}, "shop-redact")
    Processor(engine).drain()
    # then they went with it
    assert count(engine, Shop) == 0 and count(engine, Redaction) == 0


# --- writers that computed the customer before the redact ----------------------------------


def scored(engine: Engine) -> list[int]:
    with Session(engine) as session:
        return sorted(session.exec(select(CustomerScore.customer_id)))


def outcome(customer_id: int) -> Outcome:
    changes = [("tag", "clv:new", "add", None, "new customer")]
    return Outcome(customer_id, tags=frozenset({"clv:new"}), changes=changes)


def synced(engine: Engine) -> tuple[list[int], list[int | None]]:
    with Session(engine) as session:
        return (
            sorted(session.exec(select(CustomerSync.customer_id))),
            sorted(session.exec(select(SyncChange.customer_id))),
        )


def test_scores_computed_before_the_redact_are_not_written_for_the_customer(
    engine: Engine,
) -> None:
    # given scores computed for 501 and 502, then 501 redacted
    shop_id = seed(engine)
    rows = [score_row(shop_id, c) for c in (501, 502)]
    redact(engine)
    # when they are written, all the shop's, or those customers' (a re-score)
    replace_scores(engine, shop_id, rows, None)
    assert scored(engine) == [502]
    replace_scores(engine, shop_id, rows, [501, 502])
    # then 501 has none
    assert scored(engine) == [502]


def test_recommendations_computed_before_the_redact_are_not_written_for_the_customer(
    engine: Engine,
) -> None:
    shop_id = seed(engine)
    redact(engine)
    replace_recommendations(engine, shop_id, [], [], [(501, [9001]), (502, [9001])])
    with Session(engine) as session:
        kept = sorted(session.exec(select(CustomerRecommendation.customer_id)))
    assert kept == [502]


def test_a_push_answered_after_the_redact_records_nothing_for_the_customer(
    engine: Engine,
) -> None:
    shop_id = seed(engine)
    redact(engine)
    record_outcomes(
        engine, shop_id, [outcome(501), outcome(502)], via="call", job_run_id=None, now=T0
    )
    assert synced(engine) == ([502], [502])


# --- PostgreSQL: a redact and a writer at the same time -------------------------------------


def wait_for_a_lock_wait(engine: Engine, seconds: float = 5.0) -> bool:
    """True once a backend of this database waits for a lock (False after `seconds`)."""
    deadline = time.monotonic() + seconds
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            connection.rollback()
            if waiting:
                return True
            time.sleep(0.05)
    return False


def redact_in_thread(engine: Engine, shop_id: int, errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            with Session(engine) as session, session.begin():
                ledger.redact_customer(session, shop_id, 501, [])
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_on_postgresql_a_redact_during_a_score_write_waits_and_deletes_what_it_wrote(
    postgres_engine: Engine,
) -> None:
    # given scores for 501 and 502 being written (the writer holds its customers' rows)
    engine = postgres_engine
    shop_id = seed(engine)
    errors: list[BaseException] = []
    threads: list[threading.Thread] = []

    def rows() -> Iterator[tuple[Any, ...]]:
        # when 501 is redacted in the middle of the write
        threads.append(redact_in_thread(engine, shop_id, errors))
        threads[0].join(1.0)  # it must not get through while the write is under way
        waited.append(threads[0].is_alive())
        yield from (score_row(shop_id, c) for c in (501, 502))

    waited: list[bool] = []
    replace_scores(engine, shop_id, rows(), None)
    threads[0].join(30)
    # then the redact waited for the write, then deleted 501's score; no deadlock
    assert errors == [] and not threads[0].is_alive()
    assert waited == [True]
    assert scored(engine) == [502]
    assert count(engine, Customer, customer_id=501) == 0


@pytest.mark.parametrize("writer", ["scores", "recommendations", "outcomes"])
def test_on_postgresql_a_write_during_a_redact_waits_and_writes_nothing_for_the_customer(
    postgres_engine: Engine, writer: str
) -> None:
    # given 501's redact under way (not committed yet)
    engine = postgres_engine
    shop_id = seed(engine)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            if writer == "scores":
                replace_scores(engine, shop_id, [score_row(shop_id, c) for c in (501, 502)], None)
            elif writer == "recommendations":
                replace_recommendations(engine, shop_id, [], [], [(501, [1]), (502, [1])])
            else:
                record_outcomes(
                    engine, shop_id, [outcome(501), outcome(502)], via="call", job_run_id=None,
                    now=T0,
                )  # fmt: skip
        except BaseException as exc:  # reported below
            errors.append(exc)

    with Session(engine) as session, session.begin():
        ledger.redact_customer(session, shop_id, 501, [])
        # when a writer that computed 501 before writes meanwhile
        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        waited = wait_for_a_lock_wait(engine)
    thread.join(30)
    # then it waited for the redact, and wrote 502 only
    assert errors == [] and not thread.is_alive() and waited
    with Session(engine) as session:
        kept = {
            "scores": scored(engine),
            "recommendations": sorted(session.exec(select(CustomerRecommendation.customer_id))),
            "outcomes": synced(engine)[0],
        }[writer]
    assert kept == [502]


# --- the migration -------------------------------------------------------------------------


def test_migration_0008_adds_the_tombstones_and_its_downgrade_drops_them(tmp_path: Path) -> None:
    # given a SQLite database at the head; when it goes down to 0007 and back up
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    assert "redactions" in inspect(engine).get_table_names()
    command.downgrade(alembic_config(engine), "0007")
    assert "redactions" not in inspect(engine).get_table_names()
    upgrade(engine)
    assert "redactions" in inspect(engine).get_table_names()
    engine.dispose()


def test_on_postgresql_migration_0008_downgrades_and_upgrades_again(
    fresh_postgres_url: str,
) -> None:
    # given a database at the head holding a tombstone
    engine = make_engine(fresh_postgres_url)
    upgrade(engine)
    seed(engine)
    redact(engine)
    # when it goes down to 0007 and back up, then the table goes and comes back
    command.downgrade(alembic_config(engine), "0007")
    assert "redactions" not in inspect(engine).get_table_names()
    upgrade(engine)
    assert "redactions" in inspect(engine).get_table_names()
    engine.dispose()
