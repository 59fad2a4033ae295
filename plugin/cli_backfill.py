"""`clvsync backfill`: the shop's order history read from the store into the ledger, now."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import anyio
import click
from sqlalchemy import Engine

from jobs.backfill import backfill_shop, history_note
from jobs.context import JobContext
from jobs.runs import RunResult
from plugin.cli_jobs import (
    check_authorised,
    job_spec,
    run_once,
    run_summary,
    show_processed,
    show_reading,
)
from plugin.settings import Settings
from plugin.store.models import Shop


async def _run(engine: Engine, settings: Settings, shop: Shop, since: datetime | None) -> Any:
    async def backfill(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
        return await backfill_shop(
            ctx, shop, run_id, since=since, progress=show_processed, reading=show_reading
        )

    assert shop.id is not None
    return await run_once(settings, engine, shop.id, job_spec("backfill"), backfill)


def run_backfill(
    engine: Engine, settings: Settings, shop: Shop, since: datetime | None, as_json: bool
) -> None:
    """Run the backfill for one shop and report it; exit 1 if it failed."""
    check_authorised(shop)
    click.echo(f"reading {shop.domain}'s orders with a bulk query ...", err=True)
    result: RunResult = anyio.run(_run, engine, settings, shop, since)
    summary = run_summary(result)
    if as_json:
        click.echo(json.dumps(summary, default=str))
    elif result.outcome == "ok":
        seconds = summary["seconds"]
        click.echo(f"{_counts_line(summary)} ({seconds:.1f} s; {_run_of(result)}, ok)")
        if (note := history_note(summary)) is not None:
            click.echo(note)  # the figures above stand on this history only
    else:
        click.echo(f"backfill {result.outcome} ({_run_of(result)}): {result.error}", err=True)
    if result.outcome != "ok":
        raise SystemExit(1)


def _counts_line(summary: dict[str, Any]) -> str:
    return (
        f"{summary['orders_read']:,} orders read: {summary['orders_applied']:,} applied, "
        f"{summary['orders_unchanged']:,} already held, {summary['test_orders_skipped']:,} "
        f"test orders skipped, {summary['orders_rejected']:,} unreadable"
    )


def _run_of(result: RunResult) -> str:
    """The job run, as `--json` gives its `run_id`: a skipped run is not recorded."""
    return "not recorded" if result.run_id is None else f"run {result.run_id}"
