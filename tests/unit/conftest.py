"""Fixtures of the unit tests: databases for the store tests on the private PostgreSQL cluster
(``pg_cluster``, tests/conftest.py, shared with the API tests; tests/pg.py)."""

from __future__ import annotations

import itertools

import pytest

from tests.pg import PgCluster

_TEMPLATE = "ftserve_migrated"
_names = itertools.count()


@pytest.fixture(scope="session")
def pg_url(pg_cluster: PgCluster) -> str:
    """The cluster's maintenance database (superuser ``postgres``, trust auth, unix socket).
    Also makes the migrated template that :func:`pg_store_url` copies."""
    import psycopg

    from ftserve.store.postgres import migrate

    url = pg_cluster.url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {_TEMPLATE}")
    migrate(pg_cluster.url(_TEMPLATE))
    return url


def _create_database(pg_url: str, template: str) -> str:
    import psycopg

    name = f"t{next(_names)}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    return pg_url.replace("/postgres?", f"/{name}?", 1)


@pytest.fixture
def pg_empty_url(pg_url: str) -> str:
    """A new database without the ftserve schema."""
    return _create_database(pg_url, "template0")


@pytest.fixture
def pg_store_url(pg_url: str) -> str:
    """A new database, migrated (a copy of the template ``ftserve migrate`` made)."""
    return _create_database(pg_url, _TEMPLATE)
