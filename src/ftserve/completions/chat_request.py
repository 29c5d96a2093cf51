"""``POST /chat/completions``: the request's fields as one table, and its parsing into the
inference protocol's :class:`ChatPrompt` and :class:`Sampling`.

:data:`CHAT_FIELDS` is the only description of the body: :func:`parse_chat` validates with it
(OpenAI's wording and codes) and the OpenAPI document derives the request schema from it. The
``messages`` array has a structure no schema library turns into OpenAI's messages, so its check
and its schema are written out here, next to each other.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequest, InvalidType, InvalidValue, MissingParameter
from ..inference.protocol import ChatPrompt, Sampling
from ..wire.fields import (
    Field,
    body_schema,
    ignored_field,
    parse_body,
    refused_field,
    unrecognized,
    unsupported_value,
)
from .sampling import (
    METADATA_SCHEMA,
    check_metadata,
    check_stream_options_use,
    check_token_limit,
    common_fields,
)
from .structured import (
    JSON_WORD,
    RESPONSE_FORMAT_SCHEMA,
    TOOL_CHOICE_SCHEMA,
    check_response_format,
    check_strict_tools,
    check_tool_choice,
    grammar_for,
    mentions_json,
)

Json = dict[str, Any]

ROLES = ("developer", "system", "user", "assistant", "tool")
_ROLE_KEYS = {
    "developer": ("role", "content", "name"),
    "system": ("role", "content", "name"),
    "user": ("role", "content", "name"),
    "assistant": ("role", "content", "refusal", "name", "tool_calls", "audio", "function_call"),
    "tool": ("role", "content", "tool_call_id"),
}
_PART_TYPES = {  # part types each role may send; others are refused or invalid
    "developer": ("text",),
    "system": ("text",),
    "user": ("text",),
    "assistant": ("text", "refusal"),
    "tool": ("text",),
}
_UNSUPPORTED_PARTS = ("image_url", "input_audio", "file")
ORPHAN_TOOL = (
    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
    "with 'tool_calls'."
)
_NAME_PATTERN = "^[a-zA-Z0-9_-]{1,64}$"


# -- messages -----------------------------------------------------------------------------------


def _empty_array(param: str) -> InvalidValue:
    return InvalidValue(
        f"Invalid '{param}': empty array. Expected an array with minimum length 1, but got an "
        "empty array instead.",
        param=param,
        code="empty_array",
    )


def _string(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise InvalidType(param, "a string", value)
    return value


def _content(value: Any, param: str, role: str, *, required: bool) -> str:
    """The text of a message's content: a string, or an array of text parts."""
    if value is None:
        if required:
            raise MissingParameter(param)
        return ""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise InvalidType(param, "a string or an array of content parts", value)
    if not value:
        raise _empty_array(param)
    texts: list[str] = []
    for j, part in enumerate(value):
        p = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise InvalidType(p, "an object", part)
        kind = part.get("type")
        if kind is None:
            raise MissingParameter(f"{p}.type")
        if not isinstance(kind, str):
            raise InvalidType(f"{p}.type", "a string", kind)
        if kind in _UNSUPPORTED_PARTS or (kind not in _PART_TYPES[role] and kind == "refusal"):
            raise unsupported_value(
                f"{p}.type",
                f"Unsupported value: '{p}.type' does not support '{kind}' with this model.",
            )
        if kind not in _PART_TYPES[role]:
            raise InvalidValue(
                f"Invalid value: '{kind[:64]}'. Supported values are: "
                + ", ".join(f"'{t}'" for t in _PART_TYPES[role])
                + ".",
                param=f"{p}.type",
            )
        for key in part:
            if key not in ("type", kind):
                raise unrecognized(f"{p}.{key}")
        if part.get(kind) is None:
            raise MissingParameter(f"{p}.{kind}")
        text = _string(part[kind], f"{p}.{kind}")
        if kind == "text":
            texts.append(text)
    return "".join(texts)


def _tool_calls(value: Any, param: str) -> list[Json]:
    if not isinstance(value, list):
        raise InvalidType(param, "an array", value)
    calls: list[Json] = []
    for k, call in enumerate(value):
        p = f"{param}[{k}]"
        if not isinstance(call, dict):
            raise InvalidType(p, "an object", call)
        for key in call:
            if key not in ("id", "type", "function"):
                raise unrecognized(f"{p}.{key}")
        for key in ("id", "type", "function"):
            if call.get(key) is None:
                raise MissingParameter(f"{p}.{key}")
        call_id = _string(call["id"], f"{p}.id")
        if call["type"] != "function":
            raise InvalidValue(
                f"Invalid value: {json.dumps(call['type'])[:64]}. Supported values are: "
                "'function'.",
                param=f"{p}.type",
            )
        fn = call["function"]
        if not isinstance(fn, dict):
            raise InvalidType(f"{p}.function", "an object", fn)
        for key in fn:
            if key not in ("name", "arguments"):
                raise unrecognized(f"{p}.function.{key}")
        for key in ("name", "arguments"):
            if fn.get(key) is None:
                raise MissingParameter(f"{p}.function.{key}")
        name = _string(fn["name"], f"{p}.function.name")
        arguments: Any = _string(fn["arguments"], f"{p}.function.arguments")
        # As the trainer renders them: arguments that are JSON go in as a mapping.
        with contextlib.suppress(json.JSONDecodeError):
            arguments = json.loads(arguments)
        calls.append(
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        )
    return calls


