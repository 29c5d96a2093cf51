"""A response's ``input``: a string, or items (``message``, ``function_call``,
``function_call_output``), checked with OpenAI's wording and stored in one normal form (the
form ``GET /responses/{id}/input_items`` lists), and the chat messages the model is prompted
with.

The Agents SDK replays a whole conversation as items instead of chaining responses: an assistant
``message`` it was sent before, then ``function_call`` items and their ``function_call_output``.
Consecutive calls become one assistant message with ``tool_calls`` (the form the trainer teaches
them in), each output a ``tool`` message.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from ..errors import InvalidRequest, InvalidType, InvalidValue, MissingParameter
from ..ids import ALPHABET
from ..wire.fields import unsupported_value

Json = dict[str, Any]

INPUT_ROLES = ("user", "system", "developer")
ROLES = (*INPUT_ROLES, "assistant")
ITEM_TYPES = ("message", "function_call", "function_call_output")
# Item types OpenAI has that nothing here can take: a 400 naming the item's type.
UNSUPPORTED_ITEMS = (
    "reasoning",
    "item_reference",
    "file_search_call",
    "web_search_call",
    "computer_call",
    "computer_call_output",
    "image_generation_call",
    "code_interpreter_call",
    "local_shell_call",
    "local_shell_call_output",
    "shell_call",
    "shell_call_output",
    "apply_patch_call",
    "apply_patch_call_output",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
    "custom_tool_call",
    "custom_tool_call_output",
    "compaction",
)
UNSUPPORTED_PARTS = ("input_image", "input_file", "input_audio", "refusal")


def item_id(prefix: str) -> str:
    """``msg_``/``fc_``/``fco_`` + 48 base62, the length of OpenAI's item ids."""
    return prefix + "".join(secrets.choice(ALPHABET) for _ in range(48))


