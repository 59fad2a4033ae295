"""`clvsync redact`: the operator's erasure of a customer, as customers/redact does it, on a real
database built by the migrations (SQLite and PostgreSQL): what it erases and keeps, what it
records so nothing stores the customer again, its prompt, its errors, and a processor's batch
under way meanwhile."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select

from plugin.cli import main
from plugin.cli_redact import OthersOrdersError, redact_now, retried
from plugin.store import inbox, ledger
from plugin.store.models import (
    Customer,
    CustomerRecommendation,
    CustomerScore,
    CustomerSync,
    DataRequest,
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
from tests.test_compliance import cli_env
from tests.test_redact_integrity import wait_for_a_lock_wait
from tests.test_scores_store import score_row
from webhooks.handlers import HANDLERS
from webhooks.payloads import minimise, parse_order
from webhooks.processor import Processor

OTHER = "other-shop.myshopify.com"
ROWS = "scores, recommendations, pushed state and its audit, data requests"


def invoke(url: str, *args: str, answer: str | IO[bytes] | None = None) -> Result:
    return CliRunner().invoke(main, ["redact", *args], env=cli_env(url), input=answer)


class AnswerAfter(io.BytesIO):
    """The operator's answer, read only after `meanwhile` ran: what happens in the store while
    they read the question."""

    def __init__(self, answer: str, meanwhile: Callable[[], None]) -> None:
        super().__init__(answer.encode())
        self.meanwhile: Callable[[], None] | None = meanwhile

    def _answer(self, size: int | None) -> None:
        if self.meanwhile is not None and size != 0:  # click reads 0 bytes to probe the stream
            run, self.meanwhile = self.meanwhile, None
            run()

    def read(self, size: int | None = -1) -> bytes:
        self._answer(size)
        return super().read(size)

    def read1(self, size: int | None = -1) -> bytes:
        self._answer(size)
        return super().read1(size)

    def readline(self, size: int | None = -1) -> bytes:
        self._answer(size)
        return super().readline(size)


def add_orders(engine: Engine, *orders: tuple[int, int | None]) -> None:
    """Apply orders (id, customer or None for a guest's), a line each, as webhooks would."""
    for order_id, customer_id in orders:
        payload = order_payload(order_id, customer_id=customer_id)
        enqueue(engine, "orders/create", payload, f"o{order_id}")
    Processor(engine).drain()


def outcome(customer_id: int) -> Outcome:
    changes = [("tag", "clv:new", "add", None, "new customer")]
    return Outcome(customer_id, tags=frozenset({"clv:new"}), changes=changes)


def seed(engine: Engine) -> tuple[int, int]:
    """In SHOP, customers 501 (orders 1 and 2, a line each, a refund of 2, a data request) and
    502 (order 3), each with a score, recommendations, pushed state and an audit row; in
    OTHER, a customer 501 too (order 11, a score). The two shops' ids."""
    shop, other = add_shop(engine), add_shop(engine, OTHER)
    assert shop.id is not None and other.id is not None
    enqueue(engine, "orders/create", order_payload(1, customer_id=501), "o1")
    enqueue(engine, "orders/create", order_payload(2, customer_id=501, day=9), "o2")
    enqueue(engine, "refunds/create", refund_payload(71, 2, "5.00"), "r71")
    enqueue(engine, "orders/create", order_payload(3, customer_id=502), "o3")
    request = {"shop_domain": SHOP, "customer": {"id": 501}, "data_request": {"id": 9}}
    enqueue(engine, "customers/data_request", request, "dr501")
    enqueue(engine, "orders/create", order_payload(11, customer_id=501), "o11", OTHER)
    Processor(engine).drain()
    replace_scores(engine, shop.id, [score_row(shop.id, c) for c in (501, 502)], None)
    replace_scores(engine, other.id, [score_row(other.id, 501)], None)
    replace_recommendations(engine, shop.id, [], [], [(501, [9001]), (502, [9001])])
    record_outcomes(
        engine, shop.id, [outcome(501), outcome(502)], via="call", job_run_id=None, now=T0
    )
    return shop.id, other.id


def held(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """What the store holds, by table: (shop id, id...) of each row."""
    tables: dict[str, tuple[type, tuple[str, ...]]] = {
        "customers": (Customer, ("customer_id", "orders", "net_spend")),
        "orders": (Order, ("order_id", "customer_id")),
        "lines": (OrderLine, ("order_id", "line_id")),
        "refunds": (Refund, ("refund_id", "order_id")),
        "scores": (CustomerScore, ("customer_id",)),
        "recommendations": (CustomerRecommendation, ("customer_id",)),
        "pushed": (CustomerSync, ("customer_id",)),
        "audit": (SyncChange, ("customer_id",)),
        "requests": (DataRequest, ("customer_id",)),
        "redactions": (Redaction, ("kind", "item_id")),
    }
    with Session(engine) as session:
        return {
            name: sorted(
                tuple(getattr(row, c) for c in ("shop_id", *columns))
                for row in session.exec(select(table))
            )
            for name, (table, columns) in tables.items()
        }


def without(rows: dict[str, list[tuple[Any, ...]]], shop_id: int, *gone: tuple[str, int]) -> Any:
    """`rows` less those of `shop_id` whose second column is one of `gone`'s (table, id)."""
    return {
        name: [r for r in kept if r[0] != shop_id or (name, r[1]) not in gone]
        for name, kept in rows.items()
    }


def of_501(shop_id: int) -> list[tuple[str, int]]:
    """Customer 501's rows in `held`, by table and id: orders 1 and 2, their lines and refund."""
    per_customer = ("customers", "scores", "recommendations", "pushed", "audit", "requests")
    return [
        *((table, 501) for table in per_customer),
        ("orders", 1),
        ("orders", 2),
        ("lines", 1),
        ("lines", 2),
        ("refunds", 71),
    ]


def apply_later(engine: Engine, shop_id: int) -> int:
    """What could store 501 again: webhooks (newer versions of their orders, a new one, their
    record) and a backfill's read of the history (the same, and another customer's order 7).
    How many orders the backfill applied."""
    late = [
        ("orders/updated", order_payload(1, customer_id=501, updated=5), "o1-late"),
        ("orders/create", order_payload(5, customer_id=501, day=30), "o5"),
        ("refunds/create", refund_payload(91, 2, "1.00"), "r91"),
        ("customers/update", {"id": 501, "updated_at": T0.isoformat(), "state": "x"}, "c501"),
    ]
    for topic, payload, webhook_id in late:
        enqueue(engine, topic, payload, webhook_id)
    assert Processor(engine).drain().by_outcome == {"done": len(late)}
    versions = [
        parse_order(minimise("orders/updated", order_payload(n, customer_id=c, updated=9)))
        for n, c in ((1, 501), (2, 501), (6, 501), (7, 503))
    ]
    with Session(engine) as session, session.begin():
        shop = session.get(Shop, shop_id)
        assert shop is not None
        applied = ledger.apply_order_batch(session, shop, versions)
        ledger.upsert_customers(session, shop_id, [(501, {"updated_at": T0, "state": "y"})])
    return applied


# --- erasing ------------------------------------------------------------------------------


def test_redact_held_customer_erases_them_completely_and_remembers_them(
    engine: Engine, migrated_url: str
) -> None:
    # given customer 501 with orders, lines, a refund, a score and the rest; 502 beside them;
    # and another shop's customer 501
    shop_id, other_id = seed(engine)
    before = held(engine)
    # when the operator redacts 501 of SHOP
    result = invoke(migrated_url, "--shop", SHOP, "--customer", "501", "--yes")
    # then two lines say what was erased and recorded
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"erased customer 501 of {SHOP}: their record, 2 orders, 2 lines, 1 refund and "
        f"5 other rows ({ROWS})",
        "recorded customer 501 and 2 orders as redacted: no webhook or backfill applied "
        "later stores them again",
    ]
    # and nothing of them is left, the rest is as it was (OTHER's customer 501 too), and the
    # customer and their orders are recorded as redacted
    after = held(engine)
    tombstones = [(shop_id, "customer", 501), (shop_id, "order", 1), (shop_id, "order", 2)]
    assert after.pop("redactions") == tombstones
    expected = without(before, shop_id, *of_501(shop_id))
    expected.pop("redactions")
    assert after == expected
    assert (other_id, 501) in after["scores"] and (other_id, 11, 501) in after["orders"]
    # and nothing applied later stores them again: only the other customer's order is kept
    assert apply_later(engine, shop_id) == 1
    final = held(engine)
    assert [o for o in final["orders"] if o[0] == shop_id] == [(shop_id, 3, 502), (shop_id, 7, 503)]
    assert not [c for c in final["customers"] if c[:2] == (shop_id, 501)]
    assert not [r for r in final["refunds"] if r[0] == shop_id]


def test_redact_runs_through_the_prompt_only_when_confirmed(
    engine: Engine, migrated_url: str
) -> None:
    # given customer 501 held
    seed(engine)
    before = held(engine)
    # when the operator is asked and declines
    declined = invoke(migrated_url, "--shop", SHOP, "--customer", "501", answer="n\n")
    # then the prompt named the shop, the customer and the orders, and nothing was erased
    prompt = (
        f"Erase customer 501 of {SHOP}: their record, 2 orders, 2 lines, 1 refund and 5 other "
        f"rows ({ROWS}), and record them as redacted? [y/N]"
    )
    assert declined.exit_code == 1
    assert prompt in declined.stdout and "nothing erased" in declined.stderr
    assert held(engine) == before
    # and when they accept, it is
    accepted = invoke(migrated_url, "--shop", SHOP, "--customer", "501", answer="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert prompt in accepted.stdout and f"erased customer 501 of {SHOP}" in accepted.stdout
    assert held(engine)["orders"] != before["orders"]


def test_redact_without_yes_and_no_answer_erases_nothing(engine: Engine, migrated_url: str) -> None:
    # given a script that forgot --yes (stdin empty)
    seed(engine)
    before = held(engine)
    result = invoke(migrated_url, "--shop", SHOP, "--customer", "501", answer="")
    # then it stopped at the question
    assert result.exit_code == 1 and held(engine) == before


@pytest.mark.parametrize(
    ("orders", "message"),
    [
        (
            ["3"],
            "Error: order 3 is held for customer 502, not 501: nothing erased; if Shopify's "
            "orders_to_redact names it, give --other-customers-orders too",
        ),
        (
            ["4", "1", "3", "12", "77"],  # 503's, theirs, 502's, a guest's, one not held
            "Error: order 3 is held for customer 502 and order 4 for customer 503, not 501: "
            "nothing erased; if Shopify's orders_to_redact names them, give "
            "--other-customers-orders too",
        ),
    ],
)
@pytest.mark.parametrize("yes", [True, False])
def test_redact_of_an_order_held_for_another_customer_is_refused_with_nothing_erased(
    engine: Engine, migrated_url: str, orders: list[str], message: str, yes: bool
) -> None:
    # given 502's order 3 (a line, a refund), 503's order 4 and a guest's order 12
    seed(engine)
    enqueue(engine, "refunds/create", refund_payload(73, 3, "5.00"), "r73")
    add_orders(engine, (4, 503), (12, None))
    before = held(engine)
    # when an order of another customer is named for 501 (a typo, say)
    args = [arg for order_id in orders for arg in ("--order", order_id)]
    result = invoke(
        migrated_url, "--shop", SHOP, "--customer", "501", *args, *(["--yes"] if yes else [])
    )
    # then it is refused before asking, naming each such order and its customer, and nothing
    # changed: no order, line, refund, figure or redaction of anyone's
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == message
    assert result.stdout == ""
    assert held(engine) == before


def test_redact_with_other_customers_orders_names_them_erases_them_and_refreshes_their_customers(
    engine: Engine, migrated_url: str
) -> None:
    # given 502's orders 3, 6 and 8, and 503's order 4
    shop_id, _ = seed(engine)
    add_orders(engine, (6, 502), (8, 502), (4, 503))
    # when 502's 3 and 6 and 503's 4 are named for 501 (as Shopify's orders_to_redact may),
    # allowed, and confirmed
    result = invoke(
        migrated_url,
        *("--shop", SHOP, "--customer", "501", "--order", "3", "--order", "6", "--order", "4"),
        "--other-customers-orders",
        answer="y\n",
    )
    # then the prompt named each of those orders and its customer
    assert result.exit_code == 0, result.output
    orders = (
        "5 orders (order 3 held for customer 502; order 4 held for customer 503; order 6 held "
        "for customer 502), 5 lines, 1 refund"
    )
    prompt = (
        f"Erase customer 501 of {SHOP}: their record, {orders} and 5 other rows ({ROWS}), and "
        "record them as redacted? [y/N]"
    )
    assert prompt in result.stdout
    # and so did the summary, with whose figures were refreshed
    assert result.stdout.splitlines()[-4:] == [
        f"erased customer 501 of {SHOP}: their record, {orders} and 5 other rows ({ROWS})",
        "refreshed customer 502's figures, without orders 3 and 6",
        "refreshed customer 503's figures, without order 4",
        "recorded customer 501 and 5 orders as redacted: no webhook or backfill applied later "
        "stores them again",
    ]
    # and those orders are gone for good, their customers' figures no longer count them
    after = held(engine)
    assert [o for o in after["orders"] if o[0] == shop_id] == [(shop_id, 8, 502)]
    customers = [c for c in after["customers"] if c[0] == shop_id]
    assert customers == [(shop_id, 502, 1, 100), (shop_id, 503, 0, 0)]
    recorded = [r[2] for r in after["redactions"] if r[:2] == (shop_id, "order")]
    assert recorded == [1, 2, 3, 4, 6]


def test_redact_of_orders_held_for_no_customer_or_not_held_goes_ahead_and_counts_them(
    engine: Engine, migrated_url: str
) -> None:
    # given a guest's order 12; order 77 not held at all
    shop_id, _ = seed(engine)
    add_orders(engine, (12, None))
    before = held(engine)
    # when both are named for 501, without --other-customers-orders
    result = invoke(
        migrated_url, "--shop", SHOP, "--customer", "501", "--order", "12", "--order", "77", "--yes"
    )
    # then they are taken, and the summary says how many were held for nobody and not held
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"erased customer 501 of {SHOP}: their record, 3 orders (1 named by --order and held "
        f"for no customer), 3 lines, 1 refund and 5 other rows ({ROWS})",
        "1 order named by --order was not held",
        "recorded customer 501 and 4 orders as redacted: no webhook or backfill applied later "
        "stores them again",
    ]
    after = held(engine)
    recorded = [r[2] for r in after["redactions"] if r[:2] == (shop_id, "order")]
    assert recorded == [1, 2, 12, 77]
    assert after["orders"] == [
        o for o in before["orders"] if o[:2] not in {(shop_id, 1), (shop_id, 2), (shop_id, 12)}
    ]
    assert (shop_id, 502, 1, 100) in after["customers"]


@pytest.mark.parametrize("allowed", [False, True])
def test_redact_of_an_order_that_another_customer_gets_while_asked_is_refused_unless_allowed(
    engine: Engine, migrated_url: str, allowed: bool
) -> None:
    # given a guest's order 12, named for 501 and so asked about as held for no customer
    shop_id, _ = seed(engine)
    add_orders(engine, (12, None))
    changed: dict[str, Any] = {}

    def meanwhile() -> None:
        # while the operator reads the question, order 12 is updated to customer 502's
        moved = order_payload(12, customer_id=502, updated=5)
        enqueue(engine, "orders/updated", moved, "o12-moved")
        Processor(engine).drain()
        changed.update(held(engine))

    flag = ["--other-customers-orders"] if allowed else []
    args = ("--shop", SHOP, "--customer", "501", "--order", "12", *flag)
    result = invoke(migrated_url, *args, answer=AnswerAfter("y\n", meanwhile))
    assert "3 orders (1 named by --order and held for no customer)" in result.stdout
    assert (shop_id, 12, 502) in changed["orders"]
    if not allowed:
        # then, when they confirm, it is refused in the redact's transaction, nothing erased
        assert result.exit_code == 1, result.output
        assert result.stderr.strip() == (
            "Error: order 12 is now held for customer 502, not 501: nothing erased; if "
            "Shopify's orders_to_redact names it, give --other-customers-orders too"
        )
        assert "erased customer" not in result.stdout
        assert held(engine) == changed
        return
    # or, allowed, it is erased, the summary names its customer now, whose figures are refreshed
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-3:-1] == [
        f"erased customer 501 of {SHOP}: their record, 3 orders (order 12 held for customer "
        f"502), 3 lines, 1 refund and 5 other rows ({ROWS})",
        "refreshed customer 502's figures, without order 12",
    ]
    after = held(engine)
    assert [o for o in after["orders"] if o[0] == shop_id] == [(shop_id, 3, 502)]
    assert (shop_id, 502, 1, 100) in after["customers"]


