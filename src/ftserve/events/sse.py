"""The wire form of a job's live events: server-sent events (WHATWG HTML, "Server-sent events").

One message per event, ``id: <event id>`` then ``data: <the stored body>`` then a blank line; a
heartbeat is the comment ``: ping``. The body is the exact bytes the list endpoint returns for
the event (stored once, at append). A browser's ``EventSource`` and the CLI both resend the last
``id`` they saw as ``Last-Event-ID`` when they reconnect.

:class:`SseResponse` ends the stream's work as soon as the client goes away: it watches the ASGI
``receive`` channel for ``http.disconnect`` while the stream waits for the next event, not only
when it next writes (a paused job's stream may write nothing but heartbeats for a long time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Protocol

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..errors import StoreError

log = logging.getLogger("ftserve.events")

MEDIA_TYPE = "text/event-stream; charset=utf-8"
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


class SseResponse(Response):
    def __init__(self, chunks: Chunks) -> None:
        self.chunks = chunks
        self.status_code = 200
        self.background = None
        # No caching anywhere on the way; nginx would otherwise buffer the stream.
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no"})
        self.headers["content-type"] = MEDIA_TYPE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def client_gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        async def pump() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            try:
                async for chunk in self.chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except StoreError as exc:
                # The 200 is out: the stream can only end. The client reconnects with
                # Last-Event-ID and misses nothing.
                log.warning("an event stream ended early: the store failed: %s", exc)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        watcher = asyncio.ensure_future(client_gone())
        writer = asyncio.ensure_future(pump())
        try:
            await asyncio.wait({watcher, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (writer, watcher):
                task.cancel()
            for task in (writer, watcher):
                try:
                    await task
                except (asyncio.CancelledError, OSError):
                    pass  # stopped on purpose, or the client went away mid-write
                except Exception:
                    log.exception("an event stream failed")
            with contextlib.suppress(Exception):
                await self.chunks.aclose()
