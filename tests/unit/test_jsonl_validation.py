"""Tests for the fine-tune JSONL checks in ftserve.files.validation."""

from __future__ import annotations

import io
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftserve.files import validation
from ftserve.files.validation import (
    MAX_LINE_BYTES,
    FileAnalysis,
    FileFormat,
    JsonlError,
    analyse_file,
    analyse_lines,
)

Json = Any

# Hypothesis budgets are kept small so this module runs in a few seconds.
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

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
FORMATS: tuple[FileFormat, ...] = ("chat", "prompt_completion", "preference")
VALID_BY_FORMAT: dict[FileFormat, dict[str, Json]] = {
    "chat": CHAT,
    "prompt_completion": PROMPT_COMPLETION,
    "preference": PREFERENCE,
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


# --- accepted files -------------------------------------------------------------------------

ACCEPTED: list[tuple[str, list[bytes], FileFormat, int]] = [
    ("plain chat", [line(CHAT)], "chat", 1),
    (
        "tools, tool calls and tool results",
        [
            line(
                chat(
                    {"role": "developer", "content": "Use tools."},
                    user("Weather in Paris?", name="alice"),
                    assistant(None, tool_calls=[tool_call()]),
                    {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                    assistant("It is 18C.", weight=1),
                    tools=[WEATHER_TOOL],
                    parallel_tool_calls=False,
                )
            )
        ],
        "chat",
        1,
    ),
    (
        "assistant with tool calls and no content key",
        [
            line(
                chat(
                    user(),
                    {"role": "assistant", "tool_calls": [tool_call("a"), tool_call("b")]},
                    {
                        "role": "tool",
                        "tool_call_id": "a",
                        "content": [{"type": "text", "text": "x"}],
                    },
                    {"role": "tool", "tool_call_id": "b", "content": "y"},
                    assistant("done"),
                    tools=[{"type": "function", "function": {"name": "get_weather"}}],
                )
            )
        ],
        "chat",
        1,
    ),
    (
        "legacy functions and function_call",
        [
            line(
                chat(
                    user(),
                    assistant(None, function_call={"name": "lookup", "arguments": "{}"}),
                    {"role": "function", "name": "lookup", "content": "42"},
                    assistant("42"),
                    functions=[{"name": "lookup", "description": "d", "parameters": {}}],
                )
            )
        ],
        "chat",
        1,
    ),
    (
        "weights, multi-turn",
        [
            line(
                chat(
                    user("a"),
                    assistant("b", weight=0),
                    user("c"),
                    assistant("d", weight=1),
                    user("e"),
                    assistant("f"),
                )
            ),
            line(chat(user(), assistant(weight=0), user(), assistant())),
        ],
        "chat",
        2,
    ),
    (
        "content parts including an image",
        [
            line(
                chat(
                    {"role": "system", "content": [{"type": "text", "text": "Describe images."}]},
                    user(
                        [
                            {"type": "text", "text": "What is this?"},
                            {"type": "image_url", "image_url": {"url": "https://x/cat.png"}},
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
                            },
                        ]
                    ),
                    assistant([{"type": "text", "text": "A cat."}]),
                )
            )
        ],
        "chat",
        1,
    ),
    ("empty assistant text is allowed", [line(chat(user(), assistant("")))], "chat", 1),
    (
        "blank and whitespace-only lines",
        [b"\n", line(CHAT), b"   \n", b"\t\r\n", line(CHAT), b"\n"],
        "chat",
        2,
    ),
    (
        "BOM, CRLF, no final newline",
        [b"\xef\xbb\xbf" + line(CHAT)[:-1] + b"\r\n", orjson.dumps(CHAT)],
        "chat",
        2,
    ),
    ("BOM on a blank first line", [b"\xef\xbb\xbf\n", line(CHAT)], "chat", 1),
    ("prompt/completion", [line(PROMPT_COMPLETION)] * 3, "prompt_completion", 3),
    ("empty prompt", [line({"prompt": "", "completion": "x"})], "prompt_completion", 1),
    ("preference", [line(PREFERENCE), b"\n", line(PREFERENCE)], "preference", 2),
    (
        "preference with tools and a multi-turn input",
        [
            line(
                {
                    "input": {
                        "messages": [
                            {"role": "system", "content": "s"},
                            user("a"),
                            assistant("b"),
                            user("c"),
                        ],
                        "tools": [WEATHER_TOOL],
                        "parallel_tool_calls": True,
                    },
                    "preferred_output": [assistant(None, tool_calls=[tool_call()])],
                    "non_preferred_output": [assistant("I can't check."), assistant("Sorry.")],
                }
            )
        ],
        "preference",
        1,
    ),
]


@pytest.mark.parametrize(
    ("lines", "fmt", "count"),
    [case[1:] for case in ACCEPTED],
    ids=[case[0] for case in ACCEPTED],
)
def test_accepts_valid_files(lines: list[bytes], fmt: FileFormat, count: int) -> None:
    assert analyse_lines(lines) == FileAnalysis(format=fmt, n_examples=count)


# --- rejected lines -------------------------------------------------------------------------

RAW_REJECTIONS: list[tuple[str, bytes, str]] = [
    ("not json", b"{'messages': []}", "is not valid JSON ("),
    ("truncated json", b'{"prompt": "a", "completion": "b"', "is not valid JSON (unexpected end"),
    ("trailing garbage", line(PROMPT_COMPLETION)[:-1] + b" x", "is not valid JSON"),
    ("invalid utf-8", b'{"prompt": "\xff", "completion": "b"}', "is not valid UTF-8 (byte 0xff"),
    ("BOM on a later line", b"\xef\xbb\xbf" + line(PROMPT_COMPLETION), "is not valid JSON"),
    ("array", b"[1, 2]", "must be a JSON object; got an array"),
    ("string", b'"hello"', "must be a JSON object; got 'hello'"),
    ("null", b"null", "must be a JSON object; got null"),
    ("unknown shape", line({"text": "hello"}), "must have 'messages' (chat), 'prompt' and"),
    ("empty object", b"{}", "'input', 'preferred_output' and 'non_preferred_output' (preference)"),
]


@pytest.mark.parametrize(
    ("raw", "fragment"), [case[1:] for case in RAW_REJECTIONS], ids=[c[0] for c in RAW_REJECTIONS]
)
def test_rejects_unusable_lines(raw: bytes, fragment: str) -> None:
    error = rejection([line(PROMPT_COMPLETION), b"\n", raw, line(PROMPT_COMPLETION)])
    assert (error.line, error.example) == (3, 2)
    assert fragment in error.reason
    assert str(error) == f"Line 3: {error.reason}"


CHAT_REJECTIONS: list[tuple[str, Json, str]] = [
    ("messages empty", chat(), "'messages' must be a non-empty array; got an empty array"),
    ("messages not array", {"messages": "hi"}, "'messages' must be a non-empty array; got 'hi'"),
    (
        "unknown top-level key",
        chat(user(), assistant(), foo=1),
        "contains an unrecognized key 'foo'",
    ),
    ("chat with prompt key", chat(user(), assistant(), prompt="x"), "unrecognized key 'prompt'"),
    ("message not object", chat(user(), "hello"), "'messages[1]' must be an object; got 'hello'"),
    ("missing role", chat({"content": "hi"}, assistant()), "'messages[0]' is missing 'role'"),
    (
        "bad role",
        chat(user(), {"role": "bot", "content": "x"}),
        "'messages[1].role' must be one of system, developer, user, assistant, tool; got 'bot'",
    ),
    ("role not string", chat({"role": 1, "content": "x"}), "'messages[0].role' must be one of"),
    ("missing content", chat({"role": "user"}, assistant()), "'messages[0]' is missing 'content'"),
    (
        "assistant missing content",
        chat(user(), {"role": "assistant"}),
        "'messages[1]' is missing 'content'",
    ),
    (
        "null content on user",
        chat(user(None), assistant()),
        "'messages[0].content' must be a string or a non-empty array of content parts; got null",
    ),
    (
        "null content on plain assistant",
        chat(user(), assistant(None)),
        "'messages[1].content' may be null only when the message has 'tool_calls'",
    ),
    ("content number", chat(user(5), assistant()), "'messages[0].content' must be a string"),
    ("content parts empty", chat(user([]), assistant()), "got an empty array"),
    (
        "content part bad type",
        chat(user([{"type": "audio", "audio": "x"}]), assistant()),
        "'messages[0].content[0].type' must be 'text' or 'image_url'; got 'audio'",
    ),
    (
        "text part missing text",
        chat(user([{"type": "text"}]), assistant()),
        "'messages[0].content[0]' is missing 'text'",
    ),
    (
        "text part extra key",
        chat(user([{"type": "text", "text": "a", "x": 1}]), assistant()),
        "'messages[0].content[0]' contains an unrecognized key 'x'",
    ),
    (
        "image part without url",
        chat(user([{"type": "image_url", "image_url": {}}]), assistant()),
        "'messages[0].content[0].image_url' is missing 'url'",
    ),
    (
        "image bad detail",
        chat(
            user([{"type": "image_url", "image_url": {"url": "u", "detail": "max"}}]), assistant()
        ),
        "'messages[0].content[0].image_url.detail' must be one of auto, low, high; got 'max'",
    ),
    (
        "image in assistant message",
        chat(user(), assistant([{"type": "image_url", "image_url": {"url": "u"}}])),
        "images are only allowed in user messages",
    ),
    (
        "image in system message",
        chat(
            {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]},
            user(),
            assistant(),
        ),
        "'messages[0].content[0]' is an image, but images are only allowed in user messages",
    ),
    (
        "image in tool message",
        chat(
            user(),
            assistant(None, tool_calls=[tool_call()]),
            {
                "role": "tool",
                "tool_call_id": "call_1",
                "content": [{"type": "image_url", "image_url": {"url": "u"}}],
            },
            assistant(),
        ),
        "'messages[2].content[0]' is an image",
    ),
    ("name not string", chat(user(name=3), assistant()), "'messages[0].name' must be a string"),
    (
        "unknown message key",
        chat(user(), assistant(foo=1)),
        "'messages[1]' contains an unrecognized key 'foo'",
    ),
    ("refusal", chat(user(), assistant(refusal="no")), "unrecognized key 'refusal'"),
    ("audio", chat(user(), assistant(audio={"id": "a"})), "unrecognized key 'audio'"),
    (
        "weight on user",
        chat(user(weight=1), assistant()),
        "'messages[0]' has a 'weight', but only assistant messages may have one "
        "(this one has role 'user')",
    ),
    (
        "weight on system",
        chat({"role": "system", "content": "s", "weight": 0}, user(), assistant()),
        "(this one has role 'system')",
    ),
    ("weight 2", chat(user(), assistant(weight=2)), "'messages[1].weight' must be 0 or 1; got 2"),
    ("weight 1.0", chat(user(), assistant(weight=1.0)), "must be 0 or 1; got 1.0"),
    ("weight true", chat(user(), assistant(weight=True)), "must be 0 or 1; got true"),
    ("weight string", chat(user(), assistant(weight="1")), "must be 0 or 1; got '1'"),
    ("no assistant", chat(user(), user()), "has no assistant message"),
    (
        "all weights zero",
        chat(user(), assistant(weight=0), user(), assistant(weight=0)),
        "has no assistant message to train on (all have weight 0)",
    ),
    (
        "tool_calls empty",
        chat(user(), assistant(None, tool_calls=[])),
        "'messages[1].tool_calls' must be a non-empty array",
    ),
    (
        "tool call missing id",
        chat(user(), assistant(None, tool_calls=[{"type": "function", "function": {}}])),
        "'messages[1].tool_calls[0]' is missing 'id'",
    ),
    (
        "tool call bad type",
        chat(user(), assistant(None, tool_calls=[{**tool_call(), "type": "code"}])),
        "'messages[1].tool_calls[0].type' must be 'function'; got 'code'",
    ),
    (
        "tool call arguments not string",
        chat(
            user(),
            assistant(
                None,
                tool_calls=[
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}
                ],
            ),
        ),
        "'messages[1].tool_calls[0].function.arguments' must be a string; got an empty object",
    ),
    (
        "function_call missing name",
        chat(user(), assistant(None, function_call={"arguments": "{}"})),
        "'messages[1].function_call' is missing 'name'",
    ),
    (
        "tool message without tool_call_id",
        chat(user(), {"role": "tool", "content": "x"}, assistant()),
        "'messages[1]' is a tool message but is missing 'tool_call_id'",
    ),
    (
        "tool message without content",
        chat(user(), {"role": "tool", "tool_call_id": "c"}, assistant()),
        "'messages[1]' is missing 'content'",
    ),
    (
        "function message without name",
        chat(user(), {"role": "function", "content": "x"}, assistant()),
        "'messages[1]' is a function message but is missing 'name'",
    ),
    ("tools not array", chat(user(), assistant(), tools={}), "'tools' must be an array"),
    (
        "tool bad type",
        chat(user(), assistant(), tools=[{**WEATHER_TOOL, "type": "web_search"}]),
        "'tools[0].type' must be 'function'; got 'web_search'",
    ),
    (
        "tool missing function",
        chat(user(), assistant(), tools=[{"type": "function"}]),
        "'tools[0]' is missing 'function'",
    ),
    (
        "tool function missing name",
        chat(user(), assistant(), tools=[{"type": "function", "function": {"description": "d"}}]),
        "'tools[0].function' is missing 'name'",
    ),
    (
        "tool parameters not object",
        chat(
            user(),
            assistant(),
            tools=[{"type": "function", "function": {"name": "f", "parameters": []}}],
        ),
        "'tools[0].function.parameters' must be an object; got an empty array",
    ),
    (
        "tool strict not bool",
        chat(
            user(),
            assistant(),
            tools=[{"type": "function", "function": {"name": "f", "strict": 1}}],
        ),
        "'tools[0].function.strict' must be true or false; got 1",
    ),
    (
        "tool function unknown key",
        chat(user(), assistant(), tools=[{"type": "function", "function": {"name": "f", "x": 1}}]),
        "'tools[0].function' contains an unrecognized key 'x'",
    ),
    (
        "legacy function with strict",
        chat(user(), assistant(), functions=[{"name": "f", "strict": True}]),
        "'functions[0]' contains an unrecognized key 'strict'",
    ),
    (
        "parallel_tool_calls not bool",
        chat(user(), assistant(), parallel_tool_calls="yes"),
        "'parallel_tool_calls' must be true or false; got 'yes'",
    ),
]

