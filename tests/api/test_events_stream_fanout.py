"""The live event stream served in this process by uvicorn over a store whose reads are counted
at the Store seam: 500 streams on one job cost one store read per new batch of events, and a
client that stops reading falls behind its bounded queue and later catches up from the store,
every event once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import openai
import pytest
import uvicorn

from ftserve.api.app import create_app
from ftserve.api.services import Services, build_services
from ftserve.config import ApiKey, Settings
from ftserve.events.messages import make_event
from ftserve.store.open import open_store
from ftserve.store.protocol import Store
from ftserve.store.records import EventsAfter
from tests.api.sse_client import (
    RawStream,
    assert_equals_list,
    message_texts,
    parse_block,
    stream_path,
)
from tests.conftest import API_KEY, chat_rows, database_url_for, free_port, upload

pytestmark = pytest.mark.both_backends  # the [postgres] ids too (tests/conftest.py)

MARK = "a mark written by the test"


class CountingStore:
    """The server's real store, with its ``events_after`` calls counted at the seam."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def events_after(
        self, organization: str | None, job_id: str, *, after: str | None, limit: int
    ) -> EventsAfter | None:
        with self._lock:
            self.reads += 1
        return self._inner.events_after(organization, job_id, after=after, limit=limit)


@dataclass
class InProcess:
    port: int
    services: Services
    store: CountingStore
    settings: Settings

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(api_key=API_KEY, base_url=self.root + "/v1", max_retries=0)

    def new_job(self) -> str:
        """A job left in validating_files (no validator runs here): its log stays open."""
        with self.client() as client:
            fid = upload(client, chat_rows(12))
            return client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=fid).id


@pytest.fixture
def in_process(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[InProcess]:
    settings = Settings(
        data_dir=tmp_path / "data",
        api_keys=(ApiKey(API_KEY, "personal"),),
        database_url=database_url_for(request, backend),
        workers=0,
        inference=False,
        events_heartbeat=30.0,  # no heartbeats in the counts
    )
    inner = open_store(settings)
    store = CountingStore(inner)
    services = build_services(settings, store=cast(Store, store))
    app = create_app(settings, services, background=False)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ws="none",
            timeout_graceful_shutdown=5,  # a stream a failed test left open
        )
    )
    thread = threading.Thread(target=server.run, name="in-process-ftserve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield InProcess(port, services, store, settings)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive()
        inner.close()


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def wait_quiet(store: CountingStore, quiet: float = 0.7) -> int:
    """Until the store has not been read for ``quiet`` seconds; the reads then."""
    reads, since = store.reads, time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.05)
        if store.reads != reads:
            reads, since = store.reads, time.monotonic()
    return reads


STREAMS = 500


def test_500_streams_on_one_job_cost_one_store_read_per_batch(in_process: InProcess) -> None:
    srv = in_process
    job_id = srv.new_job()
    writer = open_store(srv.settings)  # another connection, as a worker's would be
    received: list[list[str]] = [[] for _ in range(STREAMS)]

    request = (
        f"GET {stream_path(job_id)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {API_KEY}\r\n\r\n"
    ).encode()

    async def follow(i: int) -> None:
        """One stream on a connection of its own, read with asyncio's streams (a pool of 500
        connections in one HTTP client library spends more time managing the pool than the
        server spends on the streams)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 "), head
            assert b"transfer-encoding: chunked" in head.lower()
            buffer = b""
            while size := int(await reader.readuntil(b"\r\n"), 16):
                buffer += (await reader.readexactly(size + 2))[:-2]
                *blocks, buffer = buffer.split(b"\n\n")
                for block in blocks:
                    message = parse_block(block)
                    if message is not None:
                        received[i].append(str(message.id))
        finally:
            writer.close()

    async def everyone_has(n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while min(len(r) for r in received) < n:
            assert time.monotonic() < deadline, sorted(len(r) for r in received)[:5]
            await asyncio.sleep(0.01)

    async def main() -> None:
        tasks = [asyncio.ensure_future(follow(i)) for i in range(STREAMS)]
        try:
            await everyone_has(2)  # created, validating
            at_connect = await asyncio.to_thread(wait_quiet, srv.store)
            # Each stream read its replay itself, once; the hub read at most a few times more.
            assert STREAMS <= at_connect <= STREAMS + 4, at_connect
            assert srv.services.events.hub.watched() == 1
            for batch in range(3):
                before = srv.store.reads
                await asyncio.to_thread(
                    writer.append_events,
                    job_id,
                    [make_event(f"batch {batch} event {k}") for k in range(3)],
                )
                await everyone_has(2 + 3 * (batch + 1))
                after = await asyncio.to_thread(wait_quiet, srv.store, 0.3)
                assert after - before == 1, f"batch {batch}: {after - before} store reads"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    try:
        asyncio.run(main())
    finally:
        writer.close()
    expected = received[0]
    assert len(expected) == 11 and len(set(expected)) == 11
    assert all(r == expected for r in received)
    # The clients went away: every stream's work ended with them.
    wait_until(lambda: srv.services.events.hub.watched() == 0, "the streams to close", 5.0)


def test_a_client_that_stops_reading_falls_behind_and_catches_up(in_process: InProcess) -> None:
    srv = in_process
    hub = srv.services.events.hub
    hub.queue_limit = 4  # frames; each batch below is 2
    hub.page = 16  # reads of several pages, by the watch and by the catching-up stream
    job_id = srv.new_job()
    slow = RawStream(srv.port, stream_path(job_id), rcvbuf=4096)
    fast = RawStream(srv.port, stream_path(job_id))
    writer = open_store(srv.settings)
    try:
        slow.read_until(lambda s: s.count() == 2, timeout=30)
        fast.read_until(lambda s: s.count() == 2, timeout=30)
        # 128 events of 64 KiB: far more than the socket buffers hold, so the server's writes
        # to the slow client block, and its queue overflows.
        big = "x" * (64 << 10)
        batches = [[make_event(f"{b}.{k} {big}") for k in range(2)] for b in range(64)]

        def append_all() -> None:
            for batch in batches:
                writer.append_events(job_id, batch)

        appender = threading.Thread(target=append_all)
        appender.start()
        try:
            fast.read_until(lambda s: s.count() == 2 + 128, timeout=120)
        finally:
            appender.join()
        assert hub.overflows >= 1
        # The slow client read nothing meanwhile; now it reads everything, each event once.
        slow.read_until(lambda s: s.count() == 2 + 128, timeout=120)
        # Nothing more: an event written now is the next message each stream gets.
        writer.append_events(job_id, [make_event(MARK)])
        for stream in (slow, fast):
            stream.read_until(lambda s: s.count() >= 2 + 128 + 1, timeout=30)
            assert message_texts(stream.messages())[2 + 128 :] == [MARK]
    finally:
        slow.close()
        fast.close()
        writer.close()
    for stream in (fast, slow):
        assert_equals_list(srv.root, job_id, stream.messages())
