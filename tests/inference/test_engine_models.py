"""The engine on LoRA adapters and full fine-tunes: outputs match PEFT, adapters share one base and
are evicted LRU, memory budgets, missing and read-only weights, a failure confined to its batch."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path
from typing import Any

import pytest
import torch

from ftserve.inference.protocol import (
    Failed,
    ServedModel,
)
from ftserve.modeling.loading import load_tokenizer
from tests.inference.engine_harness import (
    CHAT,
    TINY,
    Harness,
    chat_ids,
    generated_tokens,
    lora,
    reference,
    token_strings,
)


def test_lora_changes_output_and_matches_peft_generate(
    harness: Harness, tiny_dir: Path, adapters: list[Path]
) -> None:
    tokenizer = load_tokenizer(tiny_dir)
    ids = chat_ids(tokenizer, CHAT)
    # Base and two adapters decoded in one mixed batch.
    harness.submit("base", TINY, CHAT, max_tokens=16, temperature=0, logprobs=True)
    harness.submit(
        "l0", lora(adapters[0], "ft:a"), CHAT, max_tokens=16, temperature=0, logprobs=True
    )
    harness.submit(
        "l1", lora(adapters[1], "ft:b"), CHAT, max_tokens=16, temperature=0, logprobs=True
    )
    with torch.inference_mode():
        harness.engine._admit()
    assert len(harness.engine.batches) == 1 and len(harness.engine.batches[0].rows) == 3
    harness.drain()
    base = generated_tokens(harness, "base")
    assert base == token_strings(tokenizer, reference(tiny_dir, ids, 16))
    for rid, adapter in (("l0", adapters[0]), ("l1", adapters[1])):
        expected = token_strings(tokenizer, reference(tiny_dir, ids, 16, adapter=adapter))
        assert generated_tokens(harness, rid) == expected
        assert generated_tokens(harness, rid) != base


def test_adapters_share_one_base(harness: Harness, adapters: list[Path]) -> None:
    for i in range(2):
        harness.one(f"l{i}", lora(adapters[i]), CHAT, max_tokens=3)
    store = harness.engine.store
    assert len(store.loaded) == 1
    (loaded,) = store.loaded.values()
    assert len(loaded.adapters) == 2
    layer = loaded.peft.base_model.model.model.layers[0].self_attn.q_proj
    assert set(layer.lora_A) == set(loaded.adapters.values())
    # One base weight under both adapters: the same storage the plain model had.
    plain = loaded.model.model.layers[0].self_attn.q_proj.base_layer.weight
    assert layer.base_layer.weight.data_ptr() == plain.data_ptr()
    base_params = [p for n, p in loaded.peft.named_parameters() if "lora_" not in n]
    assert sum(p.numel() for p in base_params) == sum(
        p.numel() for n, p in loaded.model.named_parameters() if "lora_" not in n
    )


def test_adapter_lru_eviction(models_dir: Path, adapters: list[Path]) -> None:
    h = Harness(models_dir, max_adapters=2)
    texts = [
        h.one(f"l{i}", lora(a), CHAT, max_tokens=8, temperature=0) for i, a in enumerate(adapters)
    ]
    (loaded,) = h.engine.store.loaded.values()
    assert list(loaded.adapters) == [str(adapters[1]), str(adapters[2])]
    assert len(loaded.peft.peft_config) == 2
    # The evicted one comes back (and pushes out the least recently used, adapter 1).
    assert h.one("again", lora(adapters[0]), CHAT, max_tokens=8, temperature=0) == texts[0]
    assert list(loaded.adapters) == [str(adapters[2]), str(adapters[0])]


def test_full_model_and_memory_budget(models_dir: Path, tiny_dir: Path, full_dir: Path) -> None:
    h = Harness(models_dir, memory_budget=1)
    tokenizer = load_tokenizer(tiny_dir)
    full = ServedModel("ft:full", "full", "ftserve-tiny", str(full_dir))
    base = h.one("base", TINY, CHAT, max_tokens=12, temperature=0)
    h.submit("full", full, CHAT, max_tokens=12, temperature=0, logprobs=True)
    h.drain()
    expected = reference(full_dir, chat_ids(tokenizer, CHAT), 12)
    assert generated_tokens(h, "full") == token_strings(tokenizer, expected)
    assert h.text("full") != base
    # Over budget: only the most recent model stays loaded once nothing uses the other.
    assert list(h.engine.store.loaded) == [str(full_dir)]


def test_missing_weights_fail_and_engine_keeps_serving(harness: Harness, tmp_path: Path) -> None:
    harness.submit("gone", lora(tmp_path / "nope"), CHAT, max_tokens=3)
    failed = harness.of("gone")
    assert len(failed) == 1 and isinstance(failed[0], Failed)
    assert "nope" in failed[0].message
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    harness.submit("bad", ServedModel("x", "full", "ftserve-tiny", str(corrupt)), CHAT)
    assert [type(m) for m in harness.of("bad")] == [Failed]
    assert harness.one("ok", TINY, CHAT, max_tokens=3) is not None
    assert len(harness.finished("ok")) == 1


def test_read_only_model_dirs(models_dir: Path, adapters: list[Path], tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "ro-adapter"
    shutil.copytree(adapters[0], copy)
    before = {p.name: p.stat().st_mtime_ns for p in copy.iterdir()}
    for path in [copy, *copy.iterdir()]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        h = Harness(models_dir)
        assert h.one("ro", lora(copy), CHAT, max_tokens=4) is not None
        assert len(h.finished("ro")) == 1
        assert {p.name: p.stat().st_mtime_ns for p in copy.iterdir()} == before
    finally:
        copy.chmod(0o755)


def test_failure_in_a_batch_fails_only_that_batch(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.submit("a", TINY, CHAT, max_tokens=50)
    harness.step()
    (batch,) = harness.engine.batches

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(batch, "_decode", broken)
    harness.step()
    assert isinstance(harness.of("a")[-1], Failed) and "boom" in harness.of("a")[-1].message
    assert not harness.engine.busy
    monkeypatch.undo()
    assert harness.one("b", TINY, CHAT, max_tokens=4) is not None
    assert len(harness.finished("b")) == 1