PROMPT_COMPLETION_REJECTIONS: list[tuple[str, Json, str]] = [
    ("missing completion", {"prompt": "a"}, "is missing 'completion'"),
    ("missing prompt", {"completion": "a"}, "is missing 'prompt'"),
    (
        "empty completion",
        {"prompt": "a", "completion": ""},
        "'completion' must be a non-empty string",
    ),
    ("prompt not string", {"prompt": ["a"], "completion": "b"}, "'prompt' must be a string"),
    ("extra key", {"prompt": "a", "completion": "b", "c": 1}, "contains an unrecognized key 'c'"),
]

PREFERENCE_REJECTIONS: list[tuple[str, Json, str]] = [
    (
        "non_preferred_output null",
        {**PREFERENCE, "non_preferred_output": None},
        "'non_preferred_output' must be a non-empty array of assistant messages; got null",
    ),
    (
        "missing key",
        {k: v for k, v in PREFERENCE.items() if k != "preferred_output"},
        "is missing 'preferred_output'",
    ),
    ("extra key", {**PREFERENCE, "messages_extra": 1}, "unrecognized key 'messages_extra'"),
    (
        "input not object",
        {**PREFERENCE, "input": []},
        "'input' must be an object; got an empty array",
    ),
    ("input without messages", {**PREFERENCE, "input": {}}, "'input' is missing 'messages'"),
    (
        "input functions not allowed",
        {**PREFERENCE, "input": {**PREFERENCE["input"], "functions": []}},
        "'input' contains an unrecognized key 'functions'",
    ),
    (
        "input messages empty",
        {**PREFERENCE, "input": {"messages": []}},
        "'input.messages' must be a non-empty array",
    ),
    (
        "input message bad role",
        {**PREFERENCE, "input": {"messages": [{"role": "bot", "content": "x"}]}},
        "'input.messages[0].role' must be one of",
    ),
    (
        "preferred not array",
        {**PREFERENCE, "preferred_output": assistant()},
        "'preferred_output' must be a non-empty array of assistant messages; got an object",
    ),
    (
        "non_preferred empty",
        {**PREFERENCE, "non_preferred_output": []},
        "'non_preferred_output' must be a non-empty array of assistant messages",
    ),
    (
        "output not assistant",
        {**PREFERENCE, "preferred_output": [user()]},
        "'preferred_output[0].role' must be 'assistant'; got 'user'",
    ),
    (
        "output message invalid",
        {**PREFERENCE, "non_preferred_output": [assistant(5)]},
        "'non_preferred_output[0].content' must be a string",
    ),
    (
        "weight in output",
        {**PREFERENCE, "preferred_output": [assistant(weight=1)]},
        "'preferred_output[0]' has a 'weight', but weights apply only to chat examples",
    ),
]


