"""`clvsync push`: the push job run once now, or its dry run printed."""

from __future__ import annotations

import json
from typing import Any

import anyio
import click
import httpx
from sqlalchemy import Engine

from jobs.context import JobContext
from jobs.runs import run_job
from jobs.undo import check_undo, undo_run
from jobs.writeback import WritebackError, push_shop
from plugin.cli_jobs import check_authorised, run_summary
from plugin.settings import Settings
from plugin.store.models import Shop
from plugin.wording import counted, counted_whose


def _print_plan(plan: dict[str, Any]) -> None:
    tags = counted_whose(plan["customers_with_tag_changes"], "customer")
    metafields = counted_whose(plan["customers_with_metafield_changes"], "customer")
    click.echo(
        f"dry run: {tags} tags and {metafields} "
        f"metafields would change ({plan['skipped_refused']} refused before and unchanged, "
        "left alone)"
    )
    for label, key in (("add", "tags_added"), ("remove", "tags_removed")):
        for tag, count in plan[key].items():
            click.echo(f"  {label:<7} {tag:<32} {counted(count, 'customer')}")
    for label, key in (("set", "metafields_set"), ("delete", "metafields_deleted")):
        for name, count in plan[key].items():
            click.echo(f"  {label:<7} metafield {name:<22} {counted(count, 'customer')}")
    if "products_with_changes" in plan:
        products = counted_whose(plan["products_with_changes"], "product")
        click.echo(f"  {products} recommendation metafields would change")
    if plan.get("customers_to_read_back"):
        uncertain = counted_whose(plan["customers_to_read_back"], "customer")
        click.echo(
            f"  {uncertain} state will be read back from the store first (an earlier push got "
            "no answer for their changes), so the push may differ from this plan"
        )
    if plan.get("products_to_read_back"):
        unanswered = counted_whose(plan["products_to_read_back"], "product")
        click.echo(
            f"  {unanswered} recommendation metafields will be read back from the store first "
            "(an earlier push got no answer for some of their values), so the push may differ "
            "from this plan"
        )
    if "superseded" in plan:
        click.echo(f"  {plan['superseded']} of the run's changes replaced since, left alone")
    if plan["sample"]:
        click.echo("sample:")
    for sample in plan["sample"]:
        click.echo(f"  customer {sample['customer_id']}")
        for tag, reason in sample["add"].items():
            click.echo(f"    + {tag}: {reason}")
        for tag, reason in sample["remove"].items():
            click.echo(f"    - {tag}: {reason}")
        for key, value in sample["metafields"].items():
            click.echo(f"    = metafield {key}: {value}")
        for key in sample["delete_metafields"]:
            click.echo(f"    x metafield {key}")


async def _run(
    engine: Engine, settings: Settings, shop: Shop, dry_run: bool, undo: int | None
) -> Any:
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0)) as http:
        ctx = JobContext(engine, settings, http)
        assert shop.id is not None
        if undo is not None:
            if dry_run:
                return await undo_run(ctx, shop, None, target=undo, dry_run=True)
            check_undo(ctx, shop, undo)  # refused before a failed run is recorded

            async def job(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
                return await undo_run(ctx, shop, run_id, target=undo)

            return await run_job(ctx, shop.id, "undo", job)
        if dry_run:  # nothing is changed, so nothing to lease or record
            return await push_shop(ctx, shop, None, dry_run=True)
        return await run_job(ctx, shop.id, "push", push_shop)


def run_writeback(
    engine: Engine,
    settings: Settings,
    shop: Shop,
    dry_run: bool,
    as_json: bool,
    undo: int | None = None,
) -> None:
    """Run the push (or the undo of push run `undo`) for one shop now and report it; exit 1 if
    it failed."""
    if not dry_run:  # a dry run calls nothing
        check_authorised(shop)
    try:
        result = anyio.run(_run, engine, settings, shop, dry_run, undo)
    except WritebackError as exc:
        raise click.ClickException(str(exc)) from None
    if dry_run:
        if as_json:
            click.echo(json.dumps(result))
        else:
            _print_plan(result)
        return
    click.echo(json.dumps(run_summary(result), default=str))
    if result.outcome != "ok":
        raise SystemExit(1)
