"""Which process's scheduler fires the jobs: exactly one, however many run (DESIGN, process model).

On PostgreSQL the scheduler whose connection holds a session-level advisory lock leads; the
others stand by and try to take the lock again every few seconds. PostgreSQL releases the lock
when the leader's connection ends (its process died, or the connection was cut), so a standby
takes over at its next try. The leader checks its connection as often and steps down as soon
as the check fails: the lock is gone with the connection, and another may already lead.

The per-shop job leases (`jobs.runs`) still keep two runs of a shop's job apart; the election
keeps each tick from being fired by every process, one after the other.

SQLite serves one process (DESIGN): its scheduler always leads, and no connection is held.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

# A fixed 64-bit key in PostgreSQL's advisory lock space, per database.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"clvsync scheduler").digest()[:8], "big", signed=True)
# The lock connection's application_name: this prefix and the worker's name, so that
# `current_leader` (and pg_stat_activity) can tell who leads.
APPLICATION_PREFIX = "clvsync scheduler "


class Election:
    """This process's hold on the scheduler's lead. Every method blocks (run it in a thread)."""

    def __init__(self, engine: Engine, worker: str = "", key: int = LOCK_KEY) -> None:
        self._engine = engine
        self._worker = worker
        self._key = key
        self._connection: Connection | None = None
        self._holds = False

    @property
    def contested(self) -> bool:
        """Whether other processes may compete (PostgreSQL), or this one always leads."""
        return self._engine.dialect.name == "postgresql"

    def try_lead(self) -> bool:
        """Take the lead if no one holds it; True when this process leads."""
        if not self.contested:
            return True
        try:
            if self._connection is None:
                self._connection = self._engine.connect()
                self._connection.execute(
                    text("SELECT set_config('application_name', :name, false)"),
                    {"name": (APPLICATION_PREFIX + self._worker)[:63]},
                )
            taken = self._connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
            ).scalar()
            self._connection.commit()  # the lock is the session's: it outlives the transaction
        except SQLAlchemyError as exc:
            log.warning("scheduler election: cannot reach the database: %s", type(exc).__name__)
            self._drop()
            return False
        self._holds = bool(taken)
        return self._holds

    def still_leads(self) -> bool:
        """Whether the connection that holds the lock still answers (and so still holds it)."""
        if not self.contested:
            return True
        if self._connection is None or not self._holds:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
            self._connection.commit()
        except SQLAlchemyError as exc:
            log.warning("scheduler election: the lead's connection failed: %s", type(exc).__name__)
            self._drop()
            return False
        return True

    def resign(self) -> None:
        """Give up the lead (or the try): the lock is released, then the connection closed, not
        pooled, so the lock cannot live on in the pool. (Closing alone releases it only once the
        server has seen the connection go, a moment later: a standby asking at once would find it
        still held.)"""
        if self._connection is not None and self._holds:
            try:
                self._connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": self._key}
                )
                self._connection.commit()
            except SQLAlchemyError:
                pass  # closing the connection, below, releases it too
        self._drop()

    def _drop(self) -> None:
        self._holds = False
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.invalidate()
            connection.close()
        except SQLAlchemyError:
            pass  # already broken: nothing is held by a closed connection


@dataclass(frozen=True)
class Leader:
    """The process whose scheduler leads, as PostgreSQL sees its lock connection."""

    worker: str  # its worker name (host:pid), as job runs and leases name it
    client: str | None  # the connection's client address (None over a Unix socket)
    connected_at: datetime


def current_leader(engine: Engine, key: int = LOCK_KEY) -> Leader | None:
    """Who holds the scheduler's lock on this database now (PostgreSQL), or None."""
    # A bigint advisory key shows in pg_locks as classid (high 32 bits) and objid (low 32 bits),
    # with objsubid 1.
    query = text(
        "SELECT a.application_name, host(a.client_addr), a.backend_start"
        " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
        " AND l.classid::bigint = :high AND l.objid::bigint = :low"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    with engine.connect() as connection:
        row = connection.execute(
            query, {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}
        ).first()
    if row is None:
        return None
    name, client, connected_at = row
    return Leader(name.removeprefix(APPLICATION_PREFIX), client, connected_at)
