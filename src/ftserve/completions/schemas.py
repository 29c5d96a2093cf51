"""JSON Schemas of the completion responses and stream chunks, declared once: the OpenAPI
document references them, and the tests validate real responses against them.

Objects are closed (``additionalProperties: false``), as everywhere in ftserve's document, so an
undocumented field fails the fuzz test's response check. The request schemas are derived from
the field tables in :mod:`.chat_request` and :mod:`.text_request`.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


def _obj(properties: Json, required: list[str] | None = None, **extra: Any) -> Json:
    return {
        "type": "object",
        "required": list(properties) if required is None else required,
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


_NULL = {"type": "null"}
_INT = {"type": "integer", "minimum": 0}
_BYTES = {"anyOf": [{"type": "array", "items": {"type": "integer"}}, _NULL]}
_HEAD = {
    "created": {"type": "integer", "description": "Unix time, seconds."},
    "model": {"type": "string", "description": "The model as the request named it."},
}
_CHAT_HEAD = {
    "id": {"type": "string", "pattern": "^chatcmpl-[0-9A-Za-z]{29}$"},
    "system_fingerprint": _NULL,
    "service_tier": {"const": "default"},
}
_TOOL_CALL = _obj(
    {
        "id": {"type": "string", "pattern": "^call_[0-9A-Za-z]{24}$"},
        "type": {"const": "function"},
        "function": _obj(
            {
                "name": {"type": "string"},
                "arguments": {"type": "string", "description": "JSON text."},
            }
        ),
    }
)
_FINISH = ["stop", "length", "tool_calls"]


def schemas() -> Json:
    """Named schemas for ``components.schemas``."""
    return {
        "CompletionUsage": _obj(
            {
                "prompt_tokens": _INT,
                "completion_tokens": _INT,
                "total_tokens": _INT,
                "prompt_tokens_details": _obj({"cached_tokens": _INT, "audio_tokens": _INT}),
                "completion_tokens_details": _obj(
                    {
                        "reasoning_tokens": _INT,
                        "audio_tokens": _INT,
                        "accepted_prediction_tokens": _INT,
                        "rejected_prediction_tokens": _INT,
                    }
                ),
            }
        ),
        "ChatCompletionTokenLogprob": _obj(
            {
                "token": {"type": "string"},
                "logprob": {"type": "number"},
                "bytes": _BYTES,
                "top_logprobs": {
                    "type": "array",
                    "items": _obj(
                        {
                            "token": {"type": "string"},
                            "logprob": {"type": "number"},
                            "bytes": _BYTES,
                        }
                    ),
                },
            }
        ),
        "ChatChoiceLogprobs": {
            "anyOf": [
                _obj(
                    {
                        "content": {"type": "array", "items": _ref("ChatCompletionTokenLogprob")},
                        "refusal": _NULL,
                    }
                ),
                _NULL,
            ]
        },
        "CreateChatCompletionResponse": _obj(
            {
                **_CHAT_HEAD,
                "object": {"const": "chat.completion"},
                **_HEAD,
                "choices": {
                    "type": "array",
                    "items": _obj(
                        {
                            "index": _INT,
                            "message": _obj(
                                {
                                    "role": {"const": "assistant"},
                                    "content": {
                                        "type": ["string", "null"],
                                        "description": "null when only tool calls.",
                                    },
                                    "refusal": _NULL,
                                    "annotations": {"type": "array", "maxItems": 0},
                                    "tool_calls": {
                                        "type": "array",
                                        "items": _TOOL_CALL,
                                        "minItems": 1,
                                    },
                                },
                                required=["role", "content", "refusal", "annotations"],
                            ),
                            "logprobs": _ref("ChatChoiceLogprobs"),
                            "finish_reason": {"enum": _FINISH},
                        }
                    ),
                },
                "usage": _ref("CompletionUsage"),
            }
        ),
        "CreateChatCompletionStreamResponse": _obj(
            {
                **_CHAT_HEAD,
                "object": {"const": "chat.completion.chunk"},
                **_HEAD,
                "choices": {
                    "type": "array",
                    "description": "Empty in the last chunk (the usage) of a stream with "
                    "`include_usage`.",
                    "items": _obj(
                        {
                            "index": _INT,
                            "delta": _obj(
                                {
                                    "role": {"const": "assistant"},
                                    "content": {"type": "string"},
                                    "refusal": _NULL,
                                    "tool_calls": {
                                        "type": "array",
                                        "items": _obj(
                                            {
                                                "index": _INT,
                                                "id": _TOOL_CALL["properties"]["id"],
                                                "type": {"const": "function"},
                                                "function": _obj(
                                                    {
                                                        "name": {"type": "string"},
                                                        "arguments": {"type": "string"},
                                                    },
                                                    required=[],
                                                ),
                                            },
                                            required=["index"],
                                        ),
                                    },
                                },
                                required=[],
                            ),
                            "logprobs": _ref("ChatChoiceLogprobs"),
                            "finish_reason": {"enum": [*_FINISH, None]},
                        }
                    ),
                },
                "usage": {
                    "anyOf": [_ref("CompletionUsage"), _NULL],
                    "description": "Only with `stream_options.include_usage`: null on every "
                    "chunk but the last.",
                },
            },
            required=[
                "id",
                "object",
                "created",
                "model",
                "system_fingerprint",
                "service_tier",
                "choices",
            ],
        ),
        "CreateCompletionResponse": _obj(
            {
                "id": {"type": "string", "pattern": "^cmpl-[0-9A-Za-z]{29}$"},
                "object": {"const": "text_completion"},
                **_HEAD,
                "choices": {
                    "type": "array",
                    "items": _obj(
                        {
                            "text": {"type": "string"},
                            "index": _INT,
                            "logprobs": {
                                "anyOf": [
                                    _obj(
                                        {
                                            "tokens": {
                                                "type": "array",
                                                "items": {"type": "string"},
                                            },
                                            "token_logprobs": {
                                                "type": "array",
                                                "items": {"type": ["number", "null"]},
                                            },
                                            "top_logprobs": {
                                                "type": "array",
                                                "items": {
                                                    "anyOf": [
                                                        {
                                                            "type": "object",
                                                            "additionalProperties": {
                                                                "type": "number"
                                                            },
                                                        },
                                                        _NULL,
                                                    ]
                                                },
                                            },
                                            "text_offset": {"type": "array", "items": _INT},
                                        }
                                    ),
                                    _NULL,
                                ]
                            },
                            "finish_reason": {
                                "enum": ["stop", "length", None],
                                "description": "null until the last chunk of a stream.",
                            },
                        }
                    ),
                },
                "usage": {"anyOf": [_ref("CompletionUsage"), _NULL]},
            },
            required=["id", "object", "created", "model", "choices"],
        ),
    }
