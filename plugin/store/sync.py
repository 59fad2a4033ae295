"""The write-back's state: each customer's desired and pushed state side by side, and the record
of what was pushed (or refused), with its reason.

Results are written as each batch of calls comes back, one transaction per batch: a push cut off
half way keeps what the store confirmed, and the rest is sent again next time (tagsAdd,
tagsRemove and metafieldsSet are idempotent, so sending twice leaves the store exactly right).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, exists, insert, or_, select, update
from sqlmodel import Session, col

from plugin.domain.writeback import same_value
from plugin.store.db import upsert
from plugin.store.ledger import CUSTOMER, hold_customers, mark_customer_deleted, redacted
from plugin.store.models import (
    Customer,
    CustomerRecommendation,
    CustomerScore,
    CustomerSync,
    SyncChange,
)

_YIELD = 2000
# the audit's action for a metafield value a read of the store found (a change not the app's)
FOUND = "found"
APPLIED = ("add", "remove", "set", "delete")  # the audit's changes to the store (not refusals)
# the audit rows that say what a customer's metafield held: the undo's value before a change
# (`values_before`), the last of which the prune keeps (`retention`)
VALUE_HELD = ("set", "delete", FOUND)
# an audit row of a customer: (customer id, kind, name, action, value, reason)
Change = tuple[int, str, str, str, str | None, str]


@dataclass(frozen=True)
class Held:
    """One customer's desired state (from the last score; none if unscored) and pushed state."""

    customer_id: int
    tags: str | None  # desired tag names, space-separated, without prefix; None: no score
    reasons: str  # JSON: tag name -> why
    historical_clv: float | None
    predicted_clv: float | None
    p_alive: float | None
    expected_next_order_at: datetime | None
    segment: str | None
    recommended: list[int]  # next products, best first
    pushed_tags: frozenset[str]
    pushed_metafields: dict[str, str]
    blocked: str | None
    blocked_tags: frozenset[str] | None


def held_state(engine: Engine, shop_id: int) -> Iterator[Held]:
    """Every scored customer (not deleted), then every customer with pushed state but no score."""
    score, synced, recs = CustomerScore, CustomerSync, CustomerRecommendation
    joined = and_(
        col(synced.shop_id) == col(score.shop_id), col(synced.customer_id) == col(score.customer_id)
    )
    recommended = and_(
        col(recs.shop_id) == col(score.shop_id), col(recs.customer_id) == col(score.customer_id)
    )
    alive = and_(
        col(Customer.shop_id) == col(score.shop_id),
        col(Customer.customer_id) == col(score.customer_id),
        col(Customer.deleted_at).is_(None),
    )
    scored = (
        select(
            col(score.customer_id),
            col(score.tags),
            col(score.reasons),
            col(score.historical_clv),
            col(score.predicted_clv),
            col(score.p_alive),
            col(score.expected_next_order_at),
            col(score.segment),
            col(recs.product_ids),
            col(synced.tags),
            col(synced.metafields),
            col(synced.blocked),
            col(synced.blocked_tags),
        )
        .outerjoin(synced, joined)
        .outerjoin(recs, recommended)
        .where(col(score.shop_id) == shop_id, exists().where(alive))
        .order_by(col(score.customer_id))
    )
    unscored = (
        select(
            col(synced.customer_id),
            col(synced.tags),
            col(synced.metafields),
            col(synced.blocked),
            col(synced.blocked_tags),
        )
        .where(col(synced.shop_id) == shop_id, ~exists().where(joined, alive))
        .order_by(col(synced.customer_id))
    )
    with Session(engine) as session:
        for row in session.execute(scored.execution_options(yield_per=_YIELD)):
            customer_id, tags, reasons, historical, predicted, p_alive, next_at, segment = row[:8]
            yield Held(
                customer_id,
                tags,
                reasons,
                historical,
                predicted,
                p_alive,
                next_at,
                segment,
                json.loads(row[8] or "[]"),
                *_pushed(row[9], row[10], row[11], row[12]),
            )
        for row in session.execute(unscored.execution_options(yield_per=_YIELD)):
            yield Held(row[0], None, "{}", None, None, None, None, None, [], *_pushed(*row[1:]))


