"""The products' part of the push: each product's recommendation metafields (frequently bought
together, upsell, and Shopify's complementary products if the shop asks), sent only when they
changed, with metafieldsSet (25 per call) and metafieldsDelete, recorded with their reasons.

A value the store refuses (Shopify's complementary-products namespace may not accept an app's
writes: unconfirmed) is recorded as refused and left for the next push; it never stops the
rest."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
from sqlalchemy import Engine

from jobs.pusher import (
    METAFIELDS_PER_SET,
    MUTATION_COST,
    SETS_PER_CALL,
    batches,
    metafields_set_document,
    user_errors,
)
from plugin.domain.writeback import WritebackSettings, product_values
from plugin.shopify.client import AdminClient
from plugin.shopify.gid import gid
from plugin.store.recommendations import product_state, record_product_metafields

log = logging.getLogger(__name__)
LIST_OF_PRODUCTS = "list.product_reference"

Change = tuple[int, str, str, str | None, str]  # product, name, action, value, reason


@dataclass(frozen=True)
class ProductChange:
    product_id: int
    pushed: dict[str, str]  # "namespace.key" -> value
    to_set: tuple[tuple[str, str], ...]
    to_delete: tuple[str, ...]


def plan_products(engine: Engine, shop_id: int, settings: WritebackSettings) -> list[ProductChange]:
    changes = []
    for held in product_state(engine, shop_id):
        desired = product_values(held.partners, settings)
        to_set = tuple(sorted((k, v) for k, v in desired.items() if held.pushed.get(k) != v))
        to_delete = tuple(sorted(set(held.pushed) - set(desired)))
        if to_set or to_delete:
            changes.append(ProductChange(held.product_id, held.pushed, to_set, to_delete))
    return changes


def _split(name: str) -> tuple[str, str]:
    namespace, _, key = name.rpartition(".")
    return namespace, key


class ProductPusher:
    def __init__(
        self,
        engine: Engine,
        shop_id: int,
        client: AdminClient,
        *,
        job_run_id: int | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.engine, self.shop_id, self.client = engine, shop_id, client
        self.job_run_id, self.clock = job_run_id, clock
        self.set, self.deleted, self.refused = 0, 0, 0

    async def push(self, changes: Sequence[ProductChange]) -> dict[str, int]:
        setting = [c for c in changes if c.to_set]
        for batch in batches(setting, METAFIELDS_PER_SET * SETS_PER_CALL, _count):
            await self._set(list(batches(batch, METAFIELDS_PER_SET, _count)))
        deleting = [c for c in changes if c.to_delete]
        for batch in batches(deleting, 250, lambda c: len(c.to_delete)):
            await self._delete(batch)
        return {
            "product_metafields_set": self.set,
            "product_metafields_deleted": self.deleted,
            "product_calls_refused": self.refused,
        }

    async def _set(self, groups: list[list[ProductChange]]) -> None:
        variables = {f"m{n}": _inputs(group) for n, group in enumerate(groups)}
        data = await self.client.execute(
            metafields_set_document(len(groups)), variables, cost=MUTATION_COST * len(groups)
        )
        held: dict[int, dict[str, str]] = {}
        audit: list[Change] = []
        for n, group in enumerate(groups):
            errors = user_errors(data.get(f"m{n}"))
            if errors is None or errors:  # atomic: the whole call was refused
                self.refused += 1
                message = "; ".join(e["message"] for e in errors or [])
                log.warning("product metafields refused: %s", message or "no answer")
                audit += [(c.product_id, "*", "refused", None, message) for c in group]
                continue
            for change in group:
                held[change.product_id] = dict(change.pushed) | dict(change.to_set)
                self.set += len(change.to_set)
                audit += [
                    (change.product_id, name, "set", value, "recommendations changed")
                    for name, value in change.to_set
                ]
        await self._record(held, audit)

    async def _delete(self, batch: list[ProductChange]) -> None:
        identifiers = [
            {"ownerId": gid("Product", c.product_id), "namespace": ns, "key": key}
            for c in batch
            for ns, key in map(_split, c.to_delete)
        ]
        data = await self.client.execute(
            "mutation DeleteProducts($m: [MetafieldIdentifierInput!]!) "
            "{ metafieldsDelete(metafields: $m) { userErrors { field message } } }",
            {"m": identifiers},
            cost=MUTATION_COST,
        )
        if user_errors(data.get("metafieldsDelete")):
            self.refused += 1
            return  # left as pushed: tried again next time
        held = {
            c.product_id: {k: v for k, v in c.pushed.items() if k not in c.to_delete} for c in batch
        }
        self.deleted += sum(len(c.to_delete) for c in batch)
        audit: list[Change] = [
            (c.product_id, name, "delete", None, "no recommendation any more")
            for c in batch
            for name in c.to_delete
        ]
        await self._record(held, audit)

    async def _record(self, held: dict[int, dict[str, str]], audit: list[Change]) -> None:
        def record() -> None:
            record_product_metafields(
                self.engine,
                self.shop_id,
                held,
                audit,
                via="call",
                job_run_id=self.job_run_id,
                now=self.clock(),
            )

        await anyio.to_thread.run_sync(record)


def _count(change: ProductChange) -> int:
    return len(change.to_set)


def _inputs(group: list[ProductChange]) -> list[dict[str, Any]]:
    return [
        {
            "ownerId": gid("Product", change.product_id),
            "namespace": _split(name)[0],
            "key": _split(name)[1],
            "type": LIST_OF_PRODUCTS,
            "value": value,
        }
        for change in group
        for name, value in change.to_set
    ]
