"""Line-by-line checks for fine-tune JSONL files, following OpenAI's training data formats.

The checks run when a file is uploaded (and again when a job is created), so they must reject
anything the trainer could not use and say exactly where, in words a user can act on: the error
carries the physical line number because that is what an editor shows. They must also be cheap
enough to run over a 1 GiB upload, hence one ``orjson.loads`` per line, no intermediate lists, and
error paths (``'messages[1].role'``) that are only formatted once something is wrong.

The rules follow OpenAI's documented training formats so that files prepared for OpenAI work here
unchanged. Keys the trainer would not use (``refusal``, ``audio``, anything unknown) are rejected
rather than ignored: silently dropping part of someone's training data is worse than a clear error
at upload time.

Reinforcement rows (``{"messages": [...], <any other keys: the grader's item>}``) share
``messages`` with chat rows; the last message tells them apart without knowing the job's method:
a prompt to sample from ends with the user's turn, an example to imitate with the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, NoReturn

import orjson

__all__ = [
    "MAX_LINE_BYTES",
    "FileAnalysis",
    "FileFormat",
    "JsonlError",
    "analyse_file",
    "analyse_lines",
    "first_format",
]

FileFormat = Literal["chat", "prompt_completion", "preference", "reinforcement"]

# One example is held in memory (raw bytes plus parsed objects) at a time; this bounds that.
MAX_LINE_BYTES: int = 64 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"
# Strings quoted back to the user are cut so that one absurd value cannot make a huge message.
_QUOTE_LIMIT = 40

_FORMAT_NAMES: dict[str, str] = {
    "chat": "chat",
    "prompt_completion": "prompt/completion",
    "preference": "preference",
    "reinforcement": "reinforcement",
}
# For a file mixing chat and reinforcement rows, which differ only in how their messages end.
_FORMAT_HINTS: dict[str, str] = {
    "chat": " (its last message is the assistant's answer)",
    "reinforcement": " (its last message is the user's prompt)",
}

_CHAT_KEYS = frozenset({"messages", "tools", "functions", "parallel_tool_calls"})
_PROMPT_COMPLETION_KEYS = frozenset({"prompt", "completion"})
_PREFERENCE_KEYS = frozenset({"input", "preferred_output", "non_preferred_output"})
_PREFERENCE_INPUT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})

# The advertised list leaves out the legacy 'function' role: it is still accepted so that old
# files keep working, but new files should use 'tool'.
_ROLES_TEXT = "system, developer, user, assistant, tool"
_MESSAGE_KEYS: dict[str, frozenset[str]] = {
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "weight", "tool_calls", "function_call"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
    "function": frozenset({"role", "content", "name"}),
}
# DPO compares whole outputs, so a per-message weight has no meaning in preference examples.
_PREFERENCE_MESSAGE_KEYS = {**_MESSAGE_KEYS, "assistant": _MESSAGE_KEYS["assistant"] - {"weight"}}
_OUTPUT_ROLES = {"assistant": _PREFERENCE_MESSAGE_KEYS["assistant"]}

_TOOL_KEYS = frozenset({"type", "function"})
_TOOL_FUNCTION_KEYS = frozenset({"name", "description", "parameters", "strict"})
_LEGACY_FUNCTION_KEYS = frozenset({"name", "description", "parameters"})
_TOOL_CALL_KEYS = frozenset({"id", "type", "function"})
_CALL_FUNCTION_KEYS = frozenset({"name", "arguments"})
_TEXT_PART_KEYS = frozenset({"type", "text"})
_IMAGE_PART_KEYS = frozenset({"type", "image_url"})
_IMAGE_URL_KEYS = frozenset({"url", "detail"})
_IMAGE_DETAILS = ("auto", "low", "high")

_NO_FORMAT = (
    "must have 'messages' (chat), 'prompt' and 'completion' (prompt/completion), "
    "or 'input', 'preferred_output' and 'non_preferred_output' (preference)"
)

# What _check_message reports about a message, so callers can enforce per-example rules.
_NOT_ASSISTANT = 0
_ASSISTANT_UNTRAINED = 1
_ASSISTANT_TRAINED = 2


@dataclass(frozen=True, slots=True)
class FileAnalysis:
    format: FileFormat
    n_examples: int


class JsonlError(Exception):
    """A fine-tune file is not usable.

    ``line`` is the 1-based physical line number (blank lines included, as an editor counts),
    or 0 when the problem is about the whole file. ``example`` is the 1-based index among
    non-blank lines, or 0 for whole-file problems. ``reason`` has no line prefix so callers can
    place it in their own wording.
    """

    line: int
    reason: str
    example: int

    def __init__(self, line: int, reason: str, example: int = 0) -> None:
        # Passing every field to Exception keeps the error picklable across process boundaries.
        super().__init__(line, reason, example)
        self.line = line
        self.reason = reason
        self.example = example

    def __str__(self) -> str:
        if self.line == 0:
            return self.reason
        return f"Line {self.line}: {self.reason}"


class _Invalid(Exception):
    """Raised by the per-example checks, which do not know the line; the driver adds it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def analyse_lines(lines: Iterable[bytes]) -> FileAnalysis:
    """Check every line of a fine-tune file and report its format and example count.

    Each item of ``lines`` is one physical line, with or without its line terminator. The first
    problem found is raised as :class:`JsonlError`; nothing else is raised for bad data.
    """
    file_format: FileFormat | None = None
    format_line = 0
    n_examples = 0
    for line_no, raw in enumerate(lines, 1):
        if len(raw) > MAX_LINE_BYTES and _content_length(raw) > MAX_LINE_BYTES:
            n_examples += 1
            raise JsonlError(line_no, _too_long_reason(), n_examples)
        if line_no == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if not raw or raw.isspace():
            continue
        n_examples += 1
        try:
            example = _parse(raw)
            line_format = _classify(example)
            if file_format is None:
                file_format, format_line = line_format, line_no
            elif line_format != file_format:
                raise _Invalid(_mixed(line_format, file_format, format_line))
            _CHECKS[line_format](example)
        except _Invalid as exc:
            raise JsonlError(line_no, exc.reason, n_examples) from None
    if file_format is None:
        raise JsonlError(0, "the file contains no examples")
    return FileAnalysis(format=file_format, n_examples=n_examples)


