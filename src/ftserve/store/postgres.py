"""PostgreSQL under the SQL store (``FTSERVE_DATABASE_URL=postgresql://...``).

The same store as SQLite's (sql_store.py), on a pool of psycopg 3 connections (pg_pool.py: the
outage handling). Every method is one transaction (autocommit off; committed when the
method's block ends, rolled back when it raises). Where SQLite relies on its single writer, a
write here locks what it decides on: the job's row ``FOR UPDATE`` before a guard is checked or
an event is appended, ``FOR UPDATE SKIP LOCKED`` when claiming, so workers racing for the queue
take different jobs instead of waiting.

Every write transaction sends ``NOTIFY ftserve_changes`` before it commits, and those that make
a job claimable or touch a job a worker holds also notify the queue's or that worker's channel
(see :mod:`ftserve.store.pg_changes`; :meth:`PgDialect.wake_for`).

The schema is not created or upgraded on open (many processes on many hosts open the same
database): ``ftserve migrate`` does that (:func:`migrate`), and a store refuses a database whose
schema is missing or older than it knows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg

from ..errors import StoreError
from ..jobs.states import Status
from .changes import ChangeFeed
from .dialect import Dialect, Session
from .migrator import Migrations, shipped
from .pg_changes import PgChanges
from .pg_event_pages import PgEventPages
from .pg_pool import Conn, PgPool
from .protocol import UnknownCursor
from .records import JoinedPage
from .sql_store import SqlStore
from .wakes import CHANNEL, QUEUE_CHANNEL, Wakes, worker_channel

# PostgreSQL support began at schema version 3: no ftserve wrote an older one there.
# tests/store/test_pg_schema.py keeps every shipped version's schema and checks that each,
# migrated, equals a fresh database.
MIGRATIONS: Migrations = shipped("postgres", first=3)
# Taken by `ftserve migrate` so two of them at once apply the schema once.
_MIGRATE_LOCK = 0x66747365  # "ftse"
_MARKERS = {
    "{lock}": " FOR UPDATE",
    "{skip_locked}": " FOR UPDATE SKIP LOCKED",
    "{strpos}": "strpos",
}

T = TypeVar("T")


class SchemaNotReady(StoreError):
    """The database has no ftserve schema, or an older one: ``ftserve migrate`` first."""


_NOTIFY_AND_COMMIT = f"NOTIFY {CHANNEL}; COMMIT".encode()  # one simple-protocol query


def _notify_and_commit(extra: set[str]) -> bytes:
    if not extra:
        return _NOTIFY_AND_COMMIT
    # Channel names are ours (wakes.py: fixed words, hex digests): nothing to quote.
    notifies = "".join(f"NOTIFY {channel}; " for channel in sorted(extra))
    return f"NOTIFY {CHANNEL}; {notifies}COMMIT".encode()


def _schema_version(conn: Conn) -> int | None:
    """None when the database has no ftserve schema."""
    row = conn.execute("SELECT to_regclass('ftserve_schema') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return None
    found = conn.execute("SELECT max(version) FROM ftserve_schema").fetchone()
    return None if found is None or found[0] is None else int(found[0])


def _check_known(version: int) -> None:
    """Refuses a version this ftserve cannot take: newer than it knows, or older than any
    ftserve made on PostgreSQL (so never migrated, and not guessed at)."""
    if version > MIGRATIONS.version:
        raise StoreError(
            f"the PostgreSQL database has schema version {version}; this ftserve knows "
            f"{MIGRATIONS.version}. Upgrade ftserve."
        )
    if version < MIGRATIONS.first:
        raise StoreError(
            f"the database has schema version {version}, older than PostgreSQL support "
            f"({MIGRATIONS.first}): no ftserve made it, so it cannot be migrated; point "
            "FTSERVE_DATABASE_URL at a new database."
        )


def migrate(url: str) -> tuple[int | None, int]:
    """Create the schema on an empty database or bring an older one up to date, in one
    transaction. Returns (version before, version now); running it again changes nothing."""
    migrations = MIGRATIONS
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            before = _schema_version(conn)
            if before is not None:
                _check_known(before)
            if before != migrations.version:
                # Each script may hold several statements: sent without parameters.
                now = migrations.upgrade(before or 0, lambda script: conn.execute(script.encode()))
                if before is None:
                    conn.execute("INSERT INTO ftserve_schema (version) VALUES (%s)", (now,))
                else:
                    conn.execute("UPDATE ftserve_schema SET version = %s", (now,))
            # Leaving the block commits.
    except psycopg.Error as exc:
        raise StoreError(f"could not migrate the PostgreSQL database: {exc}") from exc
    return before, migrations.version


def _check_version(version: int | None) -> None:
    if version is None:
        raise SchemaNotReady(
            "the PostgreSQL database has no ftserve schema; run `ftserve migrate` "
            "(with the same FTSERVE_DATABASE_URL) first."
        )
    _check_known(version)
    if version < MIGRATIONS.version:
        raise SchemaNotReady(
            f"the PostgreSQL database has schema version {version}; this ftserve needs "
            f"{MIGRATIONS.version}: run `ftserve migrate` first."
        )


class PgDialect(Dialect):
    def __init__(self, pool: PgPool, changes: ChangeFeed) -> None:
        super().__init__(_MARKERS, pyformat=True)
        self._pool = pool
        self.changes = changes
        # The extra channels the write transaction in progress on each thread will notify.
        self._pending = threading.local()

    @contextmanager
    def tx(self) -> Iterator[Session]:
        pending: set[str] = set()
        self._pending.channels = pending
        try:
            with self._pool.tx(lambda: _notify_and_commit(pending)) as conn:
                yield Session(conn, self.text)
        finally:
            self._pending.channels = None
        self.changes.committed()

    def read(self, fn: Callable[[Session], T]) -> T:
        return self._pool.read(lambda conn: fn(Session(conn, self.text)))

    def wake_for(self, before: str | None, after: str, owner: str | None, released: bool) -> None:
        """All workers when the job may have become claimable (queued, unclaimed), and the one
        holding it when its status changed or its claim was let go (a cancel or pause to act
        on, a child that finished). A claim, a step's metrics, a checkpoint wake no worker."""
        pending: set[str] = self._pending.channels
        if after == Status.QUEUED and (before != Status.QUEUED or released):
            pending.add(QUEUE_CHANNEL)
        if owner is not None and (after != before or released):
            pending.add(worker_channel(owner))

    def names_in(self, column: str, names: Sequence[str]) -> tuple[str, dict[str, Any]]:
        return f"{column} = ANY(CAST(:names AS text[]))", {"names": list(names)}

    def close(self) -> None:
        self.changes.close()
        self._pool.close()


