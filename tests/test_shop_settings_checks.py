"""How `clvsync shop settings` checks values: each beside the other values stored in its group
(tier_insider <= tier_vip and reorder_grace < reorder_lapse compare two), the group's values
together even while one of them is wrong in itself, names an older release stored whole at the
top ("scoring.min_customers", "dry run"), and names the jobs ignore. Every fix the view prints
is pasted as a shell would split it. Each stores the old values straight into the shops table."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from jobs.shop_settings import ShopSettingsError, scoring_settings
from plugin.cli import main
from plugin.store.models import Shop
from tests.helpers import SHOP, T0, add_shop
from tests.test_compliance import cli_env
from tests.test_shop_settings_upgrade import store_settings, stored

FIX = f"    fix: clvsync shop settings {SHOP} "
TIERS = "need 0 <= tier_insider <= tier_vip"


def settings_of(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["shop", "settings", SHOP, *args], env=cli_env(url))


def fixes(view: Result) -> list[list[str]]:
    """The arguments of each fix the view printed, split as a shell splits them."""
    lines = [line for line in view.stderr.splitlines() if line.startswith(FIX)]
    return [shlex.split(line.removeprefix(FIX), comments=True) for line in lines]


def saved(result: Result) -> bool:
    """The change was stored (shown as JSON), whatever problems it left."""
    return result.stdout.startswith("{")


def jobs_take(scoring: dict[str, Any]) -> bool:
    shop = Shop(domain=SHOP, installed_at=T0, settings=json.dumps({"scoring": scoring}))
    try:
        scoring_settings(shop)
    except ShopSettingsError:
        return False
    return True


@pytest.fixture
def shop(engine: Engine) -> Engine:
    add_shop(engine)
    return engine


# --- values checked beside the others of their group -----------------------------------------


def test_set_of_two_values_checked_together_is_saved(shop: Engine, migrated_url: str) -> None:
    # when a grace and a lapse are set together, the grace above the default lapse (3)
    result = settings_of(migrated_url, "--set", 'scoring={"reorder_grace": 5, "reorder_lapse": 10}')
    # then they are saved, as the jobs take them
    assert result.exit_code == 0, result.output
    assert stored(shop) == {"scoring": {"reorder_grace": 5, "reorder_lapse": 10}}


def test_set_of_a_value_taken_beside_a_stored_one_is_saved(shop: Engine, migrated_url: str) -> None:
    # given a VIP threshold above the default insider one
    assert settings_of(migrated_url, "--set", "scoring.tier_vip=2000").exit_code == 0
    # when an insider threshold above the default VIP one (750) but below 2000 is set
    result = settings_of(migrated_url, "--set", "scoring.tier_insider=1000")
    # then it is saved, and the view finds no problem
    assert result.exit_code == 0, result.output
    assert stored(shop) == {"scoring": {"tier_insider": 1000, "tier_vip": 2000}}
    assert jobs_take(stored(shop)["scoring"])
    view = settings_of(migrated_url)
    assert view.exit_code == 0 and view.stderr == "", view.output


def test_set_of_a_value_refused_beside_the_stored_ones_is_refused(
    shop: Engine, migrated_url: str
) -> None:
    store_settings(shop, {"scoring": {"tier_vip": 2000}})
    result = settings_of(migrated_url, "--set", "scoring.tier_insider=3000")
    assert result.exit_code == 1 and TIERS in result.stderr, result.output
    assert stored(shop) == {"scoring": {"tier_vip": 2000}}


def test_set_of_more_next_products_than_a_metafield_list_holds_is_refused(
    shop: Engine, migrated_url: str
) -> None:
    # a customer's next products are pushed as a list.product_reference, which holds 10
    store_settings(shop, {"recommendations": {"next_products": 8}})
    result = settings_of(migrated_url, "--set", "recommendations.next_products=11")
    assert result.exit_code == 1, result.output
    assert "next_products must be <= 10" in result.stderr, result.output
    assert stored(shop) == {"recommendations": {"next_products": 8}}
    assert saved(settings_of(migrated_url, "--set", "recommendations.next_products=10"))


def test_view_of_a_stored_pair_the_jobs_take_keeps_both(shop: Engine, migrated_url: str) -> None:
    # given thresholds an older release stored, which the jobs take, beside a wrong value
    store_settings(shop, {"scoring": {"tier_insider": 1000, "tier_vip": 2000, "top_share": 2}})
    # when viewed, then only the wrong value is a problem: no fix unsets a threshold
    view = settings_of(migrated_url)
    assert "1 problem(s)" in view.stderr, view.stderr
    assert fixes(view) == [["--unset", "scoring.top_share"]]


# --- the group's values together, while one of them is wrong ---------------------------------


def test_set_of_values_refused_together_beside_a_wrong_one_is_refused(
    shop: Engine, migrated_url: str
) -> None:
    # given a wrong value an older release stored
    store_settings(shop, {"scoring": {"win_back_days": "x"}})
    # when two values the jobs refuse together are set
    result = settings_of(
        migrated_url, "--set", "scoring.tier_insider=500", "--set", "scoring.tier_vip=400"
    )
    # then the change is refused naming them, and nothing is saved
    assert result.exit_code == 1 and not saved(result), result.output
    assert TIERS in result.stderr
    assert stored(shop) == {"scoring": {"win_back_days": "x"}}


def test_view_lists_values_refused_together_beside_a_wrong_one_with_fixes_that_work(
    shop: Engine, migrated_url: str
) -> None:
    # given values refused together and two wrong in themselves, stored by an older release
    old = {"win_back_days": "x", "tier_insider": 500, "tier_vip": 400, "min_customers": 3.0}
    store_settings(shop, {"scoring": old})
    # when viewed, then all three problems are listed, the values refused together first
    view = settings_of(migrated_url)
    assert view.exit_code == 1 and "3 problem(s)" in view.stderr, view.stderr
    assert f"  scoring: invalid scoring settings: {TIERS}" in view.stderr
    assert fixes(view) == [
        ["--unset", "scoring.tier_insider"],
        ["--set", "scoring.min_customers=3"],
        ["--unset", "scoring.win_back_days"],
    ]
    # and each fix, run in turn, is saved, until none is left and the jobs take the settings
    for fix in fixes(view):
        assert saved(settings_of(migrated_url, *fix)), fix
    assert settings_of(migrated_url).exit_code == 0
    assert stored(shop) == {"scoring": {"min_customers": 3, "tier_vip": 400}}
    assert jobs_take(stored(shop)["scoring"])


def test_set_in_a_group_refused_together_is_refused_naming_the_fix_to_run_first(
    shop: Engine, migrated_url: str
) -> None:
    store_settings(shop, {"scoring": {"tier_insider": 500, "tier_vip": 400}})
    # when another value of the group is set, beside values the jobs refuse together
    result = settings_of(migrated_url, "--set", "scoring.min_customers=10")
    # then it is refused, naming the fix of the group, and nothing is saved
    assert result.exit_code == 1 and not saved(result), result.output
    assert f"run first: clvsync shop settings {SHOP} --unset scoring.tier_insider" in result.stderr
    assert stored(shop) == {"scoring": {"tier_insider": 500, "tier_vip": 400}}
    # while a change to another setting is saved beside them
    other = settings_of(migrated_url, "--set", "dry_run=true")
    assert saved(other) and "1 problem(s)" in other.stderr, other.output


# --- names stored whole at the top by an older release ----------------------------------------


OLD_NAMES = {"scoring.min_customers": 1, "dry run": True, "scoring": {"min_customers": 5}}


def test_fixes_of_names_with_a_dot_or_a_space_remove_those_names(
    shop: Engine, migrated_url: str
) -> None:
    store_settings(shop, OLD_NAMES)
    # when viewed, then each name's fix is quoted for the shell
    view = settings_of(migrated_url)
    assert f"{FIX}--unset 'dry run'" in view.stderr, view.stderr
    assert fixes(view) == [["--unset", "dry run"], ["--unset", "scoring.min_customers"]]
    # and each fix, run in turn, removes that name, keeping the scoring value of the same name
    for fix in fixes(view):
        assert saved(settings_of(migrated_url, *fix)), fix
    assert stored(shop) == {"scoring": {"min_customers": 5}}
    assert settings_of(migrated_url).exit_code == 0


def test_change_to_a_group_beside_a_name_with_its_dot_is_saved(
    shop: Engine, migrated_url: str
) -> None:
    store_settings(shop, OLD_NAMES)
    # when the scoring group is changed, whole or one value
    for change in ('scoring={"min_customers": 6}', "scoring.min_customers=7"):
        result = settings_of(migrated_url, "--set", change)
        # then it is saved, the name stored whole still listed as a problem
        assert saved(result), (change, result.output)
        assert '"scoring.min_customers": unknown shop setting' in result.stderr
        assert "a value of scoring is set with --set scoring.min_customers=VALUE" in result.stderr
    assert stored(shop) == {**OLD_NAMES, "scoring": {"min_customers": 7}}


# --- names the jobs ignore --------------------------------------------------------------------


def test_view_of_a_misspelt_name_says_the_jobs_ignore_it_and_what_they_take(
    shop: Engine, migrated_url: str
) -> None:
    # given a typo of dry_run: the shop pushes for real
    store_settings(shop, {"dry_runn": True})
    view = settings_of(migrated_url)
    # then it is a problem (exit 1) the jobs ignore, naming the setting meant and its value
    assert view.exit_code == 1, view.output
    assert "1 problem(s) in the stored settings, ignored by the jobs:" in view.stderr
    assert "refused" not in view.stderr
    assert "dry_runn, ignored by the jobs: a typo of dry_run?" in view.stderr
    assert "The jobs take dry_run=false (its default)" in view.stderr
    assert fixes(view) == [["--unset", "dry_runn"]]


def test_view_counts_refused_and_ignored_problems_apart(shop: Engine, migrated_url: str) -> None:
    store_settings(shop, {"colour": "blue", "bulk_threshold": 0})
    view = settings_of(migrated_url)
    assert "2 problem(s) in the stored settings, 1 refused by the jobs, 1 ignored" in view.stderr
    assert "colour, ignored by the jobs (known: bulk_threshold," in view.stderr


# --- properties over stored scoring values, some wrong -----------------------------------------


SCORING_VALUES: dict[str, list[Any]] = {
    "tier_insider": [100, 500, 1000, 3000, -1, "x"],
    "tier_vip": [200, 400, 800, 2000, "x"],
    "reorder_grace": [0.5, 2, 5, 0, "x"],
    "reorder_lapse": [1.5, 4, 10, 0.5],
    "min_customers": [1, 3.0, 0, 2.5],
    "win_back_days": [60, "x", -1],
    "candidate_models": [["bgnbd"], [], ["nope"]],
    "win_back_dayz": [3],
}
scorings = st.lists(st.sampled_from(sorted(SCORING_VALUES)), unique=True).flatmap(
    lambda names: st.fixed_dictionaries({n: st.sampled_from(SCORING_VALUES[n]) for n in names})
)
PROPERTY = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(scoring=scorings)
@example(scoring={"tier_insider": 1000, "tier_vip": 2000, "win_back_days": "x"})
def test_view_finds_a_problem_exactly_when_the_jobs_refuse_and_its_fixes_mend_them(
    shop: Engine, migrated_url: str, scoring: dict[str, Any]
) -> None:
    store_settings(shop, {"scoring": scoring})
    view = settings_of(migrated_url)
    # the view lists a problem exactly when the jobs refuse the values
    assert (view.exit_code == 0) == jobs_take(scoring), view.output
    # and its fixes, pasted in order, are each saved, and leave values the jobs take
    for fix in fixes(view):
        assert saved(settings_of(migrated_url, *fix)), (fix, view.stderr)
    assert settings_of(migrated_url).exit_code == 0
    assert jobs_take(stored(shop).get("scoring", {}))


@PROPERTY
@given(scoring=scorings, change=scorings.filter(bool))
@example(scoring={"win_back_days": "x"}, change={"tier_insider": 500, "tier_vip": 400})
def test_set_saved_beside_stored_values_is_taken_with_all_but_their_problems(
    shop: Engine, migrated_url: str, scoring: dict[str, Any], change: dict[str, Any]
) -> None:
    store_settings(shop, {"scoring": scoring})
    view = settings_of(migrated_url)
    listed = [line.partition(":")[0] for line in view.stderr.splitlines()]
    wrong = {name.removeprefix("  scoring.") for name in listed if name.startswith("  scoring.")}
    sets = [
        arg
        for name, value in change.items()
        for arg in ("--set", f"scoring.{name}={json.dumps(value)}")
    ]
    result = settings_of(migrated_url, *sets)
    if not saved(result):
        assert stored(shop) == {"scoring": scoring}
        return
    # a change saved gives values the jobs take beside every stored value that was no problem
    after = stored(shop).get("scoring", {})
    kept = {name: value for name, value in after.items() if name in change or name not in wrong}
    assert jobs_take(kept), (scoring, change, after)
    if view.exit_code == 0:
        assert jobs_take(after)


# --- what each name, fix and change says ---------------------------------------------------------


def test_view_of_unknown_names_says_which_setting_each_may_have_meant(
    shop: Engine, migrated_url: str
) -> None:
    # given a typo of a group, a typo of a setting stored beside it, and a dotted name of no
    # group
    store_settings(shop, {"scorng": {}, "dry_runn": False, "dry_run": True, "colour.x": 1})
    view = settings_of(migrated_url)
    # then each is named with what it may have meant and what the jobs take
    assert "scorng, ignored by the jobs: a typo of scoring?" in view.stderr, view.stderr
    assert "The jobs take dry_run=true (as stored)" in view.stderr
    assert '"colour.x", ignored by the jobs (known: bulk_threshold,' in view.stderr
    assert "a value of colour" not in view.stderr


@pytest.mark.parametrize(
    ("stored_settings", "fix"),
    [
        ({"tag_prefix": " ltv "}, ["--set", "tag_prefix=ltv:"]),
        ({"tag_prefix": "  "}, ["--unset", "tag_prefix"]),
        ({"scoring": {"min_customers": 0.0}}, ["--unset", "scoring.min_customers"]),
        ({"metafield_namespace": 5}, ["--set", "metafield_namespace=VALUE"]),
    ],
)
def test_view_fixes_a_wrong_value_with_one_the_jobs_take_else_the_default(
    shop: Engine, migrated_url: str, stored_settings: dict[str, Any], fix: list[str]
) -> None:
    # given one wrong value: a prefix without its separator, a whole number the checks
    # refuse even as a whole number, a namespace (never put back to the default: once pushed,
    # the app's metafields are there)
    store_settings(shop, stored_settings)
    view = settings_of(migrated_url)
    # then it is one problem the jobs refuse, with its fix
    assert "1 problem(s) in the stored settings, refused by the jobs:" in view.stderr
    assert fixes(view) == [fix]


def test_view_of_three_pairs_refused_together_unsets_them_all(
    shop: Engine, migrated_url: str
) -> None:
    # given three pairs of values each refused together (no one or two unsets mend them all)
    pairs = {"tier_insider": 500, "tier_vip": 400, "reorder_grace": 2.5, "reorder_lapse": 2}
    pairs |= {"margin_rate": 0.3, "margin_from_costs": True}
    store_settings(shop, {"scoring": pairs})
    view = settings_of(migrated_url)
    # then the one problem's fix unsets all six, and leaves settings the jobs take
    assert fixes(view) == [
        [arg for name in sorted(pairs) for arg in ("--unset", f"scoring.{name}")]
    ]
    assert saved(settings_of(migrated_url, *fixes(view)[0]))
    assert settings_of(migrated_url).exit_code == 0 and stored(shop) == {}


def test_view_of_two_pairs_refused_together_unsets_one_of_each(
    shop: Engine, migrated_url: str
) -> None:
    # given two pairs of values each refused together: no one unset mends both
    pairs = {"tier_insider": 500, "tier_vip": 400, "margin_rate": 0.3, "margin_from_costs": True}
    store_settings(shop, {"scoring": pairs})
    view = settings_of(migrated_url)
    # then the fix unsets two, one of each pair (the first two in name order that do), not all
    assert fixes(view) == [
        ["--unset", "scoring.margin_from_costs", "--unset", "scoring.tier_insider"]
    ]
    assert saved(settings_of(migrated_url, *fixes(view)[0]))
    assert stored(shop) == {"scoring": {"margin_rate": 0.3, "tier_vip": 400}}
    assert settings_of(migrated_url).exit_code == 0


def test_unset_of_another_value_beside_values_refused_together_is_saved(
    shop: Engine, migrated_url: str
) -> None:
    # given values refused together, stored by an older release, beside a good one
    store_settings(shop, {"scoring": {"tier_insider": 500, "tier_vip": 400, "min_customers": 9}})
    # when the good one is unset
    result = settings_of(migrated_url, "--unset", "scoring.min_customers")
    # then that is saved (it leaves the problem as it was), the problem still told
    assert saved(result) and "1 problem(s)" in result.stderr, result.output
    assert stored(shop) == {"scoring": {"tier_insider": 500, "tier_vip": 400}}


def test_set_of_values_refused_together_names_no_fix_to_run_first(
    shop: Engine, migrated_url: str
) -> None:
    # when two values the jobs refuse together are set on a shop with none stored
    result = settings_of(
        migrated_url, "--set", "scoring.tier_insider=500", "--set", "scoring.tier_vip=400"
    )
    # then they are refused; nothing stored is to be mended first
    assert result.exit_code == 1 and TIERS in result.stderr, result.output
    assert "run first" not in result.stderr


def test_unset_of_a_groups_last_value_removes_the_group(shop: Engine, migrated_url: str) -> None:
    store_settings(shop, {"scoring": {"min_customers": 9}, "dry_run": True})
    assert saved(settings_of(migrated_url, "--unset", "scoring.min_customers"))
    assert stored(shop) == {"dry_run": True}


def test_set_key_is_taken_without_the_spaces_around_it(shop: Engine, migrated_url: str) -> None:
    assert saved(settings_of(migrated_url, "--set", " dry_run =true"))
    assert stored(shop) == {"dry_run": True}


@pytest.mark.parametrize(
    ("stored_settings", "args", "message"),
    [
        ({}, ["--set", " =5"], "Invalid value for --set: ' =5' is not KEY=VALUE"),
        ({}, ["--set", "scoring.=5"], "'scoring.': only scoring, schedule, recommendations"),
        (
            {"scoring": 5},
            ["--set", "scoring.min_customers=3"],
            'the stored "scoring" is not an object: --unset scoring first',
        ),
    ],
)
def test_set_of_a_malformed_change_is_a_usage_error(
    shop: Engine,
    migrated_url: str,
    stored_settings: dict[str, Any],
    args: list[str],
    message: str,
) -> None:
    store_settings(shop, stored_settings)
    result = settings_of(migrated_url, *args)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert stored(shop) == stored_settings


def test_unset_that_makes_another_value_wrong_is_refused(shop: Engine, migrated_url: str) -> None:
    # given an insider threshold above the default VIP one, taken beside the VIP one stored
    store_settings(shop, {"scoring": {"tier_insider": 1000, "tier_vip": 2000}})
    # when the VIP threshold is unset, then that is refused: the insider one would be wrong
    result = settings_of(migrated_url, "--unset", "scoring.tier_vip")
    assert result.exit_code == 1 and TIERS in result.stderr, result.output
    assert stored(shop) == {"scoring": {"tier_insider": 1000, "tier_vip": 2000}}
