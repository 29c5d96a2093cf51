"""The inference process itself: spawned like the API spawns it, spoken to over a Pipe."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from ftserve.inference.process import main
from ftserve.inference.protocol import (
    Accepted,
    Cancel,
    ChatPrompt,
    EngineSettings,
    Failed,
    Finished,
    FromInference,
    Generate,
    Piece,
    Rejected,
    Sampling,
    ServedModel,
    TextPrompt,
)
from ftserve.modeling.loading import load_tokenizer
from tests.inference.engine_harness import TINY

CHAT = ChatPrompt(({"role": "user", "content": "Hello"},))


@pytest.fixture
def process(models_dir: Path) -> Iterator[tuple[Connection, Any]]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=main, args=(child, EngineSettings(models_dir=str(models_dir))))
    proc.start()
    child.close()
    try:
        yield parent, proc
    finally:
        parent.close()
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
            proc.join()


def receive_until(conn: Connection, done: Any, timeout: float = 60.0) -> list[FromInference]:
    messages: list[FromInference] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.poll(0.1):
            message = conn.recv()
            messages.append(message)
            if done(messages):
                return messages
    raise AssertionError(f"timed out; got {messages[-5:]}")


def finished(rid: str, n: int = 1) -> Any:
    return lambda ms: sum(isinstance(m, Finished) and m.request_id == rid for m in ms) >= n


def never_stop(model_dir: Path) -> tuple[tuple[int, float], ...]:
    """A logit bias that keeps a random model from ending early (CI once saw a stop first)."""
    from transformers import AutoConfig

    tokenizer = load_tokenizer(model_dir)
    ids = {tokenizer.eos_token_id, AutoConfig.from_pretrained(model_dir).eos_token_id}
    ids.add(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    return tuple((i, -100.0) for i in sorted(i for i in ids if isinstance(i, int) and i >= 0))


def test_process_serves_cancels_fails_and_exits(
    process: tuple[Connection, Any], tmp_path: Path, tiny_dir: Path
) -> None:
    conn, proc = process
    conn.send(Generate("a", TINY, CHAT, Sampling(max_tokens=8, temperature=0, n=2)))
    got = receive_until(conn, finished("a", 2))
    assert isinstance(got[0], Accepted) and got[0].request_id == "a"
    for index in (0, 1):
        pieces = [m for m in got if isinstance(m, Piece) and m.index == index]
        (end,) = [m for m in got if isinstance(m, Finished) and m.index == index]
        assert end.completion_tokens == len(pieces) >= 1
        assert got.index(end) > max(got.index(p) for p in pieces)

    # A long request, cancelled once it streams; another request is served meanwhile.
    conn.send(
        Generate(
            "long",
            TINY,
            CHAT,
            Sampling(max_tokens=1500, temperature=1.0, logit_bias=never_stop(tiny_dir)),
        )
    )
    receive_until(conn, lambda ms: sum(isinstance(m, Piece) for m in ms) >= 3)
    conn.send(Cancel("long"))
    conn.send(Generate("b", TINY, TextPrompt("Hi"), Sampling(max_tokens=5, temperature=0)))
    got = receive_until(conn, finished("b"))
    assert not any(isinstance(m, Finished) and m.request_id == "long" for m in got)
    time.sleep(0.5)
    while conn.poll(0.1):
        late = conn.recv()
        assert late.request_id != "long"

    # Missing weights: Failed, and the process keeps serving.
    gone = ServedModel("ft:x", "lora", "ftserve-tiny", str(tmp_path / "missing"))
    conn.send(Generate("gone", gone, CHAT, Sampling(max_tokens=3)))
    (failed,) = receive_until(conn, lambda ms: True)
    assert isinstance(failed, Failed) and failed.request_id == "gone"
    conn.send(Generate("long2", TINY, TextPrompt("y" * 2048), Sampling()))
    (rejected,) = receive_until(conn, lambda ms: True)
    assert isinstance(rejected, Rejected) and rejected.code == "context_length_exceeded"
    conn.send(Generate("c", TINY, CHAT, Sampling(max_tokens=3)))
    assert isinstance(receive_until(conn, finished("c"))[-1], Finished)

    # The parent going away ends the process.
    conn.close()
    proc.join(timeout=30)
    assert proc.exitcode == 0


def test_process_without_its_device_fails_each_request(models_dir: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    settings = EngineSettings(models_dir=str(models_dir), device="cuda")
    proc = ctx.Process(target=main, args=(child, settings))
    proc.start()
    child.close()
    try:
        parent.send(Generate("a", TINY, CHAT, Sampling(max_tokens=3)))
        (failed,) = receive_until(parent, lambda ms: True)
        assert isinstance(failed, Failed) and "CUDA" in failed.message
    finally:
        parent.close()
        proc.join(timeout=30)
    assert proc.exitcode == 0
