"""`clvsync push [--dry-run]`, `clvsync shop settings` and the export's pushed tags, run as an
operator would, against the live dev store."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner, Result

from jobs.plan import Plan, Planned
from plugin.cli import main
from plugin.cli_push import _print_plan
from plugin.devstore.config import DevStoreConfig
from plugin.domain.writeback import CustomerChange
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


def test_a_failed_push_says_why_in_its_json_and_exits_1(
    scenario_factory: ScenarioFactory, migrated_url: str
) -> None:
    # given a store that refuses every call with an answer that is not retried
    scenario = scenario_factory(
        customers=30, config=DevStoreConfig(fault_error_share=1.0, fault_error_status=400)
    )
    before = scenario.store_tags()
    # when pushed from the command line
    result = run(scenario, migrated_url, "push", "--shop", scenario.store.shop_domain)
    # then it exits 1, and its JSON says the run failed and why
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert summary["outcome"] == "failed" and summary["run_id"]
    assert "QueryError" in summary["error"] and "answered 400" in summary["error"]
    # and the store is as it was
    assert scenario.store_tags() == before


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


def test_dry_run_report_says_what_is_left_alone_read_back_first_and_each_change_why(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given a plan of one customer's tag swap and a value to delete; two customers refused
    # before and unchanged; customers and products to read back first; an undo's superseded
    change = CustomerChange(
        501,
        add=("clv:loyal",),
        remove=("clv:new",),
        delete_metafields=("next_products",),
        reasons=(("clv:loyal", "4 orders"), ("clv:new", "no longer new")),
    )
    plan = Plan([Planned(change, frozenset({"clv:new"}), {}, frozenset({"clv:loyal"}))], 2)
    report = {
        **plan.summary(),
        "products_with_changes": 4,
        "customers_to_read_back": 3,
        "products_to_read_back": 1,
        "superseded": 5,
    }
    # when printed
    _print_plan(report)
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    # then it says each of them, and the sample says why each tag comes or goes
    assert lines[0].endswith("would change (2 refused before and unchanged, left alone)")
    assert "4 products' recommendation metafields would change" in lines
    assert any(line.startswith("3 customers' state will be read back") for line in lines)
    assert any(
        line.startswith("1 product's recommendation metafields will be read") for line in lines
    )
    assert "5 of the run's changes replaced since, left alone" in lines
    assert lines[-5:] == [
        "sample:",
        "customer 501",
        "+ clv:loyal: 4 orders",
        "- clv:new: no longer new",
        "x metafield next_products",
    ]
    # and a plan of nothing to do prints no sample heading, nor what it does not hold
    _print_plan({**Plan().summary(), "products_with_changes": 0})
    nothing = capsys.readouterr().out
    assert "sample" not in nothing and "read back" not in nothing and "superseded" not in nothing
