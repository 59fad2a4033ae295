"""Write-back: push each customer's desired tags and metafields to the store, and reconcile.

The push compares each customer's desired state (from the last score) with the state the store
was last known to hold, and sends only the difference: tagsRemove / tagsAdd for tags under the
shop's prefix (never another tag), metafieldsSet / metafieldsDelete for the app's metafields.
Few changes go as batched calls (many aliased mutations per request, paced by the client); from
`bulk_threshold` customers up, one bulk mutation per kind over a staged JSONL upload, whose
result file is read back to confirm each line. Whatever the store confirms is recorded with its
reason as each batch returns; what it refuses (a customer at the 250-tag cap, a deleted one) is
recorded as refused and not sent again until the desired tags change or a reconcile re-reads
the customer.

The reconcile reads the store's state back (pages of customers, or a bulk query for large
shops), replaces the recorded pushed state with it, and pushes: drift from a lost call or from
someone editing the store is repaired either way.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
from sqlalchemy import Engine, func, select
from sqlmodel import Session, col

from jobs.context import JobContext
from plugin.domain.writeback import (
    DEFINITIONS_VERSION,
    METAFIELD_TYPES,
    METAFIELDS,
    CustomerChange,
    CustomerFigures,
    WritebackSettings,
    WritebackSettingsError,
    customer_change,
    desired_tags,
    metafield_values,
    writeback_settings,
)
from plugin.shopify.bulk import BulkRunner
from plugin.shopify.client import AdminClient, AuthError
from plugin.store.models import Customer, Shop
from plugin.store.scores import latest_full_run
from plugin.store.sync import (
    Held,
    Outcome,
    held_state,
    pushed_tags,
    record_outcomes,
    record_read_back,
)
from plugin.store.tokens import TokenCipher

log = logging.getLogger(__name__)

TAG_FIELDS_PER_CALL = 50  # aliased tag mutations per request: 500 points, half the query maximum
METAFIELDS_PER_SET = 25  # Shopify's limit per metafieldsSet
SETS_PER_CALL = 10  # aliased metafieldsSet mutations per request
MUTATION_COST = 10
READ_PAGE = 50  # customers per page when reading back (cost ~ 2 + 50 x 13)
BULK_READ_ABOVE = 5000  # known customers from which the reconcile reads with a bulk query
RECORD_EVERY = 1000  # customers' results per transaction on the bulk path
SAMPLE_SIZE = 10

_REMOVE_ONE = """mutation Remove($id: ID!, $tags: [String!]!) {
  tagsRemove(id: $id, tags: $tags) { userErrors { field message } }
}"""
_ADD_ONE = """mutation Add($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) { userErrors { field message } }
}"""
_SET_MANY = """mutation Set($metafields: [MetafieldsSetInput!]!) {
  metafieldsSet(metafields: $metafields) { userErrors { field message code elementIndex } }
}"""


class WritebackError(RuntimeError):
    """The shop cannot be pushed to: bad settings, no token, or a refused definition."""


def customer_gid(customer_id: int) -> str:
    return f"gid://shopify/Customer/{customer_id}"


def _customer_id(gid: str) -> int:
    return int(gid.rsplit("/", 1)[-1])


# --- planning -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    change: CustomerChange
    pushed_tags: frozenset[str]
    pushed_metafields: dict[str, str]
    desired_tags: frozenset[str]


@dataclass
class Plan:
    """Every customer's change, and what a dry run reports of them."""

    items: list[Planned] = field(default_factory=list)
    skipped_refused: int = 0  # unchanged since the store refused them

    def summary(self, sample: int = SAMPLE_SIZE) -> dict[str, Any]:
        added: Counter[str] = Counter()
        removed: Counter[str] = Counter()
        metafields: Counter[str] = Counter()
        for item in self.items:
            added.update(item.change.add)
            removed.update(item.change.remove)
            metafields.update(key for key, _ in item.change.set_metafields)
            metafields.update(item.change.delete_metafields)
        return {
            "customers_with_tag_changes": sum(i.change.tags_changed for i in self.items),
            "customers_with_metafield_changes": sum(
                i.change.metafields_changed for i in self.items
            ),
            "tags_added": dict(sorted(added.items())),
            "tags_removed": dict(sorted(removed.items())),
            "metafields_changed": dict(sorted(metafields.items())),
            "skipped_refused": self.skipped_refused,
            "sample": [_sample(item) for item in self.items[:sample]],
        }


