"""PostgreSQL implementation of the Store (``FTSERVE_DATABASE_URL=postgresql://...``).

The same semantics as :mod:`ftserve.store.sqlite`, on a pool of psycopg 3 connections. Every
method is one transaction (autocommit off; the pool commits when the method's block ends and
rolls back when it raises). Where SQLite relies on its single writer, a write here locks what it
decides on: the job's row ``FOR UPDATE`` before a guard is checked or an event is appended (so a
job's ``seq`` stays gap-free and ordered under concurrent appends), ``FOR UPDATE SKIP LOCKED``
when claiming, so workers racing for the queue take different jobs instead of waiting.

Every write transaction sends ``NOTIFY ftserve_changes`` before it commits, and those that make
a job claimable or touch a job a worker holds also notify the queue's or that worker's channel
(see :mod:`ftserve.store.pg_changes`; :meth:`PostgresStore._wake_for`). Driver errors stop at
this seam: anything psycopg raises becomes a :class:`~ftserve.errors.StoreError` — a
:class:`~ftserve.errors.StoreUnavailable` when the database cannot be reached (connection
refused or lost, none free in time), which the API answers with a 503; a read that finds its
connection broken is retried once on another.

The schema is not created or upgraded on open (many processes on many hosts open the same
database): ``ftserve migrate`` does that (:func:`migrate`), and a store refuses a database whose
schema is missing or older than it knows.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import StoreError, StoreUnavailable
from ..jobs.states import FINAL, Status, log_accepts
from .changes import ChangeFeed
from .pg_changes import PgChanges
from .pg_event_pages import PgEventPages
from .protocol import Fence, UnknownCursor, WriteRefused
from .records import (
    CheckpointRecord,
    Claim,
    EventsAfter,
    FileRecord,
    JobRecord,
    JoinedPage,
    LoggedEvent,
    NewEvent,
    Page,
)
from .rows import (
    CKPT_SELECT,
    FILE_COLUMNS,
    FILE_SELECT,
    JOB_COLUMNS,
    JOB_SELECT,
    JSON_COLUMNS,
    RELEASE,
    check_changes,
    ckpt_record,
    dump,
    file_record,
    job_record,
    metadata_pair,
)
from .wakes import CHANNEL, QUEUE_CHANNEL, Wakes, worker_channel

SCHEMA_VERSION = 3
# The first schema version PostgreSQL was supported in: no ftserve wrote an older one there.
FIRST_VERSION = 3
# Statements that take a database of version N-1 to N (the fresh schema is schema_postgres.sql;
# tests/unit/test_pg_store_schema.py keeps every shipped version's and checks that each,
# migrated, equals it).
_MIGRATIONS: dict[int, list[str]] = {}
# Taken by `ftserve migrate` so two of them at once apply the schema once.
_MIGRATE_LOCK = 0x66747365  # "ftse"
_NOTIFY_AND_COMMIT = f"NOTIFY {CHANNEL}; COMMIT".encode()  # one simple-protocol query

_DOWN_WAIT = 0.25  # seconds a call waits for a connection while the database is down
_PROBE_TIMEOUT = 2  # seconds a reachability check may take to connect

Conn = psycopg.Connection[tuple[Any, ...]]
T = TypeVar("T")


def _notify_and_commit(extra: set[str]) -> bytes:
    if not extra:
        return _NOTIFY_AND_COMMIT
    # Channel names are ours (wakes.py: fixed words, hex digests): nothing to quote.
    notifies = "".join(f"NOTIFY {channel}; " for channel in sorted(extra))
    return f"NOTIFY {CHANNEL}; {notifies}COMMIT".encode()


_JOB_VISIBLE = "SELECT 1 FROM jobs WHERE id = %(job)s AND organization = %(org)s"
_PAGE_FIRST = (
    "SELECT body FROM events WHERE job_id = %(job)s "
    "AND EXISTS (SELECT 1 FROM jobs WHERE id = %(job)s AND organization = %(org)s) "
    "ORDER BY seq DESC LIMIT %(limit)s"
)
_PAGE_AFTER = (
    "SELECT body FROM events WHERE job_id = %(job)s "
    "AND seq < (SELECT seq FROM events WHERE id = %(after)s AND job_id = %(job)s) "
    "AND EXISTS (SELECT 1 FROM jobs WHERE id = %(job)s AND organization = %(org)s) "
    "ORDER BY seq DESC LIMIT %(limit)s"
)
_EVENT_OF_JOB = "SELECT 1 FROM events WHERE id = %(after)s AND job_id = %(job)s"
# The status and the cursor's place in one statement (one round trip); the events after it.
_STATUS_AND_CURSOR = (
    "SELECT j.status, c.seq FROM jobs j "
    "LEFT JOIN events c ON c.id = %(after)s AND c.job_id = j.id "
    "WHERE j.id = %(job)s AND (%(org)s::text IS NULL OR j.organization = %(org)s)"
)
_EVENTS_AFTER = (
    "SELECT seq, id, body FROM events WHERE job_id = %(job)s AND seq > %(seq)s "
    "ORDER BY seq LIMIT %(limit)s"
)


def _nul(value: str | None) -> bool:
    """PostgreSQL text cannot hold U+0000, so a key with one names no row (ids never hold
    one): answered as absent instead of sending a query the server refuses."""
    return value is not None and "\x00" in value


class _NothingQueued(Exception):
    """Leaves a claim's transaction that found no job (rolled back)."""


