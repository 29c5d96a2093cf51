"""Packing on CUDA in bf16: PyTorch's variable-length flash attention over the packed row.

Runs without the server's test fixtures (``PYTHONPATH=src pytest --confcutdir=tests/gpu
tests/gpu``); models are built from configs. Skipped without CUDA.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from ftserve.training import packing
from ftserve.training.batching import collate, pack
from ftserve.training.data import Example
from ftserve.training.forward import target_logits

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
LENGTHS = [5, 1000, 37, 260, 1, 512, 90]


def _llama(tmp_path: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    from ftserve.modeling.tiny_model import build_byte_tokenizer

    tokenizer = build_byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,  # grouped-query attention
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    path = tmp_path / "llama"
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _rows() -> list[Example]:
    generator = torch.Generator().manual_seed(1)
    return [
        Example(torch.randint(3, 250, (n,), generator=generator).tolist(), [True] * n)
        for n in LENGTHS
    ]


def test_varlen_attention_matches_each_row_alone_in_bf16(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if packing._varlen() is None:
        pytest.skip("this torch has no torch.nn.attention.varlen")
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(_llama(tmp_path), dtype=torch.float32)
    model = model.cuda().eval()
    assert packing.supports_packing(model)
    fused: list[int] = []
    real = packing._varlen_causal

    def spy(*args: Any, **kwargs: Any) -> torch.Tensor | None:
        out = real(*args, **kwargs)
        fused.append(out is not None)
        return out

    monkeypatch.setattr(packing, "_varlen_causal", spy)
    rows = _rows()
    device = torch.device("cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        alone = torch.cat([target_logits(model, collate([r], 0).to(device), True) for r in rows])
        packing.use_packed_attention(model)
        packed = target_logits(model, pack(rows).to(device), True)
    assert fused and all(fused), "the varlen kernel did not run"
    # bf16 rounding differs between one kernel call and another; the rows' logits agree to it.
    torch.testing.assert_close(packed.float(), alone.float(), rtol=3e-2, atol=3e-2)
    assert (packed.argmax(-1) == alone.argmax(-1)).float().mean() > 0.98


def _data(path: Path) -> Path:
    rng = random.Random(0)
    lines = []
    for _ in range(16):
        size = round(3 * (330 ** rng.random()))
        text = "".join(rng.choice("abcdefgh ij") for _ in range(size + 2))
        lines.append(json.dumps({"prompt": text[: size // 3 + 1], "completion": text[size // 3 :]}))
    path.write_text("\n".join(lines) + "\n")
    return path


class _Hooks:
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_start(self, hp: Any, resumed_from: Any) -> str:
        return "continue"

    def on_step(self, m: Any) -> str:
        self.losses.append(m.train_loss)
        return "continue"

    def on_checkpoint(self, c: Any) -> str:
        return "continue"


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_packed_cuda_job_trains_the_padded_losses(tmp_path: Path, lora: bool) -> None:
    from ftserve.training.spec import TrainingSpec
    from ftserve.training.trainer import train

    model = _llama(tmp_path)
    data = _data(tmp_path / "train.jsonl")
    runs = {}
    for packed in (True, False):
        spec = TrainingSpec(
            model=str(model),
            training_file=data,
            validation_file=None,
            method="supervised",
            n_epochs=1,
            batch_size=4,
            learning_rate_multiplier=10.0,
            beta=None,
            seed=0,
            work_dir=tmp_path / f"work-{packed}",
            models_cache_dir=tmp_path / "models",
            lora=lora,
            device="cuda",
            packing=packed,
        )
        hooks = _Hooks()
        train(spec, hooks)
        runs[packed] = hooks.losses
    assert len(runs[True]) == 4 and all(math.isfinite(x) for x in runs[True])
    for a, b in zip(runs[True], runs[False], strict=True):
        assert abs(a - b) <= 2e-2 * abs(b), (runs[True], runs[False])