@pytest.mark.parametrize(
    ("fmt", "bad", "fragment"),
    [("chat", *case[1:]) for case in CHAT_REJECTIONS]
    + [("prompt_completion", *case[1:]) for case in PROMPT_COMPLETION_REJECTIONS]
    + [("preference", *case[1:]) for case in PREFERENCE_REJECTIONS],
    ids=[f"chat: {c[0]}" for c in CHAT_REJECTIONS]
    + [f"prompt_completion: {c[0]}" for c in PROMPT_COMPLETION_REJECTIONS]
    + [f"preference: {c[0]}" for c in PREFERENCE_REJECTIONS],
)
def test_rejects_rule_violations(fmt: FileFormat, bad: Json, fragment: str) -> None:
    good = line(VALID_BY_FORMAT[fmt])
    error = rejection([good, b"   \n", good, line(bad), good])
    assert (error.line, error.example) == (4, 3)
    assert fragment in error.reason, error.reason


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        (CHAT, PROMPT_COMPLETION, "uses the prompt/completion format, but line 1 uses the chat"),
        (PROMPT_COMPLETION, PREFERENCE, "uses the preference format, but line 1 uses the prompt/"),
        (PREFERENCE, CHAT, "uses the chat format, but line 1 uses the preference format"),
    ],
)
def test_rejects_mixed_formats(first: Json, second: Json, message: str) -> None:
    error = rejection([line(first), line(first), line(second)])
    assert (error.line, error.example) == (3, 3)
    assert error.reason.startswith(message)


