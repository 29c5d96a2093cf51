"""``kill -9`` of an API server while uploads are in flight.

Two uploads are under way when the server is killed: a large one that a raw HTTP client
streams slowly (part of its body is on the server's disk), and a complete one whose contents
the server is still checking (all of it on disk, no row yet). After a restart on the same data
dir and store (later than ``FTSERVE_UPLOAD_GRACE_SECONDS``, set to 1 s here), neither is visible
through the API, the file uploaded before them is intact, and
the space the cut-off uploads took is reclaimed: the blob dir holds no more than the listed
files' bytes, and its tmp dir is empty.

Asserted through behaviour only (the API, and disk usage of ``data_dir/blobs``), not through how
the blob store names its files.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import API_KEY, Server, chat_rows, database_url_for, jsonl, upload
from tests.reliability.conftest import tree_bytes, tree_files, wait_for

# [sqlite] and [postgres] (tests/conftest.py).
# Servers and workers started (up to 120 s each on a loaded machine) and a job waited out.
pytestmark = [pytest.mark.both_backends, pytest.mark.timeout(600)]

MiB = 1 << 20
SLOW_DECLARED = 64 * MiB  # the slow upload's announced size; about a quarter is sent
SLOW_ON_DISK = 8 * MiB  # how much of it the server must have written before the kill
CHECKED_SIZE = 24 * MiB  # the complete upload whose JSONL check (~1.5 s) the kill interrupts
SLACK = 64 * 1024  # directory entries and the like, never a cut-off upload's megabytes
# A start reclaims the leftovers of uploads older than this (default a day: younger ones may be
# uploads under way in another process sharing the blob store); the restart comes later.
GRACE_SECONDS = 1


@pytest.fixture
def api(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[Server]:
    srv = Server(
        tmp_path / "data",
        env={"FTSERVE_WORKERS": "0", "FTSERVE_UPLOAD_GRACE_SECONDS": str(GRACE_SECONDS)},
        database_url=database_url_for(request, backend),
    )
    yield srv
    srv.stop()


class RawUpload:
    """``POST /v1/files`` over a plain socket, so the body can be sent at any pace and the
    connection dropped at any point."""

    BOUNDARY = "ftserve-reliability-boundary"

    def __init__(self, server: Server, content_size: int) -> None:
        b = self.BOUNDARY
        self.head = (
            f'--{b}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
            f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n'
            "Content-Type: application/jsonl\r\n\r\n"
        ).encode()
        self.tail = f"\r\n--{b}--\r\n".encode()
        length = len(self.head) + content_size + len(self.tail)
        request = (
            f"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Authorization: Bearer {API_KEY}\r\n"
            f"Content-Type: multipart/form-data; boundary={b}\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        self.sock.sendall(request + self.head)
        self.sent = 0

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def finish(self) -> None:
        self.sock.sendall(self.tail)

    def answered(self) -> bytes:
        """What the server sent back so far, without waiting."""
        self.sock.setblocking(False)
        try:
            return self.sock.recv(65536)
        except BlockingIOError:
            return b""
        finally:
            self.sock.setblocking(True)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _lines(size: int) -> bytes:
    """Valid chat JSONL of at least ``size`` bytes."""
    row = jsonl(chat_rows(1))
    return row * -(-size // len(row))


def test_kill_9_during_uploads_leaves_nothing_behind(api: Server) -> None:
    api.start(timeout=120)
    client = api.client()
    kept_bytes = jsonl(chat_rows(12))
    kept = client.files.create(file=("kept.jsonl", kept_bytes), purpose="fine-tune")
    blobs = api.data_dir / "blobs"
    baseline = tree_bytes(blobs)
    assert baseline >= len(kept_bytes)

    slow = RawUpload(api, SLOW_DECLARED)
    content = _lines(CHECKED_SIZE)
    checked = RawUpload(api, len(content))
    stop = threading.Event()

    def stream_slowly() -> None:
        chunk = _lines(256 * 1024)
        with contextlib.suppress(OSError):
            while not stop.is_set() and slow.sent + len(chunk) < SLOW_DECLARED:
                slow.send(chunk)
                time.sleep(0.02)

    streamer = threading.Thread(target=stream_slowly, daemon=True)
    streamer.start()
    try:
        wait_for(
            "the slow upload to reach the server's disk",
            lambda: tree_bytes(blobs) - baseline >= SLOW_ON_DISK,
            timeout=60,
        )
        stop.set()  # it stays in flight, its connection open, its body unfinished
        streamer.join(10)
        time.sleep(0.1)
        before_checked = tree_bytes(blobs)
        checked.send(content)
        checked.finish()
        # All of it received (on disk); the check of its lines takes about a second more.
        wait_for(
            "the complete upload to reach the server's disk",
            lambda: tree_bytes(blobs) - before_checked >= len(content),
            timeout=60,
            interval=0.01,
        )
        time.sleep(0.1)
        answered = checked.answered()
        api.stop(signal.SIGKILL)
        during = tree_bytes(blobs) - baseline
    finally:
        stop.set()
        streamer.join(10)
        slow.close()
        checked.close()

    time.sleep(GRACE_SECONDS + 1)
    api.start(timeout=120)
    client = api.client()
    listed = list(client.files.list())
    assert kept.id in {f.id for f in listed}
    assert client.files.retrieve(kept.id).bytes == len(kept_bytes)
    assert client.files.content(kept.id).read() == kept_bytes
    # Nothing half-written is listed: the slow upload never is; the checked one only whole,
    # and only if its row committed before the kill (then it may have been answered, too).
    others = [f for f in listed if f.id != kept.id]
    assert len(others) <= 1, listed
    for f in others:
        assert (f.filename, f.bytes) == ("big.jsonl", len(content)), f
        assert (
            hashlib.sha256(client.files.content(f.id).read()).digest()
            == hashlib.sha256(content).digest()
        )
    if answered.startswith(b"HTTP/1.1 200"):
        assert len(others) == 1, "an upload answered 200 was lost"
    # The space is reclaimed by the start: no more on disk than the files the API lists.
    on_disk = tree_bytes(blobs)
    assert on_disk <= sum(f.bytes for f in listed) + SLACK, tree_files(blobs)
    tmp = blobs / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir()), tree_files(tmp)
    print(
        f"\non disk at the kill: {during / MiB:.1f} MiB in flight "
        f"(the complete upload {'listed' if others else 'not listed'}); after the restart: "
        f"{on_disk / 1024:.1f} KiB for {len(listed)} listed file(s)"
    )
    # And the server takes uploads as before.
    again = upload(client, chat_rows(10), name="after.jsonl")
    assert client.files.retrieve(again).status == "processed"