def analyse_file(path: Path) -> FileAnalysis:
    """Stream ``path`` through :func:`analyse_lines` without ever holding more than one line.

    Errors opening or reading the file (``OSError``) propagate unchanged: they are about the
    storage, not the data.
    """
    with path.open("rb", buffering=1024 * 1024) as stream:
        return analyse_lines(_read_lines(stream))


def first_format(path: Path) -> FileFormat | None:
    """The format of the file's first example, read alone: that of the whole file once it
    passed :func:`analyse_file` (every upload has). None where that example is unusable."""
    with path.open("rb") as stream:
        for line_no, raw in enumerate(_read_lines(stream), 1):
            if line_no == 1:
                raw = raw.removeprefix(_BOM)
            if not raw or raw.isspace():
                continue
            try:
                return _classify(_parse(raw))
            except _Invalid:
                return None
    return None


def _read_lines(stream: IO[bytes]) -> Iterator[bytes]:
    # readline() without a limit would pull a multi-GiB newline-free file into memory. Two extra
    # bytes leave room for a CRLF terminator so a line of exactly MAX_LINE_BYTES still fits.
    limit = MAX_LINE_BYTES + 2
    while chunk := stream.readline(limit):
        yield chunk
        if len(chunk) == limit and not chunk.endswith(b"\n"):
            # The chunk is already over the limit, so analyse_lines has rejected it; yielding
            # the rest of the line would only misnumber everything after it.
            return