def test_mixed_format_names_the_first_non_blank_line() -> None:
    error = rejection([b"\n", b"\n", line(CHAT), line(PROMPT_COMPLETION)])
    assert error.reason == "uses the prompt/completion format, but line 3 uses the chat format"


@pytest.mark.parametrize(
    "lines", [[], [b""], [b"\n", b"  \r\n", b"\t"], [b"\xef\xbb\xbf"], [b"\xef\xbb\xbf\n", b"\n"]]
)
def test_rejects_files_without_examples(lines: list[bytes]) -> None:
    error = rejection(lines)
    assert (error.line, error.example) == (0, 0)
    assert error.reason == "the file contains no examples"
    assert str(error) == "the file contains no examples"


def test_reports_the_first_error_only() -> None:
    error = rejection([line(chat(user(), user())), b"nonsense"])
    assert error.line == 1


def test_error_survives_pickling() -> None:
    error = JsonlError(7, "'messages' must be a non-empty array", 5)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.line, copy.reason, copy.example) == (7, error.reason, 5)
    assert str(copy) == "Line 7: 'messages' must be a non-empty array"


def test_long_values_are_cut_in_messages() -> None:
    error = rejection([line(chat({"role": "x" * 10_000, "content": "c"}))])
    assert len(str(error)) < 200