# --- not held, twice -------------------------------------------------------------------------


def test_redact_of_a_customer_not_held_records_them_so_nothing_stores_them_later(
    engine: Engine, migrated_url: str
) -> None:
    # given customer 999, never seen, and their order 77 the operator knows of
    shop_id, _ = seed(engine)
    before = held(engine)
    # when redacted
    result = invoke(migrated_url, "--shop", SHOP, "--customer", "999", "--order", "77", "--yes")
    # then nothing was erased, the customer and the order are recorded
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"nothing was held for customer 999 of {SHOP}",
        "1 order named by --order was not held",
        "recorded customer 999 and 1 order as redacted: no webhook or backfill applied later "
        "stores them again",
    ]
    after = held(engine)
    assert after.pop("redactions") == [(shop_id, "customer", 999), (shop_id, "order", 77)]
    before.pop("redactions")
    assert after == before
    # and neither their order nor order 77 (now a guest's) is stored when they come
    enqueue(engine, "orders/create", order_payload(78, customer_id=999), "o78")
    enqueue(engine, "orders/create", order_payload(77, customer_id=None), "o77")
    Processor(engine).drain()
    orders = [o[1] for o in held(engine)["orders"] if o[0] == shop_id]
    assert orders == [1, 2, 3]


def seed_with_501_redacted(engine: Engine, url: str) -> int:
    """The seeded shops, with customer 501 of SHOP redacted; SHOP's id."""
    shop_id, _ = seed(engine)
    first = invoke(url, "--shop", SHOP, "--customer", "501", "--yes")
    assert first.exit_code == 0, first.output
    return shop_id


