"""The products' part of the push: each product's recommendation metafields (frequently bought
together, upsell, and Shopify's complementary products if the shop asks), sent only when they
changed, with metafieldsSet (25 per call) and metafieldsDelete, recorded with their reasons.

A value the store refuses (Shopify's complementary-products namespace may not accept an app's
writes: unconfirmed; a partner deleted from the store) is recorded as refused and left for the
next push; it never stops the rest: a refused group of products is sent again product by
product, and a refused product without the values its errors name, so only the values at
fault stay refused. A partner the store says does not exist is recorded as gone and left out
of every list from the next plan on (`plugin/store/recommendations.py`).

Shopify's complementary-products field may hold the merchant's own list (Search & Discovery):
before its first write to a product, the push reads the field there, and a value it did not
write is the merchant's: kept, never overwritten nor deleted, and counted. Should the store
refuse the app's writes to that field as not authorised, the shop's `complementary_products`
setting is turned off, and the push says so: sent again, the field would be refused for every
product at every push.

A value sent without an answer (the call failed after its retries, or the push was stopped,
lost its lease or its process while the call was out; a value left unanswered when sent apart;
a delete refused) may or may not be in the store. So the values of each call are recorded as
unanswered for their products before it is sent (`record_unanswered`: written ahead, the record
holds however the call ends), and cleared only as the store's answer to them is recorded; the
next push reads the products still holding some back by id before it plans. Without that, a
later plan compares against a record that may be wrong either way (a value sent back to the one
recorded would not be sent, the store keeping the other), and a complementary-products value
the app wrote would be found there as one it did not write, taken for the merchant's and left
for good."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import anyio
from sqlalchemy import Engine

from jobs.pusher import (
    METAFIELDS_PER_SET,
    MUTATION_COST,
    SETS_PER_CALL,
    Apart,
    batches,
    error_text,
    metafields_set_document,
    set_apart,
    user_errors,
)
from jobs.readback import read_products
from plugin.domain.writeback import (
    COMPLEMENTARY_PRODUCTS,
    PRODUCT_METAFIELD_KEYS,
    WritebackSettings,
    product_values,
    same_value,
)
from plugin.shopify.client import AdminClient
from plugin.shopify.gid import gid, gid_number
from plugin.store.recommendations import (
    NOT_AVAILABLE,
    Unanswered,
    gone_products,
    kept_fields,
    product_state,
    record_gone,
    record_kept_fields,
    record_product_metafields,
    record_product_read_back,
    record_unanswered,
    turn_off_complementary_products,
    unanswered_products,
)
from plugin.wording import counted

log = logging.getLogger(__name__)
LIST_OF_PRODUCTS = "list.product_reference"
READ_IDS = 100  # products per read of the complementary field before a first write

Change = tuple[int, str, str, str | None, str]  # product, name, action, value, reason
Answer = list[dict[str, Any]] | None  # a metafieldsSet's user errors; None: no answer


@dataclass(frozen=True)
class ProductChange:
    product_id: int
    pushed: dict[str, str]  # "namespace.key" -> value
    to_set: tuple[tuple[str, str], ...]
    to_delete: tuple[str, ...]


def plan_products(engine: Engine, shop_id: int, settings: WritebackSettings) -> list[ProductChange]:
    """Each product's values to set and delete. Products the store no longer has are neither
    written to nor named (Shopify refuses a value naming one); a field holding the merchant's
    value is left alone."""
    gone = gone_products(engine, shop_id)
    changes = []
    for held in product_state(engine, shop_id):
        if held.product_id in gone:
            continue
        partners = {kind: [p for p in ids if p not in gone] for kind, ids in held.partners.items()}
        desired = product_values(partners, settings)
        desired = {name: value for name, value in desired.items() if name not in held.kept}
        to_set = tuple(
            sorted((k, v) for k, v in desired.items() if not same_value(held.pushed.get(k), v))
        )
        # of the app's fields alone: one an older reconcile took for the app's (a merchant's
        # own value in the namespace) is never deleted
        to_delete = tuple(sorted(n for n in set(held.pushed) - set(desired) if _apps_field(n)))
        if to_set or to_delete:
            changes.append(ProductChange(held.product_id, held.pushed, to_set, to_delete))
    return changes


def _apps_field(name: str) -> bool:
    """A product field the app writes: one of its keys, or Shopify's complementary products."""
    return name == COMPLEMENTARY_PRODUCTS or split_name(name)[1] in PRODUCT_METAFIELD_KEYS


