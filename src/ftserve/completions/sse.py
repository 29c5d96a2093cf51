"""Data-only server-sent events, as OpenAI streams them: ``data: {json}\\n\\n`` per chunk, no
``event:`` lines, ``data: [DONE]\\n\\n`` last, then the body ends.

:class:`EventStream` is the shared :class:`~ftserve.api.streaming.ChunkStream`: it watches for the
client going away while it waits for the next chunk and always closes the chunk iterator, so the
generation behind it is cancelled whether the stream ended, failed or was abandoned.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

from ..api.streaming import ChunkStream
from ..errors import ApiError

log = logging.getLogger("ftserve.completions")
DONE = b"data: [DONE]\n\n"


def event(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def error_event(exc: ApiError) -> bytes:
    """The in-band error a stream ends with once its 200 has been sent."""
    return event(exc.body())


class EventStream(ChunkStream):
    def __init__(self, events: AsyncIterator[bytes]) -> None:
        super().__init__(events, headers={}, log=log, what="a completion stream")
