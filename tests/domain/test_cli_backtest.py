"""`clvsync backtest` run directly through click's CliRunner."""

from __future__ import annotations

import json
import math
import re
from datetime import date, timedelta
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from plugin.cli_backtest import _read_file, _strict_json, backtest, format_report, parse_day
from plugin.domain.bgnbd import BetaGeoParams
from plugin.domain.gamma_gamma import GammaGammaParams
from plugin.domain.simulation import simulate_purchases

ORIGIN = date(2024, 1, 1)


@pytest.fixture(scope="module")
def transactions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    first = np.random.default_rng(1).integers(0, 90, 1500).astype(float)
    sim = simulate_purchases(
        BetaGeoParams(0.5, 20.0, 0.8, 2.5),
        GammaGammaParams(6, 4, 15),
        first,
        end_day=450.0,
        seed=3,
    )
    path = tmp_path_factory.mktemp("cli") / "purchases.csv"
    lines = ["order_id,customer_id,date,amount,currency"]
    for n, (customer, day, amount) in enumerate(
        zip(sim.customer_ids, sim.days, sim.amounts, strict=True)
    ):
        when = ORIGIN + timedelta(days=float(day))
        lines.append(f"{n},cust-{customer},{when.isoformat()},{amount:.2f},EUR")
    path.write_text("\n".join(lines) + "\n")
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(backtest, list(args))
    return result.exit_code, result.output


def test_backtest_json_flag_prints_one_json_object(transactions: Path) -> None:
    # when run with --json on a CSV with extra columns
    code, output = run(
        "--transactions",
        str(transactions),
        "--calibration-end",
        "2024-09-27",
        "--holdout-end",
        "2025-03-26",
        "--time-unit",
        "day",
        "--json",
    )
    # then it succeeds and prints the report as JSON
    assert code == 0, output
    report = json.loads(output)
    assert report["time_unit"] == "day"
    assert report["customers"] == 1500
    assert report["models"]["bgnbd"]["seconds"] >= 0.0
    assert report["selected_model"] in {"bgnbd", "mbgnbd", "paretonbd"}
    assert report["models"]["paretonbd"]["converged"] is True


def test_backtest_without_json_prints_table(transactions: Path) -> None:
    code, output = run(
        "--transactions",
        str(transactions),
        "--calibration-end",
        "2024-09-27",
        "--holdout-end",
        "2025-03-26",
        "--horizon-days",
        "365",
    )
    assert code == 0, output
    assert "selected model:" in output
    assert "7+" in output
    assert "predicted CLV over 365 days" in output


def test_backtest_missing_column_is_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("customer,date,amount\n1,2024-01-01,3\n")
    code, output = run(
        "--transactions",
        str(path),
        "--calibration-end",
        "2024-02-01",
        "--holdout-end",
        "2024-03-01",
    )
    assert code == 2
    assert "customer_id" in output


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        ("1,yesterday,3", "date on line 2"),
        ("1,2024-01-01,abc", "amount on line 2"),
        (",2024-01-01,3", "customer_id on line 2"),
    ],
)
def test_backtest_bad_row_names_the_line(tmp_path: Path, row: str, fragment: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"customer_id,date,amount\n{row}\n")
    code, output = run(
        "--transactions",
        str(path),
        "--calibration-end",
        "2024-02-01",
        "--holdout-end",
        "2024-03-01",
    )
    assert code == 2
    assert fragment in output


def test_backtest_bad_date_option_is_usage_error(transactions: Path) -> None:
    code, output = run(
        "--transactions",
        str(transactions),
        "--calibration-end",
        "27/09/2024",
        "--holdout-end",
        "2025-03-26",
    )
    assert code == 2
    assert "--calibration-end" in output


def test_backtest_no_repeat_buyers_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("customer_id,date,amount\na,2024-01-01,3\nb,2024-01-02,4\n")
    code, output = run(
        "--transactions",
        str(path),
        "--calibration-end",
        "2024-02-01",
        "--holdout-end",
        "2024-03-01",
    )
    assert code == 2
    assert "repeat purchase" in output


