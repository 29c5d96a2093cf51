"""The async events page on PostgreSQL (``AsyncEventReads``): the same bytes as the sync read,
one retry on a broken connection, StoreError (and the 500 envelope) when the retry fails too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from ftserve.api.app import create_app
from ftserve.api.services import build_services
from ftserve.config import ApiKey, Settings
from ftserve.errors import InvalidValue, JobNotFound, StoreError
from ftserve.events.messages import make_event
from ftserve.events.service import EventService
from ftserve.ids import job_id
from ftserve.jobs.method import Hyperparameters, Method
from ftserve.store.postgres import PostgresStore
from ftserve.store.protocol import AsyncEventReads, UnknownCursor
from ftserve.store.records import JobRecord, Page
from ftserve.store.sqlite import SqliteStore

KEY = "sk-test-async-events-0123456789"


def _job(org: str = "personal") -> JobRecord:
    return JobRecord(
        id=job_id(),
        organization=org,
        model="ftserve-tiny",
        model_source="ftserve-tiny",
        status="queued",
        created_at=1,
        training_file="file-x",
        validation_file=None,
        hyperparameters=Hyperparameters(),
        method=Method("supervised", Hyperparameters()),
        seed=1,
    )


@pytest.fixture
def pg_store(pg_store_url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(pg_store_url, timeout=2)
    yield store
    store.close()


def _fill(store: PostgresStore, events: int) -> tuple[JobRecord, JobRecord]:
    job, other = _job(), _job()
    store.create_job(job, [make_event("created", created_at=1)])
    for start in range(1, events, 100):
        end = min(events, start + 100)
        store.append_events(job.id, [make_event(f"e{i}", created_at=i) for i in range(start, end)])
    store.create_job(other, [make_event(f"o{i}", created_at=1) for i in range(5)])
    return job, other


def _joined(page: Page[bytes]) -> tuple[bytes, int, bool]:
    return b",".join(page.items), len(page.items), page.has_more


def _ids(bodies: list[bytes]) -> list[str]:
    return [str(orjson.loads(b)["id"]) for b in bodies]


def test_store_capability_is_postgres_only(pg_store: PostgresStore, tmp_path: Path) -> None:
    assert isinstance(pg_store, AsyncEventReads)
    sqlite = SqliteStore(tmp_path / "db.sqlite")
    try:
        assert not isinstance(sqlite, AsyncEventReads)
        assert not EventService(sqlite).awaits_store
    finally:
        sqlite.close()
    assert EventService(pg_store).awaits_store
    assert not EventService(pg_store, async_reads=False).awaits_store


def test_async_page_equals_sync_page(pg_store: PostgresStore) -> None:
    job, other = _fill(pg_store, 300)
    service = EventService(pg_store)

    async def main() -> int:
        compared = 0
        try:
            for limit in (1, 7, 20, 99, 299, 300, 301, 1000):
                after: str | None = None
                seen: list[str] = []
                while True:
                    sync = pg_store.event_page("personal", job.id, after=after, limit=limit)
                    got = await pg_store.event_page_async(
                        "personal", job.id, after=after, limit=limit
                    )
                    assert sync is not None and got is not None
                    assert (got.body, got.count, got.has_more) == _joined(sync)
                    body = await service.page_json_async("personal", job.id, after, limit)
                    assert body == service.page_json("personal", job.id, after, limit)
                    compared += 1
                    seen += _ids(sync.items)
                    if not got.has_more:
                        break
                    after = seen[-1]
                assert len(seen) == len(set(seen)) == 300
            # Every cursor of the job, a small page behind each (the last one: an empty page).
            for cursor in [*seen[::13], seen[-1]]:
                sync = pg_store.event_page("personal", job.id, after=cursor, limit=3)
                got = await pg_store.event_page_async("personal", job.id, after=cursor, limit=3)
                assert sync is not None and got is not None
                assert (got.body, got.count, got.has_more) == _joined(sync)
            # Unknown job, another organization's job, unknown cursor, another job's cursor.
            assert (
                await pg_store.event_page_async("personal", "ftjob-x", after=None, limit=5) is None
            )
            assert await pg_store.event_page_async("other", job.id, after=None, limit=5) is None
            other_event = _ids(pg_store.event_bodies(other.id))[0]
            for cursor in ("ftevent-nope", other_event):
                with pytest.raises(UnknownCursor):
                    await pg_store.event_page_async("personal", job.id, after=cursor, limit=5)
                with pytest.raises(InvalidValue):
                    await service.page_json_async("personal", job.id, cursor, 5)
            with pytest.raises(JobNotFound):
                await service.page_json_async("other", job.id, None, 5)
            # Concurrent first use shares one pool; many pages at once agree with the sync read.
            await service.aclose()
            pages = await asyncio.gather(
                *(
                    service.page_json_async("personal", job.id, seen[i], 20)
                    for i in range(0, 300, 7)
                )
            )
            for i, body in zip(range(0, 300, 7), pages, strict=True):
                assert body == service.page_json("personal", job.id, seen[i], 20)
        finally:
            await service.aclose()
        return compared

    assert asyncio.run(main()) > 40


def test_pages_asked_at_once_share_statements(pg_store: PostgresStore) -> None:
    """Pages asked in the same turn of the loop are read together, and each is answered as
    if alone: full pages, short ones, empty ones, unknown jobs and cursors, a cancelled ask."""
    job, other = _fill(pg_store, 120)
    ids = _ids(pg_store.event_bodies(job.id))
    first_other = _ids(pg_store.event_bodies(other.id))[0]
    asks: list[tuple[str, str, str | None, int]] = [
        *(("personal", job.id, ids[i], 1 + i % 25) for i in range(0, 120, 3)),
        ("personal", job.id, None, 200),  # the whole log, no more
        ("personal", job.id, ids[0], 5),  # behind the first event: an empty page
        ("personal", "ftjob-nope", None, 5),  # an unknown job
        ("other", job.id, None, 5),  # another organization's job
        ("personal", job.id, "ftevent-nope", 5),  # an unknown cursor
        ("personal", job.id, first_other, 5),  # another job's event
        ("personal", job.id, "bad\x00cursor", 5),  # text PostgreSQL cannot hold
    ]

    def sync(org: str, job_id: str, after: str | None, limit: int) -> object:
        try:
            page = pg_store.event_page(org, job_id, after=after, limit=limit)
        except UnknownCursor:
            return "unknown cursor"
        return None if page is None else _joined(page)

    async def ask(org: str, job_id: str, after: str | None, limit: int) -> object:
        try:
            got = await pg_store.event_page_async(org, job_id, after=after, limit=limit)
        except UnknownCursor:
            return "unknown cursor"
        return None if got is None else (got.body, got.count, got.has_more)

    async def main() -> tuple[list[object], int]:
        try:
            assert await ask("personal", job.id, None, 1)  # opens the pool
            pool = pg_store._pages._pool
            assert pool is not None
            before = pool.get_stats()["requests_num"]
            doomed = asyncio.ensure_future(ask("personal", job.id, None, 3))
            answers = asyncio.gather(*(ask(*a) for a in asks))
            await asyncio.sleep(0)
            doomed.cancel()  # its request went away while its batch was being read
            got = await answers
            with pytest.raises(asyncio.CancelledError):
                await doomed
            return list(got), pool.get_stats()["requests_num"] - before
        finally:
            await pg_store.close_async_reads()

    answers, statements = asyncio.run(main())
    assert answers == [sync(*a) for a in asks]
    whole = answers[-7]
    assert isinstance(whole, tuple) and whole[1:] == (len(ids), False)
    assert answers[-6] == (b"", 0, False) and answers[-5] is None and answers[-4] is None
    assert answers[-3] == answers[-2] == answers[-1] == "unknown cursor"
    # One connection, and so one statement, per batch: far fewer than the pages asked.
    assert 1 <= statements <= 4 < len(asks)


def _terminate(url: str, pid: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def _async_pid(store: PostgresStore) -> int:
    pool = store._pages._pool
    assert pool is not None
    async with pool.connection() as conn:
        return conn.info.backend_pid


def test_broken_connection_is_retried_once(pg_store: PostgresStore) -> None:
    job, _ = _fill(pg_store, 30)
    expected = pg_store.event_page("personal", job.id, after=None, limit=10)

    async def main() -> None:
        try:
            assert await pg_store.event_page_async("personal", job.id, after=None, limit=10)
            first = await _async_pid(pg_store)
            _terminate(pg_store.url, first)
            # The pool does not test a connection it hands out: the first try breaks, the
            # retry gets a new connection.
            got = await pg_store.event_page_async("personal", job.id, after=None, limit=10)
            assert got is not None and expected is not None
            assert (got.body, got.count, got.has_more) == _joined(expected)
            assert await _async_pid(pg_store) != first
        finally:
            await pg_store.close_async_reads()

    asyncio.run(main())


def test_read_that_breaks_twice_is_a_store_error(pg_store: PostgresStore) -> None:
    job, _ = _fill(pg_store, 30)
    tries = 0

    class Broken:
        @asynccontextmanager
        async def connection(self) -> AsyncIterator[Any]:
            nonlocal tries
            tries += 1
            raise psycopg.OperationalError("server closed the connection unexpectedly")
            yield  # pragma: no cover

        async def check(self) -> None:
            pass

    async def main() -> None:
        try:
            assert await pg_store.event_page_async("personal", job.id, after=None, limit=5)
            real = pg_store._pages._pool
            pg_store._pages._pool = Broken()  # type: ignore[assignment]
            with pytest.raises(StoreError, match="the read failed"):
                await pg_store.event_page_async("personal", job.id, after=None, limit=5)
            assert tries == 2
            pg_store._pages._pool = real
        finally:
            await pg_store.close_async_reads()

    asyncio.run(main())


def test_lost_database_is_a_store_error(pg_store: PostgresStore, pg_url: str) -> None:
    """The connection breaks and no new one can be made: one retry, then StoreError."""
    job, _ = _fill(pg_store, 30)
    dbname = pg_store.url.split("?")[0].rsplit("/", 1)[1]

    async def main() -> None:
        try:
            assert await pg_store.event_page_async("personal", job.id, after=None, limit=5)
            pid = await _async_pid(pg_store)
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute(f"ALTER DATABASE {dbname} ALLOW_CONNECTIONS false")
            _terminate(pg_url, pid)
            with pytest.raises(StoreError):
                await pg_store.event_page_async("personal", job.id, after=None, limit=5)
        finally:
            await pg_store.close_async_reads()
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute(f"ALTER DATABASE {dbname} ALLOW_CONNECTIONS true")

    asyncio.run(main())


async def _get(app: Any, path: str) -> tuple[int, dict[str, str], bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path.partition("?")[0],
        "raw_path": path.partition("?")[0].encode(),
        "query_string": path.partition("?")[2].encode(),
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {KEY}".encode()), (b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], headers, body


def test_fast_path_awaits_the_store_and_renders_store_errors(
    pg_store_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=pg_store_url,
        api_keys=(ApiKey(KEY, "personal"),),
        workers=0,
        inference=False,
    )
    services = build_services(settings)
    store = services.store
    assert isinstance(store, PostgresStore) and services.events.awaits_store
    app = create_app(settings, services, background=False)
    job, _ = _fill(store, 50)

    async def main() -> None:
        try:
            for path in (
                f"/v1/fine_tuning/jobs/{job.id}/events?limit=7",
                f"/openai/v1/fine_tuning/jobs/{job.id}/events",
            ):
                status, headers, body = await _get(app, path)
                assert status == 200
                limit = 7 if "limit" in path else 20
                assert body == services.events.page_json("personal", job.id, None, limit)
            # Not found: falls through to the app, which answers with the 404 envelope.
            status, _, body = await _get(app, "/v1/fine_tuning/jobs/ftjob-nope/events")
            assert status == 404 and orjson.loads(body)["error"]["code"]

            async def broken(*args: Any, **kwargs: Any) -> None:
                raise StoreError("the read failed: server closed the connection")

            store.event_page_async = broken  # type: ignore[method-assign]
            for path in (
                f"/v1/fine_tuning/jobs/{job.id}/events",  # the fast path's own envelope
                f"/v1/fine_tuning/jobs/{job.id}/events?order=x",  # the app's (falls through)
            ):
                status, headers, body = await _get(app, path)
                error = orjson.loads(body)["error"]
                assert status == 500 and "request id" in error["message"], body
                assert "closed" not in error["message"] and headers["x-request-id"]
                assert headers["content-type"] == "application/json"
        finally:
            await services.events.aclose()

    try:
        asyncio.run(main())
    finally:
        store.close()