# --- line length ----------------------------------------------------------------------------


def test_default_line_limit_is_generous() -> None:
    assert MAX_LINE_BYTES >= 16 * 1024 * 1024


def padded(obj: Json, size: int) -> bytes:
    """Serialise ``obj`` padded with JSON whitespace to exactly ``size`` bytes (no newline)."""
    raw = orjson.dumps(obj)
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


@pytest.mark.parametrize("terminator", [b"", b"\n", b"\r\n"])
def test_line_at_the_limit_is_accepted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, terminator: bytes
) -> None:
    monkeypatch.setattr(validation, "MAX_LINE_BYTES", 200)
    lines = [line(CHAT), padded(CHAT, 200) + terminator]
    expected = FileAnalysis(format="chat", n_examples=2)
    assert analyse_lines(lines) == expected
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"".join(lines))
    assert analyse_file(path) == expected


@pytest.mark.parametrize("terminator", [b"", b"\n", b"\r\n"])
def test_line_over_the_limit_is_rejected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, terminator: bytes
) -> None:
    monkeypatch.setattr(validation, "MAX_LINE_BYTES", 200)
    lines = [line(CHAT), b"\n", padded(CHAT, 201) + terminator, line(CHAT)]
    error = rejection(lines)
    assert (error.line, error.example) == (3, 2)
    assert error.reason == "is longer than the line limit (200 bytes)"
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"".join(lines))
    with pytest.raises(JsonlError) as info:
        analyse_file(path)
    assert (info.value.line, info.value.reason) == (3, error.reason)


