"""The store conformance suite: every test here runs on both backends (``[sqlite]``,
``[postgres]``; the ``both_backends`` mark of each module), against the Store protocol only.
What one backend alone has (SQLite's migrations and file watch, PostgreSQL's ``ftserve
migrate``, notification channels and outages) is tested in its own modules."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ftserve.store.protocol import Store
from ftserve.store.sqlite import SqliteStore

Opener = Callable[[], Store]


@pytest.fixture
def open_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Opener]:
    """Opens another store on this test's database (as another process would), closed after
    the test."""
    opened: list[Store] = []
    if backend == "sqlite":
        path = tmp_path / "db.sqlite"

        def new() -> Store:
            opened.append(SqliteStore(path))
            return opened[-1]
    else:
        from ftserve.store.postgres import PostgresStore

        url: str = request.getfixturevalue("pg_store_url")

        def new() -> Store:
            opened.append(PostgresStore(url))
            return opened[-1]

    yield new
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Opener) -> Store:
    return open_store()
