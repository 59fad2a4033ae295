"""Write-back: push each customer's desired tags and metafields to the store, and reconcile.

(Being built in this session: the push and the reconcile land here.)
"""

from __future__ import annotations

from jobs.context import JobContext
from plugin.store.models import Shop


async def push_shop(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, int]:
    """Send the differences between the desired and the pushed state; counts of what was done."""
    raise NotImplementedError("push is being built")


async def reconcile_shop(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, int]:
    """Read the store's state back, repair drift, then push; counts of what was done."""
    raise NotImplementedError("reconcile is being built")
