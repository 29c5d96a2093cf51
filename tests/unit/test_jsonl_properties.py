"""Property-based tests of ftserve.files.validation (hypothesis): generated valid files are
accepted, a broken line is located, arbitrary input only ever raises JsonlError, and the file
and line readers agree."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftserve.files.validation import (
    FileAnalysis,
    FileFormat,
    JsonlError,
    analyse_file,
    analyse_lines,
)
from tests.unit.jsonl_examples import (
    FORMATS,
    PREFERENCE,
    Json,
    assistant,
    chat,
    line,
    outcome,
    rejection,
    tool_call,
    user,
)

# Hypothesis budgets are kept small so this module runs in a few seconds.
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

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


@st.composite
def reinforcement_examples(draw: st.DrawFn) -> dict[str, Json]:
    # A prompt (perhaps with earlier turns) ending with the user's turn; other keys: the item.
    earlier = draw(st.lists(conversations(weighted=False), max_size=1))
    prompt = [*(earlier[0] if earlier else []), user(draw(contents(images=True)))]
    item = draw(st.dictionaries(names.filter(lambda k: k != "messages"), texts, max_size=3))
    return {"messages": prompt, **item}


EXAMPLES: dict[FileFormat, st.SearchStrategy[dict[str, Json]]] = {
    "chat": chat_examples(),
    "prompt_completion": prompt_completion_examples,
    "preference": preference_examples(),
    "reinforcement": reinforcement_examples(),
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
    line(chat(user(), {"role": "developer", "content": "no answer"})),
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
