"""`clvsync push --dry-run` names a metafield it would delete a deletion, not a set: in its
printed report and in its JSON, after a real push to the live dev store, on SQLite and
PostgreSQL."""

from __future__ import annotations

import json

from click.testing import CliRunner, Result
from sqlmodel import Session

from plugin.cli import main
from plugin.store.models import Customer, CustomerScore
from tests.test_compliance import cli_env
from tests.writeback.conftest import Scenario, ScenarioFactory


def push(scenario: Scenario, url: str, *args: str) -> Result:
    env = {**cli_env(url), "SHOPIFY_ADMIN_URL": scenario.devstore.base_url}
    domain = scenario.store.shop_domain
    return CliRunner().invoke(main, ["push", "--shop", domain, *args], env=env)


def one_deleted_one_moved(scenario: Scenario) -> tuple[int, int]:
    """After a push: one customer deleted (all its metafields to go), and another's segment
    moved (one metafield to set)."""
    deleted, moved = sorted(c for c, values in scenario.store_metafields().items() if values)[:2]
    with Session(scenario.engine) as session, session.begin():
        customer = session.get(Customer, (scenario.shop.id, deleted))
        score = session.get(CustomerScore, (scenario.shop.id, moved))
        assert customer is not None and score is not None
        customer.deleted_at = scenario.as_of
        score.segment = "lost" if score.segment != "lost" else "loyal"
    return deleted, moved


def test_push_dry_run_deleted_metafields_reported_as_deleted_not_set(
    scenario_factory: ScenarioFactory, migrated_url: str
) -> None:
    # given a pushed shop, then one customer deleted and another's segment moved
    scenario = scenario_factory(customers=30)
    pushed = push(scenario, migrated_url)
    assert pushed.exit_code == 0, pushed.output
    deleted, _ = one_deleted_one_moved(scenario)
    to_delete = sorted(scenario.store_metafields()[deleted])
    assert "segment" in to_delete and len(to_delete) > 1
    # when the push is dry run, printed and as JSON
    printed = push(scenario, migrated_url, "--dry-run")
    as_json = push(scenario, migrated_url, "--dry-run", "--json")
    # then the deleted customer's metafields are deletions, the moved segment a set, and the
    # key with both counts both where sets and deletions are counted together
    assert printed.exit_code == 0 and as_json.exit_code == 0, printed.output + as_json.output
    lines = [" ".join(line.split()) for line in printed.stdout.splitlines()]
    for key in to_delete:
        assert f"delete metafield {key} 1 customer" in lines
    assert "set metafield segment 1 customer" in lines
    assert [line for line in lines if line.startswith("set metafield")] == [
        "set metafield segment 1 customer"
    ]
    # and the sample shows each customer's metafield changes beside their tags
    assert "x metafield segment" in lines
    assert any(line.startswith("= metafield segment: ") for line in lines)
    report = json.loads(as_json.stdout)
    assert report["metafields_set"] == {"segment": 1}
    assert report["metafields_deleted"] == {key: 1 for key in to_delete}
    assert report["metafields_changed"] == {key: 1 for key in to_delete} | {"segment": 2}
