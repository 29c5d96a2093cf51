"""The change feed of the PostgreSQL store: ``LISTEN/NOTIFY``.

Every write transaction of :class:`~ftserve.store.postgres.PostgresStore` runs
``NOTIFY ftserve_changes`` before it commits, so the notification is sent exactly when (and only
if) the transaction commits, by whichever process made it. Each process listens on a connection
of its own, on a thread that bumps the version and wakes the waiters. Commits through this
process's own store also wake its waiters at once (``committed``), without the round trip.

Not every process wants every commit (:class:`~ftserve.store.wakes.Wakes`). API processes do:
their live event streams follow every event. A training process waits on nothing, so it listens
to nothing. A worker process only needs to hear that a job may have become claimable (channel
``ftserve_queue``: a job's status became ``queued``, or a queued job's claim was let go) and
that something happened to a job it holds (its own channel: the job's status changed, or its
claim was let go — a cancel, a pause, its child finishing). Receiving a notification costs a
wake-up of the listener thread (~170 µs of CPU on these VMs); with every worker hearing every
commit — each step's metrics of every job on every machine — four workers draining the claim
bench's queue spent more on hearing each other than on claiming (bench/claim_bench.py: 715
jobs/s with four workers hearing everything, 1,377 with none listening, on 2 cores).

A listener that loses its connection reconnects and bumps the version once (it may have missed
notifications meanwhile): a spurious wake-up costs one read, a missed one would cost a timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import psycopg

from .changes import LocalChanges
from .wakes import CHANNEL


class PgChanges(LocalChanges):
    def __init__(
        self,
        url: str,
        channels: Sequence[str] = (CHANNEL,),
        *,
        poll: float = 0.1,
        ready_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self._url = url
        self._channels = tuple(channels)
        self._poll = poll
        self._closed = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        if not self._channels:
            return  # only this process's own commits wake it: no connection, no thread
        self._thread = threading.Thread(target=self._listen, name="ftserve-pg-changes", daemon=True)
        self._thread.start()
        # LISTEN is in place before the store is handed out, so no commit after it is missed.
        self._ready.wait(ready_timeout)

    def _listen(self) -> None:
        missed = False
        while not self._closed.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=10) as conn:
                    for channel in self._channels:
                        conn.execute(f"LISTEN {channel}")
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
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self._poll * 10 + 1.0)
