"""Run a shop's push and SIGKILL this process once the store has applied a call setting or
deleting products' metafields, before its answer is recorded.

Used by tests/writeback/test_product_push_unanswered.py:
`python -m tests.writeback.kill_push DATABASE_URL SHOP_ID ADMIN_URL`. The kill is injected by
replacing `AdminClient.execute`, which returns the store's answer to the push.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

import anyio
import httpx
from sqlmodel import Session

from jobs.context import JobContext
from jobs.writeback import push_shop
from plugin.shopify.client import AdminClient
from plugin.store.db import make_engine
from plugin.store.models import Shop
from tests.helpers import make_settings

execute = AdminClient.execute


async def execute_and_die(
    self: AdminClient, query: str, variables: Mapping[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    data = await execute(self, query, variables, **kw)
    if query.startswith("mutation") and '"ownerId": "gid://shopify/Product/' in json.dumps(
        variables
    ):
        sys.stdout.write("product call applied, dying before its answer is recorded\n")
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return data


async def main(url: str, shop_id: int, admin_url: str) -> None:
    engine = make_engine(url)
    with Session(engine, expire_on_commit=False) as session:
        shop = session.get(Shop, shop_id)
    assert shop is not None
    async with httpx.AsyncClient(timeout=10) as http:
        ctx = JobContext(engine, make_settings(SHOPIFY_ADMIN_URL=admin_url), http)
        await push_shop(ctx, shop, None)


if __name__ == "__main__":
    AdminClient.execute = execute_and_die  # type: ignore[method-assign]
    anyio.run(main, sys.argv[1], int(sys.argv[2]), sys.argv[3])
    sys.exit("the push returned instead of being killed")
