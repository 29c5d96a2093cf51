"""ftserve.files.validation refuses unusable lines, rule violations, mixed formats and files
without examples, naming the first error only."""

from __future__ import annotations

import pickle

import pytest

from ftserve.files.validation import (
    FileFormat,
    JsonlError,
)
from tests.unit.jsonl_examples import (
    CHAT,
    PREFERENCE,
    PROMPT_COMPLETION,
    VALID_BY_FORMAT,
    WEATHER_TOOL,
    Json,
    assistant,
    chat,
    line,
    rejection,
    tool_call,
    user,
)

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
    ("no assistant", chat(user(), {"role": "developer", "content": "d"}), "has no assistant"),
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
    error = rejection([line(chat(user(), {"role": "system", "content": "s"})), b"nonsense"])
    assert error.line == 1


def test_error_survives_pickling() -> None:
    error = JsonlError(7, "'messages' must be a non-empty array", 5)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.line, copy.reason, copy.example) == (7, error.reason, 5)
    assert str(copy) == "Line 7: 'messages' must be a non-empty array"


def test_long_values_are_cut_in_messages() -> None:
    error = rejection([line(chat({"role": "x" * 10_000, "content": "c"}))])
    assert len(str(error)) < 200