def test_redact_twice_is_harmless_and_says_it_was_redacted_before(
    engine: Engine, migrated_url: str
) -> None:
    # given 501 redacted
    shop_id = seed_with_501_redacted(engine, migrated_url)
    once = held(engine)
    # when redacted again, without --yes: nothing to ask, nothing done
    again = invoke(migrated_url, "--shop", SHOP, "--customer", "501")
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines() == [
        f"customer 501 of {SHOP} was redacted before and nothing of them is held: nothing to do"
    ]
    assert held(engine) == once
    # and with an order not recorded yet, it is added
    more = invoke(migrated_url, "--shop", SHOP, "--customer", "501", "--order", "8", "--yes")
    assert more.exit_code == 0, more.output
    assert more.stdout.splitlines() == [
        f"nothing was held for customer 501 of {SHOP}",
        "1 order named by --order was not held",
        "customer 501 was recorded as redacted before; 1 more order recorded now",
    ]
    assert (shop_id, "order", 8) in held(engine)["redactions"]


def test_redact_of_a_customer_held_by_their_record_alone_erases_it(
    engine: Engine, migrated_url: str
) -> None:
    # given customer 600, known by their record only (customers/create, no order)
    shop_id, _ = seed(engine)
    created = {"id": 600, "created_at": T0.isoformat(), "updated_at": T0.isoformat()}
    enqueue(engine, "customers/create", created, "c600")
    Processor(engine).drain()
    assert (shop_id, 600, 0, 0) in held(engine)["customers"]
    # when redacted, confirmed
    result = invoke(migrated_url, "--shop", SHOP, "--customer", "600", answer="y\n")
    # then the prompt and the summary name their record: it is held, and erased
    assert result.exit_code == 0, result.output
    question = f"Erase customer 600 of {SHOP}: their record and 0 orders, and record them as"
    assert question in result.stdout
    assert f"erased customer 600 of {SHOP}: their record and 0 orders" in result.stdout
    assert (shop_id, 600, 0, 0) not in held(engine)["customers"]


