"""The SQLite engine's locking: writers take the lock at BEGIN; read-only engines never wait."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from plugin.app import _checkpoints
from plugin.store.db import checkpoint, make_engine, upgrade


def test_read_only_engine_reads_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    # given a migrated SQLite database and a writer holding the write lock
    url = f"sqlite:///{tmp_path / 'clvsync.db'}"
    writer, reader = make_engine(url), make_engine(url, read_only=True)
    upgrade(writer)
    try:
        with writer.begin() as held:
            held.execute(text("DELETE FROM webhook_inbox"))
            # when a read-only engine reads meanwhile
            started = time.monotonic()
            with reader.begin() as reading:
                count = reading.execute(text("SELECT count(*) FROM webhook_inbox")).scalar_one()
            # then it did not wait for the lock (a writer would wait up to its busy timeout)
            assert count == 0 and time.monotonic() - started < 1.0
    finally:
        writer.dispose()
        reader.dispose()


def libpq_parameters(url: str) -> dict[str, str]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            assert raw is not None
            return dict(raw.info.get_parameters())  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def test_postgres_connections_find_a_vanished_server_within_a_minute(postgres_url: str) -> None:
    # every connection probes an idle server after 30 s, 3 times 10 s apart, and gives up
    # connecting after 10 s
    parameters = libpq_parameters(postgres_url)
    assert {k: parameters.get(k) for k in ("keepalives_idle", "keepalives_interval")} == {
        "keepalives_idle": "30",
        "keepalives_interval": "10",
    }
    assert parameters.get("keepalives_count") == "3"
    assert parameters.get("connect_timeout") == "10"
    # and what DATABASE_URL sets itself is kept
    own = libpq_parameters(postgres_url + "?keepalives_idle=5")
    assert own.get("keepalives_idle") == "5" and own.get("keepalives_interval") == "10"


def test_checkpoints_go_on_when_the_database_file_is_no_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # given an SQLite engine whose file is not a database (replaced, or damaged)
    path = tmp_path / "clvsync.db"
    path.write_bytes(b"not a database" * 1000)
    engine = make_engine(f"sqlite:///{path}")

    async def checkpoint_a_while() -> None:
        stop = anyio.Event()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_checkpoints, engine, stop, 0.01)
            await anyio.sleep(0.1)
            stop.set()

    try:
        # when the background checkpoints run against it, then they stop when told, each
        # failure logged as a database error, instead of ending the serve's task group with
        # sqlite3's own exception
        with caplog.at_level(logging.WARNING, logger="plugin.app"):
            anyio.run(checkpoint_a_while)
        messages = [record.getMessage() for record in caplog.records]
        failures = [m for m in messages if "checkpoint failed" in m]
        assert failures and all(m.endswith("DatabaseError") for m in failures)
        with pytest.raises(DatabaseError):
            checkpoint(engine)
    finally:
        engine.dispose()
