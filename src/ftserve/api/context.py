"""What every route handler receives, and helpers for reading requests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..errors import InvalidJson, InvalidType, PayloadTooLarge
from .services import Services

MAX_JSON_BODY = 4 * 1024 * 1024
# The ASGI scope key of a request the server makes of itself (a batch's line): the organization
# it runs as, in place of an API key. Only code in this process can set a scope key.
IN_PROCESS_ORGANIZATION = "ftserve.organization"


@dataclass(frozen=True, slots=True)
class Ctx:
    organization: str
    services: Services


Handler = Callable[[Request, Ctx], Awaitable[Response]]


async def json_body(request: Request, *, allow_empty: bool = False) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_JSON_BODY:
        raise PayloadTooLarge(f"The request body is larger than {MAX_JSON_BODY} bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BODY:
            raise PayloadTooLarge(f"The request body is larger than {MAX_JSON_BODY} bytes.")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if allow_empty:
            return {}
        raise InvalidJson()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidJson() from None
    if not isinstance(body, dict):
        raise InvalidType("body", "an object", body)
    return body
