"""Stored settings that are not a JSON object (a row edited by hand, a database restored from
elsewhere): the view shows them with the fix, `--reset` mends them (keeping a pushed metafield
namespace), a change that would drop them is refused, and every job that reads them raises its
own settings error naming the view, never a JSONDecodeError or AttributeError. Each stores the
text straight into the shops table."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from jobs.recommend import compute_recommendations
from jobs.recompute import full_recompute, rescore_changed
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
from tests.helpers import SHOP, T0, add_shop
from tests.test_compliance import cli_env

NOT_AN_OBJECT = "the stored settings are not a JSON object"
HINT = f"(see every problem and its fix: clvsync shop settings {SHOP})"
# not JSON, and JSON of every kind but an object
UNREADABLE = ['{"dry_run": true', "[]", '"x"', "3", "null"]


def invoke(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=cli_env(url))


def store_text(engine: Engine, stored: str, definitions_version: int = 0) -> None:
    with Session(engine) as session, session.begin():
        session.execute(
            text("UPDATE shops SET settings = :s, definitions_version = :v"),
            {"s": stored, "v": definitions_version},
        )


def stored_text(engine: Engine) -> str:
    with Session(engine) as session:
        return session.exec(select(Shop)).one().settings


def stored(engine: Engine) -> dict[str, Any]:
    return dict(json.loads(stored_text(engine)))


def the_shop(engine: Engine) -> Shop:
    with Session(engine, expire_on_commit=False) as session:
        return session.exec(select(Shop)).one()


def assert_refused_cleanly(result: Result) -> None:
    """Exit 1 through click, with its message: no traceback, no exception escaping."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


# --- the view ---------------------------------------------------------------------------------


@pytest.mark.parametrize("unreadable", ["{not json", "[1, 2]", "null"])
def test_view_of_settings_that_are_not_an_object_shows_them_and_the_reset(
    engine: Engine, migrated_url: str, unreadable: str
) -> None:
    # given a shop whose stored settings are not a JSON object
    add_shop(engine)
    store_text(engine, unreadable)
    # when they are viewed
    result = invoke(migrated_url, "shop", "settings", SHOP)
    # then the stored text is shown, and one problem with the command that mends it
    assert_refused_cleanly(result)
    assert result.stdout == f"{unreadable!r}\n"
    assert "1 problem(s)" in result.stderr
    assert f"  {NOT_AN_OBJECT}\n" in result.stderr
    assert f"fix: clvsync shop settings {SHOP} --reset  # every setting back" in result.stderr
    # and nothing is changed by looking
    assert stored_text(engine) == unreadable


def test_view_of_long_unreadable_settings_shows_them_cut_short(
    engine: Engine, migrated_url: str
) -> None:
    add_shop(engine)
    long_text = "x" * 75 + "ABCDEFGHIJ" * 20
    store_text(engine, long_text)
    result = invoke(migrated_url, "shop", "settings", SHOP)
    assert_refused_cleanly(result)
    assert result.stdout == f"{long_text[:80]!r}... (275 characters)\n"


def test_view_of_unreadable_settings_of_a_pushed_shop_asks_for_its_namespace(
    engine: Engine, migrated_url: str
) -> None:
    # given a shop that has pushed its metafields, whose settings are not an object
    add_shop(engine)
    store_text(engine, "[]", definitions_version=2)
    result = invoke(migrated_url, "shop", "settings", SHOP)
    # then the fix gives the namespace again with the reset
    assert_refused_cleanly(result)
    fix = f"fix: clvsync shop settings {SHOP} --reset --set metafield_namespace=VALUE"
    assert fix in result.stderr


# --- --reset ----------------------------------------------------------------------------------


@pytest.mark.parametrize("unreadable", ["{not json", "[]", "null"])
def test_reset_mends_settings_that_are_not_an_object(
    engine: Engine, migrated_url: str, unreadable: str
) -> None:
    add_shop(engine)
    store_text(engine, unreadable)
    # when they are reset
    result = invoke(migrated_url, "shop", "settings", SHOP, "--reset")
    # then every setting is back to its default, and the view and the jobs take them
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {} == stored(engine)
    assert invoke(migrated_url, "shop", "settings", SHOP).exit_code == 0
    scoring_settings(the_shop(engine))


