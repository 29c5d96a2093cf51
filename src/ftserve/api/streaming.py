"""The one streamed response behind both server-sent-event streams (completions and job events).

It ends the stream's work as soon as the client goes away: it watches the ASGI ``receive``
channel for ``http.disconnect`` while the stream waits for its next chunk, not only when it next
writes (a generation may think for a while; a paused job's stream writes only heartbeats). And
it always closes the chunk iterator, so whatever produces the chunks (a generation, a place in a
job's log) is let go whether the stream ended, failed or was abandoned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

MEDIA_TYPE = "text/event-stream; charset=utf-8"


class ChunkStream(Response):
    def __init__(
        self,
        chunks: AsyncIterable[bytes],
        *,
        headers: Mapping[str, str],
        log: logging.Logger,
        what: str,
        ends_early_on: tuple[type[Exception], ...] = (),
    ) -> None:
        """``ends_early_on``: failures of the chunk source after the 200 went out that only end
        the stream (logged as a warning), for streams whose client resumes by itself."""
        self.chunks = chunks
        self.status_code = 200
        self.background = None
        self._log = log
        self._what = what
        self._ends_early_on = ends_early_on
        self.init_headers({"cache-control": "no-cache", **headers})
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
            except self._ends_early_on as exc:
                self._log.warning("%s ended early: %s", self._what, exc)
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
                    self._log.exception("%s failed", self._what)
            aclose = getattr(self.chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