def _sample(item: Planned) -> dict[str, Any]:
    change = item.change
    return {
        "customer_id": change.customer_id,
        "add": {tag: change.reason(tag) for tag in change.add},
        "remove": {tag: change.reason(tag) for tag in change.remove},
        "metafields": {key: value for key, value in change.set_metafields},
        "delete_metafields": list(change.delete_metafields),
    }


def shop_writeback_settings(shop: Shop) -> WritebackSettings:
    try:
        return writeback_settings(json.loads(shop.settings or "{}"))
    except (WritebackSettingsError, TypeError) as exc:
        raise WritebackError(f"{shop.domain}: write-back settings: {exc}") from None


def plan_changes(engine: Engine, shop: Shop, settings: WritebackSettings) -> Plan:
    """Compare every customer's desired and pushed state (streamed from the store)."""
    assert shop.id is not None
    run = latest_full_run(engine, shop.id)
    fitted = run is not None and run.confidence == "fitted"
    plan = Plan()
    for held in held_state(engine, shop.id):
        planned = _planned(held, settings.tag_prefix, fitted)
        if planned is None:
            continue
        if (
            held.blocked is not None
            and held.blocked_tags == planned.desired_tags
            and not planned.change.metafields_changed
        ):
            plan.skipped_refused += 1
            continue
        plan.items.append(planned)
    return plan


def _planned(held: Held, prefix: str, fitted: bool) -> Planned | None:
    desired = frozenset() if held.tags is None else desired_tags(prefix, held.tags)
    values: dict[str, str] = {}
    if held.tags is not None:
        assert held.segment is not None and held.historical_clv is not None
        figures = CustomerFigures(
            held.historical_clv,
            held.predicted_clv or 0.0,
            held.p_alive or 0.0,
            held.expected_next_order_at,
            held.segment,
        )
        values = metafield_values(figures, fitted)
    reasons = {prefix + tag: why for tag, why in json.loads(held.reasons).items()}
    change = customer_change(
        held.customer_id,
        desired,
        held.pushed_tags,
        values,
        held.pushed_metafields,
        reasons,
        held.segment,
    )
    if change is None:
        return None
    return Planned(change, held.pushed_tags, held.pushed_metafields, desired)


# --- pushing --------------------------------------------------------------------------------


