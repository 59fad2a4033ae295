"""Settings an older release stored and this one refuses (the upgrade audit's case): the view
shows them and every problem with its fix, the jobs name that view, and the fixes, one at a time,
mend the shop. Each stores the old values straight into the shops table, as the old release did."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from jobs.scheduler import ScheduleError, shop_schedule
from jobs.shop_settings import (
    ShopSettingsError,
    WritebackError,
    recommendation_settings,
    scoring_settings,
    shop_writeback_settings,
)
from plugin.cli import main
from plugin.store.models import Shop
from tests.helpers import SHOP, add_shop
from tests.test_compliance import cli_env

OLD_SETTINGS = {
    "tag_prefix": "clv",
    "dry_run": True,
    "scoring": {"min_customers": 0, "tier_vip": 800},
    "recommendations": {"fbt_min_support": 3.0, "fbt_per_product": 20},
}
FIXES = [
    "--set tag_prefix=clv:",
    "--unset scoring.min_customers",
    "--set recommendations.fbt_min_support=3",
    "--unset recommendations.fbt_per_product",
]


def invoke(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=cli_env(url))


def store_settings(engine: Engine, settings: dict[str, Any]) -> None:
    with Session(engine) as session, session.begin():
        session.execute(text("UPDATE shops SET settings = :s"), {"s": json.dumps(settings)})


def stored(engine: Engine) -> dict[str, Any]:
    with Session(engine) as session:
        return dict(json.loads(session.exec(select(Shop)).one().settings))


@pytest.fixture
def old_shop(engine: Engine) -> Engine:
    add_shop(engine)
    store_settings(engine, OLD_SETTINGS)
    return engine


def test_view_of_settings_an_older_release_stored_shows_them_and_every_problem(
    old_shop: Engine, migrated_url: str
) -> None:
    # when the stored settings are viewed
    result = invoke(migrated_url, "shop", "settings", SHOP)
    # then they are shown as stored, and every problem of every group is listed with its fix
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout) == OLD_SETTINGS
    assert "4 problem(s)" in result.stderr
    for named in (
        "tag_prefix must end with a separator",
        "min_customers must be >= 1",
        "fbt_min_support must be a whole number, not 3.0",
        "fbt_per_product must be <= 10",
    ):
        assert named in result.stderr, named
    for fix in FIXES:
        assert f"fix: clvsync shop settings {SHOP} {fix}" in result.stderr, fix
    # and nothing is changed by looking
    assert stored(old_shop) == OLD_SETTINGS


def test_view_of_valid_settings_is_unchanged(engine: Engine, migrated_url: str) -> None:
    add_shop(engine)
    store_settings(engine, {"dry_run": True, "scoring": {"min_customers": 1}})
    result = invoke(migrated_url, "shop", "settings", SHOP)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"dry_run": True, "scoring": {"min_customers": 1}}
    assert result.stderr == ""


def test_jobs_refusing_stored_settings_name_the_command_that_lists_every_problem(
    old_shop: Engine, migrated_url: str
) -> None:
    with Session(old_shop) as session:
        shop = session.exec(select(Shop)).one()
    hint = f"clvsync shop settings {SHOP}"
    with pytest.raises(WritebackError, match="tag_prefix must end with a separator") as pushed:
        shop_writeback_settings(shop)
    with pytest.raises(ShopSettingsError, match="min_customers must be >= 1") as scored:
        scoring_settings(shop)
    with pytest.raises(ShopSettingsError, match="fbt_min_support") as recommended:
        recommendation_settings(shop)
    for error in (pushed, scored, recommended):
        assert str(error.value).endswith(f"(see every problem and its fix: {hint})")
    # and the recompute command says the same, on one line
    result = invoke(migrated_url, "recompute", "--shop", SHOP)
    assert result.exit_code == 1 and hint in result.stderr.strip().splitlines()[-1]


def test_one_fix_per_problem_mends_the_shop(old_shop: Engine, migrated_url: str) -> None:
    # when each listed fix is run in turn
    for done, fix in enumerate(FIXES, start=1):
        result = invoke(migrated_url, "shop", "settings", SHOP, *fix.split())
        # then each is stored, and the problems still left are listed, all of them
        left = len(FIXES) - done
        assert result.exit_code == (1 if left else 0), (fix, result.output)
        assert json.loads(result.stdout) == stored(old_shop)
        assert (f"{left} problem(s)" in result.stderr) if left else result.stderr == ""
    # then the shop holds valid settings, its other values kept, and the jobs take them
    assert stored(old_shop) == {
        "tag_prefix": "clv:",
        "dry_run": True,
        "scoring": {"tier_vip": 800},
        "recommendations": {"fbt_min_support": 3},
    }
    assert invoke(migrated_url, "shop", "settings", SHOP).exit_code == 0


def test_a_change_giving_a_bad_value_is_refused_naming_every_new_problem(
    old_shop: Engine, migrated_url: str
) -> None:
    # when a change gives values the jobs refuse, beside the old ones still stored
    result = invoke(
        migrated_url, "shop", "settings", SHOP, "--set", "bulk_threshold=0",
        "--set", "scoring.min_customers=-1",
    )  # fmt: skip
    # then it is refused naming both at once, and nothing is stored
    assert result.exit_code == 1, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert "bulk_threshold must be at least 1" in last and "min_customers must be >= 1" in last
    assert stored(old_shop) == OLD_SETTINGS


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ({"push_minutes": 0}, "schedule.push_minutes: schedule: push_minutes must be a whole"),
        ([15, 5], 'schedule: "schedule" must be an object of job times'),
    ],
)
def test_schedule_refusing_stored_settings_names_the_command_that_lists_every_problem(
    engine: Engine, migrated_url: str, schedule: Any, problem: str
) -> None:
    # given a schedule an older release stored, which the scheduler refuses
    add_shop(engine)
    store_settings(engine, {"schedule": schedule})
    with Session(engine) as session:
        shop = session.exec(select(Shop)).one()
    # when the scheduler reads it, then its error names the view, as the other jobs' errors do
    with pytest.raises(ScheduleError) as raised:
        shop_schedule(shop)
    hint = f"clvsync shop settings {SHOP}"
    assert str(raised.value).endswith(f"(see every problem and its fix: {hint})")
    # and the view lists the problem once, without the hint to run itself
    result = invoke(migrated_url, "shop", "settings", SHOP)
    assert result.exit_code == 1, result.output
    assert "1 problem(s)" in result.stderr
    listed = [line for line in result.stderr.splitlines() if problem in line]
    assert len(listed) == 1 and "see every problem" not in listed[0], result.stderr
