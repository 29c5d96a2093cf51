"""POST /v1/chat/completions refused: each invalid request's status and error body (OpenAI's
wording, param and code), and the SDK's exception for it."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import openai
import pytest

from tests.api.conftest import HELLO, MODEL

pytestmark = pytest.mark.both_backends  # the [postgres] ids too (tests/conftest.py)


LONG = "x" * 5000
STRICT_OPEN = {
    "name": "answer",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {"inner": {"type": "object", "properties": {}}},
        "required": ["inner"],
        "additionalProperties": False,
    },
}
STRICT_OPTIONAL = {
    "name": "answer",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    },
}
STRICT_KEYWORD = {
    "name": "answer",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {"a": {"type": "string", "minLength": 2}},
        "required": ["a"],
        "additionalProperties": False,
    },
}
ERRORS: list[tuple[str, dict[str, Any], int, str | None, str | None, str | None]] = [
    (
        "temperature-above",
        {"temperature": 200},
        400,
        "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 200 "
        "instead.",
        "temperature",
        "decimal_above_max_value",
    ),
    (
        "temperature-below",
        {"temperature": -2.5},
        400,
        "Invalid 'temperature': decimal below minimum value. Expected a value >= 0, but got -2.5 "
        "instead.",
        "temperature",
        "decimal_below_min_value",
    ),
    (
        "top_p",
        {"top_p": 1.5},
        400,
        "Invalid 'top_p': decimal above maximum value. Expected a value <= 1, but got 1.5 instead.",
        "top_p",
        "decimal_above_max_value",
    ),
    (
        "n-zero",
        {"n": 0},
        400,
        "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead.",
        "n",
        "integer_below_min_value",
    ),
    (
        "penalty",
        {"presence_penalty": 3},
        400,
        "Invalid 'presence_penalty': decimal above maximum value. Expected a value <= 2, but got 3 "
        "instead.",
        "presence_penalty",
        "decimal_above_max_value",
    ),
    (
        "missing-messages",
        {"messages": None},
        400,
        "Missing required parameter: 'messages'.",
        "messages",
        "missing_required_parameter",
    ),
    (
        "empty-messages",
        {"messages": []},
        400,
        "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty "
        "array instead.",
        "messages",
        "empty_array",
    ),
    (
        "both-limits",
        {"max_tokens": 5, "max_completion_tokens": 5},
        400,
        "Setting 'max_tokens' and 'max_completion_tokens' at the same time is not supported.",
        "max_tokens",
        "invalid_parameter_combination",
    ),
    (
        "max-tokens-zero",
        {"max_tokens": 0},
        400,
        "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got 0 "
        "instead.",
        "max_tokens",
        "integer_below_min_value",
    ),
    (
        "max-tokens-over-server-cap",
        {"max_tokens": 8192},
        400,
        "max_tokens is too large: 8192. This model supports at most 64 completion tokens, whereas "
        "you provided 8192.",
        "max_tokens",
        None,
    ),
    (
        "top_logprobs-without-logprobs",
        {"top_logprobs": 2},
        400,
        "Invalid 'top_logprobs': 'logprobs' must be set to true if this parameter is used.",
        "top_logprobs",
        "invalid_value",
    ),
    (
        "top_logprobs-above",
        {"logprobs": True, "top_logprobs": 21},
        400,
        "Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20, but got 21 "
        "instead.",
        "top_logprobs",
        "integer_above_max_value",
    ),
    (
        "stream_options-without-stream",
        {"stream_options": {"include_usage": True}},
        400,
        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        "stream_options",
        None,
    ),
    (
        "unknown-field",
        {"frobnicate": 1},
        400,
        "Unrecognized request argument supplied: frobnicate",
        None,
        None,
    ),
    (
        "reasoning_effort",
        {"reasoning_effort": "low"},
        400,
        "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
        "reasoning_effort",
        "unsupported_value",
    ),
    (
        "orphan-tool",
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "tool", "tool_call_id": "x", "content": "r"},
            ]
        },
        400,
        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
        "with 'tool_calls'.",
        "messages.[1].role",
        None,
    ),
    (
        "image-part",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this"},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                    ],
                }
            ]
        },
        400,
        "Unsupported value: 'messages[0].content[1].type' does not support 'image_url' with this "
        "model.",
        "messages[0].content[1].type",
        "unsupported_value",
    ),
    (
        "function-role",
        {"messages": [{"role": "function", "name": "f", "content": "x"}]},
        400,
        "Unsupported value: 'messages[0].role' does not support 'function' with this model.",
        "messages[0].role",
        "unsupported_value",
    ),
    (
        "json-mode-without-the-word",
        {"response_format": {"type": "json_object"}},
        400,
        "'messages' must contain the word 'json' in some form, to use 'response_format' of "
        "type 'json_object'.",
        "messages",
        None,
    ),
    (
        "json-schema-not-an-object",
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": 3}}},
        400,
        "Invalid type for 'response_format.json_schema.schema': expected an object, but got "
        "an integer instead.",
        "response_format.json_schema.schema",
        "invalid_type",
    ),
    (
        "json-schema-strict-additional-properties",
        {"response_format": {"type": "json_schema", "json_schema": STRICT_OPEN}},
        400,
        "Invalid schema for response_format 'answer': In context=('properties', 'inner'), "
        "'additionalProperties' is required to be supplied and to be false.",
        "response_format",
        None,
    ),
    (
        "json-schema-strict-required",
        {"response_format": {"type": "json_schema", "json_schema": STRICT_OPTIONAL}},
        400,
        "Invalid schema for response_format 'answer': In context=(), 'required' is required to "
        "be supplied and to be an array including every key in properties. Missing 'b'.",
        "response_format",
        None,
    ),
    (
        "json-schema-strict-keyword",
        {"response_format": {"type": "json_schema", "json_schema": STRICT_KEYWORD}},
        400,
        "Invalid schema for response_format 'answer': In context=('properties', 'a'), "
        "'minLength' is not permitted.",
        "response_format",
        None,
    ),
    (
        "json-schema-engine-cannot",
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "object", "properties": 5}},
            }
        },
        400,
        "Invalid schema for response_format 'x': failed to compile JSON schema: properties "
        "must be an object",
        "response_format",
        None,
    ),
    (
        "audio-modality",
        {"modalities": ["text", "audio"]},
        400,
        None,
        "modalities",
        "unsupported_value",
    ),
    (
        "audio",
        {"audio": {"voice": "alloy", "format": "wav"}},
        400,
        None,
        "audio",
        "unsupported_value",
    ),
    (
        "prediction",
        {"prediction": {"type": "content", "content": "x"}},
        400,
        None,
        "prediction",
        "unsupported_value",
    ),
    (
        "web_search",
        {"web_search_options": {}},
        400,
        None,
        "web_search_options",
        "unsupported_value",
    ),
    ("functions", {"functions": [{"name": "f"}]}, 400, None, "functions", "unsupported_value"),
    (
        "tool_choice-unknown-function",
        {
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": {"name": "g"}},
        },
        400,
        "Invalid value for 'tool_choice': function 'g' is not in 'tools'.",
        "tool_choice",
        None,
    ),
    (
        "forced-tool-schema-the-engine-cannot-follow",
        {
            "tools": [
                {"type": "function", "function": {"name": "f", "parameters": {"properties": 5}}}
            ],
            "tool_choice": "required",
        },
        400,
        "Invalid schema for function 'f': failed to compile JSON schema: properties must be an "
        "object",
        "tools",
        "invalid_function_parameters",
    ),
    (
        "strict-tool-schema",
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "strict": True,
                        "parameters": {"type": "object", "properties": {}},
                    },
                }
            ]
        },
        400,
        "Invalid schema for function 'f': In context=(), 'additionalProperties' is required to "
        "be supplied and to be false.",
        "tools[0].function.parameters",
        "invalid_function_parameters",
    ),
    (
        "stop-too-many",
        {"stop": ["a", "b", "c", "d", "e"]},
        400,
        None,
        "stop",
        "array_above_max_length",
    ),
    (
        "logit-bias-range",
        {"logit_bias": {"5": 101}},
        400,
        None,
        "logit_bias.5",
        "decimal_above_max_value",
    ),
    ("logit-bias-outside-vocab", {"logit_bias": {"99999999": 1}}, 400, None, "logit_bias", None),
    (
        "wrong-type",
        {"temperature": "hot"},
        400,
        "Invalid type for 'temperature': expected a number, but got a string instead.",
        "temperature",
        "invalid_type",
    ),
    (
        "context-too-long",
        {"messages": [{"role": "user", "content": LONG}]},
        400,
        None,
        "messages",
        "context_length_exceeded",
    ),
    (
        "unknown-model",
        {"model": "gpt-4"},
        404,
        "The model `gpt-4` does not exist or you do not have access to it.",
        None,
        "model_not_found",
    ),
]


@pytest.mark.parametrize(
    ("case", "change", "status", "message", "param", "code"), ERRORS, ids=[e[0] for e in ERRORS]
)
def test_errors(
    http: httpx.Client,
    case: str,
    change: dict[str, Any],
    status: int,
    message: str | None,
    param: str | None,
    code: str | None,
) -> None:
    body: dict[str, Any] = {"model": MODEL, "messages": HELLO, "max_tokens": 2, **change}
    body = {k: v for k, v in body.items() if v is not None}
    if "max_completion_tokens" in change or case == "both-limits":
        body["max_tokens"] = change.get("max_tokens", 5)
    if case == "max-tokens-zero":
        body["max_tokens"] = 0
    resp = http.post("/chat/completions", json=body)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    if message is not None:
        assert err["message"] == message
    assert err["param"] == param and err["code"] == code, err
    assert err["type"] == "invalid_request_error"


def test_sdk_raises_the_status_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=[], max_tokens=1)
    assert info.value.code == "empty_array"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=HELLO, stream=True)
