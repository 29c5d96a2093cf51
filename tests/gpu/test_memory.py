"""Memory savers on a CUDA device (bf16 autocast): gradient checkpointing keeps the losses, the
plan comes from the device's free memory, a real allocator out-of-memory error halves the
micro-batch and retries the same step, and QLoRA trains over a 4-bit base.

Runs without tests/conftest.py (``PYTHONPATH=src pytest --confcutdir=tests/gpu tests/gpu``):
models are built here from configs, nothing is downloaded. Skipped without CUDA.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import mean
from typing import Any

import pytest
import torch

from ftserve.training.spec import TrainingSpec
from ftserve.training.trainer import train
from tests.training.training_helpers import (
    Recorder,
    chat_rows,
    make_spec,
    respec,
    write_jsonl,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
BF16_REL = 2e-2  # bf16 autocast and non-deterministic CUDA reductions, over a few steps


def close(a: list[float], b: list[float], rel: float = BF16_REL) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= rel * abs(y) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def tiny(tmp_path: Path, models: Path) -> TrainingSpec:
    """24 chat rows, 2 epochs of batch 4 = 12 steps on ftserve-tiny, on CUDA."""
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(24))
    return make_spec(
        tmp_path,
        models,
        data,
        n_epochs=2,
        batch_size=4,
        learning_rate_multiplier=20.0,
        device="cuda",
    )


@contextmanager
def module_types_called() -> Iterator[list[str]]:
    seen: list[str] = []

    def hook(module: torch.nn.Module, args: Any) -> None:
        seen.append(type(module).__name__)

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_gradient_checkpointing_keeps_the_losses(tiny: TrainingSpec, lora: bool) -> None:
    spec = respec(tiny, lora=lora, learning_rate_multiplier=20.0 if lora else 100.0)
    plain, checkpointed = Recorder(), Recorder()
    with module_types_called() as without:
        train(respec(spec, gradient_checkpointing=False, work_dir=spec.work_dir / "a"), plain)
    with module_types_called() as with_gc:
        train(respec(spec, gradient_checkpointing=True, work_dir=spec.work_dir / "b"), checkpointed)
    assert checkpointed.memory[0][0].gradient_checkpointing is True
    mlp = [sum(name.endswith("MLP") for name in calls) for calls in (without, with_gc)]
    assert mlp[1] > mlp[0], mlp  # the backward pass ran the layers again
    assert close(checkpointed.losses, plain.losses), (checkpointed.losses, plain.losses)


def test_auto_plans_the_budget_from_free_memory(tiny: TrainingSpec) -> None:
    hooks = Recorder()
    train(tiny, hooks)
    plan = hooks.memory[0][0]
    # ftserve-tiny fits many times over: no checkpointing, and no budget beyond the largest step.
    assert plan.gradient_checkpointing is False
    assert 16 <= plan.max_tokens_per_micro_batch <= 4 * 130


@contextmanager
def memory_capped(total_bytes: int) -> Iterator[None]:
    """The caching allocator refuses to hold more than ``total_bytes``: a real
    torch.OutOfMemoryError past it."""
    torch.cuda.empty_cache()
    capacity = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(total_bytes / capacity)
    try:
        yield
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()


@pytest.fixture(scope="module")
def wide_llama(models: Path) -> Path:
    """A 4-layer Llama wide enough (hidden 2048, MLP 5632) that 16 rows of ~1,000 tokens need
    several GB of activations, with ftserve-tiny's byte tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ftserve.modeling.tiny_model import build_byte_tokenizer

    tokenizer = build_byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=4,
        num_attention_heads=16,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    path = models / "wide-llama"
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_a_real_out_of_memory_error_halves_the_micro_batch(
    tmp_path: Path, models: Path, wide_llama: Path
) -> None:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"{i} " + "tell me more " * 70},
                {"role": "assistant", "content": "sure, " * 20 + str(i)},
            ]
        }
        for i in range(16)
    ]
    data = write_jsonl(tmp_path / "long.jsonl", rows)
    spec = make_spec(
        tmp_path,
        models,
        data,
        model=str(wide_llama),
        n_epochs=1,
        batch_size=16,
        device="cuda",
        gradient_checkpointing=False,
        # One micro-batch of all 16 rows (~16k tokens, several GB of activations).
        max_tokens_per_micro_batch=65536,
    )
    clean = Recorder()
    train(respec(spec, work_dir=tmp_path / "clean"), clean)
    capped = Recorder()
    with memory_capped(3 * 2**30):
        result = train(respec(spec, work_dir=tmp_path / "capped"), capped)
    warnings = [w for _, w in capped.memory if w is not None]
    assert len(warnings) == 1 and "ftserve.max_tokens_per_micro_batch" in warnings[0]
    assert capped.memory[-1][0].max_tokens_per_micro_batch < 65536 // 2
    assert close(capped.losses, clean.losses), (capped.losses, clean.losses)
    assert (result.final_path / "adapter_model.safetensors").is_file()


def test_qlora_trains_over_a_4bit_base(tiny: TrainingSpec) -> None:
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed on this machine")
    hooks = Recorder()
    with module_types_called() as seen:
        result = train(respec(tiny, quantization="nf4"), hooks)
    assert "Linear4bit" in seen
    assert mean(hooks.losses[-3:]) < mean(hooks.losses[:3]) - 0.5, hooks.losses
    described = json.loads((result.final_path / "ftserve.json").read_text())
    assert described["quantization"] == "nf4"
    assert (result.final_path / "adapter_model.safetensors").is_file()
