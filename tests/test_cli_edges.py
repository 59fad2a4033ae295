"""Edges of the CLI: backtest inputs it cannot model, bad DATABASE_URLs, scoring settings that
would crash a recompute. Each runs the real command on a real file or SQLite database."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from plugin.cli import main
from plugin.store.db import make_engine, upgrade
from plugin.store.models import JobRun
from tests.helpers import SHOP, add_shop
from tests.test_compliance import cli_env

PERIODS = ("--calibration-end", "2024-06-30", "--holdout-end", "2024-12-31")


def invoke(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=cli_env(url))


def backtest(tmp_path: Path, rows: str | bytes, *args: str) -> Result:
    path = tmp_path / "purchases.csv"
    content = rows if isinstance(rows, bytes) else rows.encode()
    path.write_bytes(content)
    url = f"sqlite:///{tmp_path / 'unused.db'}"  # backtest never opens it
    return invoke(url, "backtest", "--transactions", str(path), *PERIODS, *args)


def strict_json(output: str) -> Any:
    """Parse as JSON proper, which has no NaN or Infinity (Python's json accepts them)."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(output, parse_constant=refuse)


def assert_one_line_error(result: Result, *fragments: str, code: int = 1) -> None:
    """Exit `code` through click (not an exception escaping), the error as the last line of
    stderr (after any progress line)."""
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == code
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[-1]


# --- backtest ---------------------------------------------------------------------------------


def test_backtest_repeat_purchases_worth_nothing_reports_models_without_spend(
    tmp_path: Path,
) -> None:
    # given a repeat purchase, every purchase worth 0
    rows = "customer_id,date,amount\na,2024-01-01,0\na,2024-02-01,0\nb,2024-01-01,0\n"
    # when backtested
    result = backtest(tmp_path, rows, "--json")
    # then the frequency models are reported, spend and CLV are null with a note
    assert result.exit_code == 0, result.output
    report = strict_json(result.stdout)
    assert report["models"]["bgnbd"]["params"]
    assert report["models"]["gamma_gamma"] is None
    clv = report["clv_calibration"]
    assert set(clv["predicted_clv"].values()) == {None}
    assert set(clv["predicted_holdout_spend"].values()) == {None}
    assert "Gamma-Gamma not fitted" in clv["note"]
    # and the table says so too
    table = backtest(tmp_path, rows)
    assert table.exit_code == 0 and "Gamma-Gamma not fitted" in table.stdout


def test_backtest_unconverged_spend_fit_publishes_no_spend_prediction(tmp_path: Path) -> None:
    # given one repeat customer: the Gamma-Gamma likelihood has no finite maximum
    rows = "customer_id,date,amount\na,2024-01-01,10\na,2024-02-01,10\nb,2024-01-01,10\n"
    # when backtested
    result = backtest(tmp_path, rows, "--json")
    # then the unconverged fit is shown but not used, as the scorer refuses it too
    assert result.exit_code == 0, result.output
    report = strict_json(result.stdout)
    assert report["models"]["gamma_gamma"]["converged"] is False
    clv = report["clv_calibration"]
    assert set(clv["predicted_clv"].values()) == {None}
    assert "did not converge" in clv["note"]


def test_backtest_converged_spend_fit_has_no_note(tmp_path: Path) -> None:
    rows = ["customer_id,date,amount"]
    for n in range(40):
        rows += [
            f"c{n},2024-01-{1 + n % 28:02d},{10 + n}",
            f"c{n},2024-03-{1 + n % 28:02d},{12 + n}",
        ]
        if n % 3 == 0:
            rows.append(f"c{n},2024-05-{1 + n % 28:02d},{11 + 2 * n}")
    result = backtest(tmp_path, "\n".join(rows) + "\n", "--json")
    assert result.exit_code == 0, result.output
    clv = strict_json(result.stdout)["clv_calibration"]
    assert clv["note"] is None
    assert all(value > 0 for value in clv["predicted_clv"].values())


def test_backtest_latin1_file_names_it_and_asks_for_utf8(tmp_path: Path) -> None:
    rows = "customer_id,date,amount\nJosé,2024-01-01,10\n".encode("latin-1")
    result = backtest(tmp_path, rows)
    assert_one_line_error(result, "purchases.csv", "UTF-8", code=2)


def test_backtest_utf8_with_byte_order_mark_is_read(tmp_path: Path) -> None:
    rows = "\ufeffcustomer_id,date,amount\nJosé,2024-01-01,10\nJosé,2024-02-01,10\n"
    result = backtest(tmp_path, rows.encode("utf-8"), "--json")
    assert result.exit_code == 0, result.output
    assert strict_json(result.stdout)["repeat_customers"] == 1


@pytest.mark.parametrize("amount", ["-5", "-0.01", "1e400", "inf", "nan"])
def test_backtest_negative_or_non_finite_amount_names_the_line(tmp_path: Path, amount: str) -> None:
    rows = f"customer_id,date,amount\na,2024-01-01,10\na,2024-02-01,{amount}\nb,2024-01-01,5\n"
    result = backtest(tmp_path, rows)
    assert_one_line_error(result, "amount on line 3", code=2)


@pytest.mark.parametrize("horizon", ["nan", "inf", "1e12", "36501", "-1"])
def test_backtest_horizon_must_be_finite_and_at_most_100_years(
    tmp_path: Path, horizon: str
) -> None:
    rows = "customer_id,date,amount\na,2024-01-01,10\na,2024-02-01,12\nb,2024-01-01,5\n"
    result = backtest(tmp_path, rows, f"--horizon-days={horizon}")
    assert result.exit_code == 2, result.output
    assert "--horizon-days" in result.stderr


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
def test_backtest_json_is_strict_when_figures_overflow(tmp_path: Path) -> None:
    # given amounts near the largest float: sums and the log-likelihood overflow
    rows = "customer_id,date,amount\na,2024-01-01,1e308\na,2024-02-01,1e308\nb,2024-01-01,5\n"
    rows += "b,2024-01-10,5\n"
    result = backtest(tmp_path, rows, "--json")
    # then the JSON has null where a figure is not finite, never NaN or Infinity
    assert result.exit_code == 0, result.output
    report = strict_json(result.stdout)
    assert report["models"]["gamma_gamma"]["log_likelihood"] is None


# --- DATABASE_URL -----------------------------------------------------------------------------


def _not_a_database(tmp_path: Path) -> str:
    path = tmp_path / "notes.db"
    path.write_text("these are notes, not a database\n" * 200)
    return f"sqlite:///{path}"


def _newer_schema(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    return url


@pytest.mark.parametrize(
    ("make_url", "fragment"),
    [
        (lambda _: "foo://user:secretpw@bar/db", "foo://user:***@bar/db"),
        (lambda _: "notaurl", "not a database URL"),
        (lambda _: "postgresql://user:secretpw@host:port/db", "not a database URL"),
        # the host left out: the password is read as the port, and must not be quoted back
        (lambda _: "postgresql://user:secretpw/db", "malformed, e.g. a port that is not a number"),
        (lambda _: "mysql://user:secretpw@localhost/db", "driver is not installed"),
        # nothing listens on port 1 of the loopback: the connection is refused at once
        (
            lambda _: "postgresql://user:secretpw@127.0.0.1:1/db",
            "cannot open the database in DATABASE_URL postgresql://user:***@127.0.0.1:1/db: ",
        ),
        (_not_a_database, "file is not a database"),
        (_newer_schema, "9999_future"),
    ],
    ids=[
        "unknown-dialect",
        "not-a-url",
        "bad-port",
        "password-as-port",
        "no-driver",
        "no-server",
        "not-a-database",
        "newer",
    ],
)
def test_bad_database_url_is_one_line_without_the_password(
    tmp_path: Path, make_url: Any, fragment: str
) -> None:
    url = make_url(tmp_path)
    if url.startswith("mysql") and importlib.util.find_spec("MySQLdb") is not None:
        pytest.skip("a MySQL driver is installed here")
    # when a command opens the database
    result = invoke(url, "shop", "list")
    # then one line says what is wrong, and the password is not in it
    assert_one_line_error(result, fragment)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "secretpw" not in result.output


def test_database_error_after_opening_is_not_reported_as_opening(tmp_path: Path) -> None:
    # given a migrated database whose shop table has since gone
    path = tmp_path / "clvsync.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA foreign_keys=OFF")
        connection.execute("DROP TABLE shops")
    # when a command reads it
    result = invoke(f"sqlite:///{path}", "shop", "list")
    # then the error is the database's, not a failure to open it
    assert_one_line_error(result, "no such table: shops")
    assert "cannot open" not in result.stderr


# --- scoring settings -------------------------------------------------------------------------


@pytest.fixture
def shop_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'clvsync.db'}"
    engine = make_engine(url)
    upgrade(engine)
    add_shop(engine)
    engine.dispose()
    return url


