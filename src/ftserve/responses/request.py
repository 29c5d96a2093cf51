"""``POST /responses``: the request's fields as one table, each marked honoured (``ok``),
accepted and ignored, or refused, and its translation into the chat pipeline's request.

:data:`RESPONSE_FIELDS` is the only description of the body: :func:`parse_response_request`
checks with it (OpenAI's wording) and the OpenAPI document derives the request schema from it.
What only labels or routes a request (``include``, ``truncation``, ``prompt_cache_key``,
``parallel_tool_calls``, …; the Agents SDK sends several of them on every call) is accepted;
what ftserve cannot do (built-in tools, reasoning, background mode, stored prompts and
conversations) is a 400 naming the param.

The generation itself is a chat completion: the items become chat messages, ``text.format`` the
chat request's ``response_format``, the flat tools the chat tools, and the chat request's own
parser checks them all once more, so whatever the chat endpoint learns to honour (structured
outputs, a required tool) the Responses API honours with it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..completions.chat_request import ChatRequest, parse_chat
from ..completions.sampling import METADATA_SCHEMA, check_metadata
from ..errors import ApiError, InvalidType, InvalidValue, MissingParameter
from ..wire.fields import (
    Field,
    body_schema,
    ignored_field,
    parse_body,
    refused_field,
    unsupported_value,
)
from .items import INPUT_SCHEMA, check_input

Json = dict[str, Any]
# OpenAI's smallest max_output_tokens.
MIN_OUTPUT_TOKENS = 16
_NAME_PATTERN = "^[a-zA-Z0-9_-]{1,64}$"
# Tool types OpenAI has that run on its side; nothing here can run them.
BUILT_IN_TOOLS = (
    "file_search",
    "web_search",
    "web_search_preview",
    "web_search_2025_08_26",
    "web_search_preview_2025_03_11",
    "computer_use_preview",
    "computer_use",
    "code_interpreter",
    "image_generation",
    "mcp",
    "local_shell",
    "shell",
    "custom",
    "apply_patch",
    "namespace",
    "tool_search",
)


def unknown_parameter(name: str) -> InvalidValue:
    """An unknown key, as the Responses API words it."""
    return InvalidValue(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")


# -- tools ----------------------------------------------------------------------------------------


def check_tools(value: Any, param: str) -> list[Json]:
    """Function tools in the Responses API's flat shape, as sent (null members dropped)."""
    if not isinstance(value, list):
        raise InvalidType(param, "an array", value)
    tools: list[Json] = []
    for i, tool in enumerate(value):
        p = f"{param}[{i}]"
        if not isinstance(tool, dict):
            raise InvalidType(p, "an object", tool)
        kind = tool.get("type")
        if kind is None:
            raise MissingParameter(f"{p}.type")
        if kind != "function":
            shown = json.dumps(kind)[:64]
            raise unsupported_value(
                f"{p}.type",
                f"Unsupported value: '{p}.type' does not support {shown} with this model. "
                "Supported values are: 'function'.",
            )
        for key in tool:
            if key not in ("type", "name", "description", "parameters", "strict"):
                raise unknown_parameter(f"{p}.{key}")
        name = tool.get("name")
        if name is None:
            raise MissingParameter(f"{p}.name")
        if not isinstance(name, str):
            raise InvalidType(f"{p}.name", "a string", name)
        if tool.get("description") is not None and not isinstance(tool["description"], str):
            raise InvalidType(f"{p}.description", "a string", tool["description"])
        if tool.get("parameters") is not None and not isinstance(tool["parameters"], dict):
            raise InvalidType(f"{p}.parameters", "an object", tool["parameters"])
        if tool.get("strict") is not None and not isinstance(tool["strict"], bool):
            raise InvalidType(f"{p}.strict", "a boolean", tool["strict"])
        tools.append({k: v for k, v in tool.items() if v is not None})
    return tools