@pytest.mark.parametrize(
    ("lines", "fragment"),
    [
        (["customer_id,date,amount", "a,2024-01-01,3", 'b,2024-01-02,"{huge}"'], "line 3"),
        (['customer_id,date,"amount{huge}"', "a,2024-01-01,3"], "line 1"),
    ],
)
def test_backtest_field_past_the_csv_limit_names_the_file_and_line(
    tmp_path: Path, lines: list[str], fragment: str
) -> None:
    # given a CSV with one field longer than the csv module reads (131,072 characters)
    path = tmp_path / "huge.csv"
    path.write_text("\n".join(lines).format(huge="x" * 140_000) + "\n")
    # when it is backtested
    dates = ["--calibration-end", "2024-02-01", "--holdout-end", "2024-03-01"]
    result = CliRunner().invoke(backtest, ["--transactions", str(path), *dates])
    # then it is bad input, one message naming the file and the line, not a traceback
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert f"'--transactions': {fragment} of {path}: " in result.output
    assert "field larger than field limit" in result.output


@pytest.mark.parametrize("name", ["a-directory", "a-file.csv/inside.csv"])
def test_backtest_file_that_cannot_be_read_is_one_message(tmp_path: Path, name: str) -> None:
    # given a path that passed the option's checks, then cannot be opened as a file
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "a-file.csv").write_text("customer_id,date,amount\n")
    path = tmp_path / name
    # when it is read, then the error names the file and says why
    with pytest.raises(click.ClickException, match=re.escape(f"cannot read {path}: ")):
        _read_file(path)


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("2024-03-01", date(2024, 3, 1)),
        (" 2024-03-01T23:30:00 ", date(2024, 3, 1)),  # a local time: its own day
        ("2024-03-01T23:30:00-05:00", date(2024, 3, 2)),  # 04:30 on the 2nd in UTC
        ("2024-03-02T01:00:00+02:00", date(2024, 3, 1)),  # 23:00 on the 1st in UTC
    ],
)
def test_backtest_date_with_an_offset_is_the_day_in_utc(text: str, day: date) -> None:
    assert parse_day(text) == day.toordinal()


def test_backtest_table_shows_missing_figures_models_not_fitted_and_not_converged(
    tmp_path: Path,
) -> None:
    # given a small file: three customers, so most frequency groups are empty
    path = tmp_path / "purchases.csv"
    path.write_text(
        "customer_id,date,amount\na,2024-01-01,10\na,2024-02-01,12\nb,2024-01-01,5\n"
        "c,2024-01-03,7\nc,2024-03-03,8\nc,2024-05-03,9\nc,2024-08-03,9\n"
    )
    periods = ("--calibration-end", "2024-06-30", "--holdout-end", "2024-12-31")
    code, output = run("--transactions", str(path), *periods)
    assert code == 0, output
    # then an empty group's figures are "-", and the totals have one decimal
    assert re.search(r"^ {4}3 {10}0 +- +- +- +-$", output, re.MULTILINE), output
    assert re.search(r"^total {18}1\.0( +\d+\.\d){3}$", output, re.MULTILINE), output
    # and, from the same report with a model not fitted and one not converged
    code, output = run("--transactions", str(path), *periods, "--json")
    report = json.loads(output)
    report["models"]["mbgnbd"] = None
    report["models"]["paretonbd"]["converged"] = False
    lines = format_report(report)
    assert "mbgnbd       not fitted" in lines
    [pareto] = [line for line in lines if line.startswith("paretonbd ")]
    assert pareto.split()[-2] == "NO"
    [bgnbd] = [line for line in lines if line.startswith("bgnbd ")]
    assert bgnbd.split()[-2] == "yes"


def test_backtest_json_has_null_for_every_non_finite_figure() -> None:
    value = {"a": [1.5, math.inf, (-math.inf, 2)], "b": {"c": math.nan}, "d": "x"}
    assert _strict_json(value) == {"a": [1.5, None, [None, 2]], "b": {"c": None}, "d": "x"}
