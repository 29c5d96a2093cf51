"""Fine-tune JSONL examples and builders that the tests of ftserve.files.validation share:
one valid example of each format, messages, tool calls, and the error a file is refused with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from ftserve.files.validation import FileAnalysis, FileFormat, JsonlError, analyse_lines

Json = Any

CHAT: dict[str, Json] = {
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ]
}
PROMPT_COMPLETION: dict[str, Json] = {"prompt": "2+2=", "completion": "4"}
PREFERENCE: dict[str, Json] = {
    "input": {"messages": [{"role": "user", "content": "Say hi"}]},
    "preferred_output": [{"role": "assistant", "content": "Hi!"}],
    "non_preferred_output": [{"role": "assistant", "content": "No."}],
}
REINFORCEMENT: dict[str, Json] = {
    "messages": [{"role": "user", "content": "Capital of France?"}],
    "answer": "Paris",
}
FORMATS: tuple[FileFormat, ...] = ("chat", "prompt_completion", "preference", "reinforcement")
VALID_BY_FORMAT: dict[FileFormat, dict[str, Json]] = {
    "chat": CHAT,
    "prompt_completion": PROMPT_COMPLETION,
    "preference": PREFERENCE,
    "reinforcement": REINFORCEMENT,
}


def line(obj: Json) -> bytes:
    return orjson.dumps(obj) + b"\n"


def chat(*messages: Json, **extra: Json) -> dict[str, Json]:
    return {"messages": list(messages), **extra}


def user(content: Json = "hi", **extra: Json) -> dict[str, Json]:
    return {"role": "user", "content": content, **extra}


def assistant(content: Json = "hello", **extra: Json) -> dict[str, Json]:
    return {"role": "assistant", "content": content, **extra}


def tool_call(call_id: str = "call_1", name: str = "get_weather") -> dict[str, Json]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": '{"city": "Paris"}'},
    }


WEATHER_TOOL: dict[str, Json] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}


def rejection(lines: list[bytes]) -> JsonlError:
    with pytest.raises(JsonlError) as info:
        analyse_lines(lines)
    return info.value


def outcome(run: Callable[[], FileAnalysis]) -> FileAnalysis | tuple[int, str, int]:
    """What a reader made of a file: its analysis, or where and why it refused it."""
    try:
        return run()
    except JsonlError as error:
        return (error.line, error.reason, error.example)
