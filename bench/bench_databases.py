"""The databases a benchmark runs on: a temporary SQLite file, and a throwaway PostgreSQL one."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        yield f"sqlite:///{tmp}/bench.db"


@contextmanager
def postgres_database() -> Iterator[str | None]:
    """A new database on CLVSYNC_BENCH_POSTGRES_URL's server (default: the local one), dropped
    afterwards; None, said on stderr, when the server is unreachable."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    base = os.environ.get("CLVSYNC_BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    name = f"clvsync_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        print(f"PostgreSQL skipped: unreachable ({str(exc.orig).strip()})", file=sys.stderr)
        admin.dispose()
        yield None
        return
    try:
        yield base.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