def _content_length(raw: bytes) -> int:
    if raw.endswith(b"\r\n"):
        return len(raw) - 2
    if raw.endswith(b"\n"):
        return len(raw) - 1
    return len(raw)


def _too_long_reason() -> str:
    limit = MAX_LINE_BYTES
    shown = f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit} bytes"
    return f"is longer than the line limit ({shown})"


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise _Invalid(
                f"is not valid UTF-8 (byte 0x{raw[bad.start]:02x} at offset {bad.start})"
            ) from None
        raise _Invalid(f"is not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise _Invalid(f"must be a JSON object; got {_describe(value)}")
    return value


def _mixed(line_format: FileFormat, file_format: FileFormat, format_line: int) -> str:
    hint = _FORMAT_HINTS if {line_format, file_format} == {"chat", "reinforcement"} else {}
    return (
        f"uses the {_FORMAT_NAMES[line_format]} format{hint.get(line_format, '')}, but line "
        f"{format_line} uses the {_FORMAT_NAMES[file_format]} format{hint.get(file_format, '')}"
    )


def _classify(example: dict[str, Any]) -> FileFormat:
    # 'messages' wins over the other markers so that e.g. a chat line with a stray 'prompt' key
    # is reported as an unrecognized key, which is the more likely mistake.
    if "messages" in example:
        messages = example["messages"]
        last = messages[-1] if isinstance(messages, list) and messages else None
        if isinstance(last, dict) and last.get("role") == "user":
            return "reinforcement"
        return "chat"
    if "input" in example or "preferred_output" in example or "non_preferred_output" in example:
        return "preference"
    if "prompt" in example or "completion" in example:
        return "prompt_completion"
    raise _Invalid(_NO_FORMAT)


def _check_chat(example: dict[str, Any]) -> None:
    _reject_unknown_keys(example, _CHAT_KEYS, "")
    seen = _check_conversation(example["messages"], "messages", _MESSAGE_KEYS)
    if seen == _NOT_ASSISTANT:
        raise _Invalid("has no assistant message")
    if seen == _ASSISTANT_UNTRAINED:
        raise _Invalid("has no assistant message to train on (all have weight 0)")
    if "tools" in example:
        _check_tools(example["tools"], "tools")
    if "functions" in example:
        _check_legacy_functions(example["functions"])
    if "parallel_tool_calls" in example:
        _expect_bool(example["parallel_tool_calls"], "parallel_tool_calls")


def _check_prompt_completion(example: dict[str, Any]) -> None:
    _reject_unknown_keys(example, _PROMPT_COMPLETION_KEYS, "")
    for key in ("prompt", "completion"):
        if key not in example:
            raise _Invalid(f"is missing '{key}'")
    _expect_str(example["prompt"], "prompt")
    completion = example["completion"]
    if not isinstance(completion, str) or not completion:
        raise _Invalid(f"'completion' must be a non-empty string; got {_describe(completion)}")


def _check_preference(example: dict[str, Any]) -> None:
    _reject_unknown_keys(example, _PREFERENCE_KEYS, "")
    for key in ("input", "preferred_output", "non_preferred_output"):
        if key not in example:
            raise _Invalid(f"is missing '{key}'")
    prompt = example["input"]
    if not isinstance(prompt, dict):
        raise _Invalid(f"'input' must be an object; got {_describe(prompt)}")
    _reject_unknown_keys(prompt, _PREFERENCE_INPUT_KEYS, "input")
    if "messages" not in prompt:
        raise _Invalid("'input' is missing 'messages'")
    _check_conversation(prompt["messages"], "input.messages", _PREFERENCE_MESSAGE_KEYS)
    if "tools" in prompt:
        _check_tools(prompt["tools"], "input.tools")
    if "parallel_tool_calls" in prompt:
        _expect_bool(prompt["parallel_tool_calls"], "input.parallel_tool_calls")
    for key in ("preferred_output", "non_preferred_output"):
        _check_preference_output(example[key], key)


def _check_reinforcement(example: dict[str, Any]) -> None:
    # Every key but 'messages' is the grader's item (any JSON). The prompt is only sampled from,
    # so, as in a preference example's input, no message has a weight.
    _check_conversation(example["messages"], "messages", _PREFERENCE_MESSAGE_KEYS)


_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "chat": _check_chat,
    "prompt_completion": _check_prompt_completion,
    "preference": _check_preference,
    "reinforcement": _check_reinforcement,
}


