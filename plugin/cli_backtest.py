"""`clvsync backtest`: fit the models on a purchases CSV and report how they predict a holdout."""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click
import numpy as np
from numpy.typing import NDArray

from plugin.domain.backtest import FREQUENCY_GROUPS, BacktestError, run_backtest
from plugin.domain.rfm_summary import TimeUnit
from plugin.domain.scoring_types import MAX_HORIZON_DAYS

REQUIRED_COLUMNS = ("customer_id", "date", "amount")
T = TypeVar("T")


@dataclass(frozen=True)
class Purchases:
    """Columns of the CSV: customer ids as text, days as proleptic ordinals, amounts as floats."""

    customer_ids: NDArray[np.str_]
    days: NDArray[np.float64]
    amounts: NDArray[np.float64]


def parse_day(text: str) -> int:
    """A date or ISO 8601 date-time as a day ordinal; aware date-times are taken in UTC."""
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date (like 2024-06-30)") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date().toordinal()


def _parse_amount(text: str) -> float:
    """A purchase amount: finite and >= 0, as the scorer requires of order amounts."""
    try:
        amount = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(amount):
        raise ValueError(f"{text!r} is not a finite number")
    if amount < 0:
        raise ValueError(f"{text!r} is negative (amounts must be >= 0)")
    return amount


def _parse_customer(text: str) -> str:
    customer = text.strip()
    if not customer:
        raise ValueError("empty")
    return customer


def _bad_file(message: str) -> click.BadParameter:
    """What is wrong with the file's content: bad input, exit 2, as a bad option is."""
    return click.BadParameter(message, param_hint="'--transactions'")  # quoted as click quotes


def read_purchases(stream: TextIO, source: str = "the CSV") -> Purchases:
    """Read `customer_id,date,amount` (header required, other columns ignored); a line that
    cannot be read is a BadParameter naming the column, the line and `source`."""
    reader = csv.DictReader(stream)
    try:
        return _read_rows(reader, source)
    except csv.Error as error:  # e.g. a field past the csv module's limit of 131,072 characters
        # the underlying reader's count: the DictReader's own counts only the lines it returned
        raise _bad_file(f"line {reader.reader.line_num} of {source}: {error}") from None


def _read_rows(reader: csv.DictReader[str], source: str) -> Purchases:
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise _bad_file(f"the header of {source} lacks column(s): {', '.join(missing)}")
    ids: list[str] = []
    days: list[int] = []
    amounts: list[float] = []
    for row in reader:
        line = reader.line_num  # the file's line: blank lines are skipped, not counted as rows
        ids.append(_field(row, "customer_id", _parse_customer, line, source))
        days.append(_field(row, "date", parse_day, line, source))
        amounts.append(_field(row, "amount", _parse_amount, line, source))
    return Purchases(np.array(ids, dtype=np.str_), np.array(days, float), np.array(amounts, float))


def _field(
    row: Mapping[str, str | None], column: str, parse: Callable[[str], T], line: int, source: str
) -> T:
    """`column` of the row read by `parse`; a BadParameter naming the column and line if not."""
    text = row[column]
    if text is None:  # the line has fewer fields than the header
        raise _bad_file(f"line {line} of {source} has no {column}")
    try:
        return parse(text)
    except ValueError as error:
        raise _bad_file(f"{column} on line {line} of {source}: {error}") from None


def _read_file(path: Path) -> Purchases:
    name = click.format_filename(path)
    # utf-8-sig: a spreadsheet's UTF-8 byte order mark is not part of the first column's name
    try:
        with path.open(newline="", encoding="utf-8-sig") as stream:
            return read_purchases(stream, name)
    except UnicodeDecodeError as error:
        raise _bad_file(
            f"{name} is not UTF-8 text (byte {error.start}): save the CSV as UTF-8"
        ) from None
    except OSError as error:  # the option checked the path, but not as this process opens it
        raise click.ClickException(f"cannot read {name}: {error.strerror or error}") from None