TOOLS_SCHEMA: Json = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["type", "name"],
        "properties": {
            "type": {"const": "function"},
            "name": {"type": "string", "pattern": _NAME_PATTERN},
            "description": {"type": ["string", "null"]},
            "parameters": {"type": ["object", "null"]},
            "strict": {"type": ["boolean", "null"]},
        },
        "additionalProperties": False,
    },
    "description": "Function tools. Built-in tools (web search, file search, computer use, "
    "code interpreter, MCP, …) are refused (400 naming `tools[i].type`).",
}


def check_tool_choice(value: Any, param: str) -> Any:
    if isinstance(value, str):
        if value not in ("none", "auto", "required"):
            raise InvalidValue(
                f"Invalid value: '{value[:64]}'. Supported values are: 'none', 'auto' and "
                "'required'.",
                param=param,
            )
        return value
    if not isinstance(value, dict):
        raise InvalidType(param, "a string or an object", value)
    if value.get("type") != "function":
        raise unsupported_value(
            f"{param}.type",
            f"Unsupported value: '{param}.type' does not support "
            f"{json.dumps(value.get('type'))[:64]} with this model. Supported values are: "
            "'function'.",
        )
    for key in value:
        if key not in ("type", "name"):
            raise unknown_parameter(f"{param}.{key}")
    if not isinstance(value.get("name"), str):
        raise MissingParameter(f"{param}.name")
    return {"type": "function", "name": value["name"]}


TOOL_CHOICE_SCHEMA: Json = {
    "anyOf": [
        {"type": "string", "enum": ["none", "auto", "required"]},
        {
            "type": "object",
            "required": ["type", "name"],
            "properties": {"type": {"const": "function"}, "name": {"type": "string"}},
            "additionalProperties": False,
        },
    ]
}


# -- text.format -------------------------------------------------------------------------------


def check_text(value: Any, param: str) -> Json:
    """``{"format": …, "verbosity": …}``; the format is checked by the chat request it becomes
    (its ``response_format``)."""
    if not isinstance(value, dict):
        raise InvalidType(param, "an object", value)
    for key in value:
        if key not in ("format", "verbosity"):
            raise unknown_parameter(f"{param}.{key}")
    fmt = value.get("format") or {"type": "text"}
    if not isinstance(fmt, dict):
        raise InvalidType(f"{param}.format", "an object", fmt)
    kind = fmt.get("type")
    if kind is None:
        raise MissingParameter(f"{param}.format.type")
    if kind not in ("text", "json_schema", "json_object"):
        raise InvalidValue(
            f"Invalid value: {json.dumps(kind)[:64]}. Supported values are: 'text', "
            "'json_schema' and 'json_object'.",
            param=f"{param}.format.type",
        )
    verbosity = value.get("verbosity")
    if verbosity is not None and verbosity not in ("low", "medium", "high"):
        raise InvalidValue(
            f"Invalid value: {json.dumps(verbosity)[:64]}. Supported values are: 'low', "
            "'medium' and 'high'.",
            param=f"{param}.verbosity",
        )
    return {"format": dict(fmt), "verbosity": verbosity or "medium"}


TEXT_SCHEMA: Json = {
    "type": "object",
    "properties": {
        "format": {
            "anyOf": [
                {
                    "type": "object",
                    "required": ["type"],
                    "properties": {"type": {"enum": ["text", "json_object"]}},
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "required": ["type", "name", "schema"],
                    "properties": {
                        "type": {"const": "json_schema"},
                        "name": {"type": "string"},
                        "schema": {"type": "object"},
                        "description": {"type": "string"},
                        "strict": {"type": ["boolean", "null"]},
                    },
                    "additionalProperties": False,
                },
            ]
        },
        "verbosity": {"enum": ["low", "medium", "high", None]},
    },
    "additionalProperties": False,
    "description": "`format`: `text` (the default); `json_schema` and `json_object` are the chat "
    "endpoint's `response_format`, served as it serves them. `verbosity` is accepted and "
    "ignored.",
}


def response_format(fmt: Json) -> Json:
    """``text.format`` as the chat request's ``response_format``."""
    if fmt["type"] != "json_schema":
        return {"type": fmt["type"]}
    inner = {k: v for k, v in fmt.items() if k != "type"}
    return {"type": "json_schema", "json_schema": inner}