@pytest.mark.parametrize(
    ("scoring", "named"),
    [
        ({"min_customers": 0, "min_repeat_customers": 0}, "min_customers must be >= 1"),
        ({"min_repeat_customers": 0}, "min_repeat_customers must be >= 1"),
        ({"min_customers": float("nan")}, "min_customers"),
        ({"horizon_days": float("inf")}, "horizon_days"),
        ({"horizon_days": 1e12}, "horizon_days"),
        ({"tier_vip": float("inf")}, "tier_vip"),
        ({"win_back_days": float("inf")}, "win_back_days"),
        ({"annual_discount_rate": float("inf")}, "annual_discount_rate"),
        ({"spend_recent_orders": 1.5}, "spend_recent_orders"),
    ],
)
def test_shop_settings_refuse_scoring_values_that_crash_a_recompute(
    shop_url: str, scoring: dict[str, float], named: str
) -> None:
    # json.dumps writes NaN and Infinity, which the settings command reads as JSON does
    result = invoke(shop_url, "shop", "settings", SHOP, "--set", f"scoring={json.dumps(scoring)}")
    assert_one_line_error(result, named)


@pytest.mark.parametrize(
    "setting",
    ["scoring=[1]", "scoring=5", "scoring=abc", "recommendations=null", "recommendations=[]"],
)
def test_shop_settings_refuse_a_group_that_is_not_an_object_naming_its_key(
    shop_url: str, setting: str
) -> None:
    # when a settings group is set to a list, a number, a string or null
    result = invoke(shop_url, "shop", "settings", SHOP, "--set", setting)
    # then it is refused, naming the key and what it must be, instead of a traceback
    key = setting.partition("=")[0]
    assert_one_line_error(result, f'"{key}" must be a JSON object')


