"""JSON responses and the one error renderer."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from ..errors import ApiError, AuthenticationFailed

_JSON = "application/json"


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type=_JSON)


def raw_json(body: bytes) -> Response:
    return Response(body, media_type=_JSON)


def list_body(data: list[Any], has_more: bool, *, ids: bool = False) -> dict[str, Any]:
    """OpenAI's list envelope; ``ids`` adds first_id/last_id where the spec has them."""
    body: dict[str, Any] = {"object": "list", "data": data, "has_more": has_more}
    if ids:
        body["first_id"] = data[0]["id"] if data else None
        body["last_id"] = data[-1]["id"] if data else None
    return body


def error_response(exc: ApiError) -> Response:
    response = Response(orjson.dumps(exc.body()), status_code=exc.status, media_type=_JSON)
    if isinstance(exc, AuthenticationFailed):
        response.headers["www-authenticate"] = 'Bearer realm="ftserve"'
    return response
