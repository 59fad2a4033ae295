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

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

# A fixed 64-bit key in PostgreSQL's advisory lock space, per database.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"clvsync scheduler").digest()[:8], "big", signed=True)


class Election:
    """This process's hold on the scheduler's lead. Every method blocks (run it in a thread)."""

    def __init__(self, engine: Engine, key: int = LOCK_KEY) -> None:
        self._engine = engine
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
        """Give up the lead (or the try): the connection is closed, not pooled, so the lock
        cannot live on in the pool."""
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
