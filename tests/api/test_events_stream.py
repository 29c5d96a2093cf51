"""The live event stream: ``GET /fine_tuning/jobs/{id}/events?stream=true``.

Against real servers: one that trains ``ftserve-tiny`` (a stream opened while the job trains,
reconnects with ``Last-Event-ID`` cut at random bytes, a paused job's stream kept open with
heartbeats until the resume), the API-only ``server`` fixture (errors before the stream starts,
the wire framing read byte by byte from a socket) and, for what must be counted, the app served
in this process by uvicorn over a store whose reads are counted at the Store seam: 500 streams
on one job cost one store read per new batch of events, and a client that stops reading falls
behind its bounded queue and later catches up from the store, every event once.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx2 as httpx
import openai
import orjson
import pytest
import uvicorn

from ftserve.api.app import create_app
from ftserve.api.services import Services, build_services
from ftserve.config import ApiKey, Settings
from ftserve.events.messages import make_event
from ftserve.store.open import open_store
from ftserve.store.protocol import Store
from ftserve.store.records import EventsAfter
from tests.conftest import (
    API_KEY,
    OTHER_ORG_KEY,
    Server,
    chat_rows,
    database_url_for,
    free_port,
    upload,
    wait_status,
)

pytestmark = pytest.mark.both_backends  # the [postgres] ids too (tests/conftest.py)

HEARTBEAT = 0.25  # FTSERVE_EVENTS_HEARTBEAT of the training server
SUCCEEDED = "The job has successfully completed"


# -- a raw HTTP/1.1 client: the bytes on the wire, as `curl -N` shows them ----------------------


@dataclass
class Message:
    id: str | None
    data: bytes


def parse_block(block: bytes) -> Message | None:
    """One SSE message (None for the heartbeat comment); anything else is a framing error."""
    if block == b": ping":
        return None
    event_id, data = None, []
    for line in block.split(b"\n"):
        name, _, value = line.partition(b": ")
        if name == b"id":
            event_id = value.decode()
        elif name == b"data":
            data.append(value)
        else:
            raise AssertionError(f"unexpected line {line!r} in {block!r}")
    return Message(event_id, b"\n".join(data))


class RawStream:
    """A GET read from a plain socket, de-chunked and parsed by hand as it arrives."""

    def __init__(
        self,
        port: int,
        path: str,
        headers: dict[str, str] | None = None,
        *,
        key: str | None = API_KEY,
        rcvbuf: int | None = None,
    ) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:  # set before connecting, so the window stays that small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(60)
        self.sock.connect(("127.0.0.1", port))
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Accept: text/event-stream"]
        if key is not None:
            lines.append(f"Authorization: Bearer {key}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._pending = bytearray()  # received, not yet de-chunked
        self.body = bytearray()
        self.ended = False  # the server sent the last chunk: it closed the stream
        self._messages: list[Message] = []
        self._pings = 0
        self._scanned = 0
        while b"\r\n\r\n" not in self._pending:
            self._recv_raw()
        head, _, rest = bytes(self._pending).partition(b"\r\n\r\n")
        self._pending = bytearray(rest)
        self.head = head
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status_line = status_line
        self.status = int(status_line.split()[1])
        self.headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.chunked = self.headers.get("transfer-encoding") == "chunked"
        if self.chunked:
            self._dechunk()
        else:
            length = int(self.headers.get("content-length", "0"))
            while len(self._pending) < length:
                self._recv_raw()
            self.body, self.ended = self._pending[:length], True

    def _recv_raw(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise AssertionError(f"connection closed without the last chunk: {self.body[-300:]!r}")
        self._pending += data

    def _dechunk(self) -> None:
        while not self.ended:
            size_end = self._pending.find(b"\r\n")
            if size_end < 0:
                break
            size = int(self._pending[:size_end], 16)
            if len(self._pending) < size_end + 4 + size:
                break
            start = size_end + 2
            assert self._pending[start + size : start + size + 2] == b"\r\n"
            self.body += self._pending[start : start + size]
            del self._pending[: start + size + 2]
            self.ended = size == 0
        while (end := self.body.find(b"\n\n", self._scanned)) >= 0:
            message = parse_block(bytes(self.body[self._scanned : end]))
            self._scanned = end + 2
            if message is None:
                self._pings += 1
            else:
                self._messages.append(message)

    def recv(self) -> None:
        """Wait for the next bytes of the stream."""
        self._recv_raw()
        self._dechunk()

    def read_until(self, done: Callable[[RawStream], bool], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not done(self):
            assert not self.ended, f"the stream ended early: {self.body[-500:]!r}"
            assert time.monotonic() < deadline, f"timed out: {self.body[-500:]!r}"
            self.recv()

    def read_to_end(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ended:
            assert time.monotonic() < deadline, f"the stream did not end: {self.body[-500:]!r}"
            self.recv()

    def messages(self) -> list[Message]:
        """The complete messages so far (one cut off at the end is not one yet)."""
        return list(self._messages)

    def count(self) -> int:
        return len(self._messages)

    def pings(self) -> int:
        return self._pings

    def json(self) -> Any:
        return orjson.loads(bytes(self.body))

    def close(self) -> None:
        self.sock.close()


def stream_path(job_id: str, prefix: str = "/v1", query: str = "stream=true") -> str:
    return f"{prefix}/fine_tuning/jobs/{job_id}/events?{query}"


def list_body(srv_root: str, job_id: str) -> bytes:
    """The list endpoint's raw body: every event, newest first."""
    resp = httpx.get(
        f"{srv_root}/v1/fine_tuning/jobs/{job_id}/events",
        params={"limit": 10_000},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert resp.status_code == 200
    assert resp.json()["has_more"] is False
    return resp.content


def assert_equals_list(srv_root: str, job_id: str, messages: list[Message]) -> None:
    """The stream's messages are the list's events reversed, byte for byte, ids matching."""
    for m in messages:
        assert m.id == orjson.loads(m.data)["id"]
    ids = [m.id for m in messages]
    assert len(ids) == len(set(ids)), "an event was sent twice"
    oldest_first = b",".join(m.data for m in reversed(messages))
    assert list_body(srv_root, job_id) == b'{"object":"list","data":[' + oldest_first + (
        b'],"has_more":false}'
    )


def message_texts(messages: list[Message]) -> list[str]:
    return [orjson.loads(m.data)["message"] for m in messages]


def steps_in(stream: RawStream) -> int:
    return sum(1 for t in message_texts(stream.messages()) if t.startswith("Step "))


def has_text(stream: RawStream, text: str) -> bool:
    return any(t.startswith(text) for t in message_texts(stream.messages()))


def assert_sse_headers(stream: RawStream) -> None:
    assert stream.status == 200, stream.head + bytes(stream.body[:500])
    assert stream.headers["content-type"].split(";")[0] == "text/event-stream"
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.headers["x-request-id"].startswith("req_")
    assert stream.chunked


# -- a training server --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trainer(
    tmp_path_factory: pytest.TempPathFactory, backend: str, request: pytest.FixtureRequest
) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp(f"stream-{backend}") / "data",
        env={
            "FTSERVE_WORKERS": "1",
            "FTSERVE_INFERENCE": "0",
            "FTSERVE_EVENTS_HEARTBEAT": str(HEARTBEAT),
        },
        database_url=database_url_for(request, backend),
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def training_file(trainer: Server) -> str:
    return upload(trainer.client(), chat_rows(20))


