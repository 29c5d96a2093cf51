"""SQLite implementation of the Store: WAL, one writer connection, a read connection per thread.

Writes take ``BEGIN IMMEDIATE`` on the single writer connection (serialised by a lock in this
process, and by SQLite's own lock against other processes such as ``ftserve worker``), so a
transaction never fails half-way on a lock upgrade. Readers never block under WAL.
``synchronous=NORMAL`` in WAL mode loses nothing when a process is killed (the OS still holds
the pages); only a power cut can drop the last commits.

A training process commits once per step. For it (``background_checkpoints``), WAL checkpoints
(copying the log back into the database file, with an fsync) run on a thread of their own
instead of inside every few-hundredth commit, which would otherwise pay for them (measured
here: 187 µs per small commit with automatic checkpoints, 75 µs without). Every other process
keeps SQLite's automatic checkpoints, so the log stays bounded whoever writes.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..jobs.states import FINAL, Status, log_accepts
from .changes import ChangeFeed, SqliteChanges
from .protocol import Fence, UnknownCursor, WriteRefused
from .records import (
    CheckpointRecord,
    Claim,
    EventsAfter,
    FileRecord,
    JobRecord,
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

SCHEMA_VERSION = 3
# Statements that take a database of version N-1 to N (the fresh schema is schema_sqlite.sql).
_MIGRATIONS: dict[int, list[str]] = {
    2: [
        "ALTER TABLE jobs ADD COLUMN claim_token TEXT",
        # Leases taken by a version-1 worker get a token of their own, so no claim of this
        # version can match them; they expire and are recovered like any other.
        "UPDATE jobs SET claim_token = lower(hex(randomblob(8))) WHERE lease_owner IS NOT NULL",
        "ALTER TABLE checkpoints ADD COLUMN kind TEXT NOT NULL DEFAULT 'epoch'",
    ],
    3: [
        "CREATE INDEX jobs_by_model ON jobs (fine_tuned_model) WHERE fine_tuned_model IS NOT NULL",
        "CREATE TABLE deleted_models (name TEXT PRIMARY KEY, organization TEXT NOT NULL, "
        "job_id TEXT NOT NULL, deleted_at INTEGER NOT NULL)",
        "CREATE INDEX deleted_models_by_org ON deleted_models (organization)",
    ],
}


_JOB_VISIBLE = "SELECT 1 FROM jobs WHERE id = ?1 AND organization = ?2"
_PAGE_FIRST = (
    "SELECT body FROM events WHERE job_id = ?1 "
    "AND EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND organization = ?2) "
    "ORDER BY seq DESC LIMIT ?3"
)
_PAGE_AFTER = (
    "SELECT body FROM events WHERE job_id = ?1 "
    "AND seq < (SELECT seq FROM events WHERE id = ?4 AND job_id = ?1) "
    "AND EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND organization = ?2) "
    "ORDER BY seq DESC LIMIT ?3"
)
_EVENT_OF_JOB = "SELECT 1 FROM events WHERE id = ?1 AND job_id = ?2"
_JOB_STATUS = "SELECT status FROM jobs WHERE id = ?1 AND (?2 IS NULL OR organization = ?2)"
_SEQ_OF_EVENT = "SELECT seq FROM events WHERE id = ?1 AND job_id = ?2"
_EVENTS_AFTER = (
    "SELECT seq, id, body FROM events WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
)


class SqliteStore:
    def __init__(self, path: Path, *, background_checkpoints: bool = False) -> None:
        self.path = path
        self._background_checkpoints = background_checkpoints
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self.changes: ChangeFeed = SqliteChanges(path)
        self._writer = self._connect()
        if background_checkpoints:
            self._writer.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer: _Checkpointer | None = None
        self._migrate()

    # -- connections -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        # Takes effect only on a new database file: bigger pages put a 20-event page (~6 KB of
        # bodies) on one or two leaves instead of two or three.
        conn.execute("PRAGMA page_size=16384")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        # The events table outgrows any small map; SQLite caps the map at 2 GiB on its own.
        conn.execute("PRAGMA mmap_size=2147418112")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"could not start a write transaction: {exc}") from exc
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
                self.changes.committed()
                if self._background_checkpoints and self._checkpointer is None:
                    self._checkpointer = _Checkpointer(self.path)

    def _migrate(self) -> None:
        """One box, nothing to coordinate: SQLite brings itself up to date when it opens."""
        with self._tx() as conn:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version == SCHEMA_VERSION:
                return
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}; this ftserve knows "
                    f"{SCHEMA_VERSION}. Upgrade ftserve or point it at another data dir."
                )
            if version == 0:
                script = resources.files("ftserve.store").joinpath("schema_sqlite.sql")
                for statement in _split_sql(script.read_text()):
                    conn.execute(statement)
            else:
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[step]:
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self.changes.close()
        with self._write_lock:
            if self._checkpointer is not None:
                self._checkpointer.stop()
                self._checkpointer = None
            self._writer.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- files -------------------------------------------------------------------------------
    def add_file(self, file: FileRecord) -> None:
        with self._tx() as conn:
            self._insert_file(conn, file)

    @staticmethod
    def _insert_file(conn: sqlite3.Connection, file: FileRecord) -> None:
        cols = ", ".join(FILE_COLUMNS)
        marks = ", ".join("?" for _ in FILE_COLUMNS)
        conn.execute(
            f"INSERT INTO files ({cols}) VALUES ({marks})",
            tuple(getattr(file, c) for c in FILE_COLUMNS),
        )

    def get_file(self, organization: str, file_id: str, now: int) -> FileRecord | None:
        row = (
            self._reader()
            .execute(
                f"{FILE_SELECT} WHERE id = ? AND organization = ? "
                "AND (expires_at IS NULL OR expires_at > ?)",
                (file_id, organization, now),
            )
            .fetchone()
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
        conn = self._reader()
        where = ["organization = ?", "(expires_at IS NULL OR expires_at > ?)"]
        args: list[Any] = [organization, now]
        if purpose is not None:
            where.append("purpose = ?")
            args.append(purpose)
        if after is not None:
            row = conn.execute(
                "SELECT seq FROM files WHERE id = ? AND organization = ?", (after, organization)
            ).fetchone()
            if row is None:
                raise UnknownCursor(after)
            where.append("seq > ?" if ascending else "seq < ?")
            args.append(row[0])
        order = "ASC" if ascending else "DESC"
        rows = conn.execute(
            f"{FILE_SELECT} WHERE {' AND '.join(where)} ORDER BY seq {order} LIMIT ?",
            (*args, limit + 1),
        ).fetchall()
        return Page([file_record(r) for r in rows[:limit]], len(rows) > limit)

    def delete_file(self, organization: str, file_id: str) -> FileRecord | None:
        with self._tx() as conn:
            row = conn.execute(
                f"{FILE_SELECT} WHERE id = ? AND organization = ?", (file_id, organization)
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM files WHERE id = ?", (file_id,))
            return file_record(row)

    def file_blobs(self) -> set[str]:
        return {str(r[0]) for r in self._reader().execute("SELECT blob FROM files")}

    # -- jobs --------------------------------------------------------------------------------
    def create_job(self, job: JobRecord, events: Sequence[NewEvent]) -> None:
        cols = ", ".join(JOB_COLUMNS)
        marks = ", ".join("?" for _ in JOB_COLUMNS)
        values = tuple(
            dump(getattr(job, c)) if c in JSON_COLUMNS else getattr(job, c) for c in JOB_COLUMNS
        )
        with self._tx() as conn:
            conn.execute(f"INSERT INTO jobs ({cols}) VALUES ({marks})", values)
            self._append(conn, job.id, events, None, job.status)

    def get_job(self, job_id: str, organization: str | None = None) -> JobRecord | None:
        if organization is None:
            row = self._reader().execute(f"{JOB_SELECT} WHERE id = ?", (job_id,)).fetchone()
        else:
            row = (
                self._reader()
                .execute(f"{JOB_SELECT} WHERE id = ? AND organization = ?", (job_id, organization))
                .fetchone()
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
        conn = self._reader()
        where = ["organization = ?"]
        args: list[Any] = [organization]
        if after is not None:
            row = conn.execute(
                "SELECT seq FROM jobs WHERE id = ? AND organization = ?", (after, organization)
            ).fetchone()
            if row is None:
                raise UnknownCursor(after)
            where.append("seq < ?")
            args.append(row[0])
        for key, value in (metadata or {}).items():
            # Metadata is a flat string map stored as orjson writes it (compact, canonical
            # escapes), so `"key":"value"` with its quotes occurs in the text exactly when the
            # pair is there: inside a JSON string every quote is escaped. json_each would be the
            # obvious tool, but its text stops at an escaped U+0000, which the API allows.
            where.append("instr(metadata, ?) > 0")
            args.append(metadata_pair(key, value))
        rows = conn.execute(
            f"{JOB_SELECT} WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
            (*args, limit + 1),
        ).fetchall()
        return Page([job_record(r) for r in rows[:limit]], len(rows) > limit)

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
            row = conn.execute(f"{JOB_SELECT} WHERE id = ?", (job_id,)).fetchone()
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
            new = conn.execute(f"{JOB_SELECT} WHERE id = ?", (job_id,)).fetchone()
            return job_record(new)

    @staticmethod
    def _set(conn: sqlite3.Connection, job_id: str, changes: Mapping[str, Any]) -> None:
        if changes:
            sets = ", ".join(f"{c} = ?" for c in changes)
            values = [dump(v) if c in JSON_COLUMNS else v for c, v in changes.items()]
            conn.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*values, job_id))

    def jobs_with_status(self, status: str, limit: int) -> list[JobRecord]:
        rows = (
            self._reader()
            .execute(f"{JOB_SELECT} WHERE status = ? ORDER BY seq LIMIT ?", (status, limit))
            .fetchall()
        )
        return [job_record(r) for r in rows]

    # -- queue -------------------------------------------------------------------------------
    def claim_job(
        self, worker_id: str, now: float, lease_seconds: float, events: Sequence[NewEvent]
    ) -> JobRecord | None:
        # Idle workers ask often; a read answers "nothing queued" without the write lock.
        if (
            self._reader()
            .execute("SELECT 1 FROM jobs WHERE status = 'queued' AND claim_token IS NULL LIMIT 1")
            .fetchone()
            is None
        ):
            return None
        with self._tx() as conn:
            row = conn.execute(
                "SELECT id FROM jobs WHERE status = 'queued' AND claim_token IS NULL "
                "ORDER BY seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE jobs SET status = 'running', lease_owner = ?, lease_expires_at = ?, "
                "claim_token = ?, attempts = attempts + 1 WHERE id = ?",
                (worker_id, now + lease_seconds, secrets.token_hex(8), row[0]),
            )
            self._append(conn, row[0], events, Status.QUEUED, Status.RUNNING)
            return job_record(conn.execute(f"{JOB_SELECT} WHERE id = ?", (row[0],)).fetchone())

    def renew_lease(self, claim: Claim, until: float) -> bool:
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND claim_token = ?",
                (until, claim.job_id, claim.token),
            )
            return cur.rowcount == 1

    def release_claim(self, claim: Claim) -> bool:
        with self._tx() as conn:
            cur = conn.execute(
                f"UPDATE jobs SET {RELEASE} WHERE id = ? AND claim_token = ?",
                (claim.job_id, claim.token),
            )
            return cur.rowcount == 1

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
            row = conn.execute(
                "SELECT status, claim_token FROM jobs WHERE id = ?", (claim.job_id,)
            ).fetchone()
            if row is None:
                raise WriteRefused(claim.job_id, None, False, "the job does not exist")
            status, token = row
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
            if add_checkpoint is not None:
                self._insert_checkpoint(conn, add_checkpoint)
            for checkpoint_id in drop_checkpoints:
                conn.execute(
                    "DELETE FROM checkpoints WHERE id = ? AND job_id = ?",
                    (checkpoint_id, claim.job_id),
                )
            for file in add_files:
                self._insert_file(conn, file)
            return after

    def expired_leases(self, now: float) -> list[JobRecord]:
        rows = (
            self._reader()
            .execute(f"{JOB_SELECT} WHERE lease_owner IS NOT NULL AND lease_expires_at < ?", (now,))
            .fetchall()
        )
        return [job_record(r) for r in rows]

    # -- events ------------------------------------------------------------------------------
    @staticmethod
    def _append(
        conn: sqlite3.Connection,
        job_id: str,
        events: Sequence[NewEvent],
        before: str | None,
        after: str,
    ) -> int:
        if not events:
            return 0
        if not log_accepts(before, after):
            raise WriteRefused(job_id, after, False, f"the job's log is closed ({after})")
        (last,) = conn.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE job_id = ?", (job_id,)
        ).fetchone()
        added = 0
        for event in events:
            cur = conn.execute(
                "INSERT OR IGNORE INTO events (job_id, seq, id, created_at, kind, key, body) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job_id, last + 1, event.id, event.created_at, event.kind, event.key, event.body),
            )
            if cur.rowcount:
                last += 1
                added += 1
        return added

    def append_events(self, job_id: str, events: Sequence[NewEvent]) -> int:
        with self._tx() as conn:
            row = conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise WriteRefused(job_id, None, False, "the job does not exist")
            return self._append(conn, job_id, events, row[0], row[0])

    def event_page(
        self, organization: str, job_id: str, *, after: str | None, limit: int
    ) -> Page[bytes] | None:
        # One statement on the hot path: the organization check rides along as a constant
        # EXISTS; only an empty result needs the extra look-ups that tell why it is empty.
        conn = self._reader()
        if after is None:
            rows = conn.execute(_PAGE_FIRST, (job_id, organization, limit + 1)).fetchall()
        else:
            rows = conn.execute(_PAGE_AFTER, (job_id, organization, limit + 1, after)).fetchall()
        if not rows:
            if conn.execute(_JOB_VISIBLE, (job_id, organization)).fetchone() is None:
                return None
            if (
                after is not None
                and conn.execute(_EVENT_OF_JOB, (after, job_id)).fetchone() is None
            ):
                raise UnknownCursor(after)
        return Page([r[0] for r in rows[:limit]], len(rows) > limit)

    def events_after(
        self, organization: str | None, job_id: str, *, after: str | None, limit: int
    ) -> EventsAfter | None:
        conn = self._reader()
        # The status first: once it is final the log is complete, so the events read next
        # (a later snapshot) hold the terminal one.
        row = conn.execute(_JOB_STATUS, (job_id, organization)).fetchone()
        if row is None:
            return None
        seq = 0
        if after is not None:
            found = conn.execute(_SEQ_OF_EVENT, (after, job_id)).fetchone()
            if found is None:
                raise UnknownCursor(after)
            seq = found[0]
        rows = conn.execute(_EVENTS_AFTER, (job_id, seq, limit)).fetchall()
        return EventsAfter(row[0], seq, [LoggedEvent(r[0], r[1], r[2]) for r in rows])

    def event_bodies(self, job_id: str, kind: str | None = None) -> list[bytes]:
        conn = self._reader()
        if kind is None:
            rows = conn.execute(
                "SELECT body FROM events WHERE job_id = ? ORDER BY seq", (job_id,)
            ).fetchall()
        else:
            rows = conn.execute(
                "SELECT body FROM events WHERE job_id = ? AND kind = ? ORDER BY seq",
                (job_id, kind),
            ).fetchall()
        return [r[0] for r in rows]

    # -- fine-tuned models --------------------------------------------------------------------
    def succeeded_jobs(self, organization: str) -> list[JobRecord]:
        rows = (
            self._reader()
            .execute(
                f"{JOB_SELECT} WHERE organization = ? AND status = 'succeeded' "
                "AND fine_tuned_model IS NOT NULL ORDER BY finished_at, seq",
                (organization,),
            )
            .fetchall()
        )
        return [job_record(r) for r in rows]

    def job_for_model(self, organization: str, fine_tuned_model: str) -> JobRecord | None:
        row = (
            self._reader()
            .execute(
                f"{JOB_SELECT} WHERE fine_tuned_model = ? AND organization = ? "
                "ORDER BY seq LIMIT 1",
                (fine_tuned_model, organization),
            )
            .fetchone()
        )
        return None if row is None else job_record(row)

    def deleted_models(self, organization: str, names: Sequence[str] | None = None) -> set[str]:
        conn = self._reader()
        if names is None:
            rows = conn.execute(
                "SELECT name FROM deleted_models WHERE organization = ?", (organization,)
            ).fetchall()
        else:
            marks = ", ".join("?" for _ in names)
            rows = conn.execute(
                f"SELECT name FROM deleted_models WHERE organization = ? AND name IN ({marks})",
                (organization, *names),
            ).fetchall()
        return {r[0] for r in rows}

    def delete_models(
        self, organization: str, job_id: str, names: Sequence[str], now: int
    ) -> list[str]:
        with self._tx() as conn:
            row = conn.execute(
                "SELECT status FROM jobs WHERE id = ? AND organization = ?", (job_id, organization)
            ).fetchone()
            if row is None or row[0] != Status.SUCCEEDED:
                return []
            added = []
            for name in names:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO deleted_models (name, organization, job_id, deleted_at) "
                    "VALUES (?, ?, ?, ?)",
                    (name, organization, job_id, now),
                )
                if cur.rowcount:
                    added.append(name)
            return added

    # -- checkpoints -------------------------------------------------------------------------
    @staticmethod
    def _insert_checkpoint(conn: sqlite3.Connection, c: CheckpointRecord) -> None:
        # A checkpoint at a step the job already has (a resumed run saving the same epoch end
        # again) replaces the row: the newer files are the ones a current claim names.
        conn.execute(
            "INSERT INTO checkpoints (id, job_id, created_at, step_number, "
            "fine_tuned_model_checkpoint, metrics, path, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
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
        conn = self._reader()
        if organization is not None and (
            conn.execute(
                "SELECT 1 FROM jobs WHERE id = ? AND organization = ?", (job_id, organization)
            ).fetchone()
            is None
        ):
            return None
        where, args = "job_id = ?", [job_id]
        if after is not None:
            row = conn.execute(
                "SELECT step_number FROM checkpoints WHERE id = ? AND job_id = ?", (after, job_id)
            ).fetchone()
            if row is None:
                raise UnknownCursor(after)
            where += " AND step_number < ?"
            args.append(row[0])
        rows = conn.execute(
            f"{CKPT_SELECT} WHERE {where} ORDER BY step_number DESC LIMIT ?", (*args, limit + 1)
        ).fetchall()
        return Page([ckpt_record(r) for r in rows[:limit]], len(rows) > limit)


class _Checkpointer:
    """Checkpoints the WAL every ``interval`` seconds from a thread of its own. PASSIVE never
    waits for readers or writers; what it cannot copy now, the next round does."""

    def __init__(self, path: Path, interval: float = 0.5) -> None:
        self._path = path
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="ftserve-wal-checkpoint", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            return
        try:
            while not self._stopped.wait(self._interval):
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            conn.close()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)


def _split_sql(script: str) -> list[str]:
    """Statements of a schema file; trigger bodies keep their inner semicolons."""
    statements, buf = [], ""
    for line in script.splitlines():
        if line.strip().startswith("--") and not buf:
            continue
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    return statements
