"""A reinforcement job on CUDA through the trainer: answers sampled on the GPU under bf16
autocast, graded, trained on; the same samples after a pause as without one.

Run: ``PYTHONPATH=src pytest --confcutdir=tests/gpu -m gpu tests/gpu`` (bench/gpu_check.sh).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ftserve.training.spec import RewardMetrics, TrainingStopped
from ftserve.training.trainer import train
from tests.training.test_rft import GRADER, prompt_rows
from tests.training.training_helpers import Recorder, make_spec, respec, write_jsonl

pytestmark = pytest.mark.gpu


def test_an_rft_job_samples_and_trains_on_the_gpu(
    tmp_path: Path, models_cache: Path, qwen2_dir: Path
) -> None:
    spec = make_spec(
        tmp_path,
        models_cache,
        write_jsonl(tmp_path / "train.jsonl", prompt_rows(8)),
        validation_file=write_jsonl(tmp_path / "valid.jsonl", prompt_rows(3, offset=1)),
        model=str(qwen2_dir),
        device="cuda",
        method="reinforcement",
        grader=GRADER,
        n_epochs=2,
        batch_size=4,
        eval_interval=2,
        max_completion_tokens=8,
    )
    torch.cuda.reset_peak_memory_stats()
    straight = Recorder()
    train(spec, straight)
    assert torch.cuda.max_memory_allocated() > 0  # it ran there, not on the CPU
    data = [m.data for m in straight.steps if isinstance(m, RewardMetrics)]
    assert [d["step"] for d in data] == [1, 2, 3, 4]
    assert all(0.0 <= d["train_mean_reward"] <= 1.0 for d in data)

    paused = respec(spec, work_dir=tmp_path / "paused")
    first = Recorder(decide=lambda step: "pause" if step == 2 else "continue")
    with pytest.raises(TrainingStopped) as stopped:
        train(paused, first)
    assert stopped.value.checkpoint is not None
    second = Recorder()
    train(respec(paused, resume_from=stopped.value.checkpoint.path), second)
    # Sampling on the GPU may differ in the last bits: the answers' lengths are compared.
    again = [m.data for m in first.steps + second.steps if isinstance(m, RewardMetrics)]
    assert [d["step"] for d in again] == [1, 2, 3, 4]
    assert again[0]["completion_tokens_mean"] == data[0]["completion_tokens_mean"]