def new_job(srv: Server, file_id: str, **hyperparameters: int) -> str:
    client = srv.client(strict=False)  # strict mode's status Literal lacks "paused"
    return client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=file_id, seed=3, hyperparameters=hyperparameters
    ).id


def test_a_stream_follows_training_and_ends_after_the_terminal_event(
    trainer: Server, training_file: str
) -> None:
    client = trainer.client()
    job_id = new_job(trainer, training_file, n_epochs=3, batch_size=2)  # 30 steps
    stream = RawStream(trainer.port, stream_path(job_id))
    try:
        assert_sse_headers(stream)
        # The events arrive as they happen: the first step is there while the job trains.
        stream.read_until(lambda s: steps_in(s) >= 1)
        assert client.fine_tuning.jobs.retrieve(job_id).status == "running"
        stream.read_to_end()
    finally:
        stream.close()
    messages = stream.messages()
    texts = message_texts(messages)
    assert texts[0] == f"Created fine-tuning job: {job_id}"
    assert texts[-1] == SUCCEEDED
    assert sum(t.startswith("Step ") for t in texts) == 30
    assert client.fine_tuning.jobs.retrieve(job_id).status == "succeeded"
    assert_equals_list(trainer.root, job_id, messages)

    # A finished job's stream replays everything and closes, under every prefix.
    for prefix, query in (
        ("/v1", "stream=true"),
        ("/openai/v1", "stream=true"),
        ("/openai", "api-version=2024-10-21&stream=true"),
    ):
        replay = RawStream(trainer.port, stream_path(job_id, prefix, query))
        try:
            assert_sse_headers(replay)
            replay.read_to_end(timeout=30)
        finally:
            replay.close()
        assert replay.body == stream.body.replace(b": ping\n\n", b""), prefix
        if prefix != "/v1":
            assert replay.headers["apim-request-id"] == replay.headers["x-request-id"]

    # After the terminal event nothing follows; after a middle one, exactly the rest.
    last = RawStream(trainer.port, stream_path(job_id), {"Last-Event-ID": str(messages[-1].id)})
    middle = RawStream(trainer.port, stream_path(job_id), {"Last-Event-ID": str(messages[9].id)})
    try:
        last.read_to_end(timeout=30)
        middle.read_to_end(timeout=30)
    finally:
        last.close()
        middle.close()
    assert last.status == 200 and last.messages() == []
    assert [m.id for m in middle.messages()] == [m.id for m in messages[10:]]


