"""Structured outputs on chat completions: ``response_format``, ``tool_choice`` and the grammar
that constrained decoding follows.

The API process checks the request (shapes, OpenAI's strict-mode rules, and whether the grammar
engine can honour the schema) and writes the grammar as llguidance Lark text; the inference
process compiles it against the model's tokenizer and masks each constrained row's logits
(``ftserve.modeling.constraint``).

* ``{"type": "json_schema", "json_schema": {name, schema, strict}}``: one JSON value matching the
  schema (``strict: false``: JSON, guided by the schema, keywords the engine cannot enforce
  skipped); ``{"type": "json_object"}``: any JSON object, and the messages must say "json".
* ``tool_choice`` ``required`` or a named function: the answer is one or more tool calls in the
  model's tool-call format (``<tool_call>{"name": …, "arguments": …}</tool_call>`` lines), their
  arguments constrained by each function's ``parameters`` (strictly when the tool is strict).
* ``auto`` with a strict tool: the answer is either text without a tool call in it, or tool
  calls whose arguments match.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequest, InvalidType, InvalidValue, MissingParameter
from ..wire.fields import unrecognized
from .strict_schema import TEMPLATE_JSON, check_strict, engine_refusal, json_grammar, json_rule
from .toolcalls import CLOSE, OPEN

Json = dict[str, Any]
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_FORMATS = ("text", "json_object", "json_schema")
_ANY_OBJECT: Json = {"type": "object"}
JSON_WORD = (
    "'messages' must contain the word 'json' in some form, to use 'response_format' of type "
    "'json_object'."
)


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    kind: str  # text | json_object | json_schema
    schema: Json | None = None
    strict: bool = False


def check_response_format(value: Any, param: str) -> ResponseFormat:
    if not isinstance(value, dict):
        raise InvalidType(param, "an object", value)
    kind = value.get("type")
    if kind is None:
        raise MissingParameter(f"{param}.type")
    if kind not in _FORMATS:
        raise InvalidValue(
            f"Invalid value: {json.dumps(kind)[:64]}. Supported values are: 'text', "
            "'json_object', and 'json_schema'.",
            param=f"{param}.type",
        )
    for key in value:
        if key not in ("type", "json_schema") or (key == "json_schema" and kind != "json_schema"):
            raise unrecognized(f"{param}.{key}")
    if kind != "json_schema":
        return ResponseFormat(kind)
    spec = value.get("json_schema")
    p = f"{param}.json_schema"
    if spec is None:
        raise MissingParameter(p)
    if not isinstance(spec, dict):
        raise InvalidType(p, "an object", spec)
    for key in spec:
        if key not in ("name", "description", "schema", "strict"):
            raise unrecognized(f"{p}.{key}")
    name = spec.get("name")
    if name is None:
        raise MissingParameter(f"{p}.name")
    if not isinstance(name, str):
        raise InvalidType(f"{p}.name", "a string", name)
    if not _NAME.match(name):
        raise InvalidValue(
            f"Invalid '{p}.name': string does not match pattern. Expected a string that "
            f"matches the pattern '{_NAME.pattern}'.",
            param=f"{p}.name",
        )
    if spec.get("description") is not None and not isinstance(spec["description"], str):
        raise InvalidType(f"{p}.description", "a string", spec["description"])
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise InvalidType(f"{p}.strict", "a boolean", strict)
    schema = spec.get("schema", _ANY_OBJECT)
    if not isinstance(schema, dict):
        raise InvalidType(f"{p}.schema", "an object", schema)
    if strict:
        check_strict(schema, what="response_format", name=name, param=param)
    refusal = engine_refusal(json_grammar(schema, strict=bool(strict)))
    if refusal is not None:
        raise InvalidRequest(f"Invalid schema for response_format '{name}': {refusal}", param=param)
    return ResponseFormat(kind, schema, bool(strict))


RESPONSE_FORMAT_SCHEMA: Json = {
    "anyOf": [
        {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": ["text", "json_object"]}},
            "additionalProperties": False,
        },
        {
            "type": "object",
            "required": ["type", "json_schema"],
            "properties": {
                "type": {"const": "json_schema"},
                "json_schema": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "pattern": _NAME.pattern},
                        "description": {"type": ["string", "null"]},
                        "schema": {"type": "object"},
                        "strict": {"type": ["boolean", "null"]},
                    },
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
        },
    ],
    "description": "`text`, `json_object` (the messages must mention JSON) or `json_schema`; "
    "JSON answers are produced by constrained decoding, so with `strict: true` they always "
    "validate (unless `max_tokens` ends them first: `finish_reason` `length`).",
}


# -- tool_choice ---------------------------------------------------------------------------------


def check_tool_choice(value: Any, param: str) -> str | Json:
    """``none``, ``auto``, ``required``, or ``{"type": "function", "function": {"name": …}}``."""
    if isinstance(value, str):
        if value in ("none", "auto", "required"):
            return value
        raise InvalidValue(
            f"Invalid value: '{value[:64]}'. Supported values are: 'none', 'auto', and 'required'.",
            param=param,
        )
    if not isinstance(value, dict):
        raise InvalidType(param, "a string or an object", value)
    for key in value:
        if key not in ("type", "function"):
            raise unrecognized(f"{param}.{key}")
    if value.get("type") is None:
        raise MissingParameter(f"{param}.type")
    if value["type"] != "function":
        raise InvalidValue(
            f"Invalid value: {json.dumps(value['type'])[:64]}. Supported values are: 'function'.",
            param=f"{param}.type",
        )
    fn = value.get("function")
    if fn is None:
        raise MissingParameter(f"{param}.function")
    if not isinstance(fn, dict):
        raise InvalidType(f"{param}.function", "an object", fn)
    for key in fn:
        if key != "name":
            raise unrecognized(f"{param}.function.{key}")
    if fn.get("name") is None:
        raise MissingParameter(f"{param}.function.name")
    if not isinstance(fn["name"], str):
        raise InvalidType(f"{param}.function.name", "a string", fn["name"])
    return {"type": "function", "function": {"name": fn["name"]}}


TOOL_CHOICE_SCHEMA: Json = {
    "anyOf": [
        {"type": "string", "enum": ["none", "auto", "required"]},
        {
            "type": "object",
            "required": ["type", "function"],
            "properties": {
                "type": {"const": "function"},
                "function": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}},
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
        },
    ]
}


def check_strict_tools(tools: tuple[Json, ...], param: str) -> None:
    for i, tool in enumerate(tools):
        fn = tool["function"]
        if fn.get("strict"):
            check_strict(
                fn.get("parameters", {"type": "object", "properties": {}}),
                what="function",
                name=fn["name"],
                param=f"{param}[{i}].function.parameters",
            )


# -- the grammar ---------------------------------------------------------------------------------


def _call_schema(fn: Json) -> Json:
    """The JSON inside one ``<tool_call>``, as the chat templates render it."""
    return {
        "type": "object",
        "properties": {
            "name": {"const": fn["name"]},
            "arguments": fn.get("parameters") or _ANY_OBJECT,
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def _tool_grammar(tools: tuple[Json, ...], *, only: str | None, answer: str | None) -> str:
    """Tool calls (``only``: one call of that function); ``answer``: the rule body of what the
    model may write instead of calls (None: calls only)."""
    chosen = [t["function"] for t in tools if only is None or t["function"]["name"] == only]
    bodies = [
        json_rule(_call_schema(fn), strict=bool(fn.get("strict")), spacing=TEMPLATE_JSON)
        for fn in chosen
    ]
    for fn, body in zip(chosen, bodies, strict=True):
        refusal = engine_refusal("start: " + body)
        if refusal is not None:  # parameters the engine cannot follow, even as guidance
            raise InvalidRequest(
                f"Invalid schema for function '{fn['name']}': {refusal}",
                param="tools",
                code="invalid_function_parameters",
            )
    rules = [f"call_{k}: {body}" for k, body in enumerate(bodies)]
    call = f"call: {json.dumps(OPEN)} (" + " | ".join(f"call_{k}" for k in range(len(chosen)))
    call += f") {json.dumps(CLOSE)}"
    # A named function: one call, as OpenAI's; "required": one or more, a line each.
    calls = "calls: call" if only is not None else 'calls: call ("\\n" call)*'
    start = "start: calls" if answer is None else f"start: calls | answer\nanswer: {answer}"
    return "\n".join([start, calls, call, *rules])


# Text that is no call at all: a call the model writes must be one the grammar checks.
_NOT_A_CALL = "TEXT\nTEXT: /(?s:.*)/ & ~/(?s:.*<tool_call>.*)/"


def grammar_for(
    response_format: ResponseFormat | None,
    tools: tuple[Json, ...] | None,
    tool_choice: str | Json | None,
) -> str | None:
    """The grammar a request's answer must follow; None when it is free."""
    answer: str | None = None  # what a JSON answer must be, when one is asked for
    if response_format is not None and response_format.kind == "json_object":
        answer = json_rule(_ANY_OBJECT, strict=False)
    elif response_format is not None and response_format.kind == "json_schema":
        assert response_format.schema is not None
        answer = json_rule(response_format.schema, strict=response_format.strict)
    if tools and isinstance(tool_choice, dict):
        return _tool_grammar(tools, only=tool_choice["function"]["name"], answer=None)
    if tools and tool_choice == "required":
        return _tool_grammar(tools, only=None, answer=None)
    if tools and (answer is not None or any(t["function"].get("strict") for t in tools)):
        # "auto": calls, or the answer (JSON as asked, else text without a call in it).
        return _tool_grammar(tools, only=None, answer=answer or _NOT_A_CALL)
    return None if answer is None else "start: " + answer


def mentions_json(messages: tuple[Json, ...]) -> bool:
    return any("json" in str(m.get("content") or "").lower() for m in messages)
