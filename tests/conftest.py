"""Fixtures shared by the whole suite: a migrated database on SQLite and on PostgreSQL.

Tests that take `engine` run once per backend. PostgreSQL is the server in
CLVSYNC_TEST_POSTGRES_URL (default: the local one, database `test`); each run works in a
database of its own, created and dropped here. When it is unreachable the PostgreSQL cases
are skipped with the reason, except under CI (CI=true), where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

import plugin.store.models  # noqa: F401  (registers the tables)
from plugin.store.db import database_url, make_engine, upgrade

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def _create_database(base: str, prefix: str) -> str:
    """A new, empty database on the server of `base` (a database URL); its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def _drop_database(base: str, url: str) -> None:
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            name = make_url(url).database
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this run, dropped at the end."""
    base = database_url(os.environ.get("CLVSYNC_TEST_POSTGRES_URL", DEFAULT_POSTGRES))
    try:
        url = _create_database(base, "clvsync_test")
    except OperationalError as exc:
        reason = f"PostgreSQL unreachable at {make_url(base).render_as_string()}: {exc.orig}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason + " (CI requires PostgreSQL)", pytrace=False)
        pytest.skip(reason)
    try:
        yield url
    finally:
        _drop_database(base, url)


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """Another empty PostgreSQL database, for a migration run from scratch."""
    url = _create_database(postgres_url, "clvsync_migrate")
    try:
        yield url
    finally:
        _drop_database(postgres_url, url)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def migrated_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database URL whose schema was built by the migrations (never by create_all)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'clvsync.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    """An engine on an empty, migrated database (every table emptied before the test)."""
    yield from _emptied(migrated_url)


@pytest.fixture
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    """`engine` on PostgreSQL alone, for what only PostgreSQL does (the scheduler's election)."""
    migrated = make_engine(postgres_url)
    upgrade(migrated)
    migrated.dispose()
    yield from _emptied(postgres_url)


def _emptied(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    with engine.begin() as connection:
        for table in reversed(SQLModel.metadata.sorted_tables):
            connection.execute(table.delete())
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "clvsync.db"
