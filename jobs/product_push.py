"""The products' part of the push: each product's recommendation metafields (frequently bought
together, upsell, and Shopify's complementary products if the shop asks), sent only when they
changed, with metafieldsSet (25 per call) and metafieldsDelete, recorded with their reasons.

A value the store refuses (Shopify's complementary-products namespace may not accept an app's
writes: unconfirmed; a partner deleted from the store) is recorded as refused and left for the
next push; it never stops the rest: a refused group of products is sent again product by
product, so only the product at fault stays refused."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
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
    error_text,
    metafields_set_document,
    user_errors,
)
from plugin.domain.writeback import WritebackSettings, product_values, same_value
from plugin.shopify.client import AdminClient
from plugin.shopify.gid import gid
from plugin.store.recommendations import product_state, record_product_metafields

log = logging.getLogger(__name__)
LIST_OF_PRODUCTS = "list.product_reference"

Change = tuple[int, str, str, str | None, str]  # product, name, action, value, reason
Answer = list[dict[str, Any]] | None  # a metafieldsSet's user errors; None: no answer


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
        to_set = tuple(
            sorted((k, v) for k, v in desired.items() if not same_value(held.pushed.get(k), v))
        )
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
        self.values_accepted: set[int] = set()  # products whose values this push set

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
        """The groups in one request; then the products of each refused group alone, in one
        request per group: metafieldsSet is atomic, so one product naming a deleted product
        would refuse its whole group, every push."""
        answers = await self._send(groups)
        refused = [g for g, errors in zip(groups, answers, strict=True) if _retried(g, errors)]
        await self._settle(
            (g, errors)
            for g, errors in zip(groups, answers, strict=True)
            if not _retried(g, errors)
        )
        for group in refused:
            alone = [[change] for change in group]
            await self._settle(zip(alone, await self._send(alone), strict=True))

    async def _send(self, groups: list[list[ProductChange]]) -> list[Answer]:
        """Each group's answer, from one request of aliased metafieldsSet mutations."""
        variables = {f"m{n}": _inputs(group) for n, group in enumerate(groups)}
        data = await self.client.execute(
            metafields_set_document(len(groups)), variables, cost=MUTATION_COST * len(groups)
        )
        return [user_errors(data.get(f"m{n}")) for n in range(len(groups))]

    async def _settle(self, answered: Iterable[tuple[list[ProductChange], Answer]]) -> None:
        """Record what the store confirmed; a group without an answer is left as pushed, to be
        sent again next push (recorded as set, it might never reach the store)."""
        held: dict[int, dict[str, str]] = {}
        audit: list[Change] = []
        for group, errors in answered:
            if errors is None:
                log.warning("product metafields: no answer, sent again next push")
            elif errors:  # atomic: the whole call was refused
                self.refused += 1
                message = error_text(errors)
                log.warning("product metafields refused: %s", message)
                audit += [(c.product_id, "*", "refused", None, message) for c in group]
            else:
                audit += self._accepted(group, held)
        if held or audit:
            await self._record(held, audit)

    def _accepted(
        self, group: list[ProductChange], held: dict[int, dict[str, str]]
    ) -> list[Change]:
        for change in group:
            held[change.product_id] = dict(change.pushed) | dict(change.to_set)
            self.values_accepted.add(change.product_id)
            self.set += len(change.to_set)
        return [
            (change.product_id, name, "set", value, "recommendations changed")
            for change in group
            for name, value in change.to_set
        ]

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
        held = {c.product_id: self._held_after_delete(c) for c in batch}
        self.deleted += sum(len(c.to_delete) for c in batch)
        audit: list[Change] = [
            (c.product_id, name, "delete", None, "no recommendation any more")
            for c in batch
            for name in c.to_delete
        ]
        await self._record(held, audit)

    def _held_after_delete(self, change: ProductChange) -> dict[str, str]:
        """The pushed values, with those this push set (only if the store took them), less the
        deleted: the record replaces the product's whole state."""
        was_set = change.product_id in self.values_accepted
        values = dict(change.pushed) | dict(change.to_set if was_set else ())
        return {k: v for k, v in values.items() if k not in change.to_delete}

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


def _retried(group: list[ProductChange], errors: Answer) -> bool:
    """A refused group of several products: sent again product by product."""
    return bool(errors) and len(group) > 1


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