class PostgresStore(SqlStore):
    def __init__(
        self,
        url: str,
        *,
        wakes: Wakes | None = None,
        max_connections: int = 8,
        timeout: float = 10.0,
    ) -> None:
        """``wakes``: whose commits wake this process's waiters (default: everyone's)."""
        self.url = url
        pool = PgPool(url, max_connections=max_connections, timeout=timeout)
        try:
            version = pool.read(_schema_version)
        except StoreError as exc:
            pool.close()
            raise StoreError(f"could not open the PostgreSQL database: {exc}") from exc
        try:
            _check_version(version)
            changes = PgChanges(url, (wakes or Wakes.everything()).channels)
        except BaseException:
            pool.close()
            raise
        # The events page's async pool: opened on first use, inside the loop that serves.
        self._pages = PgEventPages(url, max_connections=max_connections, timeout=timeout)
        super().__init__(PgDialect(pool, changes))

    def close(self) -> None:
        super().close()
        # The async pool belongs to its event loop: close_async_reads (the app's lifespan)
        # closes it there. Left open, it is dropped; its connections end with the process.
        self._pages.forget()

    # -- events, async (AsyncEventReads) ----------------------------------------------------
    async def event_page_async(
        self, organization: str, job_id: str, *, after: str | None, limit: int
    ) -> JoinedPage | None:
        """:meth:`event_page` on the event loop, joined (pg_event_pages.py: the pages asked
        at once are read by one statement)."""
        if "\x00" in job_id:
            return None
        if after is not None and "\x00" in after:
            raise UnknownCursor(after)
        return await self._pages.page(organization, job_id, after=after, limit=limit)

    async def close_async_reads(self) -> None:
        """Close the async pool (on the loop it was opened in); a later read opens a new one."""
        await self._pages.close()