def _pushed(
    tags: str | None, metafields: str | None, blocked: str | None, blocked_tags: str | None
) -> tuple[frozenset[str], dict[str, str], str | None, frozenset[str] | None]:
    return (
        frozenset(json.loads(tags or "[]")),
        json.loads(metafields or "{}"),
        blocked,
        None if blocked_tags is None else frozenset(json.loads(blocked_tags)),
    )


@dataclass
class Outcome:
    """What the store confirmed (or refused) for one customer in one batch of calls."""

    customer_id: int
    tags: frozenset[str] | None = None  # the app's tags the store now holds, after a tag change
    metafields: dict[str, str] | None = None  # the app's metafields it now holds, if changed
    blocked: str | None = None  # why the store refused the tag change
    blocked_tags: frozenset[str] | None = None
    changes: list[tuple[str, str, str, str | None, str]] = field(default_factory=list)
    # (kind, name, action, value, reason) for the audit trail


def record_outcomes(
    engine: Engine,
    shop_id: int,
    outcomes: Sequence[Outcome],
    *,
    via: str,
    job_run_id: int | None,
    now: datetime,
    settled: Collection[int] = (),
) -> None:
    """Store what the store now holds, and the audit rows, in one transaction; the customers
    `settled` (every change sent to them answered) lose their uncertain mark (`mark_uncertain`).

    Customers the shop no longer holds (redacted, or deleted, while the push was under way)
    are left out: nothing of theirs is written again. The others' rows are held until the
    commit, before anything is written, as `ledger.hold_customers` explains.
    """
    if not outcomes:
        return
    with Session(engine) as session, session.begin():
        held = hold_customers(session, shop_id, [o.customer_id for o in outcomes], alive=True)
        outcomes = [o for o in outcomes if o.customer_id in held]
        current = _current(session, shop_id, [o.customer_id for o in outcomes])
        rows = []
        for outcome in outcomes:
            row = current.get(outcome.customer_id) or _empty_row(shop_id, outcome.customer_id)
            if outcome.tags is not None:  # a tag outcome: it also says whether it was refused
                row["tags"] = json.dumps(sorted(outcome.tags))
                row["blocked"] = outcome.blocked
                blocked_tags = outcome.blocked_tags
                row["blocked_tags"] = (
                    None if blocked_tags is None else json.dumps(sorted(blocked_tags))
                )
            if outcome.metafields is not None:
                row["metafields"] = json.dumps(outcome.metafields, sort_keys=True)
            row["pushed_at"] = now
            if outcome.customer_id in settled:
                row["uncertain"] = False
            rows.append(row)
        _upsert(session, rows, (*_COLUMNS, "uncertain"))
        changes = [(o.customer_id, *change) for o in outcomes for change in o.changes]
        _insert_changes(session, shop_id, changes, via=via, job_run_id=job_run_id, now=now)


def record_read_back(
    engine: Engine,
    shop_id: int,
    held: dict[int, tuple[frozenset[str], dict[str, str]]],
    now: datetime,
    *,
    job_run_id: int | None = None,
) -> int:
    """Replace the pushed state with what a read of the store found; the number of customers
    whose recorded state was wrong (drift: other tags, or values that differ by what they mean,
    see `same_value`). Each metafield value found other than recorded (or found absent) goes
    into the audit as `found`, with the reading run: it is where the next change of that value
    found it, and what an undo of that change puts back (`values_before`). Nothing is kept for
    a redacted customer, whom the store may still hold, nor for a customer marked deleted (by a
    customers/delete webhook that came during the read, say): the ledger's customers are held
    as `ledger.hold_customers` explains (a redact or a deletion waits for the commit, then
    deletes what was written); of the store's customers the ledger does not hold, the redacted
    are left out."""
    drifted = 0
    audit: list[Change] = []
    with Session(engine) as session, session.begin():
        known = hold_customers(session, shop_id, held, alive=True)
        rest = set(held) - known
        gone = _gone(session, shop_id, rest)
        current = _current(session, shop_id, list(held))
        rows = []
        for customer_id, (tags, metafields) in held.items():
            if customer_id in gone:
                continue
            was = current.get(customer_id)
            tags_text = json.dumps(sorted(tags))
            metafields_text = json.dumps(metafields, sort_keys=True)
            recorded = {} if was is None else json.loads(was["metafields"])
            if was is None:
                if not tags and not metafields:
                    continue
                was = {"shop_id": shop_id, "customer_id": customer_id, "pushed_at": None}
                drifted += 1
            elif was["tags"] != tags_text or not _same_values(recorded, metafields):
                drifted += 1
            audit.extend(
                (customer_id, "metafield", key, FOUND, value, "read from the store")
                for key, value in _found_values(recorded, metafields)
            )
            rows.append(
                {
                    **was,
                    "tags": tags_text,
                    "metafields": metafields_text,
                    "checked_at": now,
                    "blocked": None,
                    "blocked_tags": None,
                    "uncertain": False,
                }
            )
        _upsert(session, rows, (*_COLUMNS, "uncertain"))
        _insert_changes(session, shop_id, audit, via="read", job_run_id=job_run_id, now=now)
    return drifted


