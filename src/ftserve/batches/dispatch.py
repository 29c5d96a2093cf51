"""One batch line, answered by the same route a live request reaches: an in-process ASGI call of
the server's own app, as the batch's organization, at the batch priority. The line's answer is
the live endpoint's answer (status, body, request id), whatever the endpoint — chat, legacy
completions, or any other route the server has (``/v1/responses`` where it is served)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Scope

from ..api.context import IN_PROCESS_ORGANIZATION
from ..inference.client import PRIORITY
from ..inference.protocol import BATCH_PRIORITY


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    request_id: str | None
    body: bytes


def _scope(organization: str, path: str, body: bytes) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": None,
        "server": ("ftserve-batch", 0),
        "state": {},
        IN_PROCESS_ORGANIZATION: organization,
    }


async def call(
    app: ASGIApp, organization: str, path: str, body: bytes, gone: asyncio.Event
) -> Answer:
    """POST ``body`` to ``path``. Setting ``gone`` is the client going away: the endpoint stops
    generating and the answer is its 499."""
    PRIORITY.set(BATCH_PRIORITY)  # this task's context: the line's generation waits for live
    sent = False
    status = 500
    request_id: str | None = None
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, request_id
        if message["type"] == "http.response.start":
            status = int(message["status"])
            for key, value in message.get("headers", []):
                if key == b"x-request-id":
                    request_id = value.decode()
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(_scope(organization, path, body), receive, send)
    return Answer(status, request_id, b"".join(chunks))


def serves(routes: Any, path: str) -> bool:
    """Whether one of ``routes`` (the app's) takes a POST to ``path``."""
    scope = {"type": "http", "method": "POST", "path": path, "root_path": ""}
    return any(route.matches(scope)[0] == Match.FULL for route in routes)