def test_redact_again_erases_what_came_since_and_says_they_were_redacted_before(
    engine: Engine, migrated_url: str
) -> None:
    # given 501 redacted, then a data request for them (recorded, for the operator to answer)
    shop_id = seed_with_501_redacted(engine, migrated_url)
    request = {"shop_domain": SHOP, "customer": {"id": 501}, "data_request": {"id": 10}}
    enqueue(engine, "customers/data_request", request, "dr501-late")
    Processor(engine).drain()
    assert (shop_id, 501) in held(engine)["requests"]
    # when redacted again
    again = invoke(migrated_url, "--shop", SHOP, "--customer", "501", answer="y\n")
    # then it is not "nothing to do": the question says they were redacted before and what is
    # held now, which is erased
    assert again.exit_code == 0, again.output
    now = f"0 orders and 1 other row ({ROWS})"
    question = f"Erase customer 501 of {SHOP} (redacted before): {now}, and record them as"
    assert question in again.stdout
    assert again.stdout.splitlines()[-2:] == [
        f"erased customer 501 of {SHOP}: {now}",
        "customer 501 was recorded as redacted before",
    ]
    assert (shop_id, 501) not in held(engine)["requests"]


def test_redact_counts_orders_lines_and_refunds_past_one_query_of_ids(
    engine: Engine, migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the ids read two a query; 501 with orders 1, 2, 4 and 5 (a line each, a refund of
    # 2), guests' orders 12 and 13
    shop_id, _ = seed(engine)
    add_orders(engine, (4, 501), (5, 501), (12, None), (13, None))
    monkeypatch.setattr(ledger, "REFRESH_CHUNK", 2)
    # when 501 is redacted with guests' orders 12 and 13 and the unheld 77
    orders = ("--order", "12", "--order", "13", "--order", "77")
    result = invoke(migrated_url, "--shop", SHOP, "--customer", "501", *orders, "--yes")
    # then every chunk of ids was counted
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == [
        f"erased customer 501 of {SHOP}: their record, 6 orders (2 named by --order and held "
        f"for no customer), 6 lines, 1 refund and 5 other rows ({ROWS})",
        "1 order named by --order was not held",
    ]
    assert [o for o in held(engine)["orders"] if o[0] == shop_id] == [(shop_id, 3, 502)]


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--customer", "0"],
        ["--customer", "-501"],
        ["--customer", "abc"],
        ["--customer", str(2**63)],  # beyond the store's 64-bit ids
        ["--customer", "501", "--order", "0"],
        ["--customer", "501", "--order", "1", "--order", "x"],
        [],
    ],
)
def test_redact_refuses_ids_that_are_no_ids_as_a_usage_error(
    engine: Engine, migrated_url: str, args: list[str]
) -> None:
    seed(engine)
    before = held(engine)
    result = invoke(migrated_url, "--shop", SHOP, *args, "--yes")
    assert result.exit_code == 2
    assert "--customer" in result.stderr or "--order" in result.stderr
    assert held(engine) == before