def _found_values(recorded: dict[str, str], read: dict[str, str]) -> list[tuple[str, str | None]]:
    """The metafields a read found other than recorded: (key, value read, None if absent)."""
    found: list[tuple[str, str | None]] = [
        (key, value)
        for key, value in read.items()
        if key not in recorded or not same_value(recorded[key], value)
    ]
    return sorted(found + [(key, None) for key in recorded.keys() - read.keys()])


def mark_uncertain(engine: Engine, shop_id: int, customer_ids: Collection[int]) -> None:
    """Mark these customers' pushed state as uncertain: a change is about to be sent to each
    that the store may apply without the app learning of it; `record_outcomes` clears the mark
    once the answer is recorded, and the next push reads back those still marked before it
    plans (`uncertain_customers`). A customer with no pushed state yet gets an empty one,
    marked. A redacted or deleted customer is left out, as in `record_outcomes`."""
    if not customer_ids:
        return
    with Session(engine) as session, session.begin():
        held = hold_customers(session, shop_id, customer_ids, alive=True)
        rows = [_empty_row(shop_id, customer_id, uncertain=True) for customer_id in sorted(held)]
        _upsert(session, rows, ("uncertain",))


def uncertain_customers(engine: Engine, shop_id: int) -> list[int]:
    """The customers whose pushed state is uncertain (`mark_uncertain`), in id order."""
    with Session(engine) as session:
        query = (
            select(col(CustomerSync.customer_id))
            .where(col(CustomerSync.shop_id) == shop_id, col(CustomerSync.uncertain))
            .order_by(col(CustomerSync.customer_id))
        )
        return list(session.execute(query).scalars())


def unrecorded_customers(engine: Engine, shop_id: int) -> list[int]:
    """The scored customers (not deleted) of whom no pushed state is recorded: never pushed to,
    nor found holding any of the app's tags or values by a read, in id order."""
    score, synced = CustomerScore, CustomerSync
    recorded = exists().where(
        col(synced.shop_id) == shop_id, col(synced.customer_id) == col(score.customer_id)
    )
    alive = exists().where(
        col(Customer.shop_id) == shop_id,
        col(Customer.customer_id) == col(score.customer_id),
        col(Customer.deleted_at).is_(None),
    )
    with Session(engine) as session:
        query = (
            select(col(score.customer_id))
            .where(col(score.shop_id) == shop_id, alive, ~recorded)
            .order_by(col(score.customer_id))
        )
        return list(session.execute(query).scalars())


