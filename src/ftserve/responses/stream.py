"""``stream: true``: OpenAI's event sequence, each event ``event: <type>`` and ``data: {…}``
with its ``sequence_number`` (from 0, one per event), no ``[DONE]``.

``response.created``, ``response.in_progress``; the assistant's text as it is generated
(``response.output_item.added``, ``response.content_part.added``, one
``response.output_text.delta`` per piece, ``response.output_text.done``,
``response.content_part.done``, ``response.output_item.done``); then ``response.completed``
(``response.incomplete`` at ``max_output_tokens``). With function tools the answer is parsed
for calls once it is whole (a call is only a call once its closing tag is written), so its text
and calls come at the end, each call as ``response.function_call_arguments.delta``/``.done``.
An error after the stream started ends it with ``response.failed``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from ..api.streaming import ChunkStream
from ..errors import InferenceFailed
from ..inference.client import Stream
from ..inference.protocol import FinishReason, Piece
from .build import Draft, status_of
from .items import item_id
from .schemas import output_message, output_text, usage

Json = dict[str, Any]
log = logging.getLogger("ftserve.responses")
Save = Callable[[Json], Awaitable[None]]


class ResponseEventStream(ChunkStream):
    def __init__(self, events: AsyncIterator[bytes]) -> None:
        super().__init__(events, headers={}, log=log, what="a response stream")


class _Events:
    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, **members: Any) -> bytes:
        body = {"type": kind, "sequence_number": self.sequence, **members}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"


def _text_events(ev: _Events, index: int, item: Json) -> list[bytes]:
    """A whole message item's events (text known up front: the tool-call case)."""
    text = item["content"][0]["text"] if item["content"] else ""
    opened = output_message(item["id"], None, "in_progress")
    ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
    out = [ev("response.output_item.added", output_index=index, item=opened)]
    out.append(ev("response.content_part.added", **ids, part=output_text("")))
    if text:
        out.append(ev("response.output_text.delta", **ids, delta=text, logprobs=[]))
    out.append(ev("response.output_text.done", **ids, text=text, logprobs=[]))
    out.append(ev("response.content_part.done", **ids, part=output_text(text)))
    out.append(ev("response.output_item.done", output_index=index, item=item))
    return out


def _call_events(ev: _Events, index: int, item: Json) -> list[bytes]:
    opened = {**item, "status": "in_progress", "arguments": ""}
    ids = {"item_id": item["id"], "output_index": index}
    return [
        ev("response.output_item.added", output_index=index, item=opened),
        ev("response.function_call_arguments.delta", **ids, delta=item["arguments"]),
        ev("response.function_call_arguments.done", **ids, arguments=item["arguments"]),
        ev("response.output_item.done", output_index=index, item=item),
    ]


async def response_events(stream: Stream, draft: Draft, save: Save) -> AsyncIterator[bytes]:
    ev = _Events()
    try:
        yield ev("response.created", response=draft.object("in_progress", []))
        yield ev("response.in_progress", response=draft.object("in_progress", []))
        msg_id = item_id("msg_")
        ids = {"item_id": msg_id, "output_index": 0, "content_index": 0}
        if not draft.tools:
            opened = output_message(msg_id, None, "in_progress")
            yield ev("response.output_item.added", output_index=0, item=opened)
            yield ev("response.content_part.added", **ids, part=output_text(""))
        texts: list[str] = []
        finish: FinishReason = "stop"
        completion = 0
        async for msg in stream:
            if isinstance(msg, Piece):
                if msg.text:
                    texts.append(msg.text)
                    if not draft.tools:
                        yield ev("response.output_text.delta", **ids, delta=msg.text, logprobs=[])
                continue
            finish, completion = msg.finish_reason, msg.completion_tokens
        text = "".join(texts)
        status = status_of(finish)
        if draft.tools:
            output = draft.output(text, finish)
            for index, item in enumerate(output):
                if item["type"] == "message":
                    for chunk in _text_events(ev, index, item):
                        yield chunk
                else:
                    for chunk in _call_events(ev, index, item):
                        yield chunk
        else:
            item = output_message(msg_id, text, status)
            output = [item]
            yield ev("response.output_text.done", **ids, text=text, logprobs=[])
            yield ev("response.content_part.done", **ids, part=output_text(text))
            yield ev("response.output_item.done", output_index=0, item=item)
        done = draft.object(status, output, usage(stream.accepted.prompt_tokens, completion))
        # Stored before the client hears it is done, so a follow-up can continue it at once.
        await save(done)
        yield ev(f"response.{status}", response=done)
    except InferenceFailed as exc:
        failed = draft.object("failed", [], error={"code": "server_error", "message": exc.message})
        await save(failed)
        yield ev("response.failed", response=failed)
    finally:
        stream.cancel()
