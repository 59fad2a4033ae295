"""Undoing a push run against the live dev store: the customers' tags and metafields go back to
where the run found them, what later runs changed again is left alone, and the merchant's own
tags are never touched."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import update
from sqlmodel import Session, col, select

from jobs.recompute import full_recompute
from jobs.runs import OK, RunResult, run_job
from jobs.undo import undo_run
from jobs.writeback import push_shop
from plugin.cli import main
from plugin.devstore.metafields import set_metafields
from plugin.domain.undo import RunChange, undo_change
from plugin.shopify.gid import gid
from plugin.store.models import CustomerScore, JobRun, Shop, SyncChange
from plugin.store.retention import prune_shop
from tests.test_compliance import cli_env
from tests.writeback.conftest import Scenario, ScenarioFactory

pytestmark = pytest.mark.anyio

State = tuple[dict[int, list[str]], dict[int, dict[str, str]]]


def store_state(scenario: Scenario) -> State:
    tags = {c: sorted(t) for c, t in scenario.store_tags().items()}
    return tags, scenario.store_metafields()


async def push(scenario: Scenario, http: httpx.AsyncClient) -> int:
    assert scenario.shop.id is not None
    result = await run_job(scenario.context(http), scenario.shop.id, "push", push_shop)
    assert result.outcome == OK and result.run_id is not None, result.error
    return result.run_id


async def undo(scenario: Scenario, http: httpx.AsyncClient, target: int) -> RunResult:
    async def job(ctx: Any, shop: Shop, run_id: int | None) -> dict[str, Any]:
        return await undo_run(ctx, shop, run_id, target=target)

    assert scenario.shop.id is not None
    return await run_job(scenario.context(http), scenario.shop.id, "undo", job)


OLD_SEGMENT = "old-segment"  # a value an earlier install wrote, which the push replaces


def left_by_an_earlier_install(scenario: Scenario) -> dict[int, str]:
    """A third of the scored customers hold one of the tags the push wants them to have, and a
    segment the app wrote before; the tag each holds, by customer."""
    with Session(scenario.engine) as session:
        scores = session.exec(select(CustomerScore).order_by(col(CustomerScore.customer_id)))
        held = {s.customer_id: "clv:" + s.tags.split()[0] for s in scores if s.tags}
    held = {customer: tag for n, (customer, tag) in enumerate(held.items()) if n % 3 == 0}
    state = scenario.devstore.state
    for customer, tag in held.items():
        state.customers[customer].tags.append(tag)
    items = [
        {
            "ownerId": gid("Customer", customer),
            "namespace": "clv",
            "key": "segment",
            "type": "single_line_text_field",
            "value": OLD_SEGMENT,
        }
        for customer in held
    ]
    written, errors = set_metafields(state, items, "app", shopify_namespaces_writable=False)
    assert written is not None and not errors
    return held


@pytest.mark.parametrize("earlier_install", [False, True], ids=["new", "after-an-earlier-install"])
async def test_undo_of_the_first_push_leaves_the_store_as_it_was(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, earlier_install: bool
) -> None:
    # given a shop's first push (tags and metafields), then its push paused; after an earlier
    # install, some customers held some of the app's tags and values before it
    scenario = scenario_factory()
    if earlier_install:
        left_by_an_earlier_install(scenario)
    before = store_state(scenario)
    run = await push(scenario, http)
    assert store_state(scenario) != before
    scenario.set_shop_settings(dry_run=True)
    # when that run is undone
    result = await undo(scenario, http, run)
    # then the store holds what it held before the push (the merchant's tags included), every
    # change is audited with the reason, and the next push would put it all back
    assert result.outcome == OK, result.error
    assert result.counts["customers_undone"] > 0 and result.counts["superseded"] == 0
    assert store_state(scenario) == before
    with Session(scenario.engine) as session:
        reasons = set(
            session.exec(select(SyncChange.reason).where(SyncChange.job_run_id == result.run_id))
        )
    assert reasons == {f"undo of job run {run}"}
    scenario.set_shop_settings(dry_run=False)
    await push(scenario, http)
    assert store_state(scenario) != before


def rescore_later(scenario: Scenario) -> None:
    """Scores as of five months later (flags change), and a third of the customers' figures
    moved (their metafields change)."""
    full_recompute(scenario.engine, scenario.refreshed_shop(), scenario.as_of + timedelta(days=150))
    with Session(scenario.engine) as session:
        for n, score in enumerate(
            session.exec(select(CustomerScore).order_by(CustomerScore.customer_id))
        ):
            if n % 3 == 0:
                score.historical_clv += 5.0
                score.segment = "lost"
                session.add(score)
        session.commit()


async def test_undo_of_a_later_push_restores_the_values_the_earlier_one_left(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a push, then a recompute months later and a second push that changed tags and values
    scenario = scenario_factory()
    await push(scenario, http)
    after_first = store_state(scenario)
    rescore_later(scenario)
    second = await push(scenario, http)
    assert store_state(scenario) != after_first
    scenario.set_shop_settings(dry_run=True)
    # when the second run is undone
    result = await undo(scenario, http, second)
    # then the store is as the first push left it: tags, and the values the second replaced
    assert result.outcome == OK, result.error
    assert result.counts["metafields_set"] > 0
    assert store_state(scenario) == after_first


async def test_undo_after_the_prune_restores_the_values_an_old_push_left(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a push 200 days ago, then a recompute and a second push a week ago that changed
    # tags and values
    scenario = scenario_factory()
    first = await push(scenario, http)
    after_first = store_state(scenario)
    rescore_later(scenario)
    second = await push(scenario, http)
    long_ago = scenario.as_of - timedelta(days=193)
    with Session(scenario.engine) as session, session.begin():
        first_changes = col(SyncChange.job_run_id) == first
        session.execute(update(SyncChange).where(first_changes).values(applied_at=long_ago))
        session.execute(update(JobRun).where(col(JobRun.id) == first).values(started_at=long_ago))
    # when the nightly prune runs, a week after the second push
    with Session(scenario.engine) as session, session.begin():
        assert scenario.shop.id is not None
        now = scenario.as_of + timedelta(days=7)
        pruned = prune_shop(session, scenario.shop.id, scenario.shop.domain, now)
    assert pruned.sync_changes_deleted > 0 and pruned.job_runs_deleted == 1
    # then undoing the second push still puts back the values the first one left
    scenario.set_shop_settings(dry_run=True)
    result = await undo(scenario, http, second)
    assert result.outcome == OK, result.error
    assert result.counts["metafields_set"] > 0
    assert store_state(scenario) == after_first


async def test_undo_of_an_older_push_leaves_what_a_later_one_changed_again(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given two pushes, the second changing part of what the first did
    scenario = scenario_factory()
    first = await push(scenario, http)
    rescore_later(scenario)
    await push(scenario, http)
    after_second = store_state(scenario)
    scenario.set_shop_settings(dry_run=True)
    # when the first run is undone
    result = await undo(scenario, http, first)
    # then the changes the second run replaced stay as it left them
    assert result.outcome == OK, result.error
    assert result.counts["superseded"] > 0
    tags, values = store_state(scenario)
    second_tags, second_values = after_second
    for customer_id, held in values.items():
        for key, value in second_values.get(customer_id, {}).items():
            if key in held:
                assert held[key] == value  # a value still there is the second run's
    assert any(set(tags[c]) != set(second_tags[c]) for c in tags)  # and the rest was undone


def run_cli(scenario: Scenario, url: str, *args: str) -> Any:
    env = {**cli_env(url), "SHOPIFY_ADMIN_URL": scenario.devstore.base_url}
    return CliRunner().invoke(main, ["push", "--shop", scenario.store.shop_domain, *args], env=env)


def test_undo_command_refuses_unless_paused_and_names_a_wrong_run(
    scenario_factory: ScenarioFactory, migrated_url: str
) -> None:
    scenario = scenario_factory(customers=30)
    result = run_cli(scenario, migrated_url)
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)["run_id"]
    before_undo = store_state(scenario)
    # a push not paused: refused, nothing changed, no run recorded
    result = run_cli(scenario, migrated_url, "--undo", str(run))
    assert result.exit_code == 1 and "pause its push first" in result.output
    assert "dry_run=true" in result.output and store_state(scenario) == before_undo
    with Session(scenario.engine) as session:
        assert [r.job for r in session.exec(select(JobRun))] == ["push"]
    # no such run, or a run that changed nothing in the store: named
    result = run_cli(scenario, migrated_url, "--undo", "999")
    assert result.exit_code == 1 and "has no job run 999" in result.output
    # a run id past what the database holds: a usage error, not a database crash
    result = run_cli(scenario, migrated_url, "--undo", str(2**63), "--dry-run")
    assert result.exit_code == 2 and "Invalid value for '--undo'" in result.output, result.output
    with Session(scenario.engine) as session:
        session.add(
            JobRun(shop_id=scenario.shop.id, job="refit", worker="w", started_at=scenario.as_of)
        )
        session.commit()
        refit = session.exec(select(JobRun.id).where(JobRun.job == "refit")).one()
    result = run_cli(scenario, migrated_url, "--undo", str(refit))
    assert result.exit_code == 1 and "is a refit run" in result.output
    # a dry run needs no pause: it says what would go back, and changes nothing
    result = run_cli(scenario, migrated_url, "--undo", str(run), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run:" in result.stdout and "remove  clv:" in result.stdout
    assert store_state(scenario) == before_undo
    # paused, it is undone and reported
    scenario.set_shop_settings(dry_run=True)
    result = run_cli(scenario, migrated_url, "--undo", str(run))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["outcome"] == "ok" and summary["undo_of_run"] == run
    assert summary["tags_removed"] > 0


def test_undo_change_takes_back_only_what_still_stands() -> None:
    run = [
        RunChange("tag", "clv:vip", "add"),
        RunChange("tag", "clv:new", "remove"),
        RunChange("tag", "clv:top-20", "add"),  # removed again since
        RunChange("metafield", "segment", "set", "champions"),
        RunChange("metafield", "p_alive", "set", "0.90"),  # set again since
        RunChange("metafield", "predicted_value", "delete"),
        RunChange("metafield", "historical_value", "set", "12.00"),  # its first value
    ]
    before = {"segment": "loyal", "p_alive": "0.50", "predicted_value": "99.00"}
    pushed_tags = frozenset({"clv:vip"})
    pushed_values = {"segment": "champions", "p_alive": "0.80", "historical_value": "12.00"}
    undo = undo_change(7, run, before, pushed_tags, pushed_values, "undo of job run 3")
    assert undo.change is not None and undo.superseded == 2
    assert (undo.change.add, undo.change.remove) == (("clv:new",), ("clv:vip",))
    assert undo.change.set_metafields == (("predicted_value", "99.00"), ("segment", "loyal"))
    assert undo.change.delete_metafields == ("historical_value",)
    assert {reason for _, reason in undo.change.reasons} == {"undo of job run 3"}
    nothing = undo_change(7, run[2:3], {}, frozenset(), {}, "undo")
    assert nothing.change is None and nothing.superseded == 1


def test_undo_change_compares_a_value_read_back_in_the_stores_form_by_what_it_means() -> None:
    # the run set "12.50"; a reconcile recorded the store's form of it, "12.5"
    run = [RunChange("metafield", "historical_value", "set", "12.50")]
    pushed_values = {"historical_value": "12.5"}
    undo = undo_change(7, run, {"historical_value": "9.00"}, frozenset(), pushed_values, "undo")
    assert undo.change is not None and undo.superseded == 0
    assert undo.change.set_metafields == (("historical_value", "9.00"),)