def split_name(name: str) -> tuple[str, str]:
    """A metafield's "namespace.key" as (namespace, key)."""
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
        settings: WritebackSettings,
    ) -> None:
        """`settings`: the shop's write-back settings, which the read-back of unanswered
        values plans with."""
        self.engine, self.shop_id, self.client = engine, shop_id, client
        self.job_run_id, self.clock, self.settings = job_run_id, clock, settings
        self.set, self.deleted, self.refused = 0, 0, 0
        self.read_back = 0  # products read back
        self.unanswered: set[int] = set()  # products a call of this push got no answer for
        self.shared_refused = False  # the store refused the complementary field as not allowed
        # The values this push set, by product: a later delete records only those as held.
        self.values_accepted: dict[int, dict[str, str]] = {}

    async def push(self, changes: Sequence[ProductChange]) -> dict[str, int]:
        """Send `changes` (`plan_products`), those of products an earlier push left values
        unanswered to planned again once they are read back; counts of what was done."""
        changes = await self._read_back_unanswered(changes)
        changes = await self._leave_merchants_values(changes)
        setting = [c for c in changes if c.to_set]
        for batch in batches(setting, METAFIELDS_PER_SET * SETS_PER_CALL, _count):
            if self.shared_refused:  # turned off: the rest of the push goes without it
                batch = [c for c in map(_without_shared, batch) if c.to_set]
            await self._set(list(batches(batch, METAFIELDS_PER_SET, _count)))
        deleting = [c for c in changes if c.to_delete]
        for batch in batches(deleting, 250, lambda c: len(c.to_delete)):
            await self._delete(batch)
        return {
            "product_metafields_set": self.set,
            "product_metafields_deleted": self.deleted,
            "product_metafields_refused": self.refused,
            "product_fields_kept": await anyio.to_thread.run_sync(
                kept_fields, self.engine, self.shop_id
            ),
            "complementary_products_turned_off": int(self.shared_refused),
            "products_read_back": self.read_back,
            "products_unanswered": len(self.unanswered),
        }

    async def _read_back_unanswered(self, changes: Sequence[ProductChange]) -> list[ProductChange]:
        """The changes, those of the products an earlier push sent values to without an answer
        planned again after reading these products back by id and recording what the store
        holds (`record_product_read_back`): a value found in Shopify's complementary-products
        field that the app sent is the app's. That field is read if the shop asks for it, or
        if a value of it is unanswered (the setting turned off since: the plan deletes it). A
        product the store no longer holds holds nothing, and is gone, as one not active."""
        unanswered = await anyio.to_thread.run_sync(unanswered_products, self.engine, self.shop_id)
        if not unanswered:
            return list(changes)
        settings = self.settings
        namespace = settings.metafield_namespace
        named = any(COMPLEMENTARY_PRODUCTS in sent for sent in unanswered.values())
        shared = COMPLEMENTARY_PRODUCTS if settings.complementary_products or named else None
        product_ids = sorted(unanswered)
        log.info("reading back %s before the push", counted(len(product_ids), "product"))
        read = await read_products(
            self.client, namespace, product_ids, split_name(shared) if shared else None
        )

        def record() -> list[ProductChange]:
            now = self.clock()
            record_product_read_back(
                self.engine,
                self.shop_id,
                read.values,
                now,
                namespace=namespace,
                shared=shared,
                only=product_ids,
            )
            unseen = set(product_ids) - read.seen
            record_gone(self.engine, self.shop_id, dict.fromkeys(unseen, NOT_AVAILABLE), now)
            return plan_products(self.engine, self.shop_id, settings)

        planned = await anyio.to_thread.run_sync(record)
        self.read_back += len(product_ids)
        again = [c for c in planned if c.product_id in unanswered]
        kept = [c for c in changes if c.product_id not in unanswered]
        return sorted([*kept, *again], key=lambda c: c.product_id)

    async def _leave_merchants_values(
        self, changes: Sequence[ProductChange]
    ) -> list[ProductChange]:
        """The changes less the complementary-products values that would replace a value the
        app did not write (read from the store before the app's first write to a product):
        the merchant's, kept from now on."""
        first = [
            c.product_id
            for c in changes
            if COMPLEMENTARY_PRODUCTS in dict(c.to_set) and COMPLEMENTARY_PRODUCTS not in c.pushed
        ]
        found = await self._read_complementary(first)
        merchants = {
            c.product_id
            for c in changes
            if c.product_id in found
            and not same_value(found[c.product_id], dict(c.to_set)[COMPLEMENTARY_PRODUCTS])
        }
        if not merchants:
            return list(changes)
        log.info("complementary products: %d held the merchant's list, left", len(merchants))
        kept = [(product_id, COMPLEMENTARY_PRODUCTS) for product_id in sorted(merchants)]
        await anyio.to_thread.run_sync(
            record_kept_fields, self.engine, self.shop_id, kept, self.clock()
        )
        return [
            replace(c, to_set=tuple((n, v) for n, v in c.to_set if n != COMPLEMENTARY_PRODUCTS))
            if c.product_id in merchants
            else c
            for c in changes
        ]

    async def _read_complementary(self, product_ids: Sequence[int]) -> dict[int, str]:
        """The complementary-products value each of these products holds (none: absent)."""
        namespace, key = split_name(COMPLEMENTARY_PRODUCTS)
        query = (
            "query Complementary($ids: [ID!]!) { nodes(ids: $ids) { ... on Product { id "
            f'x: metafield(namespace: "{namespace}", key: "{key}") {{ value }} }} }} }}'
        )
        found: dict[int, str] = {}
        for start in range(0, len(product_ids), READ_IDS):
            chunk = product_ids[start : start + READ_IDS]
            data = await self.client.execute(query, {"ids": [gid("Product", p) for p in chunk]})
            for node in data.get("nodes") or []:
                if node and node.get("x"):
                    found[gid_number(node["id"])] = node["x"]["value"]
        return found

    async def _set(self, groups: list[list[ProductChange]]) -> None:
        """The groups in one request; then the products of each refused group apart (see
        `set_apart`): metafieldsSet is atomic, so one product naming a deleted product would
        refuse its whole group, and its own other values, every push."""
        answered = list(zip(groups, await self._send(groups), strict=True))
        await self._settle(group for group, errors in answered if errors == [])
        self._no_answer(
            [c.product_id for group, errors in answered if errors is None for c in group]
        )
        # a refused group's values stay unanswered until their answers apart are recorded
        refused = [change for group, errors in answered if errors for change in group]
        if refused:
            await self._set_apart(refused)

    async def _send(self, groups: list[list[ProductChange]]) -> list[Answer]:
        """Each group's answer, from one request of aliased metafieldsSet mutations."""
        variables = {f"m{n}": _inputs(group) for n, group in enumerate(groups)}
        async with self._sending(_values_sent(c for group in groups for c in group)):
            data = await self.client.execute(
                metafields_set_document(len(groups)), variables, cost=MUTATION_COST * len(groups)
            )
        return [user_errors(data.get(f"m{n}")) for n in range(len(groups))]

    async def _settle(self, accepted: Iterable[list[ProductChange]]) -> None:
        """Record the values of the groups the store took."""
        held: dict[int, dict[str, str]] = {}
        audit: list[Change] = []
        answered: dict[int, list[str]] = {}
        for group in accepted:
            for change in group:
                audit += self._accepted(change, dict(change.to_set), held)
                answered[change.product_id] = [name for name, _ in change.to_set]
        await self._record(held, audit, answered)

    async def _set_apart(self, changes: list[ProductChange]) -> None:
        inputs = [_inputs([change]) for change in changes]
        async with self._sending(_values_sent(changes)):
            results = await set_apart(self.client, inputs)
        self._no_answer(
            [c.product_id for c, result in zip(changes, results, strict=True) if result.unanswered]
        )
        held: dict[int, dict[str, str]] = {}
        audit: list[Change] = []
        gone: dict[int, str] = {}
        answered: dict[int, list[str]] = {}
        for change, sent, result in zip(changes, inputs, results, strict=True):
            accepted = dict(change.to_set[i] for i in result.accepted)
            audit += self._accepted(change, accepted, held) + self._refused(change, result)
            if settled := [change.to_set[i][0] for i in [*result.accepted, *result.refused]]:
                answered[change.product_id] = settled
            gone |= result.gone_products(sent)
            if not self.shared_refused and _shared_not_allowed(change, result):
                self.shared_refused = True
                log.error(
                    "the store refuses the app's writes to Shopify's complementary-products "
                    "field (%s): complementary_products turned off for shop %d",
                    error_text(result.refused[_shared_index(change)]),
                    self.shop_id,
                )
                await anyio.to_thread.run_sync(
                    turn_off_complementary_products, self.engine, self.shop_id
                )
        if gone:
            log.warning("products not in the store, left out from now on: %s", sorted(gone))
            await anyio.to_thread.run_sync(
                record_gone, self.engine, self.shop_id, gone, self.clock()
            )
        await self._record(held, audit, answered)

    def _accepted(
        self, change: ProductChange, accepted: dict[str, str], held: dict[int, dict[str, str]]
    ) -> list[Change]:
        if not accepted:
            return []
        held[change.product_id] = dict(change.pushed) | accepted
        self.values_accepted[change.product_id] = accepted
        self.set += len(accepted)
        return [
            (change.product_id, name, "set", value, "recommendations changed")
            for name, value in accepted.items()
        ]

    def _refused(self, change: ProductChange, result: Apart) -> list[Change]:
        self.refused += len(result.refused)
        if result.refused:
            log.warning(
                "product %d metafields refused: %s",
                change.product_id,
                [change.to_set[i][0] for i in sorted(result.refused)],
            )
        return [
            (change.product_id, name, "refused", value, why)
            for name, value, why in result.refusals(change.to_set)
        ]

    async def _delete(self, batch: list[ProductChange]) -> None:
        identifiers = [
            {"ownerId": gid("Product", c.product_id), "namespace": ns, "key": key}
            for c in batch
            for ns, key in map(split_name, c.to_delete)
        ]
        deletes = {c.product_id: dict.fromkeys(c.to_delete) for c in batch}
        async with self._sending(deletes):
            data = await self.client.execute(
                "mutation DeleteProducts($m: [MetafieldIdentifierInput!]!) "
                "{ metafieldsDelete(metafields: $m) { userErrors { field message } } }",
                {"m": identifiers},
                cost=MUTATION_COST,
            )
        errors = user_errors(data.get("metafieldsDelete"))
        if errors != []:
            # Refused, or no answer: which of the batch the store deleted is not known, so
            # they stay unanswered, read back next push (left as pushed, a delete the store
            # did make would never be sent again should the value come back)
            self.refused += len(identifiers) if errors else 0
            self._no_answer(list(deletes))
            return
        held = {c.product_id: self._held_after_delete(c) for c in batch}
        self.deleted += sum(len(c.to_delete) for c in batch)
        audit: list[Change] = [
            (c.product_id, name, "delete", None, "no recommendation any more")
            for c in batch
            for name in c.to_delete
        ]
        await self._record(held, audit, {c.product_id: c.to_delete for c in batch})

    @contextlib.asynccontextmanager
    async def _sending(self, sent: Mapping[int, Unanswered]) -> AsyncIterator[None]:
        """Around a call that sends these values: they are recorded as unanswered before it
        is sent, and stay so should it end without an answer (its retries spent, the push
        stopped), as what the store made of the call is unknown; `_record` clears those the
        store's answer settles."""
        await anyio.to_thread.run_sync(record_unanswered, self.engine, self.shop_id, sent)
        try:
            yield
        except BaseException:
            self._no_answer(list(sent))
            raise

    def _no_answer(self, product_ids: Collection[int]) -> None:
        """Values of these products got no answer: they stay unanswered, to be read back. A
        product is counted once, however many of its calls went unanswered (its values and
        its deletes go in calls of their own)."""
        new = set(product_ids) - self.unanswered
        if not new:
            return
        self.unanswered |= new
        log.warning(
            "product metafields of %s sent without an answer: read back before the next push",
            counted(len(new), "product"),
        )

    def _held_after_delete(self, change: ProductChange) -> dict[str, str]:
        """The pushed values, with those this push set (only if the store took them), less the
        deleted: the record replaces the product's whole state."""
        values = dict(change.pushed) | self.values_accepted.get(change.product_id, {})
        return {k: v for k, v in values.items() if k not in change.to_delete}

    async def _record(
        self,
        held: dict[int, dict[str, str]],
        audit: list[Change],
        answered: Mapping[int, Collection[str]],
    ) -> None:
        """Record what the store took (`held`) and the audit rows, and clear the unanswered
        values of the fields `answered`, in one transaction."""
        if not (held or audit or answered):
            return

        def record() -> None:
            record_product_metafields(
                self.engine,
                self.shop_id,
                held,
                audit,
                via="call",
                job_run_id=self.job_run_id,
                now=self.clock(),
                answered=answered,
            )

        await anyio.to_thread.run_sync(record)