def test_redact_of_an_unknown_shop_exits_1_and_of_a_bad_domain_exits_2(
    engine: Engine, migrated_url: str
) -> None:
    seed(engine)
    unknown = invoke(migrated_url, "--shop", "nope.myshopify.com", "--customer", "501", "--yes")
    assert unknown.exit_code == 1 and "no shop 'nope.myshopify.com'" in unknown.stderr
    bad = invoke(migrated_url, "--shop", "evil.com", "--customer", "501", "--yes")
    assert bad.exit_code == 2 and "--shop" in bad.stderr


def test_redact_on_a_database_that_cannot_be_opened_says_so_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'clvsync.db'}"
    result = invoke(url, "--shop", SHOP, "--customer", "501", "--yes")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot open the database")
    assert len(result.stderr.strip().splitlines()) == 1


# --- a processor at work meanwhile -------------------------------------------------------------


def hold_until_another_waits(engine: Engine) -> None:
    """Inside a transaction: on PostgreSQL, until another backend waits for a lock it holds;
    on SQLite (where it holds the only write lock) a moment."""
    if engine.dialect.name == "postgresql":
        assert wait_for_a_lock_wait(engine)
    else:
        time.sleep(0.3)


def processor_batch(engine: Engine, shop_id: int, claimed: threading.Event) -> Callable[[], None]:
    """A processor's batch as `Processor.process_batch` runs one: claim the due events, then
    apply each with its handler in a savepoint and mark it done, then commit. Between the claim
    and the apply it waits: on PostgreSQL until the redact waits for the claimed rows, on
    SQLite (where it holds the only write lock) a moment."""

    def run() -> None:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            events = inbox.claim_due(session, datetime.now(UTC), 10)
            claimed.set()
            hold_until_another_waits(engine)
            shop = session.get(Shop, shop_id)
            assert shop is not None
            for event in events:
                with session.begin_nested():
                    HANDLERS[event.topic](session, shop, json.loads(event.payload), event)
                inbox.mark_done(event, datetime.now(UTC))

    return run