def check_messages(value: Any, param: str) -> tuple[Json, ...]:
    if not isinstance(value, list):
        raise InvalidType(param, "an array", value)
    if not value:
        raise _empty_array(param)
    out: list[Json] = []
    answering_calls = False  # the last non-tool message was an assistant's with tool_calls
    for i, message in enumerate(value):
        p = f"{param}[{i}]"
        if not isinstance(message, dict):
            raise InvalidType(p, "an object", message)
        role = message.get("role")
        if role is None:
            raise MissingParameter(f"{p}.role")
        if not isinstance(role, str):
            raise InvalidType(f"{p}.role", "a string", role)
        if role == "function":
            raise unsupported_value(
                f"{p}.role",
                f"Unsupported value: '{p}.role' does not support 'function' with this model.",
            )
        if role not in ROLES:
            raise InvalidValue(
                f"Invalid value: '{role[:64]}'. Supported values are: 'developer', 'system', "
                "'user', 'assistant', and 'tool'.",
                param=f"{p}.role",
            )
        for key in message:
            if key not in _ROLE_KEYS[role]:
                raise unrecognized(f"{p}.{key}")
        for key in ("audio", "function_call"):
            if message.get(key) is not None:
                raise unsupported_value(
                    f"{p}.{key}", f"Unsupported parameter: '{p}.{key}' is not supported here."
                )
        normal: Json = {
            "role": role,
            "content": _content(
                message.get("content"), f"{p}.content", role, required=role != "assistant"
            ),
        }
        if message.get("name") is not None:
            normal["name"] = _string(message["name"], f"{p}.name")
        if role == "assistant" and message.get("refusal") is not None:
            _string(message["refusal"], f"{p}.refusal")
        if role == "tool":
            if not answering_calls:
                raise InvalidRequest(ORPHAN_TOOL, param=f"messages.[{i}].role")
            if message.get("tool_call_id") is None:
                raise MissingParameter(f"{p}.tool_call_id")
            normal["tool_call_id"] = _string(message["tool_call_id"], f"{p}.tool_call_id")
        else:
            answering_calls = False
        if role == "assistant" and message.get("tool_calls") is not None:
            calls = _tool_calls(message["tool_calls"], f"{p}.tool_calls")
            if calls:
                normal["tool_calls"] = calls
                answering_calls = True
        out.append(normal)
    return tuple(out)


def _text_parts(types: tuple[str, ...]) -> Json:
    return {
        "type": "array",
        "minItems": 1,
        "items": {
            "anyOf": [
                {
                    "type": "object",
                    "required": ["type", kind],
                    "properties": {"type": {"const": kind}, kind: {"type": "string"}},
                    "additionalProperties": False,
                }
                for kind in types
            ]
        },
    }


def _message_schema(role: str) -> Json:
    content: Json = {"anyOf": [{"type": "string"}, _text_parts(_PART_TYPES[role])]}
    props: Json = {"role": {"const": role}, "content": content}
    required = ["role", "content"]
    if role != "tool":
        props["name"] = {"type": "string"}
    if role == "tool":
        props["tool_call_id"] = {"type": "string"}
        required.append("tool_call_id")
    if role == "assistant":
        props["content"] = {"anyOf": [content, {"type": "null"}]}
        props["refusal"] = {"type": ["string", "null"]}
        props["tool_calls"] = {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "type", "function"],
                "properties": {
                    "id": {"type": "string"},
                    "type": {"const": "function"},
                    "function": {
                        "type": "object",
                        "required": ["name", "arguments"],
                        "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}},
                        "additionalProperties": False,
                    },
                },
                "additionalProperties": False,
            },
        }
        required = ["role"]
    return {
        "type": "object",
        "required": required,
        "properties": props,
        "additionalProperties": False,
        "description": f"A `{role}` message.",
    }


MESSAGES_SCHEMA: Json = {
    "type": "array",
    "minItems": 1,
    "items": {"anyOf": [_message_schema(role) for role in ROLES]},
    "description": "The conversation. Content is a string or text parts; image, audio and file "
    "parts are refused (400 naming the part). A `tool` message must follow an assistant "
    "message with `tool_calls`.",
}


