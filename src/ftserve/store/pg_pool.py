"""The PostgreSQL store's connections: a psycopg 3 pool, and what an outage does to a call.

Driver errors stop here: anything psycopg raises becomes a :class:`~ftserve.errors.StoreError`
— a :class:`~ftserve.errors.StoreUnavailable` when the database cannot be reached (connection
refused or lost, none free in time), which the API answers with a 503. A read that finds its
connection broken is retried once on another; a write is not (it may have committed).

While the database is known to be down (the last call found it unreachable), a call waits only
``DOWN_WAIT`` for a connection instead of the pool's timeout: the API reads inline on its event
loop, and every request stalling it for the full timeout would stall every other request,
streams and /health included, for the whole outage.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import StoreError, StoreUnavailable

DOWN_WAIT = 0.25  # seconds a call waits for a connection while the database is down
_PROBE_TIMEOUT = 2  # seconds a reachability check may take to connect

Conn = psycopg.Connection[tuple[Any, ...]]
T = TypeVar("T")


class PgPool:
    def __init__(self, url: str, *, max_connections: int, timeout: float) -> None:
        self.url = url
        self._timeout = timeout
        self._down = False  # the last call found the database unreachable (see _wait)
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
        except (PoolTimeout, psycopg.Error) as exc:
            self._pool.close()
            raise StoreError(f"could not open the PostgreSQL database: {exc}") from exc

    def _wait(self) -> float:
        return DOWN_WAIT if self._down else self._timeout

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
    def tx(self, commit: Callable[[], bytes]) -> Iterator[Conn]:
        """One write transaction, ended by the query ``commit()`` gives (at the block's end:
        the notifications and the COMMIT in one round trip); rolled back when it raises."""
        try:
            with self._pool.connection(timeout=self._wait()) as conn:
                yield conn
                # psycopg sees the transaction end; its own commit on leaving has nothing to do.
                conn.execute(commit())
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
        self._down = False

    def read(self, fn: Callable[[Conn], T]) -> T:
        """One read; retried once on a fresh connection if the first one broke and the
        database can be reached."""
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
        self._pool.close()
