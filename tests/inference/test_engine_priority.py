"""A waiting live request is placed before waiting batch lines (``Generate.priority``)."""

from __future__ import annotations

from pathlib import Path

import torch

from ftserve.inference.engine.scheduler import MAX_BATCHES
from ftserve.inference.protocol import (
    BATCH_PRIORITY,
    LIVE_PRIORITY,
    Finished,
    Generate,
    Piece,
    Sampling,
)
from tests.inference.engine_harness import CHAT, TINY, Harness


def test_a_live_request_overtakes_waiting_batch_lines(models_dir: Path) -> None:
    h = Harness(models_dir, max_batch=1)  # one row a batch: MAX_BATCHES requests run at once
    sampling = Sampling(max_tokens=6, temperature=0)

    def submit(rid: str, priority: int) -> None:
        with torch.inference_mode():
            h.engine.submit(Generate(rid, TINY, CHAT, sampling, priority=priority))

    for i in range(MAX_BATCHES):
        submit(f"line-{i}", BATCH_PRIORITY)
    h.step()  # every slot taken
    for i in range(MAX_BATCHES, MAX_BATCHES + 2):  # two lines waiting, then a live request
        submit(f"line-{i}", BATCH_PRIORITY)
    submit("live", LIVE_PRIORITY)
    h.drain()
    firsts = {}
    for k, msg in enumerate(h.out):
        if isinstance(msg, Piece | Finished):
            firsts.setdefault(msg.request_id, k)
    waiting = [f"line-{MAX_BATCHES}", f"line-{MAX_BATCHES + 1}"]
    assert all(firsts["live"] < firsts[rid] for rid in waiting), firsts
    assert all(firsts[f"line-{i}"] < firsts["live"] for i in range(MAX_BATCHES))
