"""The change feed of the PostgreSQL store: ``LISTEN/NOTIFY``.

Every write transaction of :class:`~ftserve.store.postgres.PostgresStore` runs
``NOTIFY ftserve_changes`` before it commits, so the notification is sent exactly when (and only
if) the transaction commits, by whichever process made it. Each process listens on a connection
of its own, on a thread that bumps the version and wakes the waiters. Commits through this
process's own store also wake its waiters at once (``committed``), without the round trip.

A listener that loses its connection reconnects and bumps the version once (it may have missed
notifications meanwhile): a spurious wake-up costs one read, a missed one would cost a timeout.
"""

from __future__ import annotations

import threading

import psycopg

from .changes import LocalChanges

CHANNEL = "ftserve_changes"


class PgChanges(LocalChanges):
    def __init__(self, url: str, *, poll: float = 0.1, ready_timeout: float = 5.0) -> None:
        super().__init__()
        self._url = url
        self._poll = poll
        self._closed = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="ftserve-pg-changes", daemon=True)
        self._thread.start()
        # LISTEN is in place before the store is handed out, so no commit after it is missed.
        self._ready.wait(ready_timeout)

    def _listen(self) -> None:
        missed = False
        while not self._closed.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._ready.set()
                    if missed:
                        self.committed()
                    while not self._closed.is_set():
                        # Wakes on each notification as it arrives; the timeout only bounds how
                        # long a close waits for this thread.
                        for _ in conn.notifies(timeout=self._poll):
                            self.committed()
            except psycopg.Error:
                # The database is down or restarting: waiters fall back to their timeouts,
                # which every caller has, until the listener is back.
                missed = True
                self._ready.set()
                self._closed.wait(0.5)

    def close(self) -> None:
        self._closed.set()
        super().close()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=self._poll * 10 + 1.0)