def test_reconnects_with_last_event_id_get_exactly_the_missed_events(
    trainer: Server, training_file: str
) -> None:
    """The connection is cut at random bytes (mid-message too) while the job trains; each
    reconnect sends the id of the last complete message received."""
    client = trainer.client()
    job_id = new_job(trainer, training_file, n_epochs=5, batch_size=1)  # 100 steps
    wait_status(client, job_id, {"running"}, timeout=120)
    rng = random.Random(2024)
    received: list[Message] = []
    statuses_at_reconnect: list[str] = []
    while True:
        headers = {"Last-Event-ID": str(received[-1].id)} if received else {}
        stream = RawStream(trainer.port, stream_path(job_id), headers)
        try:
            assert_sse_headers(stream)
            cut_after = rng.randint(1, 2500)  # bytes of body
            while not stream.ended and len(stream.body) < cut_after:
                stream.recv()
        finally:
            stream.close()  # abruptly, whatever was in flight
        got = stream.messages()
        if got:
            # Each connection starts right after the id it was given: none twice, none lost.
            assert got[0].id not in {m.id for m in received}
        received += got
        if stream.ended:
            break
        statuses_at_reconnect.append(client.fine_tuning.jobs.retrieve(job_id).status)
    assert "running" in statuses_at_reconnect, statuses_at_reconnect  # cuts fell mid-job
    assert len(statuses_at_reconnect) >= 5
    assert message_texts(received)[-1] == SUCCEEDED
    assert_equals_list(trainer.root, job_id, received)


def test_a_paused_job_keeps_its_stream_open_with_heartbeats_until_resumed(
    trainer: Server, training_file: str
) -> None:
    client = trainer.client(strict=False)
    job_id = new_job(trainer, training_file, n_epochs=40, batch_size=1)  # 800 steps
    stream = RawStream(trainer.port, stream_path(job_id))
    try:
        stream.read_until(lambda s: steps_in(s) >= 3)
        assert client.fine_tuning.jobs.pause(job_id).status == "paused"
        stream.read_until(lambda s: has_text(s, "Fine-tuning job paused"))
        assert message_texts(stream.messages())[-1] == "Fine-tuning job paused"
        # Paused is not final: the stream stays open, and only heartbeats come, on time.
        seen, steps, pings_before = stream.count(), steps_in(stream), stream.pings()
        started = time.monotonic()
        stream.read_until(lambda s: s.pings() >= pings_before + 4, timeout=10 * HEARTBEAT + 10)
        elapsed = time.monotonic() - started
        assert 3 * HEARTBEAT * 0.8 < elapsed < 4 * HEARTBEAT + 2.0, elapsed
        assert not stream.ended and stream.count() == seen
        assert client.fine_tuning.jobs.retrieve(job_id).status == "paused"

        client.fine_tuning.jobs.resume(job_id)
        stream.read_until(lambda s: steps_in(s) >= steps + 3)
        assert has_text(stream, "Fine-tuning job resumed, moving job to queued state")
        assert has_text(stream, "Fine-tuning job resumed from the checkpoint")
        client.fine_tuning.jobs.cancel(job_id)
        stream.read_to_end()
    finally:
        stream.close()
    messages = stream.messages()
    assert message_texts(messages)[-1] == "Fine-tuning job cancelled"
    assert_equals_list(trainer.root, job_id, messages)


# -- errors and framing, on the API-only server ------------------------------------------------


@pytest.fixture(scope="module")
def queued_job(server: Server) -> str:
    """A job that stays queued (the `server` fixture runs no worker)."""
    client = server.client()
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=upload(client, chat_rows(12))
    )
    assert wait_status(client, job.id, {"queued"}) == "queued"
    return job.id


@pytest.fixture(scope="module")
def cancelled_job(server: Server) -> str:
    client = server.client()
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=upload(client, chat_rows(12))
    )
    wait_status(client, job.id, {"queued"})
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    return job.id


def error_of(stream: RawStream) -> dict[str, Any]:
    assert stream.headers["content-type"] == "application/json"
    assert stream.headers["x-request-id"].startswith("req_")
    error: dict[str, Any] = stream.json()["error"]
    return error


