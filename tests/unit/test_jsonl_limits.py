"""ftserve.files.validation: the line length limit (without reading a long line whole), and
analyse_file agreeing with analyse_lines, quickly on a large file."""

from __future__ import annotations

import io
import time
from pathlib import Path

import orjson
import pytest

from ftserve.files import validation
from ftserve.files.validation import (
    MAX_LINE_BYTES,
    FileAnalysis,
    JsonlError,
    analyse_file,
    analyse_lines,
)
from tests.unit.jsonl_examples import (
    CHAT,
    PREFERENCE,
    PROMPT_COMPLETION,
    Json,
    assistant,
    chat,
    line,
    outcome,
    rejection,
    user,
)


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


def test_file_errors_propagate(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        analyse_file(tmp_path / "missing.jsonl")


def test_large_file_is_fast(tmp_path: Path) -> None:

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
