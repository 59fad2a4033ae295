"""`clvsync export`: the per-customer file other tools parse (README, "Command line")."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from jobs.recommend import compute_recommendations
from jobs.recompute import full_recompute
from plugin.cli import EXPORT_COLUMNS, _bundle_rows, _figure, _money, main
from plugin.domain.ledger_values import MAX_ID
from plugin.store import ledger, shops
from plugin.store.models import (
    BundleCandidate,
    Customer,
    CustomerRecommendation,
    CustomerScore,
    CustomerSync,
    ModelRun,
    Order,
    OrderLine,
    Refund,
    Shop,
    SyncChange,
)
from plugin.store.sync import Outcome, record_outcomes
from tests.helpers import SHOP, T0, add_shop, enqueue, order_payload, refund_payload
from tests.test_compliance import cli_env
from tests.test_recompute import load_store
from webhooks.payloads import parse_order, parse_refund
from webhooks.processor import Processor

MONEY = ("net_spend", "aov", "trailing_12m_spend", "historical_clv")
MONEY = (*MONEY, "expected_spend_per_order", "predicted_clv")
TIMES = ("first_order_at", "last_order_at", "expected_next_order_at", "reorder_due_at")
CENTS = re.compile(r"-?\d+\.\d\d")
SECONDS_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")


def export(url: str, domain: str, fmt: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(
        main, ["export", "--shop", domain, "--format", fmt], env=cli_env(url)
    )
    assert result.exit_code == 0, result.output
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(result.stdout)))
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_export_jsonl_writes_null_for_figures_not_computed_yet(
    engine: Engine, migrated_url: str
) -> None:
    # given a customer with an order, never scored nor pushed
    add_shop(engine)
    enqueue(engine, "orders/create", order_payload(1, customer_id=501, total="10.10"), "a")
    Processor(engine).drain()
    # when exported as JSON lines
    (row,) = export(migrated_url, SHOP, "jsonl")
    # then what is not known is null, not an empty string
    assert list(row) == list(EXPORT_COLUMNS)
    missing = [name for name, value in row.items() if value is None]
    assert "" not in row.values()
    assert {"aov", "segment", "desired_tags", "pushed_tags", "confidence"} <= set(missing)
    assert "recommended_products" in missing and row["net_spend"] == "10.10"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_money_is_text_with_cents_and_times_are_seconds_with_offset(
    engine: Engine, migrated_url: str, fmt: str
) -> None:
    # given a scored shop
    store, shop, as_of = load_store(engine, 60, 6)
    full_recompute(engine, shop, as_of)
    # when exported
    rows = export(migrated_url, store.shop_domain, fmt)
    # then every money figure is a string with two decimals, as net spend always was
    assert rows
    for row in rows:
        for name in MONEY:
            assert isinstance(row[name], str) and CENTS.fullmatch(row[name]), (name, row[name])
        # and every time is to the second, with its offset
        for name in TIMES:
            if row[name] not in (None, ""):
                assert SECONDS_UTC.fullmatch(row[name]), (name, row[name])
    assert any(row["expected_next_order_at"] for row in rows)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_carries_the_confidence_and_recommended_products(
    engine: Engine, migrated_url: str, fmt: str
) -> None:
    # given a scored shop with recommendations, but none for one customer among them
    store, shop, as_of = load_store(engine, 60, 6)
    full_recompute(engine, shop, as_of)
    compute_recommendations(engine, shop, as_of)
    with Session(engine) as session, session.begin():
        rows = session.exec(select(CustomerRecommendation)).all()
        session.delete(sorted(rows, key=lambda r: r.customer_id)[len(rows) // 2])
    with Session(engine) as session:
        (confidence,) = session.exec(select(ModelRun.confidence)).all()
        held = {
            r.customer_id: json.loads(r.product_ids)
            for r in session.exec(select(CustomerRecommendation))
        }
    assert held
    # when exported
    rows = export(migrated_url, store.shop_domain, fmt)
    # then each scored customer carries the run's confidence, and their products, best first,
    # as space-separated ids
    by_id = {int(row["customer_id"]): row for row in rows}
    assert {row["confidence"] for row in rows if row["segment"]} == {confidence}
    for customer_id, row in by_id.items():
        ids = [int(p) for p in (row["recommended_products"] or "").split()]
        assert ids == held.get(customer_id, [])


def test_export_money_of_a_figure_that_is_no_amount_is_null() -> None:
    # a model that diverged gives figures Decimal cannot round to cents (it raised, mid-file)
    assert [_money(v) for v in (1e26, 1.79e308, float("nan"), -1e16)] == [None] * 4
    assert _money(12.5) == "12.50" and _money(-0.001) == "0.00"


def test_export_figures_are_rounded_as_the_numbers_a_merchant_reads() -> None:
    # money to cents from the decimal the float stands for (2.675 is 2.67499... in binary),
    # halves to the even cent; a figure of 10^15 or more is no amount
    assert [_money(v) for v in (2.675, 0.125, 0.135, -2.675)] == ["2.68", "0.12", "0.14", "-2.68"]
    assert _money(999_999_999_999_999.0) == "999999999999999.00"
    assert _money(1e15) is None and _money(-1e15) is None
    # other figures to 4 decimals, null when they are no number; money figures as money
    assert _figure("p_alive", 0.123456) == 0.1235
    assert [_figure("p_alive", v) for v in (math.nan, math.inf, -math.inf)] == [None] * 3
    assert _figure("aov", 2.675) == "2.68" and _figure("orders", 3) == 3
    # a bundle's lift to 2 decimals
    candidate = BundleCandidate(
        shop_id=1, rank=1, product_ids="3 5", orders=4, lift=2.3456, combined_price=Decimal("9.50")
    )
    assert list(_bundle_rows([candidate])) == [
        {"rank": 1, "product_ids": "3 5", "orders": 4, "lift": 2.35, "combined_price": "9.50"}
    ]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--customer", "501", "--bundles"], "--customer and --bundles"),
        (["--customer", "501", "--format", "csv"], "--customer writes one JSON report"),
        (["--customer", "501", "--format", "jsonl"], "--customer writes one JSON report"),
    ],
)
def test_export_conflicting_options_are_a_usage_error_naming_them(
    engine: Engine, migrated_url: str, options: list[str], named: str
) -> None:
    # given a shop with a customer
    add_shop(engine)
    enqueue(engine, "orders/create", order_payload(1, customer_id=501, total="10.10"), "a")
    Processor(engine).drain()
    # when exported with options that ask for two different things
    result = CliRunner().invoke(
        main, ["export", "--shop", SHOP, *options], env=cli_env(migrated_url)
    )
    # then nothing is written, and the usage error names the options
    assert result.exit_code == 2, result.output
    assert named in result.stderr
    assert result.stdout == ""


ROOT = Path(__file__).resolve().parent.parent


def into_closed_pipe(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`clvsync ARGS` run with its output into a pipe nobody reads any more (`| head -1`)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "plugin.cli", *args],
            cwd=ROOT,
            env={**os.environ, **cli_env(url)},
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_to_a_reader_that_stopped_ends_quietly(
    engine: Engine, migrated_url: str, fmt: str
) -> None:
    # given a shop with more customers, each with recommendations, than one write buffer holds
    add_shop(engine)
    with Session(engine) as session, session.begin():
        shop = shops.get_shop(session, SHOP)
        assert shop is not None
        for n in range(400):
            ledger.apply_order(session, shop, parse_order(order_payload(n + 1, customer_id=n + 1)))
            ids = json.dumps([9001, 9002, 9003])
            session.add(CustomerRecommendation(shop_id=shop.id, customer_id=n + 1, product_ids=ids))
    # when exported into a pipe nobody reads any more (`clvsync export ... | head -1`)
    done = into_closed_pipe(migrated_url, "export", "--shop", SHOP, "--format", fmt)
    # then it stops as a Unix tool stopped by SIGPIPE does: quietly, with status 128 + 13
    assert done.returncode == 141, done.stderr
    assert done.stderr == ""


@pytest.mark.parametrize("given", ["99999999999999999999", str(MAX_ID + 1), "0"])
def test_export_customer_id_out_of_range_is_a_usage_error(
    engine: Engine, migrated_url: str, given: str
) -> None:
    # given a shop with a customer
    add_shop(engine)
    enqueue(engine, "orders/create", order_payload(1, customer_id=501, total="10.10"), "a")
    Processor(engine).drain()
    # when one customer's report is asked for with an id no Shopify id can be (the database
    # refused one past 2**63 - 1 with a traceback)
    result = CliRunner().invoke(
        main, ["export", "--shop", SHOP, "--customer", given], env=cli_env(migrated_url)
    )
    # then it is a usage error naming the option and its range, and nothing is written
    assert result.exit_code == 2, result.output
    assert "--customer" in result.stderr and str(MAX_ID) in result.stderr
    assert result.stdout == ""


def test_export_customer_id_at_the_largest_shopify_id_is_looked_up(
    engine: Engine, migrated_url: str
) -> None:
    # given a shop that holds nothing for the largest id a Shopify id can be
    add_shop(engine)
    # when that customer's report is asked for
    result = CliRunner().invoke(
        main, ["export", "--shop", SHOP, "--customer", str(MAX_ID)], env=cli_env(migrated_url)
    )
    # then the ledger is asked, and says it holds nothing for them
    assert result.exit_code == 1, result.output
    assert f"nothing is held for customer {MAX_ID}" in result.stderr


REPORT_MONEY = {
    "customer": ("net_spend",),
    "scores": MONEY[1:],
    "orders": ("total", "current_total", "net_amount"),
    "order_lines": ("price", "total_discount"),
    "refunds": ("lines_amount",),
}
HELD = {  # each section's table, and the columns it leaves out
    "customer": (Customer, {"shop_id"}),
    "scores": (CustomerScore, {"shop_id"}),
    "pushed": (CustomerSync, {"shop_id"}),
    "recommended": (CustomerRecommendation, {"shop_id"}),
    "changes_pushed": (SyncChange, {"shop_id", "id"}),
    "orders": (Order, {"shop_id", "version_digest"}),
    "order_lines": (OrderLine, {"shop_id"}),
    "refunds": (Refund, {"shop_id"}),
}
GIDS = ["gid://shopify/Product/7100000000024", "gid://shopify/Product/7100000000016"]


class Held(NamedTuple):
    domain: str
    customer_id: int
    recommended: list[int]
    refunded_line_id: int


def scored_customer_with_everything(engine: Engine) -> Held:
    """A scored shop with recommendations, and one customer with several desired tags, a
    refund of one line, and a pushed state with a list metafield."""
    store, shop, as_of = load_store(engine, 60, 6)
    full_recompute(engine, shop, as_of)
    compute_recommendations(engine, shop, as_of)
    with Session(engine) as session:
        scores = session.exec(select(CustomerScore).order_by(col(CustomerScore.customer_id)))
        several = {s.customer_id for s in scores if len(s.tags.split()) > 2}
        picked = next(
            r for r in session.exec(select(CustomerRecommendation)) if r.customer_id in several
        )
        line = session.exec(
            select(OrderLine)
            .join(Order, col(Order.order_id) == col(OrderLine.order_id))
            .where(Order.customer_id == picked.customer_id)
        ).first()
        assert line is not None
    refund = refund_payload(77, line.order_id, "5.00")
    refund["refund_line_items"] = [{"line_item_id": line.line_id, "quantity": 1}]
    with Session(engine) as session, session.begin():
        ledger.apply_refund(session, shop, parse_refund(refund))
    values = {"segment": "loyal", "historical_value": "152.84"}
    values["recommended_products"] = json.dumps(GIDS)
    tags = frozenset({"clv:win-back", "clv:churn-risk", "clv:loyal"})
    changes = [("tag", "clv:win-back", "add", None, "no order for 200 days")]
    changes += [("metafield", "recommended_products", "set", json.dumps(GIDS), "recommended")]
    outcome = Outcome(picked.customer_id, tags=tags, metafields=values, changes=changes)
    assert shop.id is not None
    record_outcomes(engine, shop.id, [outcome], via="call", job_run_id=None, now=T0)
    recommended = json.loads(picked.product_ids)
    return Held(store.shop_domain, picked.customer_id, recommended, line.line_id)


def customer_report(url: str, domain: str, customer_id: int) -> dict[str, Any]:
    result = CliRunner().invoke(
        main, ["export", "--shop", domain, "--customer", str(customer_id)], env=cli_env(url)
    )
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def rows_of(report: dict[str, Any], section: str) -> list[dict[str, Any]]:
    held = report[section]
    return held if isinstance(held, list) else [held]


def texts_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from texts_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from texts_in(item)


def test_export_customer_report_writes_money_as_text_and_times_in_utc(
    engine: Engine, migrated_url: str
) -> None:
    # given a scored customer with orders, a refund, recommendations and a pushed state
    held = scored_customer_with_everything(engine)
    # when their report is exported
    report = customer_report(migrated_url, held.domain, held.customer_id)
    # then every amount is text with cents, as in the rows export (the models' figures were
    # JSON floats with binary noise, 50.946666666666665, next to net_spend as "152.84")
    for section, names in REPORT_MONEY.items():
        assert report[section], section
        for row in rows_of(report, section):
            for name in names:
                assert isinstance(row[name], str), (section, name, row[name])
                assert CENTS.fullmatch(row[name]), (section, name, row[name])
    assert report["currency"] == "USD"  # the shop's, which the amounts are in
    # and the other figures are numbers rounded as the rows export rounds them
    scores = report["scores"]
    for name in ("p_alive", "expected_purchases", "mean_days_between_orders"):
        assert scores[name] is None or scores[name] == round(scores[name], 4)
    # and every time is in UTC to the second
    for section in HELD:
        for row in rows_of(report, section):
            for name, value in row.items():
                if name.endswith("_at") and value is not None:
                    assert SECONDS_UTC.fullmatch(value), (section, name, value)


def test_export_customer_report_writes_lists_and_documents_as_json_not_text(
    engine: Engine, migrated_url: str
) -> None:
    # given a scored customer with orders, a refund, recommendations and a pushed state
    held = scored_customer_with_everything(engine)
    # when their report is exported
    report = customer_report(migrated_url, held.domain, held.customer_id)
    # then lists are JSON lists and documents JSON objects (they were JSON inside strings,
    # the pushed metafields two levels deep), tags sorted as the rows export sorts them
    pushed, scores = report["pushed"], report["scores"]
    assert pushed["tags"] == ["clv:churn-risk", "clv:loyal", "clv:win-back"]
    assert pushed["metafields"] == {
        "historical_value": "152.84",
        "recommended_products": GIDS,
        "segment": "loyal",
    }
    assert report["changes_pushed"][1]["value"] == GIDS
    assert report["recommended"]["product_ids"] == held.recommended
    assert isinstance(scores["tags"], list) and scores["tags"] == sorted(scores["tags"])
    assert isinstance(scores["reasons"], dict) and set(scores["reasons"]) == set(scores["tags"])
    (refund,) = report["refunds"]
    assert refund["lines"] == [[held.refunded_line_id, 1]]
    # and no text anywhere in it is JSON
    for text in texts_in(report):
        assert not text.startswith(("[", "{")), text


def test_export_customer_report_keeps_every_field_held(engine: Engine, migrated_url: str) -> None:
    # given a scored customer with orders, a refund, recommendations and a pushed state
    held = scored_customer_with_everything(engine)
    # when their report is exported
    report = customer_report(migrated_url, held.domain, held.customer_id)
    # then each section has every column of its table, in the table's order, and nothing else
    for section, (table, left_out) in HELD.items():
        columns = [name for name in table.model_fields if name not in left_out]
        for row in rows_of(report, section):
            assert list(row) == columns, section


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_lists_desired_and_pushed_tags_in_one_order(
    engine: Engine, migrated_url: str, fmt: str
) -> None:
    # given a scored shop, tagging under its own prefix, whose customers' desired tags were
    # all pushed
    store, shop, as_of = load_store(engine, 60, 6)
    full_recompute(engine, shop, as_of)
    with Session(engine) as session, session.begin():
        stored = session.get(Shop, shop.id)
        assert stored is not None
        stored.settings = json.dumps({"tag_prefix": "ltv-"})
        desired = {s.customer_id: s.tags.split() for s in session.exec(select(CustomerScore))}
    assert any(tags != sorted(tags) for tags in desired.values())  # the rules' order
    pushed = [Outcome(c, tags=frozenset(f"ltv-{t}" for t in tags)) for c, tags in desired.items()]
    assert shop.id is not None
    record_outcomes(engine, shop.id, pushed, via="call", job_run_id=None, now=T0)
    # when exported
    rows = export(migrated_url, store.shop_domain, fmt)
    # then each customer's desired and pushed tags read the same, both sorted (the desired
    # ones came in the rules' order, the pushed ones sorted)
    assert len(rows) == len(desired)
    for row in rows:
        assert row["desired_tags"] == row["pushed_tags"], row["customer_id"]
        assert row["desired_tags"].split() == sorted(row["desired_tags"].split())