def _check_conversation(
    messages: object, path: str, keys_by_role: dict[str, frozenset[str]]
) -> int:
    """Check a message array; return the most trainable kind of message it contains."""
    if not isinstance(messages, list) or not messages:
        raise _Invalid(f"'{path}' must be a non-empty array; got {_describe(messages)}")
    best = _NOT_ASSISTANT
    for index, message in enumerate(messages):
        seen = _check_message(message, path, index, keys_by_role)
        if seen > best:
            best = seen
    return best


def _check_preference_output(output: object, path: str) -> None:
    if not isinstance(output, list) or not output:
        raise _Invalid(
            f"'{path}' must be a non-empty array of assistant messages; got {_describe(output)}"
        )
    for index, message in enumerate(output):
        if isinstance(message, dict) and message.get("role", "assistant") != "assistant":
            role = _describe(message["role"])
            raise _Invalid(f"'{path}[{index}].role' must be 'assistant'; got {role}")
        _check_message(message, path, index, _OUTPUT_ROLES)


def _check_message(
    message: object, base: str, index: int, keys_by_role: dict[str, frozenset[str]]
) -> int:
    if not isinstance(message, dict):
        raise _Invalid(f"'{base}[{index}]' must be an object; got {_describe(message)}")
    if "role" not in message:
        raise _Invalid(f"'{base}[{index}]' is missing 'role'")
    role = message["role"]
    allowed = keys_by_role.get(role) if isinstance(role, str) else None
    if allowed is None:
        raise _Invalid(
            f"'{base}[{index}].role' must be one of {_ROLES_TEXT}; got {_describe(role)}"
        )
    if "weight" in message and "weight" not in allowed:
        if role == "assistant":
            raise _Invalid(
                f"'{base}[{index}]' has a 'weight', but weights apply only to chat examples"
            )
        raise _Invalid(
            f"'{base}[{index}]' has a 'weight', but only assistant messages may have one "
            f"(this one has role '{role}')"
        )
    _reject_unknown_keys(message, allowed, f"{base}[{index}]")

    if "name" in message:
        _expect_str(message["name"], f"{base}[{index}].name")

    if role == "assistant":
        return _check_assistant(message, base, index)
    if "content" not in message:
        raise _Invalid(f"'{base}[{index}]' is missing 'content'")
    _check_content(message["content"], base, index, images=role == "user")
    if role == "tool":
        if "tool_call_id" not in message:
            raise _Invalid(f"'{base}[{index}]' is a tool message but is missing 'tool_call_id'")
        _expect_str(message["tool_call_id"], f"{base}[{index}].tool_call_id")
    elif role == "function" and "name" not in message:
        raise _Invalid(f"'{base}[{index}]' is a function message but is missing 'name'")
    return _NOT_ASSISTANT


