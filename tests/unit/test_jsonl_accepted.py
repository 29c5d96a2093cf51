"""ftserve.files.validation accepts valid fine-tune JSONL files of each format."""

from __future__ import annotations

import orjson
import pytest

from ftserve.files.validation import (
    FileAnalysis,
    FileFormat,
    analyse_lines,
)
from tests.unit.jsonl_examples import (
    CHAT,
    PREFERENCE,
    PROMPT_COMPLETION,
    WEATHER_TOOL,
    assistant,
    chat,
    line,
    tool_call,
    user,
)

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