def record_customers_found(
    engine: Engine,
    shop_id: int,
    found: Collection[int],
    read_started: datetime,
    now: datetime,
) -> list[int]:
    """The customers a read of the store's whole customer list did not find, though their
    pushed state dates from before it began: deleted in the store, their customers/delete
    webhook missed (Shopify does not deliver every one). Each is marked deleted, as that
    webhook would have, and its pushed state dropped (the store holds nothing of theirs), so
    the push stops sending them values the store refuses. Nothing is done on a read that found
    no customer at all: that is not a credible read of a shop the app has pushed to.

    And the other way: a customer marked deleted before the read began that the read found is
    in the store after all (a deleted customer is not), and no longer marked: whatever marked
    it, an earlier read that missed it or a stray webhook, it is pushed to again."""
    if not found:
        return []
    synced = CustomerSync
    before = or_(col(synced.pushed_at) < read_started, col(synced.checked_at) < read_started)
    with Session(engine) as session, session.begin():
        query = select(col(synced.customer_id)).where(col(synced.shop_id) == shop_id, before)
        gone = sorted(c for (c,) in session.execute(query) if c not in found)
        for customer_id in gone:
            mark_customer_deleted(session, shop_id, customer_id, now)
        marked = select(col(Customer.customer_id)).where(
            col(Customer.shop_id) == shop_id, col(Customer.deleted_at) < read_started
        )
        back = sorted(c for (c,) in session.execute(marked) if c in found)
        for start in range(0, len(back), 5000):
            session.execute(
                update(Customer)
                .where(
                    col(Customer.shop_id) == shop_id,
                    col(Customer.customer_id).in_(back[start : start + 5000]),
                )
                .values(deleted_at=None)
            )
    return gone


def record_customers_missing(
    engine: Engine, shop_id: int, customer_ids: Collection[int], now: datetime
) -> None:
    """Customers a read by id did not find (`nodes(ids:)` gives none for a customer the store
    does not hold): deleted in the store, marked deleted here as `record_customers_found` marks
    those a read of the whole store misses, their pushed state dropped."""
    if customer_ids:
        with Session(engine) as session, session.begin():
            for customer_id in sorted(customer_ids):
                mark_customer_deleted(session, shop_id, customer_id, now)


def gone_customers(engine: Engine, shop_id: int, customer_ids: Collection[int]) -> set[int]:
    """Those of the customers who were redacted or deleted in the store: nothing is sent to
    them."""
    with Session(engine) as session:
        return _gone(session, shop_id, customer_ids)


def _gone(session: Session, shop_id: int, customer_ids: Collection[int]) -> set[int]:
    return redacted(session, shop_id, CUSTOMER, customer_ids) | _marked_deleted(
        session, shop_id, customer_ids
    )


def _marked_deleted(session: Session, shop_id: int, customer_ids: Collection[int]) -> set[int]:
    wanted = sorted(customer_ids)
    found: set[int] = set()
    for start in range(0, len(wanted), 5000):
        query = select(col(Customer.customer_id)).where(
            col(Customer.shop_id) == shop_id,
            col(Customer.customer_id).in_(wanted[start : start + 5000]),
            col(Customer.deleted_at).is_not(None),
        )
        found.update(session.execute(query).scalars())
    return found


def _same_values(recorded: dict[str, str], read: dict[str, str]) -> bool:
    return recorded.keys() == read.keys() and all(
        same_value(recorded[key], value) for key, value in read.items()
    )


def pushed_tags(engine: Engine, shop_id: int) -> dict[int, list[str]]:
    """Each customer's tags as last confirmed in the store (for the export)."""
    with Session(engine) as session:
        query = select(col(CustomerSync.customer_id), col(CustomerSync.tags)).where(
            col(CustomerSync.shop_id) == shop_id
        )
        return {customer_id: json.loads(tags) for customer_id, tags in session.execute(query)}


def _current(session: Session, shop_id: int, customer_ids: list[int]) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for start in range(0, len(customer_ids), 5000):
        chunk = customer_ids[start : start + 5000]
        query = select(CustomerSync).where(
            col(CustomerSync.shop_id) == shop_id, col(CustomerSync.customer_id).in_(chunk)
        )
        for (row,) in session.execute(query):
            found[row.customer_id] = row.model_dump()
    return found


_COLUMNS = ("tags", "metafields", "pushed_at", "checked_at", "blocked", "blocked_tags")


def _empty_row(shop_id: int, customer_id: int, *, uncertain: bool = False) -> dict[str, Any]:
    """A customer's pushed state when nothing is known to be pushed."""
    return {
        "shop_id": shop_id,
        "customer_id": customer_id,
        "tags": "[]",
        "metafields": "{}",
        "pushed_at": None,
        "checked_at": None,
        "blocked": None,
        "blocked_tags": None,
        "uncertain": uncertain,
    }


