"""The queue of due jobs (`job_queue`): the elected scheduler puts each shop's tick in, every
worker takes what it has room for (DESIGN, process model).

A tick is one row per (shop, job): one that comes while the last still waits joins it. The
row keeps its first tick's time, by which the oldest is taken first (every shop gets its turn),
and its newest's, from which the misfire grace counts (a busy moment must not drop a fresh tick
with the stale one it joined). A worker
takes the oldest row it can run, deleting it, in a transaction of its own (`SKIP LOCKED` on
PostgreSQL, so two workers never take the same one; SQLite has one writer). A row older than its
job's misfire grace is dropped, not run: the next tick is as good. A row whose lease (the shop's
job, or one sharing its lease: `jobs.runs.SHARED_LEASES`) another worker holds, or that runs in
the taker itself, is not taken: it waits in the queue until the lease is free (taken, it could
only be skipped, and the day's refit would be lost to the rescore running at 02:00). A worker
that dies between taking a row and recording its run loses that tick, as a process that died in
APScheduler's hands would; the next tick, or the make-up on taking the lead, serves it.

Plain SQL, blocking: run these in a worker thread.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Engine, and_, delete, exists, func, not_, true
from sqlmodel import Session, col, select

from jobs.runs import lease_of
from plugin.store.db import insert_for
from plugin.store.models import JobLease, QueuedJob


@dataclass(frozen=True)
class Due:
    job: str
    shop_id: int
    due_at: datetime


def enqueue(engine: Engine, ticks: Collection[Due]) -> None:
    """Queue the ticks; one already waiting for the same shop and job takes the newer time as
    its latest."""
    if not ticks:
        return
    table = QueuedJob.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        statement = insert_for(connection)(table)
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=["shop_id", "job"],
                set_={"latest_at": statement.excluded.latest_at},
                where=statement.excluded.latest_at > table.c.latest_at,
            ),
            [
                {"shop_id": t.shop_id, "job": t.job, "due_at": t.due_at, "latest_at": t.due_at}
                for t in ticks
            ],
        )


@dataclass(frozen=True)
class Taken:
    tick: Due | None  # the tick taken, or None
    dropped: int = 0  # ticks past their grace dropped on the way
    held: int = 0  # (when none was taken) ticks waiting for a lease another worker holds


def take(
    engine: Engine,
    graces: Mapping[str, float],
    now: datetime,
    *,
    holder: str = "",
    busy: Collection[tuple[str, int]] = (),
) -> Taken:
    """The oldest due tick of the jobs in `graces` (job -> misfire grace, seconds), taken off
    the queue (with its latest time), and how many ticks past their grace were dropped on the
    way. Left waiting: the ticks whose lease (by name) is held, unexpired, by another worker
    than `holder`, and those whose (lease name, shop id) is in `busy` (running in the taker)."""
    dropped = 0
    with Session(engine) as session, session.begin():
        while True:
            query = (
                select(QueuedJob)
                .where(col(QueuedJob.job).in_(graces), not_(_held(holder, now)), _free(busy))
                .order_by(col(QueuedJob.due_at))
                .limit(1)
            )
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            row = session.exec(query).first()
            if row is None:
                held = select(func.count()).where(
                    col(QueuedJob.job).in_(graces), _held(holder, now)
                )
                return Taken(None, dropped, int(session.execute(held).scalar_one()))
            tick = Due(row.job, row.shop_id, row.latest_at)
            session.delete(row)
            session.flush()
            if now - tick.due_at <= timedelta(seconds=graces[tick.job]):
                return Taken(tick, dropped)
            dropped += 1


def _held(holder: str, now: datetime) -> ColumnElement[bool]:
    """The queued tick's lease is held, unexpired, by another worker than `holder`."""
    queued, lease = QueuedJob.__table__, JobLease.__table__  # type: ignore[attr-defined]
    return exists().where(
        lease.c.shop_id == queued.c.shop_id,
        lease.c.job == lease_of(queued.c.job),
        lease.c.expires_at > now,
        lease.c.holder != holder,
    )


def _free(busy: Collection[tuple[str, int]]) -> ColumnElement[bool]:
    """The queued tick's (lease, shop) is none of `busy`."""
    queued = QueuedJob.__table__  # type: ignore[attr-defined]
    lease = lease_of(queued.c.job)
    return and_(
        true(), *(not_(and_(queued.c.shop_id == shop, lease == name)) for name, shop in busy)
    )


def waiting(engine: Engine) -> list[Due]:
    """Every queued tick, oldest first."""
    with Session(engine) as session:
        rows = session.exec(select(QueuedJob).order_by(col(QueuedJob.due_at)))
        return [Due(r.job, r.shop_id, r.latest_at) for r in rows]


def forget_older_than(engine: Engine, before: datetime) -> int:
    """Delete ticks queued before `before` that no worker took (a job no longer known)."""
    table = QueuedJob.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        return int(connection.execute(delete(table).where(table.c.latest_at < before)).rowcount)
