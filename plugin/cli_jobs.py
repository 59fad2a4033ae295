"""`clvsync jobs`: the scheduled jobs' recent runs, running one job for a shop now, and which
process runs them."""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import click
import httpx
from sqlalchemy import Engine
from sqlmodel import Session, select

from jobs.backfill import APPLY_BATCH, history_note, scheduled_backfill
from jobs.context import JobContext
from jobs.leader import current_leader
from jobs.runs import OK, SKIPPED, JobFn, RunResult, recent_runs, run_job
from jobs.scheduler import STANDARD_JOBS, JobSpec
from jobs.writeback import needs_reauth_message
from plugin.cli_database import load_command_settings, open_store, shop_or_fail
from plugin.cli_output import quiet_when_the_reader_stops
from plugin.settings import Settings
from plugin.store.models import JobRun, Shop

_BY_NAME = {spec.name: spec for spec in STANDARD_JOBS}


def job_spec(name: str) -> JobSpec:
    """The scheduled job `name` (its lease length, whether it needs the token ...)."""
    return _BY_NAME[name]


@click.group("jobs")
def jobs_group() -> None:
    """The scheduled jobs: rescore, refit, push, reconcile, prune, recommend, backfill."""


@jobs_group.command("runs")
@click.option("--shop", "domain", default=None, help="Only this shop's runs.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
def jobs_runs(domain: str | None, limit: int) -> None:
    """The most recent job runs, newest first: when, how they ended, what they counted."""
    with open_store(load_command_settings()) as engine:
        shop_id = None
        if domain is not None:
            with Session(engine) as session:
                shop_id = shop_or_fail(session, domain).id
        runs = recent_runs(engine, shop_id, limit)
        domains = _domains(engine)
    output = sys.stdout  # where click.echo writes
    with quiet_when_the_reader_stops(output):  # `clvsync jobs runs | head -1`
        _print_runs(runs, domains)
        output.flush()  # a reader gone is found here, not in Python's flush at exit


def _print_runs(runs: list[JobRun], domains: dict[int, str]) -> None:
    if not runs:
        click.echo("no job runs yet")
        return
    click.echo(
        f"{'id':>6} {'job':<10} {'shop':<32} {'started':<25} {'finished':<25} "
        f"{'outcome':<8} counts / error"
    )
    for run in runs:
        click.echo(_run_line(run, domains.get(run.shop_id, str(run.shop_id))))


@jobs_group.command("leader")
def jobs_leader() -> None:
    """Which process runs the scheduled jobs.

    On PostgreSQL, the one elected among the `clvsync serve` and `clvsync worker` processes: its
    host:pid, or exit 1 when none is running. On SQLite there is no election: the one process
    (`clvsync serve`, or `clvsync worker`) runs them, and the database does not record whether
    it is running; this says so (exit 0).
    """
    with open_store(load_command_settings()) as engine:
        if engine.dialect.name != "postgresql":
            click.echo(
                "SQLite: there is no election: the one process that runs the app (`clvsync"
                " serve`) or `clvsync worker` runs the jobs; whether it is running is not"
                " recorded in the database (`clvsync jobs runs` shows the last runs)"
            )
            return
        leader = current_leader(engine)
    if leader is None:
        raise click.ClickException(
            "no process runs the scheduled jobs on this database: start `clvsync worker`, or"
            " `clvsync serve` without --no-jobs"
        )
    client = f" from {leader.client}" if leader.client else ""
    click.echo(
        f"{leader.worker} runs the scheduled jobs (its lock connection{client}, opened "
        f"{leader.connected_at.isoformat(timespec='seconds')})"
    )


def _domains(engine: Engine) -> dict[int, str]:
    with Session(engine) as session:
        return {
            shop_id: domain
            for shop_id, domain in session.exec(select(Shop.id, Shop.domain))
            if shop_id is not None
        }


def _run_line(run: JobRun, domain: str) -> str:
    started = run.started_at.isoformat(timespec="seconds")
    finished = run.finished_at.isoformat(timespec="seconds") if run.finished_at else "-"
    detail = run.counts if run.error is None else f"{run.counts} {run.error}"
    return (
        f"{run.id:>6} {run.job:<10} {domain:<32} {started:<25} {finished:<25} "
        f"{run.outcome:<8} {detail}"
    )


@jobs_group.command(
    "run",
    help="Run one job for a shop now, recorded like a scheduled run; print its counts as JSON."
    f"\n\nJOB is one of: {', '.join(sorted(_BY_NAME))}.",
)
@click.argument("job", type=click.Choice(sorted(_BY_NAME)), metavar="JOB")
@click.option("--shop", "domain", required=True, help="The shop's NAME.myshopify.com domain.")
def jobs_run(job: str, domain: str) -> None:
    settings = load_command_settings()
    with open_store(settings) as engine:
        with Session(engine) as session:
            shop = shop_or_fail(session, domain)
        if _BY_NAME[job].needs_token:
            check_authorised(shop)
        click.echo(f"running {job} for {shop.domain} ...", err=True)
        result = run_now(settings, engine, shop, job)
    click.echo(json.dumps(dict(result.counts), sort_keys=True, default=str))
    if job == "backfill" and (note := history_note(result.counts)) is not None:
        click.echo(note, err=True)  # beside the JSON, which says the same in its keys


def run_summary(result: RunResult) -> dict[str, Any]:
    """A run as the commands print it in JSON: its outcome, run id and counts, and its error if
    it failed."""
    summary = {"outcome": result.outcome, "run_id": result.run_id, **dict(result.counts)}
    if result.error:
        summary["error"] = result.error
    return summary


def check_authorised(shop: Shop) -> None:
    """A ClickException naming the fix when the store refused the shop's token (a 401 marked
    it): jobs that call the store wait until a new token is stored (the scheduler skips them)."""
    if shop.needs_reauth:
        raise click.ClickException(needs_reauth_message(shop.domain))


def run_now(settings: Settings, engine: Engine, shop: Shop, job: str) -> RunResult:
    """Run the scheduled job `job` for the shop now, under its lease and recorded as a run; a
    ClickException (exit 1) when another worker holds the lease or the run failed."""
    assert shop.id is not None
    result = anyio.run(run_once, settings, engine, shop.id, _BY_NAME[job])
    if result.outcome != OK:
        verb = "not run" if result.outcome == SKIPPED else "failed"
        raise click.ClickException(f"{job} for {shop.domain} {verb}: {result.error}")
    return result


async def run_once(
    settings: Settings, engine: Engine, shop_id: int, spec: JobSpec, fn: JobFn | None = None
) -> RunResult:
    """Run the job now (`fn`, or the scheduled one: the backfill showing its progress), under
    its lease and recorded as a run, with the app's HTTP client settings."""
    from plugin.app import HTTP_LIMITS, HTTP_TIMEOUT

    run = fn or (_backfill_with_progress if spec.name == "backfill" else spec.run)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, limits=HTTP_LIMITS) as http:
        ctx = JobContext(engine, settings, http)
        return await run_job(ctx, shop_id, spec.name, run, lease_seconds=spec.lease_seconds)


async def _backfill_with_progress(
    ctx: JobContext, shop: Shop, run_id: int | None
) -> dict[str, Any]:
    """`scheduled_backfill`, reporting its progress on stderr as `clvsync backfill` does."""
    return await scheduled_backfill(
        ctx, shop, run_id, progress=show_processed, reading=show_reading
    )


def show_processed(done: int, total: int) -> None:
    """The share of the orders read that the backfill has processed (applied, or found already
    held, a test order or unreadable: its summary says how many of each) on stderr: rewritten
    in place on a terminal, else every 10,000."""
    line = f"orders processed: {done:,}/{total:,} ({done / max(total, 1):.0%})"
    if sys.stderr.isatty():
        click.echo(f"\r{line}", err=True, nl=done == total)
    elif done == total or done % 10_000 < APPLY_BATCH:
        click.echo(line, err=True)


def show_reading(status: str, objects: int) -> None:
    """The backfill's bulk query state on stderr: rewritten in place on a terminal, else each
    poll."""
    line = f"bulk query {status.lower()}: {objects:,} objects read by the store"
    if sys.stderr.isatty():
        click.echo(f"\r{line}", err=True, nl=status != "RUNNING" and status != "CREATED")
    else:
        click.echo(line, err=True)