def test_reset_with_set_applies_the_values_over_the_defaults(
    engine: Engine, migrated_url: str
) -> None:
    add_shop(engine)
    store_text(engine, "{broken")
    result = invoke(
        migrated_url, "shop", "settings", SHOP, "--reset",
        "--set", "dry_run=true", "--set", "scoring.min_customers=50",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert stored(engine) == {"dry_run": True, "scoring": {"min_customers": 50}}


def test_reset_of_readable_settings_drops_every_value(engine: Engine, migrated_url: str) -> None:
    add_shop(engine)
    store_text(engine, json.dumps({"dry_run": True, "tag_prefix": "clv", "nosuch": 1}))
    result = invoke(migrated_url, "shop", "settings", SHOP, "--reset")
    assert result.exit_code == 0, result.output
    assert stored(engine) == {}


def test_reset_of_a_pushed_shop_keeps_its_namespace(engine: Engine, migrated_url: str) -> None:
    # given a shop that has pushed under its own namespace, with other settings beside it
    add_shop(engine)
    settings = {"metafield_namespace": "shop_clv", "dry_run": True, "tag_prefix": "ltv-"}
    store_text(engine, json.dumps(settings), definitions_version=2)
    # when its settings are reset
    result = invoke(migrated_url, "shop", "settings", SHOP, "--reset")
    # then the namespace it pushed under is kept, the rest back to the defaults
    assert result.exit_code == 0, result.output
    assert stored(engine) == {"metafield_namespace": "shop_clv"}
    # and a reset to another namespace is refused, nothing saved
    result = invoke(
        migrated_url, "shop", "settings", SHOP, "--reset", "--set", "metafield_namespace=other"
    )
    assert_refused_cleanly(result)
    assert "metafield_namespace stays 'shop_clv'" in result.stderr
    assert stored(engine) == {"metafield_namespace": "shop_clv"}


def test_reset_of_unreadable_settings_of_a_pushed_shop_needs_its_namespace(
    engine: Engine, migrated_url: str
) -> None:
    # given a pushed shop whose settings are not an object: its namespace cannot be read
    add_shop(engine)
    store_text(engine, '["metafield_namespace", "shop_clv"]', definitions_version=2)
    # when reset without the namespace, then it is refused, naming the arguments, nothing saved
    result = invoke(migrated_url, "shop", "settings", SHOP, "--reset", "--set", "dry_run=true")
    assert_refused_cleanly(result)
    assert "--reset --set metafield_namespace=VALUE" in result.stderr
    assert stored_text(engine) == '["metafield_namespace", "shop_clv"]'
    # when reset with it, then the shop holds it and the defaults
    result = invoke(
        migrated_url, "shop", "settings", SHOP, "--reset", "--set", "metafield_namespace=shop_clv"
    )
    assert result.exit_code == 0, result.output
    assert stored(engine) == {"metafield_namespace": "shop_clv"}
    assert shop_writeback_settings(the_shop(engine)).metafield_namespace == "shop_clv"


def test_reset_with_a_bad_value_is_refused_leaving_what_is_stored(
    engine: Engine, migrated_url: str
) -> None:
    add_shop(engine)
    store_text(engine, "null")
    result = invoke(migrated_url, "shop", "settings", SHOP, "--reset", "--set", "bulk_threshold=0")
    assert_refused_cleanly(result)
    assert "bulk_threshold must be at least 1" in result.stderr
    assert stored_text(engine) == "null"


def test_reset_with_unset_is_a_usage_error(engine: Engine, migrated_url: str) -> None:
    add_shop(engine)
    store_text(engine, "[]")
    result = invoke(migrated_url, "shop", "settings", SHOP, "--reset", "--unset", "dry_run")
    assert result.exit_code == 2, result.output
    assert "--reset already puts every setting back" in result.stderr
    assert stored_text(engine) == "[]"


# --- a change that would drop what is stored --------------------------------------------------


@pytest.mark.parametrize("change", [("--set", "dry_run=true"), ("--unset", "dry_run")])
@pytest.mark.parametrize("unreadable", ["{not json", "[]"])
def test_change_of_settings_that_are_not_an_object_is_refused_pointing_to_reset(
    engine: Engine, migrated_url: str, change: tuple[str, str], unreadable: str
) -> None:
    add_shop(engine)
    store_text(engine, unreadable)
    # when one value is changed, which would mean dropping what is stored
    result = invoke(migrated_url, "shop", "settings", SHOP, *change)
    # then it is refused, naming the reset, and nothing is saved
    assert_refused_cleanly(result)
    assert NOT_AN_OBJECT in result.stderr
    assert f"clvsync shop settings {SHOP} --reset" in result.stderr
    assert stored_text(engine) == unreadable


# --- the jobs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("unreadable", UNREADABLE)
def test_jobs_reading_unreadable_settings_raise_their_own_error_naming_the_view(
    engine: Engine, unreadable: str
) -> None:
    # given a shop whose stored settings are not a JSON object
    add_shop(engine)
    store_text(engine, unreadable)
    shop = the_shop(engine)
    # when each job reads them, then each raises the error its callers take, with the hint
    raised: list[Exception] = []
    for error, read in (
        (ShopSettingsError, lambda: scoring_settings(shop)),
        (ShopSettingsError, lambda: full_recompute(engine, shop, T0)),
        (ShopSettingsError, lambda: rescore_changed(engine, shop, T0)),
        (ShopSettingsError, lambda: recommendation_settings(shop)),
        (ShopSettingsError, lambda: compute_recommendations(engine, shop, T0)),
        (WritebackError, lambda: shop_writeback_settings(shop)),
        (ScheduleError, lambda: shop_schedule(shop)),
    ):
        with pytest.raises(error) as caught:
            read()
        raised.append(caught.value)
    for exc in raised:
        message = str(exc)
        assert message.startswith(f"{SHOP}: {NOT_AN_OBJECT}: {unreadable!r}"), message
        assert message.endswith(HINT), message


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("recompute", "--shop", SHOP), ""),
        (("jobs", "run", "refit", "--shop", SHOP), "refit for"),
        (("jobs", "run", "rescore", "--shop", SHOP), "rescore for"),
        (("jobs", "run", "recommend", "--shop", SHOP), "recommend for"),
        (("jobs", "run", "push", "--shop", SHOP), "push for"),
        (("jobs", "run", "reconcile", "--shop", SHOP), "reconcile for"),
        (("push", "--shop", SHOP, "--dry-run"), ""),
        (("push", "--shop", SHOP), '"outcome": "failed"'),
        (("export", "--shop", SHOP), ""),
        (("export", "--shop", SHOP, "--format", "jsonl"), ""),
    ],
)
def test_commands_on_unreadable_settings_exit_1_naming_the_view(
    engine: Engine, migrated_url: str, args: tuple[str, ...], error: str
) -> None:
    add_shop(engine)
    store_text(engine, "[]")
    # when a command reads the settings, then it exits 1 with the error and its hint (a push
    # that is not a dry run prints its failed run as JSON, as it does any failure)
    result = invoke(migrated_url, *args)
    assert_refused_cleanly(result)
    assert NOT_AN_OBJECT in result.output and HINT in result.output, result.output
    assert error in result.output
    if args[0] == "export":  # refused before anything is written: no header
        assert result.stdout == ""


def test_unset_of_a_pushed_namespace_is_refused(engine: Engine, migrated_url: str) -> None:
    # given a shop that has pushed under a namespace of its own
    add_shop(engine)
    store_text(engine, json.dumps({"metafield_namespace": "shop_clv"}), definitions_version=2)
    # when it is unset, which would put the default one in force
    result = invoke(migrated_url, "shop", "settings", SHOP, "--unset", "metafield_namespace")
    # then it is refused as a change to another namespace is, and nothing is saved
    assert_refused_cleanly(result)
    assert "metafield_namespace stays 'shop_clv'" in result.stderr
    assert stored(engine) == {"metafield_namespace": "shop_clv"}