def _check_assistant(message: dict[str, Any], base: str, index: int) -> int:
    calls_tools = False
    if "tool_calls" in message:
        _check_tool_calls(message["tool_calls"], f"{base}[{index}].tool_calls")
        calls_tools = True
    if "function_call" in message:
        _check_function_call(message["function_call"], f"{base}[{index}].function_call")
        calls_tools = True
    content = message.get("content")
    if content is None:
        # A message that only calls tools legitimately has no text.
        if not calls_tools:
            if "content" in message:
                raise _Invalid(
                    f"'{base}[{index}].content' may be null only when the message has "
                    "'tool_calls' or 'function_call'"
                )
            raise _Invalid(f"'{base}[{index}]' is missing 'content'")
    else:
        _check_content(content, base, index, images=False)
    if "weight" not in message:
        return _ASSISTANT_TRAINED
    weight = message["weight"]
    # type() rather than isinstance(): JSON true/false must not pass as 1/0, nor 1.0 as 1.
    if type(weight) is not int or weight not in (0, 1):
        raise _Invalid(f"'{base}[{index}].weight' must be 0 or 1; got {_describe(weight)}")
    return _ASSISTANT_TRAINED if weight else _ASSISTANT_UNTRAINED


def _check_content(content: object, base: str, index: int, *, images: bool) -> None:
    if isinstance(content, str):
        return
    path = f"{base}[{index}].content"
    if not isinstance(content, list) or not content:
        raise _Invalid(
            f"'{path}' must be a string or a non-empty array of content parts; "
            f"got {_describe(content)}"
        )
    for part_index, part in enumerate(content):
        part_path = f"{path}[{part_index}]"
        if not isinstance(part, dict):
            raise _Invalid(f"'{part_path}' must be an object; got {_describe(part)}")
        part_type = part.get("type")
        if part_type == "text":
            _reject_unknown_keys(part, _TEXT_PART_KEYS, part_path)
            if "text" not in part:
                raise _Invalid(f"'{part_path}' is missing 'text'")
            _expect_str(part["text"], f"{part_path}.text")
        elif part_type == "image_url":
            if not images:
                raise _Invalid(
                    f"'{part_path}' is an image, but images are only allowed in user messages"
                )
            _check_image_part(part, part_path)
        else:
            raise _Invalid(
                f"'{part_path}.type' must be 'text' or 'image_url'; got {_describe(part_type)}"
            )


def _check_image_part(part: dict[str, Any], path: str) -> None:
    _reject_unknown_keys(part, _IMAGE_PART_KEYS, path)
    image = _expect_object(part, "image_url", path)
    _reject_unknown_keys(image, _IMAGE_URL_KEYS, f"{path}.image_url")
    if "url" not in image:
        raise _Invalid(f"'{path}.image_url' is missing 'url'")
    _expect_non_empty_str(image["url"], f"{path}.image_url.url")
    if "detail" in image and image["detail"] not in _IMAGE_DETAILS:
        raise _Invalid(
            f"'{path}.image_url.detail' must be one of {', '.join(_IMAGE_DETAILS)}; "
            f"got {_describe(image['detail'])}"
        )


def _check_tool_calls(calls: object, path: str) -> None:
    if not isinstance(calls, list) or not calls:
        raise _Invalid(f"'{path}' must be a non-empty array; got {_describe(calls)}")
    for call_index, call in enumerate(calls):
        call_path = f"{path}[{call_index}]"
        if not isinstance(call, dict):
            raise _Invalid(f"'{call_path}' must be an object; got {_describe(call)}")
        _reject_unknown_keys(call, _TOOL_CALL_KEYS, call_path)
        for key in ("id", "type", "function"):
            if key not in call:
                raise _Invalid(f"'{call_path}' is missing '{key}'")
        _expect_non_empty_str(call["id"], f"{call_path}.id")
        _expect_function_type(call["type"], f"{call_path}.type")
        _check_function_call(call["function"], f"{call_path}.function")


def _check_function_call(call: object, path: str) -> None:
    if not isinstance(call, dict):
        raise _Invalid(f"'{path}' must be an object; got {_describe(call)}")
    _reject_unknown_keys(call, _CALL_FUNCTION_KEYS, path)
    for key in ("name", "arguments"):
        if key not in call:
            raise _Invalid(f"'{path}' is missing '{key}'")
    _expect_non_empty_str(call["name"], f"{path}.name")
    _expect_str(call["arguments"], f"{path}.arguments")


