"""The Responses API in the OpenAPI document: the request schema from the field table in
:mod:`.request`, the objects from :mod:`.schemas`, the input items' paging from the route's
declaration."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..wire.operations import error_response, errors, json_body, ok, op, param, path_param
from ..wire.shapes import ref
from .request import response_request_schema
from .routes import ITEMS_PAGING
from .schemas import DELETED, INPUT_ITEMS, RESPONSE

Json = dict[str, Any]
TAG = "Responses"


def parameters(settings: Settings) -> Json:
    return {
        **ITEMS_PAGING.parameters(settings),
        "ResponseId": path_param("response_id", "A stored response's id (`resp_…`)."),
    }


def _create() -> Json:
    created = {
        "description": "The response; with `stream: true` server-sent events, each `event:` "
        "line its type and `data:` a `ResponseStreamEvent`.",
        "headers": ok(RESPONSE.name, "")["headers"],
        "content": {
            "application/json": {"schema": ref(RESPONSE.name)},
            "text/event-stream": {"schema": ref("ResponseStreamEvent")},
        },
    }
    return op(
        "createResponse",
        TAG,
        "Generate a model response (a chat completion underneath); stored unless `store: "
        "false`. An unknown or another organization's `previous_response_id` is a 400 "
        "`previous_response_not_found`.",
        {
            "200": created,
            **errors(400, 401, 404, 413),
            "500": error_response("The inference process failed or stopped (retryable)."),
            "503": error_response(
                "Inference is turned off on this server (`code` `inference_disabled`)."
            ),
        },
        requestBody=json_body(response_request_schema()),
    )


def paths(settings: Settings) -> Json:
    order = {
        "name": "order",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["asc", "desc"], "default": "desc"},
    }
    return {
        "/responses": {"post": _create()},
        "/responses/{response_id}": {
            "parameters": [param("ResponseId")],
            "get": op(
                "getResponse",
                TAG,
                "A stored response (404 once deleted or expired, or another organization's).",
                {"200": ok(RESPONSE.name, "The response."), **errors(401, 404)},
            ),
            "delete": op(
                "deleteResponse",
                TAG,
                "Delete a stored response.",
                {"200": ok(DELETED.name, "Deleted."), **errors(401, 404)},
            ),
        },
        "/responses/{response_id}/input_items": {
            "parameters": [param("ResponseId")],
            "get": op(
                "listInputItems",
                TAG,
                "The input items a stored response answered (a continued conversation's "
                "whole), newest first unless `order=asc`.",
                {"200": ok(INPUT_ITEMS.name, "A page of items."), **errors(400, 401, 404)},
                parameters=[
                    param("ResponseInputItemsAfter"),
                    param("ResponseInputItemsLimit"),
                    order,
                ],
            ),
        },
    }
