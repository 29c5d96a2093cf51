"""SQLite under the SQL store: WAL, one writer connection, a read connection per thread.

Writes take ``BEGIN IMMEDIATE`` on the single writer connection (serialised by a lock in this
process, and by SQLite's own lock against other processes such as ``ftserve worker``), so a
transaction never fails half-way on a lock upgrade, and a write holds the whole database: what
PostgreSQL locks row by row (``{lock}`` in sql.py) needs nothing more here. Readers never block
under WAL. ``synchronous=NORMAL`` in WAL mode loses nothing when a process is killed (the OS
still holds the pages); only a power cut can drop the last commits.

A training process commits once per step. For it (``background_checkpoints``), WAL checkpoints
(copying the log back into the database file, with an fsync) run on a thread of their own
instead of inside every few-hundredth commit, which would otherwise pay for them (measured
here: 187 µs per small commit with automatic checkpoints, 75 µs without). Every other process
keeps SQLite's automatic checkpoints, so the log stays bounded whoever writes.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..errors import StoreError
from .changes import ChangeFeed, SqliteChanges
from .dialect import Dialect, Session
from .migrator import Migrations, shipped
from .sql_store import SqlStore

T = TypeVar("T")

MIGRATIONS: Migrations = shipped("sqlite", first=1)
_MARKERS = {"{lock}": "", "{skip_locked}": "", "{strpos}": "instr"}


class SqliteDialect(Dialect):
    def __init__(self, path: Path, *, background_checkpoints: bool) -> None:
        super().__init__(_MARKERS, pyformat=False)
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

    def read(self, fn: Callable[[Session], T]) -> T:
        return fn(Session(self._reader(), self.text))

    @contextmanager
    def tx(self) -> Iterator[Session]:
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"could not start a write transaction: {exc}") from exc
            try:
                yield Session(conn, self.text)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
                self.changes.committed()
                if self._background_checkpoints and self._checkpointer is None:
                    self._checkpointer = _Checkpointer(self.path)

    def wake_for(self, before: str | None, after: str, owner: str | None, released: bool) -> None:
        """Nothing to tell: every process's change feed sees every commit (changes.py)."""

    def names_in(self, column: str, names: Sequence[str]) -> tuple[str, dict[str, Any]]:
        marks = ", ".join(f":name{i}" for i in range(len(names)))
        return f"{column} IN ({marks})", {f"name{i}": n for i, n in enumerate(names)}

    def _migrate(self) -> None:
        """One box, nothing to coordinate: SQLite brings itself up to date when it opens."""
        migrations = MIGRATIONS
        with self.tx():
            conn = self._writer  # the transaction's: migration scripts are not statements of sql.py
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > migrations.version:
                raise StoreError(
                    f"{self.path} has schema version {version}; this ftserve knows "
                    f"{migrations.version}. Upgrade ftserve or point it at another data dir."
                )
            if version < migrations.version:
                now = migrations.upgrade(version, lambda script: _run_script(conn, script))
                conn.execute(f"PRAGMA user_version={now}")

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


class SqliteStore(SqlStore):
    def __init__(self, path: Path, *, background_checkpoints: bool = False) -> None:
        self.path = path
        super().__init__(SqliteDialect(path, background_checkpoints=background_checkpoints))


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


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """A migration script's statements, one by one inside the open transaction (executescript
    would commit it); trigger bodies keep their inner semicolons."""
    buf = ""
    for line in script.splitlines():
        if line.strip().startswith("--") and not buf:
            continue
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            conn.execute(buf.strip())
            buf = ""
