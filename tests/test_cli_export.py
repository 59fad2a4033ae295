"""`clvsync export`: the per-customer file other tools parse (README, "Command line")."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlmodel import Session, select

from jobs.recommend import compute_recommendations
from jobs.recompute import full_recompute
from plugin.cli import EXPORT_COLUMNS, _money, main
from plugin.store import ledger, shops
from plugin.store.models import CustomerRecommendation, ModelRun
from tests.helpers import SHOP, add_shop, enqueue, order_payload
from tests.test_compliance import cli_env
from tests.test_recompute import load_store
from webhooks.payloads import MAX_ID, parse_order
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
    # given a scored shop with recommendations
    store, shop, as_of = load_store(engine, 60, 6)
    full_recompute(engine, shop, as_of)
    compute_recommendations(engine, shop, as_of)
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
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "plugin.cli", "export", "--shop", SHOP, "--format", fmt],
            cwd=ROOT,
            env={**os.environ, **cli_env(migrated_url)},
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
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
