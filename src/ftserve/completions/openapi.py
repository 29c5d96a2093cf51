"""``/chat/completions`` and ``/completions`` in the OpenAPI document: request schemas from the
field tables in :mod:`.chat_request` and :mod:`.text_request`, response schemas from
:mod:`.schemas`."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..wire.operations import error_response, errors, json_body, op, request_id_header
from ..wire.shapes import ref
from .chat_request import chat_request_schema
from .text_request import text_request_schema

Json = dict[str, Any]


def _op(op_id: str, summary: str, request: Json, response: str, chunk: str) -> Json:
    ok = {
        "description": "The completion; with `stream: true` data-only server-sent events, "
        f"each `data:` a `{chunk}` JSON object, the last `data: [DONE]`. An error after the "
        'stream started comes in band as `data: {"error": {...}}`, then `data: [DONE]`.',
        "headers": request_id_header(),
        "content": {
            "application/json": {"schema": ref(response)},
            # One server-sent event: ``data`` holds a chunk's JSON (or ``[DONE]``).
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
                    "required": ["data"],
                }
            },
        },
    }
    return op(
        op_id,
        "Completions",
        summary,
        {
            "200": ok,
            **errors(400, 401, 404, 413),
            "500": error_response("The inference process failed or stopped (retryable)."),
            "503": error_response(
                "Inference is turned off on this server (`code` `inference_disabled`)."
            ),
        },
        requestBody=json_body(request),
    )


def paths(settings: Settings) -> Json:
    return {
        "/chat/completions": {
            "post": _op(
                "createChatCompletion",
                "Generate the next assistant message. Also served as Azure classic's "
                "`/openai/deployments/{deployment}/chat/completions` (the deployment names the "
                "model; body `model` optional; unknown deployment: 404 `DeploymentNotFound`).",
                chat_request_schema(),
                "CreateChatCompletionResponse",
                "CreateChatCompletionStreamResponse",
            )
        },
        "/completions": {
            "post": _op(
                "createCompletion",
                "Continue a text prompt (legacy). Also served as Azure classic's "
                "`/openai/deployments/{deployment}/completions`.",
                text_request_schema(),
                "CreateCompletionResponse",
                "CreateCompletionResponse",
            )
        },
    }
