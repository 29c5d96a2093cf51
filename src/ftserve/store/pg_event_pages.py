"""The events page on PostgreSQL, read on the event loop: an async pool, and the pages asked
for at the same time read by one statement.

Why batch: a page is a few index probes for PostgreSQL, but each statement costs the API
process ~200 µs of CPU in psycopg and the event loop (the cursor, the parameters, a wait on the
socket, the rows) against ~20 µs for SQLite's in-process read, and that per-statement cost,
not the database, capped the endpoint on PostgreSQL (README, Performance). Requests that
arrive while every lane is waiting on the database queue up; the next lane free takes all of
them at once, ``unnest``-ing their arguments into one ``LATERAL`` query. Under light load a
batch is one page and nothing waits for company (a lane starts at once), so latency is that of
one statement; under load the cost of a statement is shared by the pages in it.

Each page comes back as one row, its bodies already joined by PostgreSQL (``string_agg``), so
Python touches no row per event. An empty page is rare (an unknown job, another
organization's, an unknown cursor, a cursor at the log's first event): only then are the
checks that tell them apart run, one statement each.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..errors import StoreError, StoreUnavailable
from . import sql
from .protocol import UnknownCursor
from .records import JoinedPage
from .sql import to_pyformat

AsyncConn = psycopg.AsyncConnection[tuple[Any, ...]]

MAX_BATCH = 64  # pages per statement: bounds one statement's size and one batch's latency
# Statements in flight at once. bench/events_pg_bench.py at 32 connections on 2 cores: one lane
# 4,572 req/s p99 11.8 ms, two 4,775 req/s p99 14.1 ms, four 3,665 req/s p99 21.8 ms (more
# backends competing for the cores; batches fill anyway, so more lanes buy no throughput).
MAX_LANES = 2

# One row per asked page, in the order asked: how many events it holds, their bodies newest
# first joined by commas, and whether an older event follows. A cursor that names no event of
# the job bounds the page by NULL (no rows); no cursor bounds it by nothing.
_PAGES = (
    "SELECT p.n, p.bodies, "
    "EXISTS (SELECT 1 FROM events x WHERE x.job_id = r.job AND x.seq < p.lo) "
    "FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[]) "
    "WITH ORDINALITY AS r(job, org, after, lim, i) "
    "CROSS JOIN LATERAL ("
    "SELECT count(*) AS n, min(s.seq) AS lo, "
    "string_agg(s.body, '\\x2c'::bytea ORDER BY s.seq DESC) AS bodies "
    "FROM (SELECT e.seq, e.body FROM events e WHERE e.job_id = r.job "
    "AND e.seq < CASE WHEN r.after IS NULL THEN 9223372036854775807 ELSE "
    "(SELECT c.seq FROM events c WHERE c.id = r.after AND c.job_id = r.job) END "
    "AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = r.job AND j.organization = r.org) "
    "ORDER BY e.seq DESC LIMIT r.lim) s"
    ") p ORDER BY r.i"
)
_JOB_VISIBLE = to_pyformat(sql.JOB_VISIBLE)
_EVENT_OF_JOB = to_pyformat(sql.EVENT_OF_JOB)


@dataclass(slots=True)
class _Ask:
    organization: str
    job_id: str
    after: str | None
    limit: int
    answer: asyncio.Future[JoinedPage | None] = field(init=False)


class PgEventPages:
    """Event pages for one process's event loop (open on first use, :meth:`close` on the
    same loop)."""

    def __init__(self, url: str, *, max_connections: int, timeout: float) -> None:
        self.url = url
        self._max_connections = max_connections
        self._timeout = timeout
        self._max_lanes = max(1, min(MAX_LANES, max_connections))
        self._lanes: set[asyncio.Task[None]] = set()
        self._waiting: list[_Ask] = []
        self._pool: AsyncConnectionPool[AsyncConn] | None = None
        self._opening: asyncio.Task[AsyncConnectionPool[AsyncConn]] | None = None

    async def page(
        self, organization: str, job_id: str, *, after: str | None, limit: int
    ) -> JoinedPage | None:
        """Store.event_page's answer, joined: None for a job this organization cannot see,
        :class:`UnknownCursor` for an ``after`` that names no event of the job."""
        ask = _Ask(organization, job_id, after, limit)
        loop = asyncio.get_running_loop()
        ask.answer = loop.create_future()
        self._waiting.append(ask)
        if len(self._lanes) < self._max_lanes:
            self._start_lane(loop)
        return await ask.answer

    def _start_lane(self, loop: asyncio.AbstractEventLoop) -> None:
        # It starts on the loop's next turn: the pages asked in this turn join its batch.
        lane = loop.create_task(self._lane())
        self._lanes.add(lane)
        lane.add_done_callback(self._lane_done)

    def _lane_done(self, lane: asyncio.Task[None]) -> None:
        self._lanes.discard(lane)
        # A lane cancelled while pages wait leaves them to a new one, not waiting for ever.
        if self._waiting and len(self._lanes) < self._max_lanes:
            self._start_lane(lane.get_loop())

    async def _lane(self) -> None:
        while self._waiting:
            batch = self._waiting[:MAX_BATCH]
            del self._waiting[:MAX_BATCH]
            try:
                await self._answer(batch)
            except Exception as exc:
                for ask in batch:
                    if not ask.answer.done():
                        ask.answer.set_exception(exc)
            except BaseException:  # cancelled (the loop closing): so are its pages
                for ask in batch:
                    ask.answer.cancel()
                raise

    async def _answer(self, batch: list[_Ask]) -> None:
        args = (
            [a.job_id for a in batch],
            [a.organization for a in batch],
            [a.after for a in batch],
            [a.limit for a in batch],
        )
        pool = self._pool or await self._open()
        for attempt in range(2):
            try:
                async with pool.connection() as conn:
                    rows = await (await conn.execute(_PAGES, args)).fetchall()
                    for ask, (n, bodies, more) in zip(batch, rows, strict=True):
                        page: JoinedPage | None
                        if n:
                            page = JoinedPage(bytes(bodies), int(n), bool(more))
                        else:
                            try:
                                page = await _empty(conn, ask)
                            except UnknownCursor as exc:
                                if not ask.answer.done():
                                    ask.answer.set_exception(exc)
                                continue
                        if not ask.answer.done():  # else its request went away
                            ask.answer.set_result(page)
                return
            except PoolTimeout as exc:
                raise StoreUnavailable(f"no database connection free: {exc}") from exc
            except psycopg.OperationalError as exc:
                # As the sync reads: drop every broken idle connection before the one retry.
                with contextlib.suppress(psycopg.Error):
                    await pool.check()
                if attempt:
                    raise StoreUnavailable(f"the read failed: {exc}") from exc
            except psycopg.Error as exc:
                raise StoreError(f"the read failed: {exc}") from exc

    async def _open(self) -> AsyncConnectionPool[AsyncConn]:
        """The pool, opened once in the running loop (concurrent first lanes share the one
        opening; a failed opening is tried again by the next batch)."""
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._new_pool())
        opening = self._opening
        try:
            pool = await asyncio.shield(opening)
        except BaseException:
            if opening.done() and self._opening is opening:
                self._opening = None
            raise
        self._pool = pool
        return pool

    async def _new_pool(self) -> AsyncConnectionPool[AsyncConn]:
        pool: AsyncConnectionPool[AsyncConn] = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self._max_connections,
            timeout=self._timeout,
            reconnect_timeout=self._timeout,  # as the sync pool's (postgres.py says why)
            # Autocommit: a batch is one statement, one round trip (no BEGIN, no COMMIT).
            kwargs={"autocommit": True, "connect_timeout": int(max(1, self._timeout))},
            open=False,
            name="ftserve-events-async",
        )
        try:
            await pool.open(wait=True, timeout=self._timeout)
        except (PoolTimeout, psycopg.Error) as exc:
            await pool.close()
            raise StoreUnavailable(f"could not open the async PostgreSQL pool: {exc}") from exc
        return pool

    def forget(self) -> None:
        """Drop the pool without closing it (off its loop); its connections end with the
        process."""
        self._opening = self._pool = None

    async def close(self) -> None:
        """Close the pool (on the loop it was opened in); a later page opens a new one. Pages
        still queued are cancelled, as their requests are when the server stops."""
        waiting, self._waiting = self._waiting, []
        for ask in waiting:
            ask.answer.cancel()
        opening, self._opening, self._pool = self._opening, None, None
        if opening is None:
            return
        with contextlib.suppress(StoreError):
            pool = await opening
            await pool.close()


async def _empty(conn: AsyncConn, ask: _Ask) -> JoinedPage | None:
    """An empty page, told apart from a job not visible (None) and from an unknown cursor
    (raised)."""
    args = {"job": ask.job_id, "org": ask.organization, "after": ask.after}
    if await (await conn.execute(_JOB_VISIBLE, args)).fetchone() is None:
        return None
    if ask.after is not None:
        cur = await conn.execute(_EVENT_OF_JOB, args)
        if await cur.fetchone() is None:
            raise UnknownCursor(ask.after)
    return JoinedPage(b"", 0, False)