# -- the fields ----------------------------------------------------------------------------------


def _reasoning_ok(value: Any) -> bool:
    """No reasoning asked for: what a client sends when it sets nothing."""
    return isinstance(value, dict) and all(
        value.get(k) in (None, "none") for k in ("effort", "summary", "generate_summary")
    )


def _false(value: Any) -> bool:
    return value is False


def _bad_truncation(param: str, value: str) -> InvalidValue:
    return InvalidValue(
        f"Invalid value: '{value[:64]}'. Supported values are: 'auto' and 'disabled'.",
        param=param,
    )


def _any(value: Any, param: str) -> Any:
    return value


def response_fields() -> list[Field]:
    return [
        Field("model", "string", "A model id from `GET /models`.", required=True),
        Field(
            "input",
            "custom",
            "The conversation's new items.",
            required=True,
            check=check_input,
            schema=INPUT_SCHEMA,
        ),
        Field(
            "instructions",
            "string",
            "A system message put first; not carried over to a response that continues this one.",
        ),
        Field(
            "previous_response_id",
            "string",
            "Continue a stored response: its input and output come before `input`.",
        ),
        Field(
            "max_output_tokens",
            "integer",
            "Most tokens to generate (default: the room left in the context, capped by the "
            "server).",
            MIN_OUTPUT_TOKENS,
        ),
        Field("temperature", "number", "Sampling temperature; 0 is greedy.", 0, 2, default=1.0),
        Field("top_p", "number", "Nucleus sampling mass.", 0, 1, default=1.0),
        Field(
            "tools",
            "custom",
            "Functions the model may call; calls come back as `function_call` items.",
            check=check_tools,
            schema=TOOLS_SCHEMA,
            default=(),
        ),
        Field(
            "tool_choice",
            "custom",
            "`none`, `auto`, `required` or a named function, as the chat endpoint honours them.",
            check=check_tool_choice,
            schema=TOOL_CHOICE_SCHEMA,
            default="auto",
        ),
        Field("text", "custom", "The output's format.", check=check_text, schema=TEXT_SCHEMA),
        Field(
            "metadata",
            "custom",
            "Up to 16 string pairs, stored and echoed.",
            check=check_metadata,
            schema=METADATA_SCHEMA,
        ),
        Field(
            "store",
            "boolean",
            "Keep the response (for `GET`, `input_items` and `previous_response_id`) for the "
            "server's FTSERVE_RESPONSES_TTL_DAYS.",
            default=True,
        ),
        Field(
            "stream", "boolean", "Answer as server-sent events, OpenAI's sequence.", default=False
        ),
        ignored_field(
            "stream_options", "custom", "Obfuscation is never added.", check=_any, schema={}
        ),
        ignored_field(
            "include", "custom", "Extra output data.", check=_any, schema={"type": "array"}
        ),
        ignored_field("parallel_tool_calls", "boolean", "Several calls may come back anyway."),
        ignored_field(
            "truncation",
            "string",
            "Nothing is truncated.",
            enum=("auto", "disabled"),
            enum_error=_bad_truncation,
        ),
        ignored_field("max_tool_calls", "integer", "Only limits built-in tools.", minimum=1),
        ignored_field("prompt_cache_key", "string", "Prompt caching hint."),
        ignored_field("prompt_cache_retention", "string", "Prompt caching hint."),
        ignored_field(
            "prompt_cache_options", "custom", "Prompt caching hint.", check=_any, schema={}
        ),
        ignored_field("context_management", "custom", "Compaction.", check=_any, schema={}),
        ignored_field("safety_identifier", "string", "An end-user id.", maximum=64),
        ignored_field("user", "string", "An end-user id."),
        ignored_field("service_tier", "string", "Every response says `default`."),
        ignored_field(
            "top_logprobs", "integer", "Log probabilities are not returned.", minimum=0, maximum=20
        ),
        refused_field(
            "reasoning",
            "These models do not reason before answering: only an empty `reasoning`.",
            "Unsupported parameter: 'reasoning.effort' is not supported with this model.",
            allowed=_reasoning_ok,
            allowed_schema={"anyOf": [{"type": "object"}, {"type": "null"}]},
        ),
        refused_field(
            "background",
            "Background mode: only `false`.",
            "Unsupported parameter: 'background' is not supported with this model.",
            allowed=_false,
            allowed_schema={"anyOf": [{"const": False}, {"type": "null"}]},
        ),
        refused_field("prompt", "Stored prompt templates."),
        refused_field("conversation", "Stored conversations; use `previous_response_id`."),
    ]


