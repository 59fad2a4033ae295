"""Engines, the schema's migrations, and the per-backend details (SQLite write locks, PG locks)."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x636C7673  # "clvs": serialises concurrent `upgrade` runs on PostgreSQL
MIGRATION_LOCK_POLL_SECONDS = 0.2


def database_url(url: str) -> str:
    """Pick the drivers this project ships: psycopg 3 for PostgreSQL."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


# libpq settings for every PostgreSQL connection: a server that does not answer fails a connect
# in 10 s, and a connection whose server vanished (host down, network cut) is found dead within
# about a minute (30 s idle, then 3 probes 10 s apart) instead of the system's two hours. It
# matters most to the scheduler's lock connection, whose loss must end its lead (jobs.leader).
POSTGRES_CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def make_engine(url: str, *, read_only: bool = False, **kwargs: Any) -> Engine:
    """An engine for `url`. SQLite is set up for durable, concurrent use:

    WAL with synchronous=FULL, so a committed webhook survives a power cut; a 30 s busy
    timeout; every transaction begins IMMEDIATE (takes the write lock at BEGIN), because a
    deferred transaction that reads and then writes fails with SQLITE_BUSY under concurrency
    instead of waiting; and no automatic checkpoints, which would run inside whichever commit
    crosses the threshold (a webhook's, tens of milliseconds): the app checkpoints from a
    background task (`checkpoint`), and SQLite checkpoints when the last connection closes.

    `read_only` engines begin deferred: in WAL mode a reader never waits for the write lock, so
    a progress display polling a busy database is not starved by the writers taking turns.
    """
    url = database_url(url)
    if make_url(url).get_backend_name() != "sqlite":
        given = make_url(url).query  # what DATABASE_URL sets itself is left as it is
        defaults = {k: v for k, v in POSTGRES_CONNECT_ARGS.items() if k not in given}
        connect_args = {**defaults, **kwargs.pop("connect_args", {})}
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)
    engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "busy_timeout=30000",
            "wal_autocheckpoint=0",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


@contextlib.contextmanager
def driver_connection(engine: Engine) -> Iterator[Any]:
    """The driver's own connection (outside any transaction SQLAlchemy would begin), closed
    after use. What the database refuses on it is raised as SQLAlchemy's error, as every other
    query's is: the driver's own exception (sqlite3's, psycopg's) would escape the callers'
    handling of database errors, and end the task that made the call, or a job's retries."""
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        connection = engine.raw_connection()
        try:
            yield connection
        finally:
            connection.close()
    except dbapi_error as exc:
        raise DBAPIError.instance(None, None, exc, dbapi_error) from exc


def checkpoint(engine: Engine) -> None:
    """Copy SQLite's write-ahead log back into the database, without blocking writers (a
    failure is SQLAlchemy's error: see `driver_connection`; serve's checkpoint task goes on)."""
    if engine.dialect.name != "sqlite":
        return
    with driver_connection(engine) as connection:  # no BEGIN IMMEDIATE here
        connection.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)")


def insert_for(bind: Session | Engine | Connection) -> Any:
    """The INSERT of the database's dialect: PostgreSQL's or SQLite's, which have ON CONFLICT."""
    dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
    return postgresql.insert if dialect.name == "postgresql" else sqlite.insert


def upsert(
    bind: Session | Engine | Connection, table: Any, keys: list[str], columns: Iterable[str]
) -> Any:
    """INSERT into `table`, or on a conflict on `keys`, UPDATE `columns` to the new values."""
    statement = insert_for(bind)(table)
    return statement.on_conflict_do_update(
        index_elements=keys, set_={name: statement.excluded[name] for name in columns}
    )


def is_postgres(session_or_engine: Session | Engine) -> bool:
    bind = (
        session_or_engine.get_bind()
        if isinstance(session_or_engine, Session)
        else session_or_engine
    )
    return bind.dialect.name == "postgresql"


def lock_keys(session: Session, *keys: tuple[str, int, int]) -> None:
    """Serialise work on the given (kind, shop_id, id) keys until the transaction ends.

    PostgreSQL: transaction-scoped advisory locks, taken in sorted order so that two calls
    never deadlock on them (transactions holding locks from earlier calls still can: see
    plugin.store.ledger). SQLite: nothing to do, every write transaction already
    holds the database's single write lock.
    """
    if not is_postgres(session):
        return
    for key in sorted({_lock_id(*k) for k in keys}):
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _lock_id(kind: str, shop_id: int, item_id: int) -> int:
    digest = hashlib.blake2b(f"{kind}:{shop_id}:{item_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# PostgreSQL aborts one of two transactions that wait for each other's locks (deadlock
# detected), or one that a concurrent change made unserialisable: the other transaction, not
# the work, is the cause, and the same work in a new transaction can succeed. Transactions that
# hold locks from earlier statements (a processor's batch of events, a backfill's batch of
# orders) can meet so, though each statement takes its own locks in order (`lock_keys`).
CONTENDED_STATES = frozenset({"40P01", "40001"})


def contended(exc: BaseException) -> bool:
    """Whether `exc` is PostgreSQL aborting the transaction for another's sake
    (CONTENDED_STATES): worth doing again in a new transaction, unlike any other failure."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in CONTENDED_STATES


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` through the migrations (safe to run from many processes).

    On PostgreSQL one process migrates at a time, under a session advisory lock. The others
    wait for it by trying again every `MIGRATION_LOCK_POLL_SECONDS`, in autocommit and outside
    any statement: a backend blocked in `pg_advisory_lock` holds a snapshot, which a migration's
    `CREATE INDEX CONCURRENTLY` would wait for while that backend waits for the migration.
    """
    config = alembic_config(engine)
    if engine.dialect.name != "postgresql":
        command.upgrade(config, revision)
        return
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        key = {"key": _MIGRATION_LOCK}
        while not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), key).scalar():
            time.sleep(MIGRATION_LOCK_POLL_SECONDS)
        try:
            command.upgrade(config, revision)
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), key)
