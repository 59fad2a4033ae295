"""The SQLite engine's locking: writers take the lock at BEGIN; read-only engines never wait."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import text

from plugin.store.db import make_engine, upgrade


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