def raw_get(server: Server, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
    stream = RawStream(server.port, path, headers, **kw)
    stream.read_to_end(timeout=30)
    stream.close()
    return stream


def test_errors_come_before_the_stream_as_json(
    server: Server, queued_job: str, cancelled_job: str
) -> None:
    unknown = raw_get(server, stream_path("ftjob-nope"))
    listed = raw_get(server, "/v1/fine_tuning/jobs/ftjob-nope/events")
    assert unknown.status == listed.status == 404
    assert error_of(unknown) == error_of(listed)
    assert error_of(unknown)["param"] == "fine_tune_id"
    # Another organization's job is unknown too, whatever Last-Event-ID says.
    other = raw_get(
        server, stream_path(queued_job), {"Last-Event-ID": "ftevent-x"}, key=OTHER_ORG_KEY
    )
    assert other.status == 404 and error_of(other)["code"] == "fine_tune_not_found"

    nokey = raw_get(server, stream_path(queued_job), key=None)
    assert nokey.status == 401 and error_of(nokey)["type"] == "invalid_request_error"
    assert nokey.headers["www-authenticate"].startswith("Bearer")

    event_of_other_job = server.client().fine_tuning.jobs.list_events(cancelled_job).data[0].id
    cases: list[tuple[str, dict[str, str], str]] = [
        ("stream=true&after=ftevent-x", {}, "after"),
        ("stream=true&limit=5", {}, "limit"),
        ("stream=true&limit=0", {}, "limit"),
        ("stream=yes", {}, "stream"),
        ("stream=True", {}, "stream"),
        ("stream=1", {}, "stream"),
        ("stream=", {}, "stream"),
        ("stream=true", {"Last-Event-ID": "ftevent-nope"}, "Last-Event-ID"),
        ("stream=true", {"Last-Event-ID": event_of_other_job}, "Last-Event-ID"),
    ]
    for query, headers, param in cases:
        resp = raw_get(server, stream_path(queued_job, query=query), headers)
        assert resp.status == 400, (query, headers, resp.body)
        error = error_of(resp)
        assert error["param"] == param, (query, error)
        assert error["type"] == "invalid_request_error"
    for prefix, query in (("/openai/v1", "stream=yes"), ("/openai", "api-version=x&stream=yes")):
        resp = raw_get(server, stream_path(queued_job, prefix, query))
        assert resp.status == 400 and error_of(resp)["param"] == "stream"
        assert resp.headers["apim-request-id"] == resp.headers["x-request-id"]


def test_stream_false_is_the_list(server: Server, queued_job: str) -> None:
    plain = raw_get(server, f"/v1/fine_tuning/jobs/{queued_job}/events?limit=2")
    explicit = raw_get(server, stream_path(queued_job, query="stream=false&limit=2"))
    assert plain.status == explicit.status == 200
    assert explicit.headers["content-type"] == "application/json"
    assert explicit.body == plain.body
    assert len(explicit.json()["data"]) == 2
    # Last-Event-ID means nothing to a list.
    with_header = raw_get(
        server, stream_path(queued_job, query="stream=false&limit=2"), {"Last-Event-ID": "x"}
    )
    assert with_header.body == plain.body


MESSAGE = re.compile(
    rb'id: (ftevent-[0-9A-Za-z]{24})\ndata: (\{"object":"fine_tuning\.job\.event"[^\n]*\})\n\n'
)


def test_wire_framing(server: Server, cancelled_job: str) -> None:
    stream = raw_get(server, stream_path(cancelled_job))
    assert stream.status_line == "HTTP/1.1 200 OK"
    assert_sse_headers(stream)
    assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
    # The whole body is messages and nothing else: id line, data line, blank line.
    found = MESSAGE.findall(stream.body)
    assert b"".join(b"id: %s\ndata: %s\n\n" % m for m in found) == stream.body
    assert [orjson.loads(data)["id"].encode() for _, data in found] == [i for i, _ in found]
    assert len(found) == 4  # created, validating, validated, cancelled
    assert_equals_list(server.root, cancelled_job, stream.messages())
    # HEAD: the same headers, no body, no connection held until the job ends.
    head = httpx.head(
        server.root + stream_path(cancelled_job), headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"].startswith("text/event-stream")


def test_a_queued_jobs_stream_stays_open_and_a_disconnect_is_clean(
    server: Server, queued_job: str
) -> None:
    stream = RawStream(server.port, stream_path(queued_job))
    try:
        stream.read_until(lambda s: s.count() == 3, timeout=30)
        time.sleep(0.5)
        stream.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            stream.recv()  # nothing more: the job is queued, its log open
        assert not stream.ended
    finally:
        stream.close()
    # The server is unharmed and the list unchanged.
    assert len(server.client().fine_tuning.jobs.list_events(queued_job).data) == 3


# -- in-process: counted store reads, a slow client ---------------------------------------------


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
        time.sleep(0.3)
        slow.sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            slow.recv()
    finally:
        slow.close()
        fast.close()
        writer.close()
    for stream in (fast, slow):
        assert_equals_list(srv.root, job_id, stream.messages())
