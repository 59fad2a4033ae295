"""`clvsync jobs run`: one scheduled job run now, as the scheduler would, seen from the CLI."""

# ruff: noqa: F811  (the dev store's fixtures are imported, and used by name)

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlmodel import Session, select

from jobs.backfill import APPLY_BATCH
from jobs.context import JobContext
from jobs.runs import DEFAULT_LEASE_SECONDS, OK
from jobs.scheduler import STANDARD_JOBS
from plugin.cli import main
from plugin.cli_jobs import job_spec, run_once, show_processed
from plugin.store.models import JobLease, JobRun, Shop
from tests.devstore.conftest import (  # noqa: F401
    DevStoreFactory,
    anyio_backend,
    devstore_factory,
    live_switch,
)
from tests.helpers import T0, add_shop, make_settings
from tests.test_backfill import installed
from tests.test_cli_export import into_closed_pipe
from tests.test_compliance import cli_env


def test_jobs_run_backfill_shows_its_progress_as_the_backfill_command_does(
    engine: Engine, devstore_factory: DevStoreFactory, migrated_url: str
) -> None:
    # given a shop whose store holds orders the ledger lacks
    store, live, _ = installed(engine, devstore_factory, 40, 11)
    env = {**cli_env(migrated_url), "SHOPIFY_ADMIN_URL": live.base_url}
    # when the daily backfill is run now
    args = ["jobs", "run", "backfill", "--shop", store.shop_domain]
    result = CliRunner().invoke(main, args, env=env)
    # then it reads them all, saying how the bulk query and the applying go
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    assert counts["orders_read"] == len(store.orders)
    assert "bulk query completed:" in result.stderr and "orders processed:" in result.stderr
    # and its counts are printed by name, in order, as every job's are (a stable line to diff)
    assert list(counts) == sorted(counts)


def test_jobs_run_help_names_each_job_whole_under_the_metavar_job() -> None:
    # when the help of `jobs run` is read at 80 columns
    result = CliRunner().invoke(
        main, ["jobs", "run", "--help"], prog_name="clvsync", terminal_width=80
    )
    # then the usage names the argument JOB, not the choices wrapped mid-word
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: clvsync jobs run [OPTIONS] JOB\n"), result.output
    # and the text lists every job by its whole name
    for spec in STANDARD_JOBS:
        assert re.search(rf"\b{spec.name}\b", result.output), spec.name


def test_jobs_leader_on_sqlite_does_what_its_help_says(sqlite_path: Path) -> None:
    # given a SQLite database, and no process running the jobs
    env = cli_env(f"sqlite:///{sqlite_path}")
    # when asked which process runs the jobs
    result = CliRunner().invoke(main, ["jobs", "leader"], env=env)
    help_text = " ".join(CliRunner().invoke(main, ["jobs", "leader", "--help"]).output.split())
    # then it says there is no election and that the database cannot tell: exit 0, as its help
    # says for SQLite (exit 1 when none runs is PostgreSQL's, where the election tells)
    assert result.exit_code == 0, result.output
    assert "there is no election" in result.stdout and "not recorded" in result.stdout
    assert "On SQLite there is no election" in help_text and "(exit 0)" in help_text
    assert "On PostgreSQL" in help_text and "exit 1 when none is running" in help_text


def record_a_running_refit(engine: Engine) -> None:
    """A refit run of the shop, started at T0 and not finished."""
    shop = add_shop(engine)
    with Session(engine) as session, session.begin():
        session.add(JobRun(shop_id=shop.id, job="refit", worker="host:1", started_at=T0))


def test_jobs_runs_into_a_pipe_nobody_reads_stops_quietly_as_export_does(
    engine: Engine, migrated_url: str
) -> None:
    # given a job run recorded
    record_a_running_refit(engine)
    # when the runs are listed into a pipe nobody reads any more (`clvsync jobs runs | head -1`)
    done = into_closed_pipe(migrated_url, "jobs", "runs")
    # then it stops as a Unix tool stopped by SIGPIPE does: quietly, with status 128 + 13
    assert done.returncode == 141, done.stderr
    assert done.stderr == ""


def test_jobs_runs_shows_a_run_still_running_as_not_finished(
    engine: Engine, migrated_url: str
) -> None:
    # given a run that has not finished
    record_a_running_refit(engine)
    # when the runs are listed, then its finish is "-", in its column
    result = CliRunner().invoke(main, ["jobs", "runs"], env=cli_env(migrated_url))
    assert result.exit_code == 0, result.output
    [_, line] = result.stdout.splitlines()
    assert line.split()[3:6] == [T0.isoformat(timespec="seconds"), "-", "running"]


@pytest.mark.anyio
async def test_a_job_run_now_holds_its_lease_as_long_as_the_scheduler_would(
    engine: Engine,
) -> None:
    # given a job whose lease is longer than the default (the refit's half hour)
    shop = add_shop(engine)
    assert shop.id is not None
    spec = job_spec("refit")
    assert spec.lease_seconds > DEFAULT_LEASE_SECONDS
    left: list[float] = []

    async def look_at_the_lease(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
        with Session(engine) as session:
            lease = session.exec(select(JobLease).where(JobLease.shop_id == shop.id)).one()
        left.append((lease.expires_at - datetime.now(UTC)).total_seconds())
        return {}

    # when it is run now, as `clvsync jobs run` does
    result = await run_once(make_settings(), engine, shop.id, spec, look_at_the_lease)
    # then its lease runs as long as the scheduled job's would
    assert result.outcome == OK
    [seconds] = left
    assert spec.lease_seconds - 60 < seconds <= spec.lease_seconds


def test_backfill_progress_off_a_terminal_says_every_ten_thousand_orders_and_the_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # when 25,250 orders are processed in batches, with stderr not a terminal (a log file)
    total = 25_250
    for done in [*range(APPLY_BATCH, total, APPLY_BATCH), total]:
        show_processed(done, total)
    # then a line is written as each ten thousand is passed, and at the end
    assert capsys.readouterr().err.splitlines() == [
        "orders processed: 10,000/25,250 (40%)",
        "orders processed: 20,000/25,250 (79%)",
        "orders processed: 25,250/25,250 (100%)",
    ]
