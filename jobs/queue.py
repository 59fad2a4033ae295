"""The queue of due jobs (`job_queue`): the elected scheduler puts each shop's tick in, every
worker takes what it has room for (DESIGN, process model).

A tick is one row per (shop, job): one that comes while the last still waits joins it. The
row keeps its first tick's time, by which the oldest is taken first (every shop gets its turn),
and its newest's, from which the misfire grace counts (a busy moment must not drop a fresh tick
with the stale one it joined). A worker
takes the oldest row it can run, deleting it, in a transaction of its own (`SKIP LOCKED` on
PostgreSQL, so two workers never take the same one; SQLite has one writer). A row older than its
job's misfire grace is dropped, not run: the next tick is as good. A worker that dies between
taking a row and recording its run loses that tick, as a process that died in APScheduler's
hands would; the next tick, or the make-up on taking the lead, serves it.

Plain SQL, blocking: run these in a worker thread.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete
from sqlmodel import Session, col, select

from plugin.store.db import insert_for
from plugin.store.models import QueuedJob


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


def take(engine: Engine, graces: Mapping[str, float], now: datetime) -> tuple[Due | None, int]:
    """The oldest due tick of the jobs in `graces` (job -> misfire grace, seconds), taken off
    the queue (with its latest time), or None; and how many ticks past their grace were dropped
    on the way."""
    dropped = 0
    with Session(engine) as session, session.begin():
        while True:
            query = (
                select(QueuedJob)
                .where(col(QueuedJob.job).in_(graces))
                .order_by(col(QueuedJob.due_at))
                .limit(1)
            )
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            row = session.exec(query).first()
            if row is None:
                return None, dropped
            tick = Due(row.job, row.shop_id, row.latest_at)
            session.delete(row)
            session.flush()
            if now - tick.due_at <= timedelta(seconds=graces[tick.job]):
                return tick, dropped
            dropped += 1


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