# -- tools ----------------------------------------------------------------------------------------


def check_tools(value: Any, param: str) -> tuple[Json, ...]:
    if not isinstance(value, list):
        raise InvalidType(param, "an array", value)
    tools: list[Json] = []
    for i, tool in enumerate(value):
        p = f"{param}[{i}]"
        if not isinstance(tool, dict):
            raise InvalidType(p, "an object", tool)
        for key in tool:
            if key not in ("type", "function"):
                raise unrecognized(f"{p}.{key}")
        if tool.get("type") is None:
            raise MissingParameter(f"{p}.type")
        if tool["type"] != "function":
            raise unsupported_value(
                f"{p}.type",
                f"Unsupported value: '{p}.type' does not support "
                f"{json.dumps(tool['type'])[:64]} with this model. Supported values are: "
                "'function'.",
            )
        fn = tool.get("function")
        if fn is None:
            raise MissingParameter(f"{p}.function")
        if not isinstance(fn, dict):
            raise InvalidType(f"{p}.function", "an object", fn)
        for key in fn:
            if key not in ("name", "description", "parameters", "strict"):
                raise unrecognized(f"{p}.function.{key}")
        if fn.get("name") is None:
            raise MissingParameter(f"{p}.function.name")
        name = _string(fn["name"], f"{p}.function.name")
        if (
            not name
            or len(name) > 64
            or not all(c.isascii() and (c.isalnum() or c in "_-") for c in name)
        ):
            raise InvalidValue(
                f"Invalid '{p}.function.name': string does not match pattern. Expected a string "
                f"that matches the pattern '{_NAME_PATTERN}'.",
                param=f"{p}.function.name",
                code="invalid_value",
            )
        if fn.get("description") is not None:
            _string(fn["description"], f"{p}.function.description")
        if fn.get("parameters") is not None and not isinstance(fn["parameters"], dict):
            raise InvalidType(f"{p}.function.parameters", "an object", fn["parameters"])
        if fn.get("strict") is not None and not isinstance(fn["strict"], bool):
            raise InvalidType(f"{p}.function.strict", "a boolean", fn["strict"])
        tools.append(
            {"type": "function", "function": {k: v for k, v in fn.items() if v is not None}}
        )
    return tuple(tools)


TOOLS_SCHEMA: Json = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["type", "function"],
        "properties": {
            "type": {"const": "function"},
            "function": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "pattern": _NAME_PATTERN},
                    "description": {"type": ["string", "null"]},
                    "parameters": {"type": ["object", "null"]},
                    "strict": {"type": ["boolean", "null"]},
                },
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    },
}


# -- the other refused fields ----------------------------------------------------------------


def _modalities_ok(value: Any) -> bool:
    return bool(value == ["text"])


def chat_fields() -> list[Field]:
    return [
        Field(
            "model",
            "string",
            "A model id from `GET /models`. Optional on the Azure "
            "deployment routes, where the deployment names the model.",
            required=True,
        ),
        Field(
            "messages",
            "custom",
            "The conversation so far.",
            required=True,
            check=check_messages,
            schema=MESSAGES_SCHEMA,
        ),
        Field(
            "max_completion_tokens",
            "integer",
            "Most tokens to generate per choice "
            "(default: the room left in the context, capped by the server).",
            1,
        ),
        Field("max_tokens", "integer", "Deprecated alias of `max_completion_tokens`; not both.", 1),
        *common_fields(),
        Field(
            "logprobs", "boolean", "Return each generated token's log probability.", default=False
        ),
        Field(
            "top_logprobs",
            "integer",
            "Most likely alternatives per token; needs `logprobs: true`.",
            0,
            20,
        ),
        Field(
            "tools",
            "custom",
            "Functions the model may call; calls come back parsed from `<tool_call>` lines.",
            check=check_tools,
            schema=TOOLS_SCHEMA,
        ),
        Field(
            "tool_choice",
            "custom",
            "`none`, `auto`, `required` or a named function (the last two are enforced by "
            "constrained decoding, as are the arguments of `strict` tools).",
            check=check_tool_choice,
            schema=TOOL_CHOICE_SCHEMA,
        ),
        ignored_field("parallel_tool_calls", "boolean", "Several calls may come back anyway."),
        ignored_field("safety_identifier", "string", "An end-user id.", maximum=64),
        ignored_field(
            "metadata",
            "custom",
            "Up to 16 string pairs.",
            check=check_metadata,
            schema=METADATA_SCHEMA,
        ),
        ignored_field("store", "boolean", "Nothing is stored."),
        ignored_field("service_tier", "string", "Every response says `default`."),
        ignored_field("prompt_cache_key", "string", "Prompt caching hint."),
        ignored_field("prompt_cache_retention", "string", "Prompt caching hint."),
        Field(
            "response_format",
            "custom",
            "The answer's format (see the schema).",
            check=check_response_format,
            schema=RESPONSE_FORMAT_SCHEMA,
        ),
        refused_field(
            "modalities",
            '`["text"]` only.',
            "Unsupported value: 'modalities' does not support audio with this model. "
            'Supported values are: ["text"].',
            allowed=_modalities_ok,
            allowed_schema={"anyOf": [{"const": ["text"]}, {"type": "null"}]},
        ),
        refused_field("audio", "Audio output."),
        refused_field("prediction", "Predicted outputs."),
        refused_field("web_search_options", "Web search."),
        refused_field("reasoning_effort", "These models do not reason before answering."),
        refused_field("verbosity", "Output verbosity of reasoning models."),
        refused_field(
            "functions",
            "Deprecated; use `tools`.",
            "Unsupported parameter: 'functions' is deprecated and not supported here. Use "
            "'tools' instead.",
        ),
        refused_field(
            "function_call",
            "Deprecated; use `tool_choice`.",
            "Unsupported parameter: 'function_call' is deprecated and not supported here. "
            "Use 'tool_choice' instead.",
        ),
    ]


