"""Tool calls in generated text, in the form the trainer teaches them (modeling/chat_templates):
``<tool_call>{"name": …, "arguments": …}</tool_call>``, one per line after any content.

A call whose JSON does not parse, or has no string ``name``, stays in the content as text: only
what the model really wrote as a call becomes one.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from ..ids import ALPHABET

Json = dict[str, Any]
OPEN, CLOSE = "<tool_call>", "</tool_call>"
_CALL = re.compile(re.escape(OPEN) + r"(.*?)" + re.escape(CLOSE), re.DOTALL)


def call_id() -> str:
    """``call_`` + 24 base62, as OpenAI's."""
    return "call_" + "".join(secrets.choice(ALPHABET) for _ in range(24))


@dataclass(frozen=True, slots=True)
class Parsed:
    content: str | None  # None when the answer is only tool calls
    calls: tuple[Json, ...]  # {id, type: "function", function: {name, arguments: str}}


def _call(raw: str) -> Json | None:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    arguments = obj.get("arguments", {})
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return {
        "id": call_id(),
        "type": "function",
        "function": {"name": obj["name"], "arguments": arguments},
    }


def parse_tool_calls(text: str) -> Parsed:
    calls: list[Json] = []
    kept: list[str] = []
    last = 0
    for match in _CALL.finditer(text):
        call = _call(match.group(1).strip())
        if call is None:
            continue
        kept.append(text[last : match.start()])
        last = match.end()
        calls.append(call)
    kept.append(text[last:])
    if not calls:
        return Parsed(text, ())
    content = "".join(kept).strip("\n")
    return Parsed(content if content.strip() else None, tuple(calls))
