"""The inbox processor: claims due events in small batches and applies them to the ledger.

Events are claimed, applied and marked done in ONE transaction (each in a savepoint of its
own), so a processor that dies at any point leaves its events pending and the ledger untouched
by them: nothing is lost and nothing is counted twice (and applying is idempotent anyway).

Order webhooks of one shop in a batch are applied together first, and so are its refunds and
its customer records (customers/create and customers/update), in groups of GROUP_MIN to
GROUP_SIZE, one savepoint each (`handlers.BATCH_HANDLERS`): one at a time, an order webhook
took a dozen statements, about 4 ms of CPU on SQLite and 7 ms on PostgreSQL, which capped a
process at a few hundred events a second. The ledger does not depend on the order events are
applied in, so applying them ahead of the batch's other events ends the same. If a group
fails, its events are applied one at a time, so that only the one at fault fails.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from plugin.store import inbox, shops
from plugin.store.db import contended
from plugin.store.models import InboxEvent, Shop
from webhooks.gate import IngestGate
from webhooks.handlers import BATCH_HANDLERS, HANDLERS, SHOP_TOPICS, BatchHandler

log = logging.getLogger(__name__)

# Events applied together at most while webhooks come, between two looks at the batch's time
# (about 10 ms on SQLite); when none has come for a second, a batch's events all at once.
GROUP_SIZE = 10
# And at least: fewer go one by one, and the batch can end between them when a webhook comes.
# (A busy shop's steady flow brings a few events a batch; a backlog brings full batches.)
GROUP_MIN = 4
REPLAY_CHUNK = 50  # parked events re-run per transaction (`rerun_parked`)


class Outcome(enum.Enum):
    DONE = "done"
    RETRY = "retry"
    PARKED = "parked"


@dataclass
class Counts:
    by_outcome: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: Outcome) -> None:
        self.by_outcome[outcome.value] += 1

    @property
    def total(self) -> int:
        return sum(self.by_outcome.values())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Processor:
    def __init__(
        self,
        engine: Engine,
        *,
        max_attempts: int = 8,
        batch_size: int = 50,
        batch_seconds: float = 0.02,
        quiet_batch_seconds: float = 0.5,
        idle_seconds: float = 0.5,
        clock: Callable[[], datetime] = utcnow,
        gate: IngestGate | None = None,
        group_min: int = GROUP_MIN,
    ) -> None:
        self._engine = engine
        self._group_min = group_min
        self._max_attempts = max_attempts
        self._batch_size = batch_size
        self._batch_seconds = batch_seconds
        self._quiet_batch_seconds = quiet_batch_seconds
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._gate = gate

    def process_batch(self, limit: int) -> list[Outcome]:
        """Claim up to `limit` due events and process them in one transaction.

        One commit (one fsync) for the batch instead of one per event. The batch ends early
        after `batch_seconds` (`quiet_batch_seconds` when no webhook has come for a second),
        or as soon as a webhook waits to be stored, because on SQLite this transaction holds
        the only write lock. Claimed events it did not reach stay pending, as does the whole
        batch if the commit fails.
        """
        now = self._clock()
        quiet = self._gate is None or self._gate.quiet_for(1.0)
        budget = self._quiet_batch_seconds if quiet else self._batch_seconds
        deadline = time.monotonic() + budget
        outcomes: list[Outcome] = []
        known: dict[str, Shop | None] = {}  # the batch's shops, read once each
        turn = self._gate.writing() if self._gate is not None else contextlib.nullcontext()
        with turn, Session(self._engine, expire_on_commit=False) as session, session.begin():
            events = inbox.claim_due(session, now, limit)
            applied: set[int | None] = set()
            most = len(events) if quiet else GROUP_SIZE  # a group at most, see GROUP_SIZE
            for shop, together, members in self._groups(session, events, known, most):
                if self._apply_together(session, shop, together, members, now):
                    outcomes += [Outcome.DONE] * len(members)
                else:  # at once, before the batch may end: the one at fault fails alone
                    outcomes += [self._process(session, event, now, known) for event in members]
                applied.update(event.id for event in members)
                if self._time_is_up(deadline):
                    return outcomes
            for event in events:
                if event.id in applied:
                    continue
                outcomes.append(self._process(session, event, now, known))
                if self._time_is_up(deadline):
                    break
        return outcomes

    def _time_is_up(self, deadline: float) -> bool:
        return time.monotonic() > deadline or (self._gate is not None and self._gate.busy)

    def _groups(
        self,
        session: Session,
        events: list[InboxEvent],
        known: dict[str, Shop | None],
        most: int,
    ) -> Iterator[tuple[Shop, BatchHandler, list[InboxEvent]]]:
        """The events a batch handler applies together: `group_min` of a shop at least, in
        groups of at most `most`, so that the batch can end between groups on time."""
        groups: defaultdict[tuple[str, BatchHandler], list[InboxEvent]] = defaultdict(list)
        for event in events:
            together = BATCH_HANDLERS.get(event.topic)
            if together is not None:
                groups[(event.shop_domain, together)].append(event)
        for (domain, together), members in groups.items():
            shop = self._shop(session, domain, known) if len(members) >= self._group_min else None
            if shop is not None:
                for low in range(0, len(members), most):
                    yield shop, together, members[low : low + most]

    def _apply_together(
        self,
        session: Session,
        shop: Shop,
        together: BatchHandler,
        members: list[InboxEvent],
        now: datetime,
    ) -> bool:
        """Apply `members` with one call of their batch handler and mark them done; False, with
        nothing applied, if it failed."""
        try:
            payloads = [_payload(event.payload) for event in members]
            with _savepoint(session):
                together(session, shop, payloads)
        except Exception as exc:
            log.info(
                "%d events of %s applied one at a time, as together they failed: %s",
                len(members),
                shop.domain,
                _describe(exc),
            )
            return False
        for event in members:
            inbox.mark_done(event, now)
        return True

    def process_one(self) -> Outcome | None:
        """Claim and apply the oldest due event; None when nothing is due."""
        outcomes = self.process_batch(1)
        return outcomes[0] if outcomes else None

    def _process(
        self, session: Session, event: InboxEvent, now: datetime, known: dict[str, Shop | None]
    ) -> Outcome:
        try:
            # A savepoint, so a failing handler's writes are undone but the claim (and the
            # record of the failure) stay in this transaction.
            with _savepoint(session):
                self._apply(session, event, known)
        except Exception as exc:  # any handler failure is recorded, not raised
            # Another transaction's locks aborted this one (`contended`): a batch holds its
            # locks until it commits, and the locks each event takes are sorted for that event
            # only, so two processors' batches can wait for each other (plugin.store.ledger).
            if contended(exc):
                inbox.mark_contended(event, _describe(exc), now)
                log.info(
                    "webhook %s (%s, %s) lost a lock wait to another processor, tried again "
                    "in %s (not counted as a failure): %s",
                    event.id,
                    event.topic,
                    event.shop_domain,
                    inbox.CONTENDED_DELAY,
                    _describe(exc),
                )
                return Outcome.RETRY
            parked = inbox.mark_failed(event, _describe(exc), now, self._max_attempts)
            log.warning(
                "webhook %s (%s, %s) failed, attempt %d%s: %s",
                event.id,
                event.topic,
                event.shop_domain,
                event.attempts,
                " - parked" if parked else "",
                _describe(exc),
            )
            return Outcome.PARKED if parked else Outcome.RETRY
        inbox.mark_done(event, now)
        return Outcome.DONE

    def _apply(self, session: Session, event: InboxEvent, known: dict[str, Shop | None]) -> None:
        """Apply the event with its topic's handler. The shop is read once per batch (`known`),
        and read again after an event that changes or deletes the shop itself."""
        shop = self._shop(session, event.shop_domain, known)
        if shop is None:
            return  # the shop was redacted after this event arrived: nothing to keep
        handler = HANDLERS.get(event.topic)
        if handler is None:
            raise ValueError(f"no handler for topic {event.topic!r}")
        payload = _payload(event.payload)
        try:
            handler(session, shop, payload, event)
        finally:
            if event.topic in SHOP_TOPICS:
                del known[event.shop_domain]

    @staticmethod
    def _shop(session: Session, domain: str, known: dict[str, Shop | None]) -> Shop | None:
        if domain not in known:
            known[domain] = shops.get_shop(session, domain)
        return known[domain]

    def drain(self, limit: int | None = None) -> Counts:
        """Process due events until none is left (or `limit` were processed)."""
        counts = Counts()
        while limit is None or counts.total < limit:
            if self._gate is not None:
                self._gate.wait_for_quiet()
            remaining = self._batch_size if limit is None else limit - counts.total
            outcomes = self.process_batch(min(self._batch_size, remaining))
            if not outcomes:
                break
            for outcome in outcomes:
                counts.add(outcome)
        return counts

    def rerun_parked(self, ids: Sequence[int]) -> Counts:
        """One more attempt for each of the parked events `ids` (those still parked), and only
        them, REPLAY_CHUNK to a transaction (which holds SQLite's write lock)."""
        counts = Counts()
        for low in range(0, len(ids), REPLAY_CHUNK):
            with Session(self._engine, expire_on_commit=False) as session, session.begin():
                now = self._clock()
                known: dict[str, Shop | None] = {}
                chunk = ids[low : low + REPLAY_CHUNK]
                for event in inbox.claim_parked(session, chunk, now, self._max_attempts):
                    counts.add(self._process(session, event, now, known))
        return counts

    async def run(self, stop: anyio.Event | threading.Event) -> None:
        """Drain in a worker thread, sleep while idle, until `stop` is set.

        Database outages are logged and waited out: the events stay in the inbox. So is any
        other failure of a batch as a whole (a handler's failure is the event's, recorded in
        `_process`): a batch that did not commit leaves its events pending, and the processor
        must outlive it, or `clvsync serve` would go on taking webhooks that nothing applies.
        """
        while not stop.is_set():
            try:
                counts = await anyio.to_thread.run_sync(self.drain, 500)
            except OperationalError as exc:
                log.error("inbox processor: database unavailable, retrying: %s", _describe(exc))
                counts = Counts()
            except Exception:
                log.exception("inbox processor: a batch failed and is left pending, retrying")
                counts = Counts()
            if counts.total == 0:
                await anyio.sleep(self._idle_seconds)


@contextlib.contextmanager
def _savepoint(session: Session) -> Iterator[None]:
    """A savepoint whose rollback also forgets every row the session has read. PostgreSQL's
    ROLLBACK TO SAVEPOINT releases the locks taken inside it, so another processor may change a
    row read under them before this transaction takes them again; SQLAlchemy expires only the
    objects changed inside, and an object only read stays in the session (as long as something
    references it: an aborted handler's exception can) to be served stale to the next event."""
    try:
        with session.begin_nested():
            yield
    except BaseException:
        session.expire_all()
        raise


def _payload(text: str) -> dict[str, Any]:
    payload = json.loads(text)
    if not isinstance(payload, dict):
        raise ValueError("stored payload is not a JSON object")
    return payload


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:500]
