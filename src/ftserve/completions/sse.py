"""Data-only server-sent events, as OpenAI streams them: ``data: {json}\\n\\n`` per chunk, no
``event:`` lines, ``data: [DONE]\\n\\n`` last, then the body ends.

:class:`EventStream` watches for the client going away while it waits for the next chunk (not
only when it next writes), and always closes the chunk iterator, so the generation behind it is
cancelled whether the stream ended, failed or was abandoned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..errors import ApiError

log = logging.getLogger("ftserve.completions")
MEDIA_TYPE = "text/event-stream; charset=utf-8"
DONE = b"data: [DONE]\n\n"


def event(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def error_event(exc: ApiError) -> bytes:
    """The in-band error a stream ends with once its 200 has been sent."""
    return event(exc.body())


class EventStream(Response):
    def __init__(self, events: AsyncIterator[bytes]) -> None:
        self.events = events
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-cache"})
        self.headers["content-type"] = MEDIA_TYPE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        async def pump() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for chunk in self.events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        watcher = asyncio.ensure_future(watch())
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
                    log.exception("a completion stream failed")
            aclose = getattr(self.events, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