def test_shop_settings_accept_sane_scoring_values(shop_url: str) -> None:
    scoring = {"min_customers": 1, "min_repeat_customers": 1, "horizon_days": 36500}
    result = invoke(shop_url, "shop", "settings", SHOP, "--set", f"scoring={json.dumps(scoring)}")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "scoring",
    [{"min_customers": 0, "min_repeat_customers": 0}, {"horizon_days": float("inf")}],
)
def test_recompute_refuses_scoring_settings_stored_before_they_were_checked(
    shop_url: str, scoring: dict[str, float]
) -> None:
    # given an empty shop whose settings were stored when they were not checked
    engine = make_engine(shop_url)
    with Session(engine) as session, session.begin():
        session.execute(
            text("UPDATE shops SET settings = :settings"),
            {"settings": json.dumps({"scoring": scoring})},
        )
    engine.dispose()
    # when it is recomputed, then the settings are named instead of a crash or a hang
    result = invoke(shop_url, "recompute", "--shop", SHOP)
    assert_one_line_error(result, next(iter(scoring)))
    # and they are refused before the job starts: no run is recorded as failed
    engine = make_engine(shop_url)
    with Session(engine) as session:
        assert session.exec(select(JobRun)).all() == []
    engine.dispose()


# --- shop settings: what is refused names the argument or setting at fault -----------------------


def test_shop_settings_bad_domain_names_the_domain_argument(migrated_url: str) -> None:
    # when the settings of a value that is no shop domain are asked for
    result = invoke(migrated_url, "shop", "settings", "bad")
    # then the usage error names the positional DOMAIN, not an option the command does not have
    assert result.exit_code == 2, result.output
    assert "Invalid value for DOMAIN: 'bad' is not a shop domain" in result.stderr
    assert "--shop" not in result.stderr