def test_redact_while_a_processor_applies_an_order_of_theirs_erases_that_order_too(
    engine: Engine, migrated_url: str
) -> None:
    # given a new order of 501's claimed by a processor's batch, not applied yet
    shop_id, _ = seed(engine)
    enqueue(engine, "orders/create", order_payload(5, customer_id=501, day=20), "o5")
    claimed, errors = threading.Event(), []

    def batch() -> None:
        try:
            processor_batch(engine, shop_id, claimed)()
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=batch, daemon=True)
    thread.start()
    assert claimed.wait(10)
    # when 501 is redacted meanwhile: on PostgreSQL the redact holds 501's locks and waits for
    # the claimed event's row, the batch waits for 501's lock, and PostgreSQL aborts the redact
    # (it waited first); on SQLite the redact waits for the batch's write lock
    result = invoke(migrated_url, "--shop", SHOP, "--customer", "501", "--yes")
    thread.join(30)
    # then both went through, the redact after the batch, and erased the order it applied
    assert errors == [] and not thread.is_alive()
    assert result.exit_code == 0, result.output
    # (the orders erased are counted just before the redact takes its locks: on PostgreSQL,
    # order 5 may be committed meanwhile; those recorded as redacted are counted after)
    erased, recorded = result.stdout.splitlines()
    assert erased.startswith(f"erased customer 501 of {SHOP}: their record, ")
    assert recorded.startswith("recorded customer 501 and 3 orders as redacted")
    state = held(engine)
    assert [o for o in state["orders"] if o[0] == shop_id] == [(shop_id, 3, 502)]
    assert (shop_id, "order", 5) in state["redactions"]
    with Session(engine) as session:
        rows = session.exec(select(InboxEvent).where(col(InboxEvent.webhook_id) == "o5")).all()
    assert [(e.status, e.payload) for e in rows] in ([], [("done", "{}")])