def _upsert(
    session: Session, rows: list[dict[str, Any]], columns: Sequence[str] = _COLUMNS
) -> None:
    """Insert the rows, or update `columns` of those that exist: a push's outcome leaves the
    `uncertain` mark as it was (only a read of the store clears it)."""
    if not rows:
        return
    statement = upsert(session, CustomerSync, ["shop_id", "customer_id"], columns)
    for start in range(0, len(rows), 1000):
        session.execute(statement, rows[start : start + 1000])


def _insert_changes(
    session: Session,
    shop_id: int,
    changes: Sequence[Change],
    *,
    via: str,
    job_run_id: int | None,
    now: datetime,
) -> None:
    """Audit rows, as Core inserts of plain rows: a bulk push records hundreds of thousands of
    changes, and building an ORM object per row cost more than the database did."""
    rows = [
        {
            "shop_id": shop_id,
            "customer_id": customer_id,
            "product_id": None,
            "kind": kind,
            "name": name,
            "action": action,
            "value": value,
            "reason": reason,
            "via": via,
            "job_run_id": job_run_id,
            "applied_at": now,
        }
        for customer_id, kind, name, action, value, reason in changes
    ]
    for start in range(0, len(rows), 5000):
        session.execute(insert(SyncChange), rows[start : start + 5000])


@dataclass(frozen=True)
class RunRecord:
    """What a job run changed on customers, from the audit: by customer, in order."""

    changes: dict[int, list[tuple[str, str, str, str | None]]]  # (kind, name, action, value)
    first_id: int | None  # the run's first audit row


def run_record(engine: Engine, shop_id: int, job_run_id: int) -> RunRecord:
    """The customers' tag and metafield changes the run applied (refusals left out)."""
    query = (
        select(
            col(SyncChange.id),
            col(SyncChange.customer_id),
            col(SyncChange.kind),
            col(SyncChange.name),
            col(SyncChange.action),
            col(SyncChange.value),
        )
        .where(
            col(SyncChange.shop_id) == shop_id,
            col(SyncChange.job_run_id) == job_run_id,
            col(SyncChange.customer_id).is_not(None),
            col(SyncChange.action).in_(APPLIED),
        )
        .order_by(col(SyncChange.id))
    )
    changes: dict[int, list[tuple[str, str, str, str | None]]] = {}
    first_id: int | None = None
    with Session(engine) as session:
        for row_id, customer_id, kind, name, action, value in session.execute(query):
            first_id = row_id if first_id is None else first_id
            changes.setdefault(customer_id, []).append((kind, name, action, value))
    return RunRecord(changes, first_id)


def values_before(
    engine: Engine, shop_id: int, customer_ids: Sequence[int], before_id: int
) -> dict[int, dict[str, str | None]]:
    """Each customer's metafield values as the app last wrote them before audit row
    `before_id`, or as a read of the store last found them if that came after (None for one
    deleted, or found absent); keys it never wrote or found are absent."""
    found: dict[int, dict[str, str | None]] = {}
    with Session(engine) as session:
        for start in range(0, len(customer_ids), 500):
            query = (
                select(
                    col(SyncChange.customer_id),
                    col(SyncChange.name),
                    col(SyncChange.action),
                    col(SyncChange.value),
                )
                .where(
                    col(SyncChange.shop_id) == shop_id,
                    col(SyncChange.customer_id).in_(list(customer_ids[start : start + 500])),
                    col(SyncChange.id) < before_id,
                    col(SyncChange.kind) == "metafield",
                    col(SyncChange.action).in_(VALUE_HELD),
                )
                .order_by(col(SyncChange.id))
            )
            for customer_id, name, action, value in session.execute(query):
                found.setdefault(customer_id, {})[name] = None if action == "delete" else value
    return found


def pushed_state(
    engine: Engine, shop_id: int, customer_ids: Sequence[int]
) -> dict[int, tuple[frozenset[str], dict[str, str]]]:
    """What the store is known to hold for these customers: the app's tags and metafields."""
    with Session(engine) as session:
        rows = _current(session, shop_id, list(customer_ids))
    return {
        customer_id: (frozenset(json.loads(row["tags"])), json.loads(row["metafields"]))
        for customer_id, row in rows.items()
    }