CHAT_FIELDS = tuple(chat_fields())
DEPLOYMENT = frozenset({"model"})


def chat_request_schema(*, deployment: bool = False) -> Json:
    return body_schema(
        CHAT_FIELDS,
        description="A chat completion request. Unknown fields are refused (400 `Unrecognized "
        "request argument supplied: X`).",
        optional=DEPLOYMENT if deployment else frozenset(),
    )


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str | None
    prompt: ChatPrompt
    sampling: Sampling
    stream: bool
    include_usage: bool
    tools: bool  # parse <tool_call> lines out of the answer
    # tool_choice named a function: its call ends with finish_reason "stop", as OpenAI's
    named_tool: bool = False


def parse_chat(body: Json, *, max_generation_tokens: int, deployment: bool = False) -> ChatRequest:
    f = parse_body(body, CHAT_FIELDS, optional=DEPLOYMENT if deployment else frozenset())
    if f["max_tokens"] is not None and f["max_completion_tokens"] is not None:
        raise InvalidRequest(
            "Setting 'max_tokens' and 'max_completion_tokens' at the same time is not supported.",
            param="max_tokens",
            code="invalid_parameter_combination",
        )
    name = "max_tokens" if f["max_tokens"] is not None else "max_completion_tokens"
    max_tokens = f["max_tokens"] if f["max_tokens"] is not None else f["max_completion_tokens"]
    check_token_limit(max_tokens, name, f["n"], max_generation_tokens)
    if f["top_logprobs"] is not None and not f["logprobs"]:
        raise InvalidRequest(
            "Invalid 'top_logprobs': 'logprobs' must be set to true if this parameter is used.",
            param="top_logprobs",
            code="invalid_value",
        )
    include_usage = check_stream_options_use(f)
    tools = f["tools"] or None
    if f["tool_choice"] is not None and tools is None:
        raise InvalidRequest(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified.",
            param="tool_choice",
        )
    choice = f["tool_choice"]
    if choice == "none":
        tools = None
    if tools is not None:
        check_strict_tools(tools, "tools")
        names = [t["function"]["name"] for t in tools]
        if isinstance(choice, dict) and choice["function"]["name"] not in names:
            raise InvalidRequest(
                f"Invalid value for 'tool_choice': function '{choice['function']['name']}' "
                "is not in 'tools'.",
                param="tool_choice",
            )
    response_format = f["response_format"]
    if (
        response_format is not None
        and response_format.kind == "json_object"
        and not mentions_json(f["messages"])
    ):
        raise InvalidRequest(JSON_WORD, param="messages")
    sampling = Sampling(
        max_tokens=max_tokens,
        temperature=f["temperature"],
        top_p=f["top_p"],
        n=f["n"],
        stop=f["stop"],
        seed=f["seed"],
        presence_penalty=f["presence_penalty"],
        frequency_penalty=f["frequency_penalty"],
        logit_bias=f["logit_bias"],
        logprobs=f["logprobs"],
        top_logprobs=f["top_logprobs"] or 0,
        grammar=grammar_for(response_format, tools, choice),
    )
    return ChatRequest(
        model=f["model"],
        prompt=ChatPrompt(messages=f["messages"], tools=tools),
        sampling=sampling,
        stream=f["stream"],
        include_usage=include_usage,
        tools=tools is not None,
        named_tool=tools is not None and isinstance(choice, dict),
    )
