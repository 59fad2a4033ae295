"""The recommendations job on a generated store: computed from the ledger, stored, pushed to
the dev store as product and customer metafields, and shown for review."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import httpx
import pytest
from click.testing import CliRunner

from jobs.recommend import recommend_shop
from jobs.writeback import push_shop
from plugin.cli import main
from plugin.store.recommendations import record_gone
from tests.test_compliance import cli_env
from tests.writeback.conftest import ScenarioFactory

pytestmark = pytest.mark.anyio


async def test_recommend_job_then_push_puts_planted_complements_on_the_products(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, migrated_url: str
) -> None:
    # given a generated store with planted complementary pairs, scored
    scenario = scenario_factory(customers=400)
    ctx = scenario.context(http)
    # when the recommendations job runs, then the push
    found = await recommend_shop(ctx, scenario.refreshed_shop(), None)
    pushed = await push_shop(ctx, scenario.refreshed_shop(), None)
    # then products carry their partners, and a planted complement is among its anchor's
    assert found["products_with_partners"] > 0 and pushed["product_metafields_set"] > 0
    products = scenario.devstore.state.products
    partners = {
        p.id: json.loads(m.value)
        for p in products.values()
        for (ns, key), m in (p.metafields or {}).items()
        if (ns, key) == ("clv", "frequently_bought_together")
    }
    planted = scenario.store.truth.complements
    hits = [
        (anchor, partner)
        for anchor, partner in planted
        if f"gid://shopify/Product/{partner}" in partners.get(anchor, [])
    ]
    assert hits, (planted, partners)
    # and customers carry their next products
    values = scenario.store_metafields()
    assert (
        sum("recommended_products" in v for v in values.values())
        >= found["customers_with_next_products"] * 0.9
    )
    # and the bundle candidates can be reviewed
    export = ["export", "--shop", scenario.store.shop_domain, "--bundles"]
    result = CliRunner().invoke(main, export, env=cli_env(migrated_url))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == found["bundle_candidates"]
    assert all(len(r["product_ids"].split()) in (2, 3) and float(r["lift"]) > 1 for r in rows)
    # and once a product of one is found gone from the store, its bundles are left out
    gone = int(rows[0]["product_ids"].split()[0])
    assert scenario.shop.id is not None
    record_gone(scenario.engine, scenario.shop.id, {gone: "deleted"}, datetime.now(UTC))
    again = CliRunner().invoke(main, export, env=cli_env(migrated_url))
    assert again.exit_code == 0, again.output
    left = list(csv.DictReader(io.StringIO(again.stdout)))
    with_gone = [r for r in rows if str(gone) in r["product_ids"].split()]
    assert left == [r for r in rows if r not in with_gone]
    assert f"({len(with_gone)} left out: a product of theirs is gone" in again.stderr