@pytest.mark.parametrize(("name", "meant"), [("nosuchkey", None), ("dry_rn", "dry_run")])
def test_shop_settings_unset_unknown_name_is_refused_listing_the_known(
    engine: Engine, migrated_url: str, name: str, meant: str | None
) -> None:
    # given a registered shop
    add_shop(engine)
    # when a setting no shop has is unset
    result = invoke(migrated_url, "shop", "settings", SHOP, "--unset", name)
    # then it is a usage error naming it and the settings there are (and the one a typo may
    # have meant), and nothing is shown as saved
    assert result.exit_code == 2, result.output
    assert f"Invalid value for --unset: unknown shop setting {name!r}" in result.stderr
    assert "tag_prefix" in result.stderr and "recommendations" in result.stderr
    if meant is None:
        assert "did you mean" not in result.stderr
    else:
        assert f"; did you mean {meant!r}?" in result.stderr
    assert result.stdout == ""


def test_shop_settings_unset_removes_an_unknown_name_stored_before_checks(
    engine: Engine, migrated_url: str
) -> None:
    # given a shop whose settings hold a name stored when names were not checked
    add_shop(engine)
    with Session(engine) as session, session.begin():
        session.execute(
            text("UPDATE shops SET settings = :settings"),
            {"settings": json.dumps({"old_key": 1, "dry_run": True})},
        )
    # when it is unset, then it is gone: the only way to clean it up stays open
    result = invoke(migrated_url, "shop", "settings", SHOP, "--unset", "old_key")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"dry_run": True}


@pytest.mark.parametrize(
    ("recommendations", "named"),
    [
        ({"fbt_min_support": "x"}, 'fbt_min_support must be a whole number, not "x"'),
        ({"fbt_min_support": 2.5}, "fbt_min_support must be a whole number, not 2.5"),
        ({"bundle_max": True}, "bundle_max must be a whole number, not true"),
        ({"fbt_min_lift": "high"}, 'fbt_min_lift must be a finite number, not "high"'),
        ({"signal_max_chance": None}, "signal_max_chance must be a finite number, not null"),
        ({"fbt_min_lift": float("inf")}, "fbt_min_lift must be a finite number, not Infinity"),
    ],
)
def test_shop_settings_refuse_recommendation_values_of_the_wrong_type_naming_them(
    engine: Engine, migrated_url: str, recommendations: dict[str, object], named: str
) -> None:
    # given a registered shop
    add_shop(engine)
    # when a threshold is set to a value of the wrong type
    setting = f"recommendations={json.dumps(recommendations)}"
    result = invoke(migrated_url, "shop", "settings", SHOP, "--set", setting)
    # then the setting and the type it takes are named, not Python's failed comparison
    assert_one_line_error(result, named)
    assert "not supported" not in result.stderr


def test_shop_settings_take_a_text_setting_as_typed(engine: Engine, migrated_url: str) -> None:
    # given a registered shop
    add_shop(engine)
    # when text settings are given values that would read as JSON numbers, or quoted as JSON
    result = invoke(
        migrated_url,
        "shop",
        "settings",
        SHOP,
        "--set",
        "metafield_namespace=2024",
        "--set",
        'tag_prefix="vip-"',
    )
    # then the text is the value, and a JSON string is its text
    assert result.exit_code == 0, result.output
    values = json.loads(result.stdout)
    assert (values["metafield_namespace"], values["tag_prefix"]) == ("2024", "vip-")


def test_shop_settings_refuse_a_text_setting_for_what_its_text_lacks(
    engine: Engine, migrated_url: str
) -> None:
    # given a registered shop
    add_shop(engine)
    # when the tag prefix is set to a digit
    result = invoke(migrated_url, "shop", "settings", SHOP, "--set", "tag_prefix=1")
    # then the reason is the prefix's, not that a number is no string
    assert_one_line_error(result, "tag_prefix must end with a separator such as ':' or '-'")
