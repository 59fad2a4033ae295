"""The costs job: every variant's cost per item, read from the store for historical CLV as gross
margin (`scoring.margin_from_costs`).

One bulk query reads each product's variants with their inventory item's `unitCost` (the
"Cost per item" a merchant enters in the admin; `read_products` reaches it since 2025-01), and
the shop's held costs are replaced by what it found, in one transaction: a cost the merchant
cleared, or a variant deleted, is gone from the figures from the next recompute on. A cost in
another currency than the shop's is not taken (the ledger's amounts are in the shop's); nor is
one the store does not show the app (null: a staff permission can hide product costs).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import anyio

from jobs.context import JobContext
from jobs.shop_settings import scoring_settings
from jobs.writeback import admin_client, marking_refused_token
from plugin.shopify.bulk import BulkRunner, jsonl_lines
from plugin.shopify.gid import gid_number
from plugin.store.costs import replace_costs
from plugin.store.models import Shop

COSTS_QUERY = (
    "{ products { edges { node { id variants { edges { node { id "
    "inventoryItem { unitCost { amount currencyCode } } } } } } } } }"
)
NOT_ASKED = "scoring.margin_from_costs is off"


class CostsError(RuntimeError):
    """The variants' costs could not be read."""


@dataclass
class CostCounts:
    variants: int = 0  # read from the store
    with_cost: int = 0  # of them, with a cost in the shop's currency: held from now on
    other_currency: int = 0  # with a cost in another currency: not taken


async def read_costs(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
    """Read every variant's cost per item and hold them in place of the last read; skipped,
    holding nothing, when the shop does not take historical CLV from product costs."""
    assert shop.id is not None
    shop_id = shop.id
    if not scoring_settings(shop).margin_from_costs:
        await anyio.to_thread.run_sync(replace_costs, ctx.engine, shop_id, {}, ctx.clock())
        return {"skipped": NOT_ASKED}
    client = admin_client(ctx, shop)
    runner = BulkRunner(client, ctx.http, sleep=ctx.sleep)
    with tempfile.TemporaryDirectory(prefix="clvsync-costs-") as scratch:
        export = Path(scratch) / "variants.jsonl"
        async with marking_refused_token(ctx, shop):
            outcome = await runner.query(COSTS_QUERY, into=export)
        if outcome.status != "COMPLETED":
            raise CostsError(
                f"the costs bulk query ended {outcome.status}"
                + (f" ({outcome.error_code})" if outcome.error_code else "")
            )
        costs, counts = await anyio.to_thread.run_sync(
            variant_costs, jsonl_lines(export), shop.currency
        )
    await anyio.to_thread.run_sync(replace_costs, ctx.engine, shop_id, costs, ctx.clock())
    return asdict(counts)


def variant_costs(
    lines: Iterable[Mapping[str, Any]], currency: str | None
) -> tuple[dict[int, Decimal], CostCounts]:
    """Each variant's cost from the bulk export's lines (products' lines, which carry no
    `inventoryItem`, are passed over), taken when in `currency` (any, while the shop's is not
    known yet); CostsError names a cost that is not an amount."""
    costs: dict[int, Decimal] = {}
    counts = CostCounts()
    for line in lines:
        if "inventoryItem" not in line:
            continue
        counts.variants += 1
        cost = (line["inventoryItem"] or {}).get("unitCost")
        if cost is None:
            continue
        if currency is not None and cost["currencyCode"] != currency:
            counts.other_currency += 1
            continue
        try:
            amount = Decimal(cost["amount"])
        except (InvalidOperation, TypeError):
            amount = Decimal("NaN")
        if not amount.is_finite() or amount < 0:
            raise CostsError(f"variant {line['id']}: cost {cost['amount']!r} is not an amount")
        costs[gid_number(line["id"])] = amount
    counts.with_cost = len(costs)
    return costs, counts
