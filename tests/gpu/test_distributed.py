"""A job on two GPUs (NCCL; DDP, and FSDP2 for a sharded full fine-tune): the losses of one GPU
with the same global batch (bf16 autocast, so up to its noise), rank 0 alone writes. Needs two CUDA devices; skipped otherwise.

Runs without tests/conftest.py (the GPU machine lacks its imports):
``PYTHONPATH=src pytest --confcutdir=tests/gpu tests/gpu``."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import pytest
import torch

from ftserve.training.distributed import train_on_devices
from ftserve.training.spec import TrainingStopped
from tests.training.training_helpers import Recorder, chat_rows, make_spec, respec, write_jsonl

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 GPUs"
    ),
]
REL = 2e-2  # bf16 autocast: a different reduction order moves the last bits of each step


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_two_gpus_train_the_losses_of_one(tmp_path: Path, lora: bool) -> None:
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(16))
    spec = make_spec(
        tmp_path,
        tmp_path / "models",
        data,
        n_epochs=2,
        batch_size=4,
        learning_rate_multiplier=5.0,
        lora=lora,
        device="cuda",
    )
    one, two = Recorder(), Recorder()
    train_on_devices(respec(spec, work_dir=tmp_path / "one"), one)
    result = train_on_devices(respec(spec, work_dir=tmp_path / "two", devices=2), two)
    assert len(two.losses) == len(one.losses) == 8
    for a, b in zip(two.losses, one.losses, strict=True):
        assert abs(a - b) <= REL * abs(b), (two.losses, one.losses)
    assert [c.step for c in two.checkpoints] == [4, 8]
    assert (result.final_path / "ftserve.json").is_file()


def test_fsdp_on_two_gpus_trains_the_losses_of_one_and_resumes_on_one(tmp_path: Path) -> None:
    """A full fine-tune sharded with FSDP2 over two GPUs (NCCL): one GPU's losses; paused at
    step 3, its gathered checkpoint (the one-device format) resumes on one GPU."""
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(16))
    spec = make_spec(
        tmp_path,
        tmp_path / "models",
        data,
        n_epochs=2,
        batch_size=3,  # an uneven share: 2 examples on rank 0, 1 on rank 1
        learning_rate_multiplier=5.0,
        lora=False,
        device="cuda",
    )
    one = Recorder()
    train_on_devices(respec(spec, work_dir=tmp_path / "one"), one)
    first = Recorder(decide=lambda step: "pause" if step == 3 else "continue")
    with pytest.raises(TrainingStopped) as info:
        train_on_devices(respec(spec, work_dir=tmp_path / "two", devices=2, fsdp=True), first)
    assert [p.fsdp for p, _ in first.memory] == [True]
    assert info.value.checkpoint is not None
    second = Recorder()
    resumed = respec(spec, work_dir=tmp_path / "again", resume_from=info.value.checkpoint.path)
    result = train_on_devices(resumed, second)
    losses = first.losses + second.losses
    assert len(losses) == len(one.losses) == 12
    for a, b in zip(losses, one.losses, strict=True):
        assert abs(a - b) <= REL * abs(b), (losses, one.losses)
    assert (result.final_path / "model.safetensors").is_file()