class ReadlineSpy(io.BufferedReader):
    """Records how much each readline() returned, to prove lines are read in bounded pieces."""

    sizes: list[int]

    def readline(self, size: int | None = -1, /) -> bytes:
        chunk = super().readline(size)
        self.sizes.append(len(chunk))
        return chunk


def test_file_without_newlines_is_rejected_without_reading_it_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(validation, "MAX_LINE_BYTES", 1024)
    path = tmp_path / "blob.jsonl"
    path.write_bytes(b"x" * (4 * 1024 * 1024))
    sizes: list[int] = []

    def spy_open(self: Path, mode: str = "r", buffering: int = -1) -> ReadlineSpy:
        assert mode == "rb"
        stream = ReadlineSpy(io.FileIO(self, "r"))
        stream.sizes = sizes
        return stream

    monkeypatch.setattr(Path, "open", spy_open)
    with pytest.raises(JsonlError) as info:
        analyse_file(path)
    assert info.value.line == 1
    assert "line limit" in info.value.reason
    assert sizes
    assert max(sizes) <= 1024 + 2


def test_limit_is_reported_in_mib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "MAX_LINE_BYTES", 1024 * 1024)
    error = rejection([b" " * (1024 * 1024 + 1)])
    assert error.reason == "is longer than the line limit (1 MiB)"