def test_redact_while_an_order_it_names_changes_customer_sees_the_change_and_refuses(
    engine: Engine,
) -> None:
    # given a guest's order 12, moved to customer 502 by a transaction not yet committed when
    # the redact's transaction starts
    shop_id, _ = seed(engine)
    add_orders(engine, (12, None))
    moving, errors = threading.Event(), []

    def move() -> None:
        try:
            version = parse_order(
                minimise("orders/updated", order_payload(12, customer_id=502, updated=5))
            )
            with Session(engine) as session, session.begin():
                shop = session.get(Shop, shop_id)
                assert shop is not None
                assert ledger.apply_order(session, shop, version)
                moving.set()
                hold_until_another_waits(engine)
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=move, daemon=True)
    thread.start()
    assert moving.wait(10)
    # when 501 is redacted with order 12, not allowing other customers' orders
    with pytest.raises(OthersOrdersError) as refused:
        redact_now(engine, SHOP, 501, [12], allow_others=False)
    thread.join(30)
    # then the redact waited for the order and read who holds it now: refused, nothing erased
    assert errors == [] and not thread.is_alive()
    assert "order 12 is now held for customer 502, not 501" in refused.value.message
    state = held(engine)
    assert (shop_id, 12, 502) in state["orders"] and (shop_id, 1, 501) in state["orders"]


class Contended(Exception):
    sqlstate = "40P01"  # deadlock_detected: PostgreSQL aborted the transaction


class Broken(Exception):
    sqlstate = "23505"


@pytest.mark.parametrize(
    ("failures", "calls", "error"),
    [
        ([Contended("deadlock detected")] * 2, 3, None),  # aborted twice, done the third time
        ([Contended("deadlock detected")] * 3, 3, "database error: deadlock detected"),
        ([Broken("duplicate key")], 1, "database error: duplicate key"),  # any other, at once
    ],
)
def test_retried_does_again_only_an_aborted_transaction_and_at_most_three_times(
    failures: list[Exception], calls: int, error: str | None
) -> None:
    attempts: list[int] = []

    def work() -> str:
        attempts.append(1)
        if len(attempts) <= len(failures):
            raise DBAPIError("UPDATE ...", {}, failures[len(attempts) - 1])
        return "done"

    if error is None:
        assert retried(work) == "done"
    else:
        with pytest.raises(click.ClickException) as raised:
            retried(work)
        assert raised.value.message == error
    assert len(attempts) == calls