class SchemaNotReady(StoreError):
    """The database has no ftserve schema, or an older one: ``ftserve migrate`` first."""


def _one(conn: Conn, query: str, args: Any = None) -> tuple[Any, ...] | None:
    return conn.execute(query, args).fetchone()


def _all(conn: Conn, query: str, args: Any = None) -> list[tuple[Any, ...]]:
    return conn.execute(query, args).fetchall()


def _schema_version(conn: Conn) -> int | None:
    """None when the database has no ftserve schema."""
    row = _one(conn, "SELECT to_regclass('ftserve_schema') IS NOT NULL")
    if row is None or not row[0]:
        return None
    found = _one(conn, "SELECT max(version) FROM ftserve_schema")
    return None if found is None or found[0] is None else int(found[0])


def _before_support(version: int) -> str:
    return (
        f"the database has schema version {version}, older than PostgreSQL support "
        f"({FIRST_VERSION}): no ftserve made it, so it cannot be migrated; point "
        "FTSERVE_DATABASE_URL at a new database."
    )


def migrate(url: str) -> tuple[int | None, int]:
    """Create the schema on an empty database or bring an older one up to date, in one
    transaction. Returns (version before, version now); running it again changes nothing."""
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            before = _schema_version(conn)
            if before is not None and before > SCHEMA_VERSION:
                raise StoreError(
                    f"the database has schema version {before}; this ftserve knows "
                    f"{SCHEMA_VERSION}. Upgrade ftserve."
                )
            if before is not None and before < FIRST_VERSION:
                raise StoreError(_before_support(before))
            if before is None:
                script = resources.files("ftserve.store").joinpath("schema_postgres.sql")
                conn.execute(script.read_text().encode())  # several statements, no parameters
                conn.execute("INSERT INTO ftserve_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
            elif before < SCHEMA_VERSION:
                for step in range(before + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[step]:
                        conn.execute(statement.encode())
                conn.execute("UPDATE ftserve_schema SET version = %s", (SCHEMA_VERSION,))
            # Leaving the block commits.
    except psycopg.Error as exc:
        raise StoreError(f"could not migrate the PostgreSQL database: {exc}") from exc
    return before, SCHEMA_VERSION


class PostgresStore:
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
        # The extra channels the write transaction in progress on each thread will notify.
        self._pending = threading.local()
        self._max_connections = max_connections
        self._timeout = timeout
        self._down = False  # the last call found the database unreachable (see _wait)
        self._queue_empty = True  # the last claim found nothing (see claim_job)
        # The events page's async pool: opened on first use, inside the loop that serves.
        self._pages = PgEventPages(url, max_connections=max_connections, timeout=timeout)
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            timeout=timeout,
            # The pool retries a lost connection with a doubling delay until this runs out, then
            # the next request that waits starts afresh: left at its 5 minutes, the delay after
            # a minute's outage grew to a minute, and the server stayed unavailable that long
            # after the database was back (tests/api/test_database_down.py).
            reconnect_timeout=timeout,
            kwargs={"autocommit": False, "connect_timeout": int(max(1, timeout))},
            open=False,
            name="ftserve-store",
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
            version = self._read(_schema_version)
        except (PoolTimeout, psycopg.Error, StoreError) as exc:
            self._pool.close()
            raise StoreError(f"could not open the PostgreSQL database: {exc}") from exc
        if version is None or version != SCHEMA_VERSION:
            self._pool.close()
            if version is None:
                raise SchemaNotReady(
                    "the PostgreSQL database has no ftserve schema; run `ftserve migrate` "
                    "(with the same FTSERVE_DATABASE_URL) first."
                )
            if version < FIRST_VERSION:
                raise StoreError(_before_support(version))
            if version < SCHEMA_VERSION:
                raise SchemaNotReady(
                    f"the PostgreSQL database has schema version {version}; this ftserve needs "
                    f"{SCHEMA_VERSION}: run `ftserve migrate` first."
                )
            raise StoreError(
                f"the PostgreSQL database has schema version {version}; this ftserve knows "
                f"{SCHEMA_VERSION}. Upgrade ftserve."
            )
        try:
            self.changes: ChangeFeed = PgChanges(url, (wakes or Wakes.everything()).channels)
        except BaseException:
            self._pool.close()
            raise

    # -- transactions ------------------------------------------------------------------------
    # While the database is known to be down (the last call found it unreachable), a call
    # waits only _DOWN_WAIT for a connection instead of the pool's timeout: the API reads
    # inline on its event loop, and every request stalling it for the full timeout would
    # stall every other request, streams and /health included, for the whole outage.
    def _wait(self) -> float:
        return _DOWN_WAIT if self._down else self._timeout

    def _reachable(self) -> bool:
        """Whether a new connection can be made right now (one connect: milliseconds here)."""
        try:
            psycopg.connect(self.url, connect_timeout=_PROBE_TIMEOUT).close()
        except psycopg.Error:
            return False
        return True

    def _note_timeout(self) -> None:
        # Every connection busy under load is not an outage: down only if none can be made.
        if not self._down:
            self._down = not self._reachable()

    @contextmanager
    def _tx(self) -> Iterator[Conn]:
        """One write transaction: committed (with its NOTIFY) when the block ends, rolled back
        when it raises."""
        pending: set[str] = set()
        self._pending.channels = pending
        try:
            with self._pool.connection(timeout=self._wait()) as conn:
                yield conn
                # The notifications and the commit in one round trip (psycopg sees the
                # transaction end; its own commit on leaving the block has nothing left to do).
                conn.execute(_notify_and_commit(pending))
        except PoolTimeout as exc:
            self._note_timeout()
            raise StoreUnavailable(f"no database connection free: {exc}") from exc
        except psycopg.OperationalError as exc:
            # Not retried (it may have committed); the next write finds good connections.
            self._drop_broken()
            self._down = not self._reachable()
            raise StoreUnavailable(f"the write transaction failed: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"the write transaction failed: {exc}") from exc
        finally:
            self._pending.channels = None
        self._down = False
        self.changes.committed()

    def _wake_for(self, before: str | None, after: str, owner: str | None, released: bool) -> None:
        """Notify, at this transaction's commit, the workers a job's change concerns: all of
        them when it may have become claimable (queued, unclaimed), and the one holding it
        when its status changed or its claim was let go (a cancel or pause to act on, a child
        that finished). A claim, a step's metrics, a checkpoint wake no worker."""
        pending: set[str] = self._pending.channels
        if after == Status.QUEUED and (before != Status.QUEUED or released):
            pending.add(QUEUE_CHANNEL)
        if owner is not None and (after != before or released):
            pending.add(worker_channel(owner))

    def _read(self, fn: Callable[[Conn], T]) -> T:
        """One read transaction; retried once on a fresh connection if the first one broke
        and the database can be reached."""
        for attempt in range(2):
            try:
                with self._pool.connection(timeout=self._wait()) as conn:
                    # Each statement on its own, as the events page's async pool does: a read
                    # is then one round trip, not three (BEGIN, the query, COMMIT).
                    conn.autocommit = True
                    try:
                        result = fn(conn)
                    finally:
                        with contextlib.suppress(psycopg.Error):
                            conn.autocommit = False
                self._down = False
                return result
            except PoolTimeout as exc:
                self._note_timeout()
                raise StoreUnavailable(f"no database connection free: {exc}") from exc
            except psycopg.OperationalError as exc:
                # A restarted or failed-over server breaks every pooled connection at once:
                # drop them all before the one retry, or it would likely get another.
                self._drop_broken()
                if attempt or not self._reachable():
                    self._down = True
                    raise StoreUnavailable(f"the read failed: {exc}") from exc
            except psycopg.Error as exc:
                raise StoreError(f"the read failed: {exc}") from exc
        raise AssertionError("unreachable")

    def _drop_broken(self) -> None:
        """Check the idle connections and discard the broken ones (one round trip each)."""
        with contextlib.suppress(psycopg.Error):
            self._pool.check()

    def close(self) -> None:
        changes = getattr(self, "changes", None)
        if changes is not None:
            changes.close()
        self._pool.close()
        # The async pool belongs to its event loop: close_async_reads (the app's lifespan)
        # closes it there. Left open, it is dropped; its connections end with the process.
        self._pages.forget()

    # -- files -------------------------------------------------------------------------------
    def add_file(self, file: FileRecord) -> None:
        with self._tx() as conn:
            self._insert_file(conn, file)

    @staticmethod
    def _insert_file(conn: Conn, file: FileRecord) -> None:
        cols = ", ".join(FILE_COLUMNS)
        marks = ", ".join("%s" for _ in FILE_COLUMNS)
        conn.execute(
            f"INSERT INTO files ({cols}) VALUES ({marks})",
            tuple(getattr(file, c) for c in FILE_COLUMNS),
        )

    def get_file(self, organization: str, file_id: str, now: int) -> FileRecord | None:
        if _nul(file_id):
            return None
        row = self._read(
            lambda conn: _one(
                conn,
                f"{FILE_SELECT} WHERE id = %s AND organization = %s "
                "AND (expires_at IS NULL OR expires_at > %s)",
                (file_id, organization, now),
            )
        )
        return None if row is None else file_record(row)

    def list_files(
        self,
        organization: str,
        *,
        purpose: str | None,
        after: str | None,
        limit: int,
        ascending: bool,
        now: int,
    ) -> Page[FileRecord]:
        if _nul(after):
            raise UnknownCursor(str(after))

        def read(conn: Conn) -> Page[FileRecord]:
            where = ["organization = %s", "(expires_at IS NULL OR expires_at > %s)"]
            args: list[Any] = [organization, now]
            if purpose is not None:
                where.append("purpose = %s")
                args.append(purpose)
            if after is not None:
                row = _one(
                    conn,
                    "SELECT seq FROM files WHERE id = %s AND organization = %s",
                    (after, organization),
                )
                if row is None:
                    raise UnknownCursor(after)
                where.append("seq > %s" if ascending else "seq < %s")
                args.append(row[0])
            order = "ASC" if ascending else "DESC"
            rows = _all(
                conn,
                f"{FILE_SELECT} WHERE {' AND '.join(where)} ORDER BY seq {order} LIMIT %s",
                (*args, limit + 1),
            )
            return Page([file_record(r) for r in rows[:limit]], len(rows) > limit)

        return self._read(read)

    def delete_file(self, organization: str, file_id: str) -> FileRecord | None:
        if _nul(file_id):
            return None
        with self._tx() as conn:
            row = _one(
                conn,
                f"DELETE FROM files WHERE id = %s AND organization = %s "
                f"RETURNING {', '.join(FILE_COLUMNS)}",
                (file_id, organization),
            )
            return None if row is None else file_record(row)

    def file_blobs(self) -> set[str]:
        return self._read(lambda conn: {str(r[0]) for r in _all(conn, "SELECT blob FROM files")})

    # -- jobs --------------------------------------------------------------------------------
    def create_job(self, job: JobRecord, events: Sequence[NewEvent]) -> None:
        cols = ", ".join(JOB_COLUMNS)
        marks = ", ".join("%s" for _ in JOB_COLUMNS)
        values = tuple(
            dump(getattr(job, c)) if c in JSON_COLUMNS else getattr(job, c) for c in JOB_COLUMNS
        )
        with self._tx() as conn:
            # The new row is this transaction's (and locked by it) until the commit.
            conn.execute(f"INSERT INTO jobs ({cols}) VALUES ({marks})", values)
            self._append(conn, job.id, events, None, job.status)
            self._wake_for(None, job.status, job.lease_owner, False)

    def get_job(self, job_id: str, organization: str | None = None) -> JobRecord | None:
        if _nul(job_id):
            return None
        if organization is None:
            row = self._read(lambda conn: _one(conn, f"{JOB_SELECT} WHERE id = %s", (job_id,)))
        else:
            row = self._read(
                lambda conn: _one(
                    conn,
                    f"{JOB_SELECT} WHERE id = %s AND organization = %s",
                    (job_id, organization),
                )
            )
        return None if row is None else job_record(row)

    def list_jobs(
        self,
        organization: str,
        *,
        after: str | None,
        limit: int,
        metadata: Mapping[str, str] | None,
    ) -> Page[JobRecord]:
        if _nul(after):
            raise UnknownCursor(str(after))

        def read(conn: Conn) -> Page[JobRecord]:
            where = ["organization = %s"]
            args: list[Any] = [organization]
            if after is not None:
                row = _one(
                    conn,
                    "SELECT seq FROM jobs WHERE id = %s AND organization = %s",
                    (after, organization),
                )
                if row is None:
                    raise UnknownCursor(after)
                where.append("seq < %s")
                args.append(row[0])
            query = f"{JOB_SELECT} WHERE {' AND '.join(where)} ORDER BY seq DESC"
            if not metadata:
                rows = _all(conn, f"{query} LIMIT %s", (*args, limit + 1))
                return Page([job_record(r) for r in rows[:limit]], len(rows) > limit)
            # Metadata may hold U+0000, which no PostgreSQL text (nor a jsonb cast of a stored
            # document, for any row) can hold. So SQL only narrows, on the stored JSON text: a
            # pair is there as its own JSON, NUL escaped (\u0000); the match is decided here.
            for key, value in metadata.items():
                where.append("strpos(metadata, %s) > 0")
                args.append(metadata_pair(key, value))
            query = f"{JOB_SELECT} WHERE {' AND '.join(where)} ORDER BY seq DESC"
            found: list[JobRecord] = []
            for row in conn.execute(query, args):
                job = job_record(row)
                if job.metadata and all(job.metadata.get(k) == v for k, v in metadata.items()):
                    found.append(job)
                    if len(found) > limit:
                        break
            return Page(found[:limit], len(found) > limit)

        return self._read(read)

    def update_job(
        self,
        job_id: str,
        *,
        expect: Collection[str] | None,
        changes: Mapping[str, Any],
        events: Sequence[NewEvent] = (),
        expect_claim: str | None = None,
    ) -> JobRecord | None:
        check_changes(changes)
        with self._tx() as conn:
            row = _one(conn, f"{JOB_SELECT} WHERE id = %s FOR UPDATE", (job_id,))
            if row is None:
                return None
            job = job_record(row)
            if expect is not None and job.status not in expect:
                return None
            if expect_claim is not None and job.claim_token != expect_claim:
                return None
            self._set(conn, job_id, changes)
            after = str(changes.get("status", job.status))
            self._append(conn, job_id, events, job.status, after)
            self._wake_for(job.status, after, job.lease_owner, _releases(changes))
            new = _one(conn, f"{JOB_SELECT} WHERE id = %s", (job_id,))
            assert new is not None
            return job_record(new)

    @staticmethod
    def _set(conn: Conn, job_id: str, changes: Mapping[str, Any]) -> None:
        if changes:
            sets = ", ".join(f"{c} = %s" for c in changes)
            values = [dump(v) if c in JSON_COLUMNS else v for c, v in changes.items()]
            conn.execute(f"UPDATE jobs SET {sets} WHERE id = %s", (*values, job_id))

    def jobs_with_status(self, status: str, limit: int) -> list[JobRecord]:
        rows = self._read(
            lambda conn: _all(
                conn,
                f"{JOB_SELECT} WHERE status = %s ORDER BY seq LIMIT %s",
                (status, limit),
            )
        )
        return [job_record(r) for r in rows]

    # -- queue -------------------------------------------------------------------------------
    def claim_job(
        self, worker_id: str, now: float, lease_seconds: float, events: Sequence[NewEvent]
    ) -> JobRecord | None:
        # Idle workers ask often: once a claim found nothing, a read answers "still nothing"
        # without a write transaction; after one that found a job, the next claim goes straight
        # to the transaction (a busy queue saves the read).
        if self._queue_empty and (
            self._read(
                lambda conn: _one(
                    conn,
                    "SELECT 1 FROM jobs WHERE status = 'queued' AND claim_token IS NULL LIMIT 1",
                )
            )
            is None
        ):
            return None
        try:
            with self._tx() as conn:
                # A job another worker is claiming right now is skipped, not waited for; its row
                # is re-checked against the condition once locked, so no two claims take one
                # job. One statement finds, takes and returns it.
                new = _one(
                    conn,
                    "UPDATE jobs SET status = 'running', lease_owner = %s, lease_expires_at = %s, "
                    "claim_token = %s, attempts = attempts + 1 WHERE id = ("
                    "SELECT id FROM jobs WHERE status = 'queued' AND claim_token IS NULL ORDER BY "
                    f"seq LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING {', '.join(JOB_COLUMNS)}",
                    (worker_id, now + lease_seconds, secrets.token_hex(8)),
                )
                if new is None:
                    raise _NothingQueued  # rolled back: no commit, no notification
                claimed = job_record(new)
                self._append(conn, claimed.id, events, Status.QUEUED, Status.RUNNING)
        except _NothingQueued:
            self._queue_empty = True
            return None
        self._queue_empty = False
        return claimed

    def renew_lease(self, claim: Claim, until: float) -> bool:
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET lease_expires_at = %s WHERE id = %s AND claim_token = %s",
                (until, claim.job_id, claim.token),
            )
            return cur.rowcount == 1

    def release_claim(self, claim: Claim) -> bool:
        with self._tx() as conn:
            row = _one(
                conn,
                "SELECT status, lease_owner FROM jobs WHERE id = %s AND claim_token = %s "
                "FOR UPDATE",
                (claim.job_id, claim.token),
            )
            if row is None:
                return False
            conn.execute(f"UPDATE jobs SET {RELEASE} WHERE id = %s", (claim.job_id,))
            self._wake_for(row[0], row[0], row[1], True)
            return True

    def write_claimed(
        self,
        claim: Claim,
        *,
        fence: Fence = "running",
        changes: Mapping[str, Any] | None = None,
        events: Sequence[NewEvent] = (),
        add_checkpoint: CheckpointRecord | None = None,
        drop_checkpoints: Sequence[str] = (),
        add_files: Sequence[FileRecord] = (),
    ) -> str:
        changes = changes or {}
        check_changes(changes)
        with self._tx() as conn:
            # The lock holds the fence: no cancel, pause or new claim commits between the check
            # and this write.
            row = _one(
                conn,
                "SELECT status, claim_token, lease_owner FROM jobs WHERE id = %s FOR UPDATE",
                (claim.job_id,),
            )
            if row is None:
                raise WriteRefused(claim.job_id, None, False, "the job does not exist")
            status, token, owner = row
            if token != claim.token:
                raise WriteRefused(claim.job_id, status, False, "the claim is no longer current")
            if fence == "running" and status != Status.RUNNING:
                raise WriteRefused(claim.job_id, status, True, f"the job is {status}")
            if status in FINAL:
                raise WriteRefused(claim.job_id, status, True, f"the job has {status}")
            after = str(changes.get("status", status))
            if events and not log_accepts(status, after):
                raise WriteRefused(
                    claim.job_id, status, True, f"the job's log is closed ({status})"
                )
            self._set(conn, claim.job_id, changes)
            self._append(conn, claim.job_id, events, status, after)
            self._wake_for(status, after, owner, _releases(changes))
            if add_checkpoint is not None:
                self._insert_checkpoint(conn, add_checkpoint)
            for checkpoint_id in drop_checkpoints:
                conn.execute(
                    "DELETE FROM checkpoints WHERE id = %s AND job_id = %s",
                    (checkpoint_id, claim.job_id),
                )
            for file in add_files:
                self._insert_file(conn, file)
            return after

    def expired_leases(self, now: float) -> list[JobRecord]:
        rows = self._read(
            lambda conn: _all(
                conn,
                f"{JOB_SELECT} WHERE lease_owner IS NOT NULL AND lease_expires_at < %s "
                "ORDER BY seq",
                (now,),
            )
        )
        return [job_record(r) for r in rows]

    # -- events ------------------------------------------------------------------------------
    @staticmethod
    def _append(
        conn: Conn,
        job_id: str,
        events: Sequence[NewEvent],
        before: str | None,
        after: str,
    ) -> int:
        """Callers hold the job's row lock (FOR UPDATE, or the row is their own insert), so
        max(seq) cannot move under them: seq stays gap-free and in commit order per job."""
        if not events:
            return 0
        if not log_accepts(before, after):
            raise WriteRefused(job_id, after, False, f"the job's log is closed ({after})")
        added = 0
        for event in events:
            # The next seq is found in the insert itself: one round trip an event.
            cur = conn.execute(
                "INSERT INTO events (job_id, seq, id, created_at, kind, key, body) "
                "SELECT %(job)s, COALESCE(MAX(seq), 0) + 1, %(id)s, %(at)s, %(kind)s, %(key)s, "
                "%(body)s FROM events WHERE job_id = %(job)s ON CONFLICT DO NOTHING",
                {
                    "job": job_id,
                    "id": event.id,
                    "at": event.created_at,
                    "kind": event.kind,
                    "key": event.key,
                    "body": event.body,
                },
            )
            added += cur.rowcount
        return added

    def append_events(self, job_id: str, events: Sequence[NewEvent]) -> int:
        with self._tx() as conn:
            row = _one(conn, "SELECT status FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
            if row is None:
                raise WriteRefused(job_id, None, False, "the job does not exist")
            return self._append(conn, job_id, events, row[0], row[0])

    def event_page(
        self, organization: str, job_id: str, *, after: str | None, limit: int
    ) -> Page[bytes] | None:
        if _nul(job_id):
            return None
        if _nul(after):
            raise UnknownCursor(str(after))
        args = {"job": job_id, "org": organization, "limit": limit + 1, "after": after}

        def read(conn: Conn) -> Page[bytes] | None:
            rows = _all(conn, _PAGE_FIRST if after is None else _PAGE_AFTER, args)
            if not rows:
                if _one(conn, _JOB_VISIBLE, args) is None:
                    return None
                if after is not None and _one(conn, _EVENT_OF_JOB, args) is None:
                    raise UnknownCursor(after)
            return Page([bytes(r[0]) for r in rows[:limit]], len(rows) > limit)

        return self._read(read)

    def events_after(
        self, organization: str | None, job_id: str, *, after: str | None, limit: int
    ) -> EventsAfter | None:
        if _nul(job_id) or _nul(organization):
            return None
        args = {"job": job_id, "org": organization, "limit": limit, "after": after}

        def read(conn: Conn) -> EventsAfter | None:
            # The status first: once it is final the log is complete, so the events read next
            # (a later snapshot under READ COMMITTED) hold the terminal one.
            row = _one(conn, _STATUS_AND_CURSOR, {**args, "after": None if _nul(after) else after})
            if row is None:
                return None
            if after is not None and row[1] is None:
                raise UnknownCursor(after)
            seq = int(row[1] or 0)
            rows = _all(conn, _EVENTS_AFTER, {**args, "seq": seq})
            return EventsAfter(
                str(row[0]), seq, [LoggedEvent(r[0], r[1], bytes(r[2])) for r in rows]
            )

        return self._read(read)

    # -- events, async (AsyncEventReads) ----------------------------------------------------
    async def event_page_async(
        self, organization: str, job_id: str, *, after: str | None, limit: int
    ) -> JoinedPage | None:
        """:meth:`event_page` on the event loop, joined (pg_event_pages.py: the pages asked
        at once are read by one statement)."""
        if _nul(job_id):
            return None
        if _nul(after):
            raise UnknownCursor(str(after))
        return await self._pages.page(organization, job_id, after=after, limit=limit)

    async def close_async_reads(self) -> None:
        """Close the async pool (on the loop it was opened in); a later read opens a new one."""
        await self._pages.close()

    def event_bodies(self, job_id: str, kind: str | None = None) -> list[bytes]:
        if kind is None:
            rows = self._read(
                lambda conn: _all(
                    conn, "SELECT body FROM events WHERE job_id = %s ORDER BY seq", (job_id,)
                )
            )
        else:
            rows = self._read(
                lambda conn: _all(
                    conn,
                    "SELECT body FROM events WHERE job_id = %s AND kind = %s ORDER BY seq",
                    (job_id, kind),
                )
            )
        return [bytes(r[0]) for r in rows]

    # -- fine-tuned models --------------------------------------------------------------------
    def succeeded_jobs(self, organization: str) -> list[JobRecord]:
        rows = self._read(
            lambda conn: _all(
                conn,
                f"{JOB_SELECT} WHERE organization = %s AND status = 'succeeded' "
                "AND fine_tuned_model IS NOT NULL ORDER BY finished_at NULLS FIRST, seq",
                (organization,),
            )
        )
        return [job_record(r) for r in rows]

    def job_for_model(self, organization: str, fine_tuned_model: str) -> JobRecord | None:
        if _nul(fine_tuned_model):
            return None
        row = self._read(
            lambda conn: _one(
                conn,
                f"{JOB_SELECT} WHERE fine_tuned_model = %s AND organization = %s "
                "ORDER BY seq LIMIT 1",
                (fine_tuned_model, organization),
            )
        )
        return None if row is None else job_record(row)

    def deleted_models(self, organization: str, names: Sequence[str] | None = None) -> set[str]:
        if names is None:
            rows = self._read(
                lambda conn: _all(
                    conn, "SELECT name FROM deleted_models WHERE organization = %s", (organization,)
                )
            )
        else:
            wanted = list(names)
            rows = self._read(
                lambda conn: _all(
                    conn,
                    "SELECT name FROM deleted_models WHERE organization = %s "
                    "AND name = ANY(%s::text[])",
                    (organization, wanted),
                )
            )
        return {r[0] for r in rows}

    def delete_models(
        self, organization: str, job_id: str, names: Sequence[str], now: int
    ) -> list[str]:
        with self._tx() as conn:
            row = _one(
                conn,
                "SELECT status FROM jobs WHERE id = %s AND organization = %s FOR UPDATE",
                (job_id, organization),
            )
            if row is None or row[0] != Status.SUCCEEDED:
                return []
            added = []
            for name in names:
                cur = conn.execute(
                    "INSERT INTO deleted_models (name, organization, job_id, deleted_at) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (name, organization, job_id, now),
                )
                if cur.rowcount:
                    added.append(name)
            return added

    # -- checkpoints -------------------------------------------------------------------------
    @staticmethod
    def _insert_checkpoint(conn: Conn, c: CheckpointRecord) -> None:
        # A checkpoint at a step the job already has (a resumed run saving the same epoch end
        # again) replaces the row: the newer files are the ones a current claim names.
        conn.execute(
            "INSERT INTO checkpoints (id, job_id, created_at, step_number, "
            "fine_tuned_model_checkpoint, metrics, path, kind) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (job_id, step_number) DO UPDATE SET created_at = excluded.created_at, "
            "metrics = excluded.metrics, path = excluded.path, kind = excluded.kind",
            (
                c.id,
                c.job_id,
                c.created_at,
                c.step_number,
                c.fine_tuned_model_checkpoint,
                dump(c.metrics),
                c.path,
                c.kind,
            ),
        )

    def list_checkpoints(
        self, organization: str | None, job_id: str, *, after: str | None, limit: int
    ) -> Page[CheckpointRecord] | None:
        if _nul(job_id):
            return None if organization is not None else Page([], False)
        if _nul(after):
            raise UnknownCursor(str(after))

        def read(conn: Conn) -> Page[CheckpointRecord] | None:
            if organization is not None and (
                _one(
                    conn,
                    "SELECT 1 FROM jobs WHERE id = %s AND organization = %s",
                    (job_id, organization),
                )
                is None
            ):
                return None
            where, args = "job_id = %s", [job_id]
            if after is not None:
                row = _one(
                    conn,
                    "SELECT step_number FROM checkpoints WHERE id = %s AND job_id = %s",
                    (after, job_id),
                )
                if row is None:
                    raise UnknownCursor(after)
                where += " AND step_number < %s"
                args.append(row[0])
            rows = _all(
                conn,
                f"{CKPT_SELECT} WHERE {where} ORDER BY step_number DESC LIMIT %s",
                (*args, limit + 1),
            )
            return Page([ckpt_record(r) for r in rows[:limit]], len(rows) > limit)

        return self._read(read)


def _releases(changes: Mapping[str, Any]) -> bool:
    """Whether a job update lets its claim go (worker/lease.py RELEASED)."""
    return "claim_token" in changes and changes["claim_token"] is None