# --- analyse_file ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"\xef\xbb\xbf" + line(CHAT) + b"\n" + line(CHAT)[:-1],
        b"\r\n".join(orjson.dumps(PREFERENCE) for _ in range(5)) + b"\r\n",
        line(PROMPT_COMPLETION) * 3 + b"\n\n",
        line(PROMPT_COMPLETION) + line(CHAT),
        line(CHAT) + b"\n\n{broken\n",
        b"",
        b"\n\n",
    ],
)
def test_file_matches_lines(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(content)
    assert outcome(lambda: analyse_file(path)) == outcome(
        lambda: analyse_lines(io.BytesIO(content))
    )


def outcome(run: Callable[[], FileAnalysis]) -> FileAnalysis | tuple[int, str, int]:
    try:
        return run()
    except JsonlError as error:
        return (error.line, error.reason, error.example)


def test_file_errors_propagate(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        analyse_file(tmp_path / "missing.jsonl")


def test_large_file_is_fast(tmp_path: Path) -> None:
    import time

    example = line(
        chat(
            {"role": "system", "content": "You are a helpful assistant."},
            user("What is the capital of France?"),
            assistant("Paris is the capital of France.", weight=1),
        )
    )
    path = tmp_path / "big.jsonl"
    path.write_bytes(example * 50_000)
    start = time.perf_counter()
    assert analyse_file(path) == FileAnalysis(format="chat", n_examples=50_000)
    assert time.perf_counter() - start < 3.0


# --- property-based tests -------------------------------------------------------------------

texts = st.text(max_size=12)
names = st.from_regex(r"[a-z_]{1,10}", fullmatch=True)


def with_weight(message: dict[str, Json], weight: int | None) -> dict[str, Json]:
    message = {key: value for key, value in message.items() if key != "weight"}
    return message if weight is None else {**message, "weight": weight}


@st.composite
def contents(draw: st.DrawFn, *, images: bool = False) -> Json:
    if not draw(st.booleans()):
        return draw(texts)
    part = st.builds(lambda t: {"type": "text", "text": t}, texts)
    if images:
        image = st.builds(
            lambda url, detail: {
                "type": "image_url",
                "image_url": {"url": url} if detail is None else {"url": url, "detail": detail},
            },
            st.from_regex(r"https://[a-z]{1,8}\.png", fullmatch=True),
            st.sampled_from([None, "auto", "low", "high"]),
        )
        part = part | image
    return draw(st.lists(part, min_size=1, max_size=3))


@st.composite
def tool_exchanges(
    draw: st.DrawFn, weights: st.SearchStrategy[int | None]
) -> list[dict[str, Json]]:
    ids = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    calls = [tool_call(call_id, draw(names)) for call_id in ids]
    call_message: dict[str, Json] = {"role": "assistant", "tool_calls": calls}
    if draw(st.booleans()):
        call_message["content"] = draw(st.none() | texts)
    results = [{"role": "tool", "tool_call_id": call_id, "content": draw(texts)} for call_id in ids]
    return [with_weight(call_message, draw(weights)), *results]


@st.composite
def conversations(draw: st.DrawFn, *, weighted: bool) -> list[dict[str, Json]]:
    """A conversation ending in an assistant message that carries training signal."""
    weights = st.sampled_from([None, 0, 1]) if weighted else st.none()
    messages: list[dict[str, Json]] = []
    if draw(st.booleans()):
        role = draw(st.sampled_from(["system", "developer"]))
        messages.append({"role": role, "content": draw(contents())})
    for _ in range(draw(st.integers(1, 3))):
        message = {"role": "user", "content": draw(contents(images=True))}
        if draw(st.booleans()):
            message["name"] = draw(names)
        messages.append(message)
        if draw(st.booleans()):
            messages.extend(draw(tool_exchanges(weights)))
        messages.append(with_weight(assistant(draw(contents())), draw(weights)))
    messages[-1] = with_weight(messages[-1], 1 if weighted and draw(st.booleans()) else None)
    return messages


tools_lists = st.lists(
    st.builds(
        lambda name, description: {
            "type": "function",
            "function": {"name": name, "description": description, "parameters": {}},
        },
        names,
        texts,
    ),
    max_size=2,
)


@st.composite
def chat_examples(draw: st.DrawFn) -> dict[str, Json]:
    example: dict[str, Json] = {"messages": draw(conversations(weighted=True))}
    if draw(st.booleans()):
        example["tools"] = draw(tools_lists)
    if draw(st.booleans()):
        example["parallel_tool_calls"] = draw(st.booleans())
    return example


prompt_completion_examples = st.builds(
    lambda prompt, completion: {"prompt": prompt, "completion": completion},
    texts,
    st.text(min_size=1, max_size=12),
)


@st.composite
def preference_examples(draw: st.DrawFn) -> dict[str, Json]:
    # The preferred and non-preferred outputs stand in for the conversation's final answer.
    prompt: dict[str, Json] = {"messages": draw(conversations(weighted=False))[:-1]}
    if draw(st.booleans()):
        prompt["tools"] = draw(tools_lists)
    outputs = st.lists(st.builds(assistant, contents()), min_size=1, max_size=2)
    return {
        "input": prompt,
        "preferred_output": draw(outputs),
        "non_preferred_output": draw(outputs),
    }


EXAMPLES: dict[FileFormat, st.SearchStrategy[dict[str, Json]]] = {
    "chat": chat_examples(),
    "prompt_completion": prompt_completion_examples,
    "preference": preference_examples(),
}

blank_lines = st.sampled_from([b"\n", b"  \n", b"\t\r\n", b"\r\n"])


@st.composite
def valid_files(draw: st.DrawFn) -> tuple[FileFormat, list[bytes], int]:
    """A format, the file's physical lines, and its number of examples."""
    fmt = draw(st.sampled_from(FORMATS))
    examples = draw(st.lists(EXAMPLES[fmt], min_size=1, max_size=6))
    lines: list[bytes] = []
    for example in examples:
        lines.extend(draw(st.lists(blank_lines, max_size=2)))
        lines.append(line(example))
    lines.extend(draw(st.lists(blank_lines, max_size=2)))
    if draw(st.booleans()):
        lines[-1] = lines[-1].rstrip(b"\r\n")  # no final newline
        if not lines[-1]:
            lines.pop()  # an empty last "line" does not exist in a real file
    if draw(st.booleans()):
        lines[0] = b"\xef\xbb\xbf" + lines[0]
    return fmt, lines, len(examples)


@FAST
@given(valid_files())
def test_generated_valid_files_are_accepted(file: tuple[FileFormat, list[bytes], int]) -> None:
    fmt, lines, count = file
    assert analyse_lines(lines) == FileAnalysis(format=fmt, n_examples=count)


# Lines that are wrong whatever the file's format and wherever they appear.
BROKEN_LINES = [
    b"not json\n",
    b'{"messages": [\n',
    b"[]\n",
    b"42\n",
    b'{"foo": "bar"}\n',
    b'{"messages": []}\n',
    line(chat(user(), user())),
    line(chat(user(weight=1), assistant())),
    line({"prompt": "a", "completion": ""}),
    line({**PREFERENCE, "preferred_output": [user()]}),
    b'{"prompt": "\xc3\x28", "completion": "x"}\n',
]


def is_blank(raw: bytes) -> bool:
    return not raw.removeprefix(b"\xef\xbb\xbf").strip()


@FAST
@given(valid_files(), st.sampled_from(BROKEN_LINES), st.data())
def test_broken_line_is_located(
    file: tuple[FileFormat, list[bytes], int], broken: bytes, data: st.DataObject
) -> None:
    _, lines, _ = file
    if not lines[-1].endswith(b"\n"):
        lines[-1] += b"\n"  # so that an appended line stays a line of its own
    position = data.draw(st.integers(0, len(lines)), label="position")
    if position == 0 and lines[0].startswith(b"\xef\xbb\xbf"):
        broken = b"\xef\xbb\xbf" + broken
        lines[0] = lines[0][3:]
    lines.insert(position, broken)
    expected_example = sum(1 for raw in lines[: position + 1] if not is_blank(raw))
    error = rejection(lines)
    assert error.line == position + 1, error
    assert error.example == expected_example


@FAST
@given(st.binary(max_size=400))
def test_arbitrary_bytes_only_raise_jsonl_error(content: bytes) -> None:
    try:
        analyse_lines(io.BytesIO(content))
    except JsonlError as error:
        assert error.line >= 0


relevant_keys = st.sampled_from(
    [
        "messages",
        "role",
        "content",
        "weight",
        "tool_calls",
        "function_call",
        "tool_call_id",
        "name",
        "arguments",
        "id",
        "type",
        "function",
        "tools",
        "functions",
        "parameters",
        "text",
        "image_url",
        "url",
        "detail",
        "prompt",
        "completion",
        "input",
        "preferred_output",
        "non_preferred_output",
        "parallel_tool_calls",
        "strict",
    ]
)
leaf_values = (
    st.none()
    | st.booleans()
    | st.integers(-2, 3)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["user", "assistant", "tool", "system", "function", "text", "image_url", ""])
    | texts
)
json_values = st.recursive(
    leaf_values,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(relevant_keys, inner, max_size=4),
    max_leaves=20,
)


@FAST
@given(st.lists(json_values, min_size=1, max_size=3))
def test_structured_garbage_only_raises_jsonl_error(values: list[Json]) -> None:
    try:
        analyse_lines([line(value) for value in values])
    except JsonlError as error:
        assert error.line >= 1


def json_slots(value: Json) -> list[tuple[Json, Any]]:
    """Every (container, key) whose value could be replaced, depth first."""
    slots: list[tuple[Json, Any]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            slots.append((value, key))
            slots.extend(json_slots(child))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            slots.append((value, index))
            slots.extend(json_slots(child))
    return slots


@FAST
@given(
    st.sampled_from(FORMATS).flatmap(lambda fmt: EXAMPLES[fmt]),
    st.data(),
)
def test_mutated_examples_only_raise_jsonl_error(
    example: dict[str, Json], data: st.DataObject
) -> None:
    slots = json_slots(example)
    container, key = data.draw(st.sampled_from(slots), label="slot")
    action = data.draw(st.sampled_from(["replace", "delete", "add"]), label="action")
    if action == "replace":
        container[key] = data.draw(json_values, label="value")
    elif action == "delete":
        del container[key]
    elif isinstance(container, dict):
        container[data.draw(relevant_keys | texts, label="new key")] = data.draw(json_values)
    else:
        container.append(data.draw(json_values, label="new item"))
    try:
        analyse_lines([line(example)])
    except JsonlError as error:
        assert (error.line, error.example) == (1, 1)


@settings(max_examples=25, deadline=None)
@given(valid_files(), st.sampled_from([*BROKEN_LINES, b"\n"]), st.data())
def test_file_and_lines_agree(
    file: tuple[FileFormat, list[bytes], int], broken: bytes, data: st.DataObject
) -> None:
    _, lines, _ = file
    if not lines[-1].endswith(b"\n"):
        lines[-1] += b"\n"
    lines.insert(data.draw(st.integers(1, len(lines))), broken)
    content = b"".join(lines)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "train.jsonl"
        path.write_bytes(content)
        from_file = outcome(lambda: analyse_file(path))
    assert from_file == outcome(lambda: analyse_lines(lines))
    assert from_file == outcome(lambda: analyse_lines(io.BytesIO(content)))
