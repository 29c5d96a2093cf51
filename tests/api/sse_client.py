"""A raw HTTP/1.1 client for the live event stream (``GET .../events?stream=true``): the bytes
on the wire as ``curl -N`` shows them, de-chunked and parsed by hand as they arrive, and the
checks the stream tests share (the stream equals the list, byte for byte)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import orjson

from tests.conftest import API_KEY


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