def _strict_json(value: Any) -> Any:
    """`value` with every non-finite float as None: JSON has no NaN or Infinity."""
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_strict_json(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _horizon_option(_ctx: click.Context, _param: click.Parameter, value: float | None) -> Any:
    if value is not None and math.isnan(value):  # FloatRange lets NaN through
        raise click.BadParameter("must be a number of days, not NaN")
    return value


def _day_option(value: str, name: str) -> int:
    try:
        return date.fromisoformat(value.strip()).toordinal()
    except ValueError:
        raise click.UsageError(f"{name} must be a date like 2024-06-30, not {value!r}") from None


@click.command("backtest")
@click.option(
    "--transactions",
    "transactions",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV with a header and columns customer_id,date,amount (one row per purchase).",
)
@click.option("--calibration-end", required=True, help="Last day of the calibration period.")
@click.option("--holdout-end", required=True, help="Last day of the holdout period.")
@click.option("--time-unit", type=click.Choice(["day", "week"]), default="week", show_default=True)
@click.option(
    "--horizon-days",
    type=click.FloatRange(min=0.0, max=MAX_HORIZON_DAYS),
    callback=_horizon_option,
    default=None,
    help=f"Horizon of the predicted CLV total, at most {MAX_HORIZON_DAYS:,.0f} [default: the "
    "holdout length].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def backtest(
    transactions: Path,
    calibration_end: str,
    holdout_end: str,
    time_unit: TimeUnit,
    horizon_days: float | None,
    as_json: bool,
) -> None:
    """Fit BG/NBD, MBG/NBD, Pareto/NBD and Gamma-Gamma up to the calibration end, predict the
    holdout, and select the repeat-purchase model that predicted it best (smallest holdout MSE
    per customer).

    Customers enter at their first purchase in the file; repeat purchases are counted per
    customer-day. Input it cannot use (an option, a line of the CSV, purchases with nothing to
    fit) exits 2, naming it.
    """
    calibration_day = _day_option(calibration_end, "--calibration-end")
    holdout_day = _day_option(holdout_end, "--holdout-end")
    if holdout_day <= calibration_day:
        raise click.BadParameter(
            f"{holdout_end} is not after --calibration-end {calibration_end}",
            param_hint="'--holdout-end'",
        )
    purchases = _read_file(transactions)
    try:
        report = run_backtest(
            purchases.customer_ids,
            purchases.days,
            purchases.amounts,
            calibration_end_day=calibration_day,
            holdout_end_day=holdout_day,
            clock=time.perf_counter,
            time_unit=time_unit,
            horizon_days=horizon_days,
        )
    except BacktestError as error:  # the purchases give nothing to fit: bad input too
        raise click.UsageError(f"{click.format_filename(transactions)}: {error}") from None
    if as_json:
        click.echo(json.dumps(_strict_json(report), allow_nan=False))
    else:
        click.echo("\n".join(format_report(report)))


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _model_lines(report: dict[str, Any]) -> Iterable[str]:
    yield f"time unit: {report['time_unit']}"
    yield f"{'model':<12} {'params':<52} {'log-lik':>12} {'conv':>5} {'seconds':>8}"
    for name, model in report["models"].items():
        if model is None:
            yield f"{name:<12} not fitted"
            continue
        params = " ".join(f"{k}={v:.4g}" for k, v in model["params"].items())
        yield (
            f"{name:<12} {params:<52} {model['log_likelihood']:>12.2f} "
            f"{'yes' if model['converged'] else 'NO':>5} {model['seconds']:>8.3f}"
        )
    yield f"selected model: {report['selected_model']} (smallest holdout MSE per customer)"


def _holdout_lines(report: dict[str, Any]) -> Iterable[str]:
    holdout = report["holdout"]
    names = list(holdout["predicted_repeat_purchases"])
    yield ""
    yield f"holdout: {holdout['days']:.0f} days; mean repeat purchases per customer"
    yield f"{'freq':>5} {'customers':>10} {'actual':>9} " + " ".join(f"{n:>9}" for n in names)
    for label in FREQUENCY_GROUPS:
        group = holdout["by_calibration_frequency"][label]
        predicted = " ".join(f"{_number(group['predicted'][n]):>9}" for n in names)
        yield f"{label:>5} {group['customers']:>10,} {_number(group['actual']):>9} {predicted}"
    totals = " ".join(f"{_number(holdout['predicted_repeat_purchases'][n], 1):>9}" for n in names)
    yield f"{'total':>5} {'':>10} {_number(holdout['actual_repeat_purchases'], 1):>9} {totals}"


def _clv_lines(report: dict[str, Any]) -> Iterable[str]:
    clv = report["clv_calibration"]
    yield ""
    yield f"customers: {report['customers']:,}, repeat customers: {report['repeat_customers']:,}"
    yield f"actual holdout spend: {_number(clv['actual_holdout_spend'], 2)}"
    for name, value in clv["predicted_holdout_spend"].items():
        horizon = clv["predicted_clv"][name]
        yield (
            f"predicted holdout spend ({name}): {_number(value, 2)}; "
            f"predicted CLV over {clv['horizon_days']:.0f} days: {_number(horizon, 2)}"
        )
    if clv["note"]:
        yield clv["note"]


def format_report(report: dict[str, Any]) -> list[str]:
    """The backtest report as lines of a readable table."""
    return [*_model_lines(report), *_holdout_lines(report), *_clv_lines(report)]
