"""Batch lines yield to live requests (``Generate.priority``): a waiting live request is placed
before waiting batch lines, gets a slot they leave free, and while it runs their batches step
only one round in ``BATCH_EVERY``."""

from __future__ import annotations

from pathlib import Path

import torch

from ftserve.inference.engine.scheduler import MAX_BATCHES
from ftserve.inference.protocol import (
    BATCH_PRIORITY,
    BATCH_ROWS_FACTOR,
    LIVE_PRIORITY,
    Finished,
    Generate,
    Piece,
    Sampling,
)
from tests.inference.engine_harness import CHAT, TINY, Harness


def test_a_live_request_overtakes_batch_lines(models_dir: Path) -> None:
    h = Harness(models_dir)
    # Seeded: each request is a batch of its own (so the slots are what is counted).
    sampling = Sampling(max_tokens=6, temperature=0, seed=1)

    def submit(rid: str, priority: int) -> None:
        with torch.inference_mode():
            h.engine.submit(Generate(rid, TINY, CHAT, sampling, priority=priority))

    running = [f"line-{i}" for i in range(MAX_BATCHES + 1)]
    for rid in running:
        submit(rid, BATCH_PRIORITY)
    h.step()
    started = {m.request_id for m in h.out if isinstance(m, Piece)}
    assert started == set(running[: MAX_BATCHES - 1])  # one slot left to live requests
    waiting = running[MAX_BATCHES - 1 :]
    submit("live", LIVE_PRIORITY)
    h.drain()
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for k, msg in enumerate(h.out):
        if isinstance(msg, Piece):
            first.setdefault(msg.request_id, k)
        if isinstance(msg, Finished):
            last[msg.request_id] = k
    assert all(first["live"] < first[rid] for rid in waiting), first
    # Started a step after them and as long, the live request still finishes first.
    assert all(last["live"] < last[rid] for rid in started), last


def test_batch_lines_wait_for_a_row_of_their_batch(models_dir: Path) -> None:
    h = Harness(models_dir, max_batch=2)
    rows = 2 * BATCH_ROWS_FACTOR  # a batch line's batch is that much fuller than a live one's
    for i in range(rows + 1):
        with torch.inference_mode():
            h.engine.submit(
                Generate(f"line-{i}", TINY, CHAT, Sampling(max_tokens=4), priority=BATCH_PRIORITY)
            )
    h.step()
    assert len(h.engine.batches) == 1 and len(h.engine.pending) == 1
    h.drain()
    assert {m.request_id for m in h.out if isinstance(m, Finished)} == {
        f"line-{i}" for i in range(rows + 1)
    }
