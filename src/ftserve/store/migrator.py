"""The one migration runner, over each database's SQL files (``migrations/<dialect>/``).

A dialect's folder holds ``schema.sql``, the schema of the current version for an empty
database, and numbered steps ``NNNN_<what>.sql``: step N takes a database of version N-1 to N.
The current version is the highest step's number (or the version the database was first
supported at, when it has had no step yet). Tests check that an older database, migrated,
equals a fresh one (tests/store/test_sqlite_only.py, tests/store/test_pg_schema.py).

Where the version is kept and who may migrate differ, and stay with each database: SQLite
migrates itself when a process opens it (``PRAGMA user_version``; one box, nothing to
coordinate), PostgreSQL only through ``ftserve migrate`` (table ``ftserve_schema``, an advisory
lock; servers refuse an older schema).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources

_STEP = re.compile(r"(\d{4})_[\w-]+\.sql")


@dataclass(frozen=True)
class Migrations:
    first: int  # the oldest version a database of this kind was ever made at
    fresh: str  # schema.sql: the current version, for an empty database
    steps: Mapping[int, str]  # N: the script taking version N-1 to N

    @property
    def version(self) -> int:
        return max([self.first, *self.steps])

    def upgrade(self, before: int, run: Callable[[str], object]) -> int:
        """Run, in order, the scripts that take a database at version ``before`` (0: empty)
        to :attr:`version`; the caller checked ``before`` is one it can take and holds the
        transaction. Returns the version now."""
        if before == 0:
            run(self.fresh)
        else:
            for step in range(before + 1, self.version + 1):
                run(self.steps[step])
        return self.version


def shipped(dialect: str, first: int) -> Migrations:
    """The scripts that ship in ``migrations/<dialect>/``."""
    folder = resources.files("ftserve.store").joinpath("migrations", dialect)
    steps = {}
    for entry in folder.iterdir():
        found = _STEP.fullmatch(entry.name)
        if found:
            steps[int(found.group(1))] = entry.read_text()
    missing = set(range(first + 1, max([first, *steps]) + 1)) - steps.keys()
    if missing:
        raise RuntimeError(f"migrations/{dialect}: no step for version(s) {sorted(missing)}")
    return Migrations(first, folder.joinpath("schema.sql").read_text(), steps)
