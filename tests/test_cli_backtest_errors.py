"""`clvsync backtest` given input it cannot use: every such case exits 2, as a bad option does,
with one message naming the option, or the column and line of the CSV; its help names every
model it fits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from plugin.cli import main

PERIODS = ["--calibration-end", "2024-06-30", "--holdout-end", "2024-12-31"]
GOOD = "customer_id,date,amount\na,2024-01-01,10\na,2024-02-01,12\nb,2024-01-01,5\n"


def backtest(tmp_path: Path, content: str, *args: str) -> Result:
    path = tmp_path / "purchases.csv"
    path.write_text(content)
    return CliRunner().invoke(main, ["backtest", "--transactions", str(path), *args])


def error_line(result: Result) -> str:
    """The message: exit 2 through click, no traceback, the error as the last line of stderr."""
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.stderr
    return lines[-1]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a,2024-03-01,abc", "amount on line 3 of {path}: 'abc' is not a number"),
        ("a,2024-03-01,", "amount on line 3 of {path}: '' is not a number"),
        ("a,2024-03-01,-5", "amount on line 3 of {path}: '-5' is negative"),
        ("a,2024-03-01,inf", "amount on line 3 of {path}: 'inf' is not a finite number"),
        ("a,yesterday,3", "date on line 3 of {path}: 'yesterday' is not an ISO 8601 date"),
        (" ,2024-03-01,3", "customer_id on line 3 of {path}: empty"),
        ("a,2024-03-01", "line 3 of {path} has no amount"),
    ],
)
def test_backtest_bad_csv_value_exits_2_naming_column_and_line(
    tmp_path: Path, line: str, message: str
) -> None:
    # given a CSV with one value it cannot read, on the file's third line
    content = f"customer_id,date,amount\na,2024-01-01,10\n{line}\nb,2024-01-01,5\n"
    # when backtested
    result = backtest(tmp_path, content, *PERIODS)
    # then it is bad input for --transactions, naming the column, the line and the file
    expected = message.format(path=tmp_path / "purchases.csv")
    assert f"Invalid value for '--transactions': {expected}" in error_line(result)
    assert "could not convert" not in result.output


def test_backtest_line_number_counts_blank_lines(tmp_path: Path) -> None:
    # given a blank line before the bad one: the csv reader skips it, the file has it
    content = "customer_id,date,amount\na,2024-01-01,10\n\na,2024-03-01,abc\n"
    result = backtest(tmp_path, content, *PERIODS)
    assert "amount on line 4 of " in error_line(result)


@pytest.mark.parametrize("holdout_end", ["2024-06-01", "2024-06-30"])
def test_backtest_holdout_end_not_after_calibration_end_exits_2(
    tmp_path: Path, holdout_end: str
) -> None:
    # given a holdout that ends before the calibration does, or on the same day (no holdout)
    args = ["--calibration-end", "2024-06-30", "--holdout-end", holdout_end]
    # when backtested, then the option is refused as a bad option is
    line = error_line(backtest(tmp_path, GOOD, *args))
    refused = f"Invalid value for '--holdout-end': {holdout_end} is not after --calibration-end"
    assert refused in line


def test_backtest_period_days_may_have_spaces_around_them(tmp_path: Path) -> None:
    # a day pasted with spaces around it (as from a spreadsheet cell) is still the day
    args = ["--calibration-end", " 2024-06-30 ", "--holdout-end", "2024-12-31 "]
    result = backtest(tmp_path, GOOD, *args, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["holdout"]["days"] == 184


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("customer_id,date,amount\na,2024-01-01,3\nb,2024-01-02,4\n", "repeat purchase"),
        ("customer_id,date,amount\na,2024-09-01,3\na,2024-10-01,4\n", "by the calibration end"),
    ],
)
def test_backtest_purchases_with_nothing_to_fit_exit_2(
    tmp_path: Path, content: str, fragment: str
) -> None:
    # given purchases without a repeat purchase, or none by the calibration end
    line = error_line(backtest(tmp_path, content, *PERIODS))
    # then it is bad input, naming the file
    assert "purchases.csv: " in line and fragment in line


def test_backtest_not_utf8_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "purchases.csv"
    path.write_bytes("customer_id,date,amount\nJosé,2024-01-01,10\n".encode("latin-1"))
    result = CliRunner().invoke(main, ["backtest", "--transactions", str(path), *PERIODS])
    line = error_line(result)
    assert "Invalid value for '--transactions': " in line and "is not UTF-8 text" in line


def test_backtest_help_names_every_model_it_fits(tmp_path: Path) -> None:
    # given the models a backtest reports
    report = CliRunner().invoke(
        main, ["backtest", "--transactions", _write(tmp_path, GOOD), *PERIODS, "--json"]
    )
    assert report.exit_code == 0, report.output
    # when its help is read
    text = " ".join(CliRunner().invoke(main, ["backtest", "--help"]).output.split())
    # then it names each of them, and that one repeat model is selected
    for name in ("BG/NBD", "MBG/NBD", "Pareto/NBD", "Gamma-Gamma"):
        assert name in text
    assert "select" in text
    assert '"paretonbd"' in report.stdout and '"selected_model"' in report.stdout


def _write(tmp_path: Path, content: str) -> str:
    path = tmp_path / "good.csv"
    path.write_text(content)
    return str(path)