def _check_tools(tools: object, path: str) -> None:
    if not isinstance(tools, list):
        raise _Invalid(f"'{path}' must be an array; got {_describe(tools)}")
    for tool_index, tool in enumerate(tools):
        tool_path = f"{path}[{tool_index}]"
        if not isinstance(tool, dict):
            raise _Invalid(f"'{tool_path}' must be an object; got {_describe(tool)}")
        _reject_unknown_keys(tool, _TOOL_KEYS, tool_path)
        if "type" not in tool:
            raise _Invalid(f"'{tool_path}' is missing 'type'")
        _expect_function_type(tool["type"], f"{tool_path}.type")
        function = _expect_object(tool, "function", tool_path)
        _check_function_definition(function, f"{tool_path}.function", _TOOL_FUNCTION_KEYS)


def _check_legacy_functions(functions: object) -> None:
    if not isinstance(functions, list):
        raise _Invalid(f"'functions' must be an array; got {_describe(functions)}")
    for function_index, function in enumerate(functions):
        function_path = f"functions[{function_index}]"
        if not isinstance(function, dict):
            raise _Invalid(f"'{function_path}' must be an object; got {_describe(function)}")
        _check_function_definition(function, function_path, _LEGACY_FUNCTION_KEYS)


def _check_function_definition(
    function: dict[str, Any], path: str, allowed: frozenset[str]
) -> None:
    _reject_unknown_keys(function, allowed, path)
    if "name" not in function:
        raise _Invalid(f"'{path}' is missing 'name'")
    _expect_non_empty_str(function["name"], f"{path}.name")
    if "description" in function:
        _expect_str(function["description"], f"{path}.description")
    if "parameters" in function and not isinstance(function["parameters"], dict):
        raise _Invalid(
            f"'{path}.parameters' must be an object; got {_describe(function['parameters'])}"
        )
    if "strict" in function:
        _expect_bool(function["strict"], f"{path}.strict")


def _reject_unknown_keys(obj: dict[str, Any], allowed: frozenset[str], path: str) -> None:
    if allowed.issuperset(obj):
        return
    # Report the first offender in document order so the message is stable for a given line.
    key = next(key for key in obj if key not in allowed)
    subject = f"'{path}' contains" if path else "contains"
    raise _Invalid(f"{subject} an unrecognized key {_quote(key)}")


def _expect_object(parent: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    if key not in parent:
        raise _Invalid(f"'{path}' is missing '{key}'")
    value = parent[key]
    if not isinstance(value, dict):
        raise _Invalid(f"'{path}.{key}' must be an object; got {_describe(value)}")
    return value


def _expect_str(value: object, path: str) -> None:
    if not isinstance(value, str):
        _wrong_type(value, path, "a string")


def _expect_non_empty_str(value: object, path: str) -> None:
    if not isinstance(value, str) or not value:
        _wrong_type(value, path, "a non-empty string")


def _expect_bool(value: object, path: str) -> None:
    if not isinstance(value, bool):
        _wrong_type(value, path, "true or false")


def _expect_function_type(value: object, path: str) -> None:
    if value != "function":
        raise _Invalid(f"'{path}' must be 'function'; got {_describe(value)}")


def _wrong_type(value: object, path: str, expected: str) -> NoReturn:
    raise _Invalid(f"'{path}' must be {expected}; got {_describe(value)}")


def _describe(value: object) -> str:
    """Name a JSON value the way a user who wrote it would recognise it."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= _QUOTE_LIMIT else text[:_QUOTE_LIMIT] + "..."
    if isinstance(value, list):
        return "an array" if value else "an empty array"
    if isinstance(value, dict):
        return "an object" if value else "an empty object"
    return type(value).__name__


def _quote(text: str) -> str:
    if len(text) > _QUOTE_LIMIT:
        return repr(text[:_QUOTE_LIMIT]) + "..."
    return repr(text)
