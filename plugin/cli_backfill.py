"""`clvsync backfill`: the shop's order history read from the store into the ledger, now."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import anyio
import click
import httpx
from sqlalchemy import Engine

from jobs.backfill import APPLY_BATCH, backfill_shop
from jobs.context import JobContext
from jobs.runs import RunResult, run_job
from plugin.cli_jobs import check_authorised
from plugin.settings import Settings
from plugin.store.models import Shop


def _progress(done: int, total: int) -> None:
    """The applied share on stderr: rewritten in place on a terminal, else every 10,000."""
    line = f"orders applied: {done:,}/{total:,} ({done / max(total, 1):.0%})"
    if sys.stderr.isatty():
        click.echo(f"\r{line}", err=True, nl=done == total)
    elif done == total or done % 10_000 < APPLY_BATCH:
        click.echo(line, err=True)


def _reading(status: str, objects: int) -> None:
    """The bulk query's state on stderr: rewritten in place on a terminal, else each poll."""
    line = f"bulk query {status.lower()}: {objects:,} objects read by the store"
    if sys.stderr.isatty():
        click.echo(f"\r{line}", err=True, nl=status != "RUNNING" and status != "CREATED")
    else:
        click.echo(line, err=True)


async def _run(engine: Engine, settings: Settings, shop: Shop, since: datetime | None) -> Any:
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0)) as http:
        ctx = JobContext(engine, settings, http)

        async def backfill(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
            return await backfill_shop(
                ctx, shop, run_id, since=since, progress=_progress, reading=_reading
            )

        assert shop.id is not None
        return await run_job(ctx, shop.id, "backfill", backfill, lease_seconds=1800.0)


def run_backfill(
    engine: Engine, settings: Settings, shop: Shop, since: datetime | None, as_json: bool
) -> None:
    """Run the backfill for one shop and report it; exit 1 if it failed."""
    check_authorised(shop)
    click.echo(f"reading {shop.domain}'s orders with a bulk query ...", err=True)
    result: RunResult = anyio.run(_run, engine, settings, shop, since)
    summary = {"outcome": result.outcome, "run_id": result.run_id, **dict(result.counts)}
    if result.error:
        summary["error"] = result.error
    if as_json:
        click.echo(json.dumps(summary, default=str))
    elif result.outcome == "ok":
        click.echo(
            f"{summary['orders_read']:,} orders read: {summary['orders_applied']:,} applied, "
            f"{summary['orders_unchanged']:,} already held, {summary['test_orders_skipped']:,} "
            f"test orders skipped, {summary['orders_rejected']:,} unreadable "
            f"({summary['seconds']:.1f} s)"
        )
    else:
        click.echo(f"backfill {result.outcome}: {result.error}", err=True)
    if result.outcome != "ok":
        raise SystemExit(1)
