"""QLoRA on a CPU: bitsandbytes (0.49 on) has a CPU backend, so ``ftserve.quantization`` "nf4"
trains here for real when the ``qlora`` extra is installed; the CUDA case is in
tests/gpu/test_memory.py. Without bitsandbytes the job fails with a clear error."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import mean
from typing import Any

import pytest
import torch

from ftserve.training.spec import TrainingFailed, TrainingSpec
from ftserve.training.trainer import train
from tests.training.training_helpers import Recorder, chat_rows, make_spec, respec, write_jsonl


@pytest.fixture
def base(tmp_path: Path, models_cache: Path) -> TrainingSpec:
    """16 chat rows, 2 epochs of batch 2 = 16 LoRA steps on ftserve-tiny, its base in 4 bits."""
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(16))
    return make_spec(
        tmp_path,
        models_cache,
        data,
        n_epochs=2,
        batch_size=2,
        learning_rate_multiplier=20.0,
        quantization="nf4",
    )


@contextmanager
def module_types_called() -> Iterator[set[str]]:
    seen: set[str] = set()

    def hook(module: torch.nn.Module, args: Any) -> None:
        seen.add(type(module).__name__)

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def test_nf4_base_trains_a_lora_adapter_on_cpu(base: TrainingSpec) -> None:
    pytest.importorskip("bitsandbytes", reason="the qlora extra is not installed")
    hooks = Recorder()
    with module_types_called() as seen:
        result = train(base, hooks)
    assert "Linear4bit" in seen  # the base's linear layers ran from 4-bit weights
    losses = hooks.losses
    assert len(losses) == 16
    assert mean(losses[-4:]) < mean(losses[:4]) - 0.5, losses
    assert (result.final_path / "adapter_model.safetensors").is_file()
    described = json.loads((result.final_path / "ftserve.json").read_text())
    assert described["quantization"] == "nf4" and described["lora"] is True


def test_nf4_with_a_full_fine_tune_fails(base: TrainingSpec) -> None:
    with pytest.raises(TrainingFailed) as info:
        train(respec(base, lora=False), Recorder())
    assert "ftserve.quantization" in info.value.message


def test_a_worker_without_bitsandbytes_fails_the_job_saying_so(
    base: TrainingSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # `import bitsandbytes` fails
    with pytest.raises(TrainingFailed) as info:
        train(base, Recorder())
    assert info.value.code == "quantization_unavailable"
    assert "bitsandbytes" in info.value.message and "ftserve.quantization" in info.value.message