NOT_ALLOWED = "APP_NOT_AUTHORIZED"  # metafieldsSet's code for a namespace the app may not write


def _shared_index(change: ProductChange) -> int:
    return next(
        (i for i, (name, _) in enumerate(change.to_set) if name == COMPLEMENTARY_PRODUCTS), -1
    )


def _shared_not_allowed(change: ProductChange, result: Apart) -> bool:
    """Whether the store refused the product's complementary-products value as not allowed,
    and that field alone: the product's own values, sent with it, were not refused so, or,
    sent alone (the setting turned on after its own values were pushed), it holds values of
    the app's the store took before (a refusal of them all says nothing of that field)."""
    shared = _shared_index(change)

    def not_allowed(index: int) -> bool:
        return any(e.get("code") == NOT_ALLOWED for e in result.refused.get(index, []))

    others = [i for i in range(len(change.to_set)) if i != shared]
    if not not_allowed(shared):
        return False
    if others:
        return not any(map(not_allowed, others))
    return any(name != COMPLEMENTARY_PRODUCTS for name in change.pushed)


def _without_shared(change: ProductChange) -> ProductChange:
    return replace(change, to_set=tuple(v for v in change.to_set if v[0] != COMPLEMENTARY_PRODUCTS))


def _values_sent(changes: Iterable[ProductChange]) -> dict[int, Unanswered]:
    """The values these changes set, by product."""
    return {change.product_id: dict(change.to_set) for change in changes}


def _count(change: ProductChange) -> int:
    return len(change.to_set)


def _inputs(group: list[ProductChange]) -> list[dict[str, Any]]:
    return [
        {
            "ownerId": gid("Product", change.product_id),
            "namespace": split_name(name)[0],
            "key": split_name(name)[1],
            "type": LIST_OF_PRODUCTS,
            "value": value,
        }
        for change in group
        for name, value in change.to_set
    ]
