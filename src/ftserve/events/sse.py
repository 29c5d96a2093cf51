"""The wire form of a job's live events: server-sent events (WHATWG HTML, "Server-sent events").

One message per event, ``id: <event id>`` then ``data: <the stored body>`` then a blank line; a
heartbeat is the comment ``: ping``. The body is the exact bytes the list endpoint returns for
the event (stored once, at append). A browser's ``EventSource`` and the CLI both resend the last
``id`` they saw as ``Last-Event-ID`` when they reconnect.

:class:`SseResponse` is the shared :class:`~ftserve.api.streaming.ChunkStream`, which ends the
stream's work as soon as the client goes away (a paused job's stream may write nothing but
heartbeats for a long time).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Protocol

from ..api.streaming import ChunkStream
from ..errors import StoreError

log = logging.getLogger("ftserve.events")

PING = b": ping\n\n"


def message(event_id: str, body: bytes) -> bytes:
    """One SSE message. Stored bodies are compact JSON on one line; should one ever hold a line
    break, each line becomes a ``data:`` line of its own, which a reader joins back with LF."""
    if b"\n" in body or b"\r" in body:
        data = b"".join(b"data: " + line + b"\n" for line in body.splitlines())
    else:
        data = b"data: " + body + b"\n"
    return b"id: " + event_id.encode() + b"\n" + data + b"\n"


class Chunks(Protocol):
    """What the response sends: chunks of messages, closed (``aclose``) however it ends."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class SseResponse(ChunkStream):
    def __init__(self, chunks: Chunks) -> None:
        # No caching anywhere on the way; nginx would otherwise buffer the stream. A store
        # failure after the 200 can only end the stream: the client reconnects with
        # Last-Event-ID and misses nothing.
        super().__init__(
            chunks,
            headers={"x-accel-buffering": "no"},
            log=log,
            what="an event stream",
            ends_early_on=(StoreError,),
        )
