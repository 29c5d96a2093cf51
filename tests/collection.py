"""Marks set on collection (a plugin of tests/conftest.py): which tests need PostgreSQL, and
which tests pytest-xdist must keep on one worker.

``postgres``: a test on the ``[postgres]`` backend, or one that uses a PostgreSQL cluster
fixture. ``-m "not postgres"`` is then the SQLite half of the suite (``scripts/test --fast``).

``xdist_group``: the suite runs with ``--dist loadgroup`` (pyproject). A test that uses a fixture
wider than a test and narrower than the session (a module's trained job, a module's server) is
grouped with the rest of its module on the same backend, so that fixture is built once, not
once per worker; so is one that uses a session fixture its own module defines (a model loaded
for that module's tests). Session fixtures of the conftests (the API server per backend, the
PostgreSQL cluster) are built once per worker instead, and the tests that use them spread
freely.
"""

from __future__ import annotations

import os

import pytest

# Fixtures that start PostgreSQL, directly or through those they use (a fixture's dependencies
# are in a test's fixture closure too): the session's shared cluster, and the private clusters of
# the tests that stop or crash theirs.
PG_FIXTURES = frozenset({"pg_cluster", "private_pg", "own_cluster"})

_SHARED_SCOPES = frozenset({"class", "module", "package"})
_MAX_WORKERS = 8  # each may hold servers, a model and a training process: memory, not cores


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` (pyproject): one worker more than the cores this process may use, since the
    tests mostly wait on the servers they start (3 on 2 cores). PYTEST_XDIST_AUTO_NUM_WORKERS
    still decides when set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return min(len(os.sched_getaffinity(0)) + 1, _MAX_WORKERS)


def _backend(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get("backend") if callspec is not None else None
    return value if isinstance(value, str) else None


def _shares_module_state(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    module = getattr(getattr(item, "module", None), "__name__", None)
    for defs in info.name2fixturedefs.values():
        fixture = defs[-1]
        if fixture.scope in _SHARED_SCOPES:
            return True
        if fixture.scope == "session" and getattr(fixture.func, "__module__", None) == module:
            return True
    return False


# First: pytest-xdist's worker reads the xdist_group marks in this hook too, and its plugin is
# registered after the conftests (a later plugin's hook runs earlier).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    loadgroup = bool(getattr(config.option, "loadgroup", False))  # set in xdist's workers
    for item in items:
        backend = _backend(item)
        if backend == "postgres" or PG_FIXTURES.intersection(item.fixturenames):
            item.add_marker(pytest.mark.postgres)
        if item.get_closest_marker("xdist_group") is None and _shares_module_state(item):
            # No "[" or "]" in the name: xdist takes an "@" before a "]" for part of an id.
            module = item.nodeid.split("::", 1)[0]
            group = f"{module}-{backend}" if backend else module
            item.add_marker(pytest.mark.xdist_group(group))
            if loadgroup:
                _name_the_group_in_the_id(item, group)


def _name_the_group_in_the_id(item: pytest.Item, group: str) -> None:
    """Append ``@group`` to the test's id, which is how xdist's workers tell its scheduler the
    group. xdist 3.8 writes the suffix into ``_nodeid``, which pytest 9.2 no longer reads (its id
    is the structured ``_id``): the groups are silently ignored
    (https://github.com/pytest-dev/pytest-xdist/issues/1386). On such a pytest the suffix is
    written here; on an older one, xdist's own write still works and this does nothing."""
    node_id = getattr(item, "_id", None)
    parse = getattr(type(node_id), "parse", None)
    if node_id is not None and parse is not None and "@" not in item.nodeid:
        item._id = parse(f"{item.nodeid}@{group}")  # type: ignore[attr-defined]
