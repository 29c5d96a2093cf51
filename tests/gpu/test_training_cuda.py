"""LoRA and full fine-tunes on CUDA in bf16, through the trainer directly (as a worker's training
process calls it), on a small Qwen2 built from its config: they train (the loss falls), on the
GPU, under bf16 autocast with fp32 trainable weights, save what a job keeps, and a paused job
resumes on the GPU where it stopped (optimizer state and the CUDA RNG restored).

Run: ``PYTHONPATH=src pytest --confcutdir=tests/gpu -m gpu tests/gpu`` (bench/gpu_check.sh).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ftserve.modeling.device import resolve_device
from ftserve.training.spec import TrainingSpec, TrainingStopped
from ftserve.training.trainer import train
from tests.training.training_helpers import Recorder, chat_rows, make_spec, respec, write_jsonl

pytestmark = pytest.mark.gpu

ROWS, EPOCHS, BATCH = 24, 3, 4  # 18 steps
STEPS = EPOCHS * ROWS // BATCH


@pytest.fixture
def spec(tmp_path: Path, models_cache: Path, qwen2_dir: Path) -> TrainingSpec:
    data = write_jsonl(tmp_path / "train.jsonl", chat_rows(ROWS))
    return make_spec(
        tmp_path,
        models_cache,
        data,
        model=str(qwen2_dir),
        device="cuda",
        n_epochs=EPOCHS,
        batch_size=BATCH,
        learning_rate_multiplier=4.0,
    )


def _falls(losses: list[float]) -> None:
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses), losses
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3, losses


def test_the_cuda_device_trains_under_bf16_autocast() -> None:
    choice = resolve_device("auto")
    assert choice.device.type == "cuda"
    # H100/H200 support bf16: the forward pass runs in it.
    assert choice.autocast_dtype == torch.bfloat16


def test_a_lora_job_trains_in_bf16_on_the_gpu(spec: TrainingSpec) -> None:
    torch.cuda.reset_peak_memory_stats()
    hooks = Recorder()
    result = train(respec(spec, lora=True), hooks)
    _falls(hooks.losses)
    assert torch.cuda.max_memory_allocated() > 0  # it ran there, not on the CPU
    assert result.steps == STEPS and result.trained_tokens > 0
    assert (result.final_path / "adapter_model.safetensors").is_file()
    assert [c.step for c in hooks.checkpoints] == [6, 12, 18]


def test_a_full_fine_tune_trains_in_bf16_on_the_gpu(spec: TrainingSpec, qwen2_dir: Path) -> None:
    from safetensors.torch import load_file

    torch.cuda.reset_peak_memory_stats()
    hooks = Recorder()
    result = train(respec(spec, lora=False, learning_rate_multiplier=1.0), hooks)
    _falls(hooks.losses)
    assert torch.cuda.max_memory_allocated() > 0
    trained = load_file(result.final_path / "model.safetensors")
    base = load_file(qwen2_dir / "model.safetensors")
    # Trainable weights stay fp32 (autocast computes in bf16); every tensor moved.
    assert {t.dtype for t in trained.values()} == {torch.float32}
    assert trained.keys() == base.keys()
    unchanged = [k for k in base if torch.equal(base[k], trained[k])]
    assert unchanged == [], unchanged[:5]


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_a_paused_cuda_job_resumes_where_it_stopped(
    spec: TrainingSpec, tmp_path: Path, lora: bool
) -> None:
    # Dropout on, so the resumed run needs the CUDA RNG state back too.
    spec = respec(spec, lora=lora, lora_dropout=0.1, learning_rate_multiplier=1.0)
    straight = Recorder()
    train(respec(spec, work_dir=tmp_path / "straight"), straight)
    first = Recorder(decide=lambda step: "pause" if step == 7 else "continue")
    with pytest.raises(TrainingStopped) as info:
        train(spec, first)
    checkpoint = info.value.checkpoint
    assert checkpoint is not None and checkpoint.step == 7
    second = Recorder()
    train(respec(spec, work_dir=tmp_path / "second", resume_from=checkpoint.path), second)
    assert [m.step for m in second.steps] == list(range(8, STEPS + 1))
    # CUDA kernels (attention's backward, split reductions) need not be bit-reproducible:
    # equal up to bf16 noise, step by step.
    resumed = first.losses + second.losses
    for step, (a, b) in enumerate(zip(resumed, straight.losses, strict=True), start=1):
        assert abs(a - b) <= 2e-2 * abs(b), (step, a, b)