@dataclass
class PushCounts:
    customers_tagged: int = 0
    tags_added: int = 0
    tags_removed: int = 0
    customers_refused: int = 0
    metafields_set: int = 0
    metafields_deleted: int = 0
    bulk_operations: int = 0


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
        """Create the app's customer metafield definitions; an existing one (TAKEN) is fine."""
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
                "ownerType": "CUSTOMER",
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
        for batch in _batches(items, self._tag_fields_per_call, lambda i: _tag_fields(i.change)):
            query, variables = _tags_document(batch)
            cost = MUTATION_COST * sum(_tag_fields(item.change) for item in batch)
            data = await self.client.execute(query, variables, cost=cost)
            outcomes = [
                self._tag_outcome(item, _errors(data.get(f"r{n}")), _errors(data.get(f"a{n}")))
                for n, item in enumerate(batch)
            ]
            await self._record(outcomes, "call")

    async def tags_in_bulk(self, items: Sequence[Planned]) -> None:
        """Removals, then additions: one bulk mutation each (one runs at a time per shop)."""
        removing = [item for item in items if item.change.remove]
        adding = [item for item in items if item.change.add]
        removed = await self._bulk_lines(
            _REMOVE_ONE,
            "tagsRemove",
            removing,
            lambda c: {"id": customer_gid(c.customer_id), "tags": list(c.remove)},
        )
        added = await self._bulk_lines(
            _ADD_ONE,
            "tagsAdd",
            adding,
            lambda c: {"id": customer_gid(c.customer_id), "tags": list(c.add)},
        )
        outcomes = []
        for item in items:
            remove_result = removed.get(item.change.customer_id) if item.change.remove else []
            add_result = added.get(item.change.customer_id) if item.change.add else []
            if remove_result is None and add_result is None:
                continue  # neither line confirmed: sent again next time
            outcomes.append(self._tag_outcome(item, remove_result, add_result))
        for start in range(0, len(outcomes), RECORD_EVERY):
            await self._record(outcomes[start : start + RECORD_EVERY], "bulk")

    async def _bulk_lines(
        self,
        mutation: str,
        field_name: str,
        items: Sequence[Planned],
        variables: Callable[[CustomerChange], dict[str, Any]],
    ) -> dict[int, list[dict[str, Any]] | None]:
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
            outcome.changes.append(("tag", " ".join(change.add), "refused", None, outcome.blocked))
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
        for batch in _batches(setting, METAFIELDS_PER_SET * SETS_PER_CALL, _metafield_count):
            groups = list(_batches(batch, METAFIELDS_PER_SET, _metafield_count))
            declared = ", ".join(f"$m{n}: [MetafieldsSetInput!]!" for n in range(len(groups)))
            body = " ".join(
                f"m{n}: metafieldsSet(metafields: $m{n}) "
                "{ userErrors { field message code elementIndex } }"
                for n in range(len(groups))
            )
            variables = {f"m{n}": self._metafield_inputs(group) for n, group in enumerate(groups)}
            data = await self.client.execute(
                f"mutation Set({declared}) {{ {body} }}",
                variables,
                cost=MUTATION_COST * len(groups),
            )
            outcomes = []
            for n, group in enumerate(groups):
                errors = _errors(data.get(f"m{n}"))
                outcomes += [self._set_outcome(item, errors) for item in group]
            await self._record(outcomes, "call")
        deleting = [item for item in items if item.change.delete_metafields]
        for batch in _batches(deleting, 250, lambda i: len(i.change.delete_metafields)):
            await self._delete_metafields(batch)

    async def metafields_in_bulk(self, items: Sequence[Planned]) -> None:
        setting = [item for item in items if item.change.set_metafields]
        groups = list(_batches(setting, METAFIELDS_PER_SET, _metafield_count))
        if groups:
            outcome = await self.bulk.mutation(
                _SET_MANY, ({"metafields": self._metafield_inputs(g)} for g in groups)
            )
            self.counts.bulk_operations += 1
            results = outcome.by_line
            outcomes = []
            for number, group in enumerate(groups):
                line = results.get(number)
                if line is None:
                    continue
                errors = _line_user_errors(line, "metafieldsSet")
                outcomes += [self._set_outcome(item, errors) for item in group]
            for start in range(0, len(outcomes), RECORD_EVERY):
                await self._record(outcomes[start : start + RECORD_EVERY], "bulk")
        deleting = [item for item in items if item.change.delete_metafields]
        for batch in _batches(deleting, 250, lambda i: len(i.change.delete_metafields)):
            await self._delete_metafields(batch)

    def _metafield_inputs(self, items: Iterable[Planned]) -> list[dict[str, str]]:
        return [
            {
                "ownerId": customer_gid(item.change.customer_id),
                "namespace": self.settings.metafield_namespace,
                "key": key,
                "type": METAFIELD_TYPES[key],
                "value": value,
            }
            for item in items
            for key, value in item.change.set_metafields
        ]

    def _set_outcome(self, item: Planned, errors: list[dict[str, Any]] | None) -> Outcome:
        change = item.change
        outcome = Outcome(change.customer_id, tags=None)
        if errors:  # metafieldsSet is atomic: the whole call was refused
            message = "; ".join(e["message"] for e in errors)
            outcome.changes.append(("metafield", "*", "refused", None, message))
            return outcome
        held = dict(item.pushed_metafields) | dict(change.set_metafields)
        outcome.metafields = held
        self.counts.metafields_set += len(change.set_metafields)
        outcome.changes += [
            ("metafield", key, "set", value, change.reason(key))
            for key, value in change.set_metafields
        ]
        return outcome

    async def _delete_metafields(self, batch: Sequence[Planned]) -> None:
        namespace = self.settings.metafield_namespace
        identifiers = [
            {"ownerId": customer_gid(item.change.customer_id), "namespace": namespace, "key": key}
            for item in batch
            for key in item.change.delete_metafields
        ]
        data = await self.client.execute(
            "mutation Delete($m: [MetafieldIdentifierInput!]!) "
            "{ metafieldsDelete(metafields: $m) { userErrors { field message } } }",
            {"m": identifiers},
            cost=MUTATION_COST,
        )
        if _errors(data.get("metafieldsDelete")):
            return  # left as pushed: tried again next time
        outcomes = []
        for item in batch:
            change = item.change
            held = {
                key: value
                for key, value in (
                    dict(item.pushed_metafields) | dict(change.set_metafields)
                ).items()
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

    async def _record(self, outcomes: list[Outcome], via: str) -> None:
        await anyio.to_thread.run_sync(self._record_now, outcomes, via)

    def _record_now(self, outcomes: list[Outcome], via: str) -> None:
        record_outcomes(
            self.engine,
            self.shop_id,
            _merged(outcomes),
            via=via,
            job_run_id=self.job_run_id,
            now=self.clock(),
        )

    # -- reading back

    async def read_back(
        self, known_customers: int
    ) -> dict[int, tuple[frozenset[str], dict[str, str]]]:
        """Each store customer's tags under the app's control and the app's metafields."""
        if known_customers >= BULK_READ_ABOVE:
            return await self._read_in_bulk()
        return await self._read_pages()

    def _owned(self, tags: Iterable[str], pushed: frozenset[str]) -> frozenset[str]:
        prefix = self.settings.tag_prefix
        return frozenset(t for t in tags if t.startswith(prefix) or t in pushed)

    async def _read_pages(self) -> dict[int, tuple[frozenset[str], dict[str, str]]]:
        query = (
            f"query Read($after: String, $ns: String!) {{ customers(first: {READ_PAGE}, "
            "after: $after) { pageInfo { hasNextPage endCursor } nodes { id tags "
            "metafields(first: 10, namespace: $ns) { nodes { key value } } } } }"
        )
        found: dict[int, tuple[list[str], dict[str, str]]] = {}
        after: str | None = None
        while True:
            data = await self.client.execute(
                query, {"after": after, "ns": self.settings.metafield_namespace}
            )
            page = data["customers"]
            for node in page["nodes"]:
                values = {m["key"]: m["value"] for m in node["metafields"]["nodes"]}
                found[_customer_id(node["id"])] = (node["tags"], values)
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        return await self._owned_state(found)

    async def _read_in_bulk(self) -> dict[int, tuple[frozenset[str], dict[str, str]]]:
        namespace = json.dumps(self.settings.metafield_namespace)
        outcome = await self.bulk.query(
            "{ customers { edges { node { id tags "
            f"metafields(namespace: {namespace}) {{ edges {{ node {{ key value }} }} }} }} }} }} }}"
        )
        self.counts.bulk_operations += 1
        if outcome.status != "COMPLETED":
            raise WritebackError(
                f"{self.shop.domain}: the read-back bulk query ended {outcome.status}"
            )
        found: dict[int, tuple[list[str], dict[str, str]]] = {}
        for line in outcome.lines:
            if "__parentId" in line:
                owner = found.setdefault(_customer_id(line["__parentId"]), ([], {}))
                owner[1][line["key"]] = line["value"]
            else:
                found.setdefault(_customer_id(line["id"]), ([], {}))[0].extend(line["tags"])
        return await self._owned_state(found)

    async def _owned_state(
        self, found: dict[int, tuple[list[str], dict[str, str]]]
    ) -> dict[int, tuple[frozenset[str], dict[str, str]]]:
        pushed = await anyio.to_thread.run_sync(self._pushed_tags)
        return {
            customer_id: (self._owned(tags, pushed.get(customer_id, frozenset())), values)
            for customer_id, (tags, values) in found.items()
        }

    def _pushed_tags(self) -> dict[int, frozenset[str]]:
        return {c: frozenset(t) for c, t in pushed_tags(self.engine, self.shop_id).items()}


def _merged(outcomes: list[Outcome]) -> list[Outcome]:
    """One outcome per customer (a customer's metafields can span two groups of a batch)."""
    merged: dict[int, Outcome] = {}
    for outcome in outcomes:
        was = merged.get(outcome.customer_id)
        if was is None:
            merged[outcome.customer_id] = outcome
            continue
        if outcome.metafields is not None:
            was.metafields = (was.metafields or {}) | outcome.metafields
        was.changes += outcome.changes
    return list(merged.values())


def _tag_fields(change: CustomerChange) -> int:
    return bool(change.add) + bool(change.remove)


def _metafield_count(item: Planned) -> int:
    return len(item.change.set_metafields)


def _batches(
    items: Sequence[Planned], capacity: int | Callable[[], int], weight: Callable[[Planned], int]
) -> Iterable[list[Planned]]:
    """Consecutive groups whose weights sum to at most `capacity` (an item is never split);
    a callable capacity is asked again for each group."""
    batch: list[Planned] = []
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
        variables[f"id{n}"] = customer_gid(change.customer_id)
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


def _errors(payload: Any) -> list[dict[str, Any]] | None:
    if not isinstance(payload, dict):
        return None
    errors = payload.get("userErrors")
    return list(errors) if isinstance(errors, list) else []


def _line_user_errors(line: dict[str, Any], field_name: str) -> list[dict[str, Any]] | None:
    if line.get("errors"):
        return [{"message": str(e.get("message", e))} for e in line["errors"]]
    return _errors((line.get("data") or {}).get(field_name))


# --- the jobs -------------------------------------------------------------------------------


def admin_client(ctx: JobContext, shop: Shop) -> AdminClient:
    if not shop.installed or shop.access_token_encrypted is None:
        raise WritebackError(f"{shop.domain} is not installed: nothing to push to")
    if shop.needs_reauth:
        raise WritebackError(f"{shop.domain} needs to authorise the app again")
    token = TokenCipher(ctx.settings.token_encryption_key).decrypt(shop.access_token_encrypted)
    return AdminClient(
        ctx.http,
        shop.domain,
        token,
        api_version=ctx.settings.api_version,
        admin_url=ctx.settings.admin_url,
        sleep=ctx.sleep,
        clock=ctx.monotonic,
    )


def _mark_needs_reauth(engine: Engine, shop_id: int) -> None:
    with Session(engine) as session, session.begin():
        stored = session.get(Shop, shop_id)
        if stored is not None:
            stored.needs_reauth = True


async def _with_client(
    ctx: JobContext,
    shop: Shop,
    run_id: int | None,
    work: Callable[[Pusher], Any],
) -> dict[str, Any]:
    assert shop.id is not None
    settings = shop_writeback_settings(shop)
    client = admin_client(ctx, shop)
    pusher = Pusher(
        ctx.engine,
        shop,
        client,
        BulkRunner(client, ctx.http, sleep=ctx.sleep),
        settings,
        job_run_id=run_id,
        clock=ctx.clock,
    )
    try:
        extra = await work(pusher)
    except AuthError:
        await anyio.to_thread.run_sync(_mark_needs_reauth, ctx.engine, shop.id)
        log.warning(
            "%s: the access token was refused; marked as needing re-authorisation", shop.domain
        )
        raise
    stats = client.stats
    return {
        **vars(pusher.counts),
        **(extra or {}),
        "api_requests": stats.requests,
        "api_cost": round(stats.cost_actual, 1),
        "throttled": stats.throttled,
        "retries": stats.retries,
    }


async def push_shop(
    ctx: JobContext, shop: Shop, run_id: int | None, *, dry_run: bool = False
) -> dict[str, Any]:
    """Send the differences between the desired and the pushed state; counts of what was done.
    A dry run (asked for, or the shop's setting) reports the plan and calls nothing."""
    settings = shop_writeback_settings(shop)
    plan = await anyio.to_thread.run_sync(plan_changes, ctx.engine, shop, settings)
    if dry_run or settings.dry_run:
        return {"dry_run": True, **plan.summary()}

    async def work(pusher: Pusher) -> dict[str, Any]:
        await pusher.push(plan)
        return {"skipped_refused": plan.skipped_refused}

    return await _with_client(ctx, shop, run_id, work)


async def reconcile_shop(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
    """Read the store's state back, repair drift, then push; counts of what was done."""
    assert shop.id is not None
    shop_id = shop.id
    settings = shop_writeback_settings(shop)
    if settings.dry_run:
        return {"dry_run": True, "skipped": "reconcile reads and repairs; off in dry-run mode"}

    async def work(pusher: Pusher) -> dict[str, Any]:
        known = await anyio.to_thread.run_sync(_known_customers, ctx.engine, shop_id)
        state = await pusher.read_back(known)
        drifted = await anyio.to_thread.run_sync(
            record_read_back, ctx.engine, shop_id, state, ctx.clock()
        )
        plan = await anyio.to_thread.run_sync(plan_changes, ctx.engine, shop, settings)
        await pusher.push(plan)
        return {"customers_read": len(state), "drifted": drifted}

    return await _with_client(ctx, shop, run_id, work)


def _known_customers(engine: Engine, shop_id: int) -> int:
    with Session(engine) as session:
        query = select(func.count()).select_from(Customer).where(col(Customer.shop_id) == shop_id)
        return int(session.execute(query).scalar_one())