RESPONSE_FIELDS = tuple(response_fields())


def response_request_schema() -> Json:
    return body_schema(
        RESPONSE_FIELDS,
        description="A response request. Unknown fields are refused (400 `Unknown parameter`).",
    )


@dataclass(frozen=True, slots=True)
class ResponseRequest:
    model: str
    items: list[Json]  # this request's input, normal items (ids given)
    instructions: str | None
    previous_response_id: str | None
    max_output_tokens: int | None
    temperature: float
    top_p: float
    tools: list[Json]
    tool_choice: Any
    text: Json
    metadata: Json
    store: bool
    stream: bool


def parse_response_request(body: Json) -> ResponseRequest:
    f = parse_body(body, RESPONSE_FIELDS, unknown=unknown_parameter)
    text = f["text"] or {"format": {"type": "text"}, "verbosity": "medium"}
    return ResponseRequest(
        model=f["model"],
        items=f["input"],
        instructions=f["instructions"],
        previous_response_id=f["previous_response_id"],
        max_output_tokens=f["max_output_tokens"],
        temperature=f["temperature"],
        top_p=f["top_p"],
        tools=list(f["tools"]),
        tool_choice=f["tool_choice"],
        text=text,
        metadata=f["metadata"] or {},
        store=f["store"],
        stream=f["stream"],
    )


_FUNCTION_KEYS = ("name", "description", "parameters", "strict")
# The chat request's names for what it checks again, and the names this request gives them.
_CHAT_PARAMS = {
    "response_format": "text.format",
    "max_completion_tokens": "max_output_tokens",
    "messages": "input",
}


# A chat tool nests its function (``tools[0].function.name``); a Responses tool is flat.
_NESTED_TOOL = re.compile(r"tools\[(\d+)\]\.function\.")


def _renamed(exc: ApiError) -> ApiError:
    param = exc.param or ""
    for chat, ours in _CHAT_PARAMS.items():
        if param == chat or param.startswith((chat + ".", chat + "[")):
            exc.param = ours + param[len(chat) :]
            exc.message = exc.message.replace(f"'{chat}", f"'{ours}").replace(chat, ours)
            break
    if _NESTED_TOOL.match(param):
        exc.param = _NESTED_TOOL.sub(r"tools[\1].", param, count=1)
        exc.message = _NESTED_TOOL.sub(r"tools[\1].", exc.message)
    return exc


def chat_request(
    req: ResponseRequest, messages: list[Json], *, max_generation_tokens: int
) -> ChatRequest:
    """The chat completion that generates the response."""
    body: Json = {
        "model": req.model,
        "messages": messages,
        "temperature": req.temperature,
        "top_p": req.top_p,
    }
    if req.max_output_tokens is not None:
        body["max_completion_tokens"] = req.max_output_tokens
    if req.tools:
        # One key order whatever the client sent: the chat template renders each tool as JSON,
        # so a fine-tune taught on these tools sees them exactly as in its training rows.
        body["tools"] = [
            {"type": "function", "function": {k: t[k] for k in _FUNCTION_KEYS if k in t}}
            for t in req.tools
        ]
        choice = req.tool_choice
        if isinstance(choice, dict):
            choice = {"type": "function", "function": {"name": choice["name"]}}
        body["tool_choice"] = choice
    fmt = req.text["format"]
    if fmt["type"] != "text":
        body["response_format"] = response_format(fmt)
    try:
        return parse_chat(body, max_generation_tokens=max_generation_tokens)
    except ApiError as exc:
        raise _renamed(exc) from None
