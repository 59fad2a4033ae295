"""`clvsync push [--dry-run]`, `clvsync shop settings` and the export's pushed tags, run as an
operator would, against the live dev store."""

from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner, Result

from plugin.cli import main
from tests.test_compliance import cli_env
from tests.writeback.conftest import Scenario, ScenarioFactory
from tests.writeback.test_push import assert_in_sync


def run(scenario: Scenario, url: str, *args: str) -> Result:
    env = {**cli_env(url), "SHOPIFY_ADMIN_URL": scenario.devstore.base_url}
    return CliRunner().invoke(main, list(args), env=env)


def test_push_dry_run_prints_counts_by_tag_and_reasons_and_changes_nothing(
    scenario_factory: ScenarioFactory, migrated_url: str
) -> None:
    scenario = scenario_factory()
    before = scenario.store_tags()
    result = run(scenario, migrated_url, "push", "--shop", scenario.store.shop_domain, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run:" in result.stdout and "add     clv:" in result.stdout
    assert "sample:" in result.stdout and "    + clv:" in result.stdout
    assert scenario.store_tags() == before


def test_push_then_export_shows_desired_and_pushed_tags_side_by_side(
    scenario_factory: ScenarioFactory, migrated_url: str
) -> None:
    scenario = scenario_factory()
    domain = scenario.store.shop_domain
    # when pushed from the command line
    result = run(scenario, migrated_url, "push", "--shop", domain)
    # then it reports the run, and the store is in sync
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["outcome"] == "ok" and summary["tags_added"] > 0 and summary["run_id"]
    assert_in_sync(scenario)
    # and the export shows the same tags desired and pushed
    exported = run(scenario, migrated_url, "export", "--shop", domain)
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    tagged = [r for r in rows if r["desired_tags"]]
    assert tagged and all(
        set(r["desired_tags"].split()) == set(r["pushed_tags"].split()) for r in rows
    )


def test_shop_settings_are_checked_before_they_are_saved(
    scenario_factory: ScenarioFactory, migrated_url: str
) -> None:
    scenario = scenario_factory(customers=30)
    domain = scenario.store.shop_domain
    # a good change is saved and shown
    ok = run(scenario, migrated_url, "shop", "settings", domain, "--set", "dry_run=true")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["dry_run"] is True
    # bad ones are refused by name, and nothing is saved
    for bad, named in (
        ("bulk_threshold=0", "bulk_threshold"),
        ("colour=blue", "unknown shop setting colour"),
        ('schedule={"push_minutes": 0}', "push_minutes"),
        ('scoring={"win_back_dayz": 3}', "win_back_dayz"),
    ):
        refused = run(scenario, migrated_url, "shop", "settings", domain, "--set", bad)
        assert refused.exit_code == 1 and named in refused.output, (bad, refused.output)
    assert json.loads(scenario.refreshed_shop().settings) == {"dry_run": True}
    # and a setting can be taken back to its default
    back = run(scenario, migrated_url, "shop", "settings", domain, "--unset", "dry_run")
    assert back.exit_code == 0 and json.loads(scenario.refreshed_shop().settings) == {}


def test_metafield_namespace_can_change_before_the_first_push_only(
    scenario_factory: ScenarioFactory, migrated_url: str
) -> None:
    scenario = scenario_factory(customers=30)
    domain = scenario.store.shop_domain
    # before anything was pushed, the namespace can change (and back)
    for namespace in ("clvx", "clv"):
        chosen = run(
            scenario,
            migrated_url,
            "shop",
            "settings",
            domain,
            "--set",
            f"metafield_namespace={namespace}",
        )
        assert chosen.exit_code == 0, chosen.output
    # once a push has defined the app's metafields there, it cannot
    assert run(scenario, migrated_url, "push", "--shop", domain).exit_code == 0
    moved = run(
        scenario, migrated_url, "shop", "settings", domain, "--set", "metafield_namespace=clvx"
    )
    assert moved.exit_code == 1 and "metafield_namespace stays 'clv'" in moved.output
    assert json.loads(scenario.refreshed_shop().settings) == {"metafield_namespace": "clv"}
    # while the other settings still can
    paused = run(scenario, migrated_url, "shop", "settings", domain, "--set", "dry_run=true")
    assert paused.exit_code == 0, paused.output