def _unknown(name: str) -> InvalidValue:
    return InvalidValue(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")


def _keys(obj: Json, allowed: tuple[str, ...], param: str) -> None:
    for key in obj:
        if key not in allowed:
            raise _unknown(f"{param}.{key}")


def _string(obj: Json, key: str, param: str) -> str:
    value = obj.get(key)
    if value is None:
        raise MissingParameter(f"{param}.{key}")
    if not isinstance(value, str):
        raise InvalidType(f"{param}.{key}", "a string", value)
    return value


def _bad_value(param: str, value: Any, allowed: tuple[str, ...]) -> InvalidValue:
    shown = json.dumps(value)[:64] if not isinstance(value, str) else f"'{value[:64]}'"
    return InvalidValue(
        f"Invalid value: {shown}. Supported values are: "
        + ", ".join(f"'{a}'" for a in allowed)
        + ".",
        param=param,
    )


def _parts(value: Any, param: str, role: str) -> str:
    """The text of a message's content: a string, or text parts (``input_text``; an assistant's
    ``output_text``)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise InvalidType(param, "a string or an array of content parts", value)
    text_type = "output_text" if role == "assistant" else "input_text"
    texts: list[str] = []
    for j, part in enumerate(value):
        p = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise InvalidType(p, "an object", part)
        kind = part.get("type")
        if kind is None:
            raise MissingParameter(f"{p}.type")
        if kind in UNSUPPORTED_PARTS:
            raise unsupported_value(
                f"{p}.type",
                f"Unsupported value: '{p}.type' does not support '{kind}' with this model.",
            )
        if kind != text_type:
            raise _bad_value(f"{p}.type", kind, (text_type,))
        # Replayed output text carries its annotations and logprobs: read past them.
        allowed = ("type", "text", "annotations", "logprobs") if role == "assistant" else None
        _keys(part, allowed or ("type", "text"), p)
        texts.append(_string(part, "text", p))
    return "".join(texts)


def _message(item: Json, param: str) -> Json:
    _keys(item, ("type", "role", "content", "id", "status", "phase"), param)
    role = item.get("role")
    if role is None:
        raise MissingParameter(f"{param}.role")
    if role not in ROLES:
        raise _bad_value(f"{param}.role", role, ROLES)
    if item.get("content") is None:
        raise MissingParameter(f"{param}.content")
    text = _parts(item["content"], f"{param}.content", role)
    if role == "assistant":
        part: Json = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        return {
            "id": _given_id(item, param, "msg_"),
            "type": "message",
            "role": "assistant",
            "content": [part],
            "status": "completed",
        }
    return {
        "id": _given_id(item, param, "msg_"),
        "type": "message",
        "role": role,
        "content": [{"type": "input_text", "text": text}],
        "status": "completed",
    }


def _given_id(item: Json, param: str, prefix: str) -> str:
    if item.get("id") is None:
        return item_id(prefix)
    if not isinstance(item["id"], str):
        raise InvalidType(f"{param}.id", "a string", item["id"])
    return item["id"]


def _function_call(item: Json, param: str) -> Json:
    _keys(item, ("type", "id", "call_id", "name", "arguments", "status"), param)
    return {
        "id": _given_id(item, param, "fc_"),
        "type": "function_call",
        "status": "completed",
        "arguments": _string(item, "arguments", param),
        "call_id": _string(item, "call_id", param),
        "name": _string(item, "name", param),
    }


def _function_output(item: Json, param: str) -> Json:
    _keys(item, ("type", "id", "call_id", "output", "status"), param)
    call_id = _string(item, "call_id", param)
    if item.get("output") is None:
        raise MissingParameter(f"{param}.output")
    output = _parts(item["output"], f"{param}.output", "user")
    return {
        "id": _given_id(item, param, "fco_"),
        "type": "function_call_output",
        "call_id": call_id,
        "output": output,
        "status": "completed",
    }


def check_input(value: Any, param: str) -> list[Json]:
    """The input as normal items (a string is one user message)."""
    if isinstance(value, str):
        return [_message({"role": "user", "content": value}, param)]
    if not isinstance(value, list):
        raise InvalidType(param, "a string or an array of input items", value)
    items: list[Json] = []
    for i, item in enumerate(value):
        p = f"{param}[{i}]"
        if not isinstance(item, dict):
            raise InvalidType(p, "an object", item)
        kind = item.get("type", "message" if "role" in item else None)
        if kind is None:
            raise MissingParameter(f"{p}.type")
        if kind in UNSUPPORTED_ITEMS:
            raise unsupported_value(
                f"{p}.type",
                f"Unsupported value: '{p}.type' does not support '{kind}' with this model.",
            )
        if kind == "message":
            items.append(_message(item, p))
        elif kind == "function_call":
            items.append(_function_call(item, p))
        elif kind == "function_call_output":
            items.append(_function_output(item, p))
        else:
            raise _bad_value(f"{p}.type", kind, ITEM_TYPES)
    return items


INPUT_SCHEMA: Json = {
    "anyOf": [
        {"type": "string", "description": "One user message."},
        {
            "type": "array",
            "items": {
                "anyOf": [
                    {
                        "type": "object",
                        "required": ["role", "content"],
                        "properties": {
                            "type": {"const": "message"},
                            "role": {"type": "string", "enum": list(ROLES)},
                            "content": {
                                "anyOf": [
                                    {"type": "string"},
                                    {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["type", "text"],
                                            "properties": {
                                                "type": {"enum": ["input_text", "output_text"]},
                                                "text": {"type": "string"},
                                            },
                                        },
                                    },
                                ]
                            },
                            "id": {"type": "string"},
                            "status": {"type": "string"},
                        },
                    },
                    {
                        "type": "object",
                        "required": ["type", "call_id", "name", "arguments"],
                        "properties": {
                            "type": {"const": "function_call"},
                            "id": {"type": "string"},
                            "call_id": {"type": "string"},
                            "name": {"type": "string"},
                            "arguments": {"type": "string"},
                            "status": {"type": "string"},
                        },
                    },
                    {
                        "type": "object",
                        "required": ["type", "call_id", "output"],
                        "properties": {
                            "type": {"const": "function_call_output"},
                            "id": {"type": "string"},
                            "call_id": {"type": "string"},
                            "output": {"type": "string"},
                            "status": {"type": "string"},
                        },
                    },
                ]
            },
        },
    ],
    "description": "A string (one user message) or items: `message` (role user, system, "
    "developer or assistant; text content), `function_call` and `function_call_output`. Image, "
    "file and audio parts, reasoning items and item references are refused (400 naming them).",
}


# -- the chat messages the model is prompted with ----------------------------------------------


def _text(item: Json) -> str:
    return "".join(part["text"] for part in item["content"])


def chat_messages(instructions: str | None, items: list[Json]) -> list[Json]:
    """``instructions`` (a system message first), then the items as chat messages."""
    messages: list[Json] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    called: set[str] = set()
    for item in items:
        kind = item["type"]
        if kind == "message":
            messages.append({"role": item["role"], "content": _text(item)})
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            called.add(item["call_id"])
            last = messages[-1] if messages else None
            # Calls right after an assistant's text, or after other calls, belong to it.
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        else:
            if item["call_id"] not in called:
                raise InvalidRequest(
                    f"No tool call found for function call output with call_id {item['call_id']}.",
                    param="input",
                )
            messages.append(
                {"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]}
            )
    return messages
