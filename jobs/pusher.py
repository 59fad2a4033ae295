"""The push itself: one shop's plan sent through its client, per call or in bulk, with each
batch's results recorded as they come back.

A change sent without an answer (the call failed after its retries, or the push was stopped,
lost its lease or its process while the call was out; a bulk line without a result; a delete
refused part way) may or may not have been applied. So the customers of each call are marked
uncertain before it is sent (`plugin.store.sync.mark_uncertain`: written ahead, it holds however
the call ends), and the mark is cleared only as an answered outcome is recorded; the next push
reads the customers still marked back before it plans (`jobs.writeback.read_back_uncertain`).
Without that, a later plan compares against a record that may be wrong either way, and a tag
the store holds might never be removed until a reconcile."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import anyio
from sqlalchemy import Engine
from sqlmodel import Session

from jobs.plan import Plan, Planned
from jobs.shop_settings import WritebackError
from plugin.domain.writeback import (
    DEFINITIONS_VERSION,
    METAFIELD_TYPES,
    METAFIELDS,
    CustomerChange,
    WritebackSettings,
)
from plugin.shopify.bulk import BulkRunner
from plugin.shopify.client import AdminClient
from plugin.shopify.gid import gid
from plugin.store.models import Shop
from plugin.store.recommendations import record_gone
from plugin.store.sync import Outcome, mark_uncertain, record_outcomes
from plugin.wording import counted

log = logging.getLogger(__name__)
T = TypeVar("T")

TAG_FIELDS_PER_CALL = 50  # aliased tag mutations per request: 500 points, half the query maximum
METAFIELDS_PER_SET = 25  # Shopify's limit per metafieldsSet
SETS_PER_CALL = 10  # aliased metafieldsSet mutations per request
APART_PER_CALL = 25  # owners sent apart per request, a metafieldsSet each: 250 points
MUTATION_COST = 10
RECORD_EVERY = 1000  # customers' results per transaction on the bulk path
AUDIT_NAME_LENGTH = 255  # sync_changes.name

Errors = list[dict[str, Any]]
Lines = dict[int, Errors | None]  # customer -> a bulk line's user errors, None if unanswered

_REMOVE_ONE = """mutation Remove($id: ID!, $tags: [String!]!) {
  tagsRemove(id: $id, tags: $tags) { userErrors { field message } }
}"""
_ADD_ONE = """mutation Add($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) { userErrors { field message } }
}"""
_SET_MANY = """mutation Set($metafields: [MetafieldsSetInput!]!) {
  metafieldsSet(metafields: $metafields) { userErrors { field message code elementIndex } }
}"""


def metafields_set_document(calls: int) -> str:
    """One request of `calls` aliased metafieldsSet mutations, variables $m0, $m1, ..."""
    declared = ", ".join(f"$m{n}: [MetafieldsSetInput!]!" for n in range(calls))
    body = " ".join(
        f"m{n}: metafieldsSet(metafields: $m{n}) "
        "{ userErrors { field message code elementIndex } }"
        for n in range(calls)
    )
    return f"mutation Set({declared}) {{ {body} }}"


@dataclass
class PushCounts:
    customers_tagged: int = 0
    tags_added: int = 0
    tags_removed: int = 0
    customers_refused: int = 0  # customers whose tag change was refused
    metafields_set: int = 0
    metafields_refused: int = 0  # customers' values refused (their other values still go)
    metafields_deleted: int = 0
    bulk_operations: int = 0
    customers_read_back: int = 0  # uncertain after an earlier push, read before planning
    customers_uncertain: int = 0  # sent a change without an answer: read back next push
    customers_gone: int = 0  # a read of the store did not find them: marked deleted


class Pusher:
    """Pushes one shop's plan through its client, recording results as they come back."""

    def __init__(
        self,
        engine: Engine,
        shop: Shop,
        client: AdminClient,
        bulk: BulkRunner,
        settings: WritebackSettings,
        *,
        job_run_id: int | None,
        clock: Callable[[], datetime],
    ) -> None:
        assert shop.id is not None
        self.engine, self.shop, self.shop_id = engine, shop, shop.id
        self.client, self.bulk, self.settings = client, bulk, settings
        self.job_run_id, self.clock = job_run_id, clock
        self.counts = PushCounts()
        # The values this push set, by customer: a later delete records only those as held.
        self.values_accepted: dict[int, dict[str, str]] = {}
        # Customers a change of this push got no answer for: their marks stay.
        self.unanswered: set[int] = set()

    async def push(self, plan: Plan) -> PushCounts:
        if self.shop.definitions_version < DEFINITIONS_VERSION:
            await self.ensure_definitions()
        tagged = [item for item in plan.items if item.change.tags_changed]
        if len(tagged) >= self.settings.bulk_threshold:
            await self.tags_in_bulk(tagged)
        else:
            await self.tags_per_call(tagged)
        valued = [item for item in plan.items if item.change.metafields_changed]
        if len(valued) >= self.settings.bulk_threshold:
            await self.metafields_in_bulk(valued)
        else:
            await self.metafields_per_call(valued)
        return self.counts

    # -- definitions

    async def ensure_definitions(self) -> None:
        """Create the app's customer and product metafield definitions; an existing one (TAKEN)
        is fine."""
        namespace = self.settings.metafield_namespace
        declared = ", ".join(f"$d{i}: MetafieldDefinitionInput!" for i in range(len(METAFIELDS)))
        fields_text = " ".join(
            f"d{i}: metafieldDefinitionCreate(definition: $d{i}) "
            "{ createdDefinition { id } userErrors { field message code } }"
            for i in range(len(METAFIELDS))
        )
        variables = {
            f"d{i}": {
                "name": spec.name,
                "namespace": namespace,
                "key": spec.key,
                "type": spec.type,
                "ownerType": spec.owner,
                "description": spec.description,
            }
            for i, spec in enumerate(METAFIELDS)
        }
        data = await self.client.execute(
            f"mutation Define({declared}) {{ {fields_text} }}",
            variables,
            cost=MUTATION_COST * len(METAFIELDS),
        )
        for i, spec in enumerate(METAFIELDS):
            errors = [e for e in data[f"d{i}"]["userErrors"] if e.get("code") != "TAKEN"]
            if errors:
                raise WritebackError(
                    f"{self.shop.domain}: metafield definition {namespace}.{spec.key} refused: "
                    + "; ".join(e["message"] for e in errors)
                )
        await anyio.to_thread.run_sync(self._mark_defined)

    def _mark_defined(self) -> None:
        with Session(self.engine) as session, session.begin():
            stored = session.get(Shop, self.shop_id)
            if stored is not None:
                stored.definitions_version = DEFINITIONS_VERSION
        self.shop.definitions_version = DEFINITIONS_VERSION

    # -- tags

    def _tag_fields_per_call(self) -> int:
        """Up to TAG_FIELDS_PER_CALL, and never more than half the bucket (as last reported):
        a call dearer than the bucket could never be afforded."""
        half_bucket = int(self.client.bucket.maximum // (2 * MUTATION_COST))
        return max(1, min(TAG_FIELDS_PER_CALL, half_bucket))

    async def tags_per_call(self, items: Sequence[Planned]) -> None:
        for batch in batches(items, self._tag_fields_per_call, lambda i: _tag_fields(i.change)):
            query, variables = _tags_document(batch)
            cost = MUTATION_COST * sum(_tag_fields(item.change) for item in batch)
            async with self._sending(batch):
                data = await self.client.execute(query, variables, cost=cost)
            answers = [
                (user_errors(data.get(f"r{n}")), user_errors(data.get(f"a{n}")))
                for n in range(len(batch))
            ]
            await self._settle_tags(batch, answers, "call")

    async def tags_in_bulk(self, items: Sequence[Planned]) -> None:
        """Removals, then additions: one bulk mutation each (one runs at a time per shop). The
        removals the store confirmed are recorded even when the additions then fail."""
        removing = [item for item in items if item.change.remove]
        adding = [item for item in items if item.change.add]
        removed: Lines = {}
        added: Lines = {}
        await self._mark_uncertain(items)
        try:
            removed = await self._bulk_lines(
                _REMOVE_ONE,
                "tagsRemove",
                removing,
                lambda c: {"id": gid("Customer", c.customer_id), "tags": list(c.remove)},
            )
            added = await self._bulk_lines(
                _ADD_ONE,
                "tagsAdd",
                adding,
                lambda c: {"id": gid("Customer", c.customer_id), "tags": list(c.add)},
            )
        finally:
            # a line without a result (the operation failed or was stopped before it, or never
            # ran) is taken as unanswered: its customer is read back next push
            answers = [
                (removed.get(item.change.customer_id), added.get(item.change.customer_id))
                for item in items
            ]
            with anyio.CancelScope(shield=True):
                await self._settle_tags(items, answers, "bulk")

    async def _settle_tags(
        self,
        items: Sequence[Planned],
        answers: Sequence[tuple[Errors | None, Errors | None]],
        via: str,
    ) -> None:
        """Record what the store confirmed of each customer's tag change (the removals' and
        the additions' user errors; None: no answer); the customers of a change that got no
        answer stay marked uncertain."""
        outcomes, unanswered = [], []
        for item, (remove_errors, add_errors) in zip(items, answers, strict=True):
            change = item.change
            remove_errors = remove_errors if change.remove else None
            add_errors = add_errors if change.add else None
            if (change.remove and remove_errors is None) or (change.add and add_errors is None):
                unanswered.append(item)
            if remove_errors is not None or add_errors is not None:
                outcomes.append(self._tag_outcome(item, remove_errors, add_errors))
        self._no_answer(unanswered)
        for start in range(0, len(outcomes), RECORD_EVERY):
            await self._record(outcomes[start : start + RECORD_EVERY], via)

    async def _bulk_lines(
        self,
        mutation: str,
        field_name: str,
        items: Sequence[Planned],
        variables: Callable[[CustomerChange], dict[str, Any]],
    ) -> Lines:
        """Each customer's user errors from the result file ([] when the line succeeded);
        None for a line with no result (the operation failed before it)."""
        if not items:
            return {}
        outcome = await self.bulk.mutation(mutation, (variables(i.change) for i in items))
        self.counts.bulk_operations += 1
        if outcome.status != "COMPLETED":
            log.warning(
                "%s: bulk mutation %s ended %s (%s)",
                self.shop.domain,
                outcome.operation_id,
                outcome.status,
                outcome.error_code,
            )
        results = outcome.by_line
        return {
            item.change.customer_id: (
                None if n not in results else _line_user_errors(results[n], field_name)
            )
            for n, item in enumerate(items)
        }

    def _tag_outcome(
        self,
        item: Planned,
        remove_errors: list[dict[str, Any]] | None,
        add_errors: list[dict[str, Any]] | None,
    ) -> Outcome:
        """What the store holds now: the pushed tags less the confirmed removals, plus the
        confirmed additions. `None` errors: the call's result is unknown (not confirmed)."""
        change = item.change
        held = set(item.pushed_tags)
        outcome = Outcome(change.customer_id)
        if change.remove and remove_errors == []:
            held -= set(change.remove)
            self.counts.tags_removed += len(change.remove)
            outcome.changes += [
                ("tag", tag, "remove", None, change.reason(tag)) for tag in change.remove
            ]
        if change.add and add_errors == []:
            held |= set(change.add)
            self.counts.tags_added += len(change.add)
            outcome.changes += [("tag", tag, "add", None, change.reason(tag)) for tag in change.add]
        refused = [e["message"] for e in (remove_errors or []) + (add_errors or [])]
        if refused:
            self.counts.customers_refused += 1
            outcome.blocked = "; ".join(refused)
            outcome.blocked_tags = item.desired_tags
            name = _refused_tags(change, remove_errors, add_errors)
            outcome.changes.append(("tag", name, "refused", None, outcome.blocked))
            log.info(
                "%s: customer %d tags refused: %s", self.shop.domain, change.customer_id, refused
            )
        else:
            self.counts.customers_tagged += 1
        outcome.tags = frozenset(held)
        return outcome

    # -- metafields

    async def metafields_per_call(self, items: Sequence[Planned]) -> None:
        setting = [item for item in items if item.change.set_metafields]
        for batch in batches(setting, METAFIELDS_PER_SET * SETS_PER_CALL, _metafield_count):
            groups = list(batches(batch, METAFIELDS_PER_SET, _metafield_count))
            variables = {f"m{n}": self._metafield_inputs(group) for n, group in enumerate(groups)}
            async with self._sending(batch):
                data = await self.client.execute(
                    metafields_set_document(len(groups)),
                    variables,
                    cost=MUTATION_COST * len(groups),
                )
            answers = [user_errors(data.get(f"m{n}")) for n in range(len(groups))]
            await self._settle_sets(groups, answers, "call")
        deleting = [item for item in items if item.change.delete_metafields]
        for batch in batches(deleting, 250, lambda i: len(i.change.delete_metafields)):
            await self._delete_metafields(batch)

    async def metafields_in_bulk(self, items: Sequence[Planned]) -> None:
        setting = [item for item in items if item.change.set_metafields]
        groups = list(batches(setting, METAFIELDS_PER_SET, _metafield_count))
        if groups:
            async with self._sending(setting):
                outcome = await self.bulk.mutation(
                    _SET_MANY, ({"metafields": self._metafield_inputs(g)} for g in groups)
                )
            self.counts.bulk_operations += 1
            results = outcome.by_line
            answers = [
                None if n not in results else _line_user_errors(results[n], "metafieldsSet")
                for n in range(len(groups))
            ]
            await self._settle_sets(groups, answers, "bulk")
        deleting = [item for item in items if item.change.delete_metafields]
        for batch in batches(deleting, 250, lambda i: len(i.change.delete_metafields)):
            await self._delete_metafields(batch)

    def _metafield_inputs(self, items: Iterable[Planned]) -> list[dict[str, str]]:
        return [
            {
                "ownerId": gid("Customer", item.change.customer_id),
                "namespace": self.settings.metafield_namespace,
                "key": key,
                "type": METAFIELD_TYPES[key],
                "value": value,
            }
            for item in items
            for key, value in item.change.set_metafields
        ]

    async def _settle_sets(
        self,
        groups: Sequence[list[Planned]],
        answers: Sequence[list[dict[str, Any]] | None],
        via: str,
    ) -> None:
        """Record each group's answer, then send the customers of each refused group apart:
        metafieldsSet is atomic, so one bad owner (a customer deleted in Shopify) refuses its
        whole group, and one bad value (a reference to a deleted product) its owner's other
        values, and would every push."""
        outcomes: list[Outcome] = []
        refused: list[Planned] = []
        unanswered: list[Planned] = []
        for group, errors in zip(groups, answers, strict=True):
            if errors is None:
                unanswered += group
            elif errors:
                refused += group
            else:
                outcomes += [self._set_outcome(item) for item in group]
        self._no_answer(unanswered)
        # a customer's values can span groups: one sent apart is settled by its answers there
        apart = {item.change.customer_id for item in refused}
        for start in range(0, len(outcomes), RECORD_EVERY):
            await self._record(outcomes[start : start + RECORD_EVERY], via, pending=apart)
        for start in range(0, len(refused), RECORD_EVERY):
            chunk = refused[start : start + RECORD_EVERY]
            async with self._sending(chunk):
                outcomes = await self._set_apart(chunk)
            await self._record(outcomes, "call")

    async def _set_apart(self, items: Sequence[Planned]) -> list[Outcome]:
        """Each customer's values sent apart (see `set_apart`), so each customer's own answer
        tells which of its values were refused."""
        inputs = [self._metafield_inputs([item]) for item in items]
        results = await set_apart(self.client, inputs)
        gone: dict[int, str] = {}
        outcomes = []
        for item, sent, result in zip(items, inputs, results, strict=True):
            outcomes.append(self._apart_outcome(item, result))
            gone |= result.gone_products(sent)
        if gone:
            await anyio.to_thread.run_sync(
                record_gone, self.engine, self.shop_id, gone, self.clock()
            )
        self._no_answer(
            [item for item, result in zip(items, results, strict=True) if result.unanswered]
        )
        return outcomes

    def _apart_outcome(self, item: Planned, result: Apart) -> Outcome:
        """What the store took of one customer's values, sent apart; the rest stays as it
        was (refused, or unanswered), to be sent again next push."""
        change = item.change
        outcome = Outcome(change.customer_id, tags=None)
        values = change.set_metafields
        accepted = dict(values[i] for i in result.accepted)
        if accepted:
            outcome.metafields = dict(item.pushed_metafields) | accepted
            self.values_accepted[change.customer_id] = accepted
            self.counts.metafields_set += len(accepted)
            outcome.changes += [
                ("metafield", key, "set", value, change.reason(key))
                for key, value in accepted.items()
            ]
        self.counts.metafields_refused += len(result.refused)
        outcome.changes += [
            ("metafield", name, "refused", value, message)
            for name, value, message in result.refusals(values)
        ]
        if result.refused:
            log.info(
                "%s: customer %d metafields refused: %s",
                self.shop.domain,
                change.customer_id,
                [values[i][0] for i in sorted(result.refused)],
            )
        return outcome

    def _set_outcome(self, item: Planned) -> Outcome:
        """A customer whose values the store took, all of them."""
        change = item.change
        outcome = Outcome(change.customer_id, tags=None)
        held = dict(item.pushed_metafields) | dict(change.set_metafields)
        outcome.metafields = held
        self.values_accepted[change.customer_id] = dict(change.set_metafields)
        self.counts.metafields_set += len(change.set_metafields)
        outcome.changes += [
            ("metafield", key, "set", value, change.reason(key))
            for key, value in change.set_metafields
        ]
        return outcome

    async def _delete_metafields(self, batch: Sequence[Planned]) -> None:
        namespace = self.settings.metafield_namespace
        identifiers = [
            {
                "ownerId": gid("Customer", item.change.customer_id),
                "namespace": namespace,
                "key": key,
            }
            for item in batch
            for key in item.change.delete_metafields
        ]
        async with self._sending(batch):
            data = await self.client.execute(
                "mutation Delete($m: [MetafieldIdentifierInput!]!) "
                "{ metafieldsDelete(metafields: $m) { userErrors { field message } } }",
                {"m": identifiers},
                cost=MUTATION_COST,
            )
        if user_errors(data.get("metafieldsDelete")) != []:
            # Refused, or no answer: whether the store deleted the others of the batch is not
            # said (that metafieldsDelete is atomic is not documented); read back next push.
            self._no_answer(batch)
            return
        outcomes = []
        for item in batch:
            change = item.change
            # Only values this push set are held: a refused or unanswered set left the old ones.
            was_set = self.values_accepted.get(change.customer_id, {})
            held = {
                key: value
                for key, value in (dict(item.pushed_metafields) | was_set).items()
                if key not in change.delete_metafields
            }
            self.counts.metafields_deleted += len(change.delete_metafields)
            outcome = Outcome(change.customer_id, metafields=held)
            outcome.changes += [
                ("metafield", key, "delete", None, change.reason(key))
                for key in change.delete_metafields
            ]
            outcomes.append(outcome)
        await self._record(outcomes, "call")

    async def _record(
        self, outcomes: list[Outcome], via: str, *, pending: Collection[int] = ()
    ) -> None:
        """Record the outcomes, and clear the uncertain marks of their customers but those a
        change of this push got no answer for, and those `pending` (awaiting another answer)."""
        settled = {o.customer_id for o in outcomes} - self.unanswered - set(pending)
        await anyio.to_thread.run_sync(self._record_now, outcomes, via, settled)

    @contextlib.asynccontextmanager
    async def _sending(self, items: Sequence[Planned]) -> AsyncIterator[None]:
        """Around a call that changes these customers: they are marked uncertain before it is
        sent, and stay marked should it end without an answer (its retries spent, the push
        stopped), as what the store made of the call is unknown."""
        await self._mark_uncertain(items)
        try:
            yield
        except BaseException:
            self._no_answer(items)
            raise

    async def _mark_uncertain(self, items: Sequence[Planned]) -> None:
        customer_ids = {item.change.customer_id for item in items}
        if customer_ids:
            await anyio.to_thread.run_sync(mark_uncertain, self.engine, self.shop_id, customer_ids)

    def _no_answer(self, items: Sequence[Planned]) -> None:
        """These customers' changes got no answer: their marks stay, to be read back."""
        customer_ids = {item.change.customer_id for item in items} - self.unanswered
        if not customer_ids:
            return
        self.unanswered |= customer_ids
        self.counts.customers_uncertain = len(self.unanswered)
        log.warning(
            "%s: no answer for the changes of %s: read back before the next push",
            self.shop.domain,
            counted(len(customer_ids), "customer"),
        )

    def _record_now(self, outcomes: list[Outcome], via: str, settled: Collection[int]) -> None:
        record_outcomes(
            self.engine,
            self.shop_id,
            outcomes,
            via=via,
            job_run_id=self.job_run_id,
            now=self.clock(),
            settled=settled,
        )


_PRODUCT_GID = re.compile(r"gid://shopify/Product/(\d+)")


@dataclass
class Apart:
    """One owner's inputs sent apart: those the store took, those it refused (with its
    errors) and those left without an answer, by index into the owner's inputs."""

    accepted: list[int] = field(default_factory=list)
    refused: dict[int, Errors] = field(default_factory=dict)
    unanswered: list[int] = field(default_factory=list)

    def refusals(self, values: Sequence[tuple[str, str]]) -> list[tuple[str, str | None, str]]:
        """The audit's (name, value, why) of the refused values: one row "*" when all of
        several were refused (a deleted owner), else one per value."""
        if not self.refused:
            return []
        if len(self.refused) == len(values) > 1:
            every = [error for errors in self.refused.values() for error in errors]
            return [("*", None, error_text(every))]
        return [
            (values[i][0], values[i][1], error_text(self.refused[i])) for i in sorted(self.refused)
        ]

    def gone_products(self, inputs: Sequence[Mapping[str, Any]]) -> dict[int, str]:
        """The products the refusals say the store does not have, with why."""
        gone: dict[int, str] = {}
        for index, errors in self.refused.items():
            for error in errors:
                why = str(error.get("message", ""))
                gone |= dict.fromkeys(products_not_found(error, inputs[index]), why)
        return gone


def products_not_found(error: Mapping[str, Any], sent: Mapping[str, Any]) -> set[int]:
    """The products one refusal says do not exist: a product owner it says does not exist
    (field path ending "ownerId"), or the products named both in its message and in the value
    sent (the dev store, as Shopify: "Value references non-existent resource
    gid://shopify/Product/N."). A message naming none tells nothing: the reconcile's read of
    the store's products finds them instead."""
    message = str(error.get("message", ""))
    if "exist" not in message.lower():
        return set()
    path = error.get("field")
    if isinstance(path, list) and path and path[-1] == "ownerId":
        return {int(n) for n in _PRODUCT_GID.findall(str(sent.get("ownerId", "")))}
    named = {int(n) for n in _PRODUCT_GID.findall(message)}
    return named & {int(n) for n in _PRODUCT_GID.findall(str(sent.get("value", "")))}


async def set_apart(client: AdminClient, owners: Sequence[list[dict[str, Any]]]) -> list[Apart]:
    """Each owner's inputs in a metafieldsSet of its own (many aliased per request); an owner
    refused is sent again without the inputs its errors name (by their `field` path,
    ["metafields", "3", "value"]), or input by input when an error names none, until each
    input is taken, refused or unanswered. metafieldsSet is atomic: without this, one refused
    value (a reference to a deleted product) takes the owner's other values with it."""
    results = [Apart() for _ in owners]
    pending = [(n, list(range(len(inputs)))) for n, inputs in enumerate(owners) if inputs]
    while pending:
        again: list[tuple[int, list[int]]] = []
        for chunk in batches(pending, APART_PER_CALL, lambda _: 1):
            variables = {f"m{k}": [owners[n][i] for i in sent] for k, (n, sent) in enumerate(chunk)}
            data = await client.execute(
                metafields_set_document(len(chunk)), variables, cost=MUTATION_COST * len(chunk)
            )
            for k, (n, sent) in enumerate(chunk):
                errors = user_errors(data.get(f"m{k}"))
                again += [(n, rest) for rest in _sort_answer(results[n], sent, errors)]
        pending = again
    return results


def _sort_answer(result: Apart, sent: list[int], errors: Errors | None) -> list[list[int]]:
    """One owner's answer to the inputs `sent` sorted into `result`; what to send again."""
    if errors is None:
        result.unanswered += sent
        return []
    if not errors:
        result.accepted += sent
        return []
    named = refused_inputs(errors, len(sent))
    if named is None:
        if len(sent) == 1:
            result.refused[sent[0]] = errors
            return []
        return [[index] for index in sent]
    for position, refused in named.items():
        result.refused[sent[position]] = refused
    rest = [index for position, index in enumerate(sent) if position not in named]
    return [rest] if rest else []


def refused_inputs(errors: Errors, count: int) -> dict[int, Errors] | None:
    """The errors by the position of the input they refuse in the call, from each error's
    `field` path; None when one does not name an input of the call."""
    named: dict[int, Errors] = {}
    for error in errors:
        path = error.get("field")
        if not (isinstance(path, list) and len(path) >= 2 and path[0] == "metafields"):
            return None
        try:
            position = int(path[1])
        except (TypeError, ValueError):
            return None
        if not 0 <= position < count:
            return None
        named.setdefault(position, []).append(error)
    return named


def _refused_tags(
    change: CustomerChange,
    remove_errors: list[dict[str, Any]] | None,
    add_errors: list[dict[str, Any]] | None,
) -> str:
    """The refused tag changes for the audit trail, "-removed +added": a refused removal
    named by the additions alone would leave the row nameless."""
    removed = [f"-{tag}" for tag in change.remove] if remove_errors else []
    added = [f"+{tag}" for tag in change.add] if add_errors else []
    return " ".join(removed + added)[:AUDIT_NAME_LENGTH]


def _tag_fields(change: CustomerChange) -> int:
    return bool(change.add) + bool(change.remove)


def _metafield_count(item: Planned) -> int:
    return len(item.change.set_metafields)


def batches(
    items: Sequence[T], capacity: int | Callable[[], int], weight: Callable[[T], int]
) -> Iterable[list[T]]:
    """Consecutive groups whose weights sum to at most `capacity` (an item is never split);
    a callable capacity is asked again for each item, as the groups are taken."""
    batch: list[T] = []
    used = 0
    for item in items:
        size = weight(item)
        limit = capacity() if callable(capacity) else capacity
        if batch and used + size > limit:
            yield batch
            batch, used = [], 0
        batch.append(item)
        used += size
    if batch:
        yield batch


def _tags_document(batch: Sequence[Planned]) -> tuple[str, dict[str, Any]]:
    """One request: per customer, tagsRemove then tagsAdd (mutations run in order)."""
    declared: list[str] = []
    selected: list[str] = []
    variables: dict[str, Any] = {}
    for n, item in enumerate(batch):
        change = item.change
        declared.append(f"$id{n}: ID!")
        variables[f"id{n}"] = gid("Customer", change.customer_id)
        for alias, mutation, tags in (
            ("r", "tagsRemove", change.remove),
            ("a", "tagsAdd", change.add),
        ):
            if tags:
                declared.append(f"${alias}{n}: [String!]!")
                variables[f"{alias}{n}"] = list(tags)
                selected.append(
                    f"{alias}{n}: {mutation}(id: $id{n}, tags: ${alias}{n}) "
                    "{ userErrors { field message } }"
                )
    return f"mutation PushTags({', '.join(declared)}) {{ {' '.join(selected)} }}", variables


def user_errors(payload: Any) -> list[dict[str, Any]] | None:
    if not isinstance(payload, dict):
        return None
    errors = payload.get("userErrors")
    return list(errors) if isinstance(errors, list) else []


def error_text(errors: Iterable[dict[str, Any]]) -> str:
    """The messages, each once: a bad owner's error comes once per value."""
    return "; ".join(dict.fromkeys(str(e["message"]) for e in errors))


def _line_user_errors(line: dict[str, Any], field_name: str) -> list[dict[str, Any]] | None:
    if line.get("errors"):
        return [{"message": str(e.get("message", e))} for e in line["errors"]]
    return user_errors((line.get("data") or {}).get(field_name))
