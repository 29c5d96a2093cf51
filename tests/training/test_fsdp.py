"""Full fine-tunes sharded with FSDP2 over two processes (gloo on loopback, ftserve-tiny, one
thread each): the losses of one unsharded process with the same global batch, and checkpoints
in the one-device format, so a job moves between sharded and unsharded runs."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ftserve.training.distributed import train_on_devices
from ftserve.training.fsdp import too_big
from ftserve.training.spec import TrainingSpec, TrainingStopped
from tests.training.training_helpers import Recorder, chat_rows, make_spec, respec, write_jsonl

pytestmark = pytest.mark.timeout(120)
REL = 1e-4  # the bound for jobs of up to 20 steps


@pytest.fixture(scope="module")
def chat_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "chat.jsonl", chat_rows(15))


@pytest.fixture
def base(tmp_path: Path, models_cache: Path, chat_file: Path) -> TrainingSpec:
    """A full fine-tune: 15 rows, 2 epochs of batch 3 = 10 steps, an uneven share over 2 ranks;
    validation every 5 steps runs on both ranks of a sharded model."""
    return make_spec(
        tmp_path,
        models_cache,
        chat_file,
        validation_file=chat_file,
        eval_interval=5,
        n_epochs=2,
        batch_size=3,
        learning_rate_multiplier=20.0,
        lora=False,
    )


def close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= REL * abs(y) for x, y in zip(a, b, strict=True))


def test_fsdp_on_two_processes_trains_the_losses_of_one(base: TrainingSpec, tmp_path: Path) -> None:
    # The whole gradient's norm is 3.6-6.2 at every step of this job, so clipping it to 1.0 is
    # at work: a norm over one rank's shard would change the losses.
    one, two = Recorder(), Recorder()
    single = train_on_devices(respec(base, work_dir=tmp_path / "one"), one)
    sharded = train_on_devices(respec(base, work_dir=tmp_path / "two", devices=2, fsdp=True), two)
    assert len(one.losses) == 10
    assert close(two.losses, one.losses), (two.losses, one.losses)
    assert one.losses[0] != one.losses[-1]
    valid = [m.valid_loss for m in two.steps if m.valid_loss is not None]
    assert close(valid, [m.valid_loss for m in one.steps if m.valid_loss is not None])
    assert sharded.trained_tokens == single.trained_tokens
    assert [p.fsdp for p, _ in two.memory] == [True]
    assert [p.fsdp for p, _ in one.memory] == [False]
    # The final model is a whole Hugging Face model, the same as the unsharded run's.
    mine = load_file(sharded.final_path / "model.safetensors")
    theirs = load_file(single.final_path / "model.safetensors")
    assert mine.keys() == theirs.keys()
    for name, tensor in theirs.items():
        torch.testing.assert_close(mine[name], tensor, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("first_devices", [2, 1], ids=["fsdp-then-one", "one-then-fsdp"])
def test_a_pause_moves_between_sharded_and_unsharded_runs(
    base: TrainingSpec, tmp_path: Path, first_devices: int
) -> None:
    straight = Recorder()
    train_on_devices(respec(base, work_dir=tmp_path / "straight"), straight)
    sharded = {"devices": 2, "fsdp": True}
    first = Recorder(decide=lambda step: "pause" if step == 3 else "continue")
    with pytest.raises(TrainingStopped) as info:
        train_on_devices(respec(base, **(sharded if first_devices == 2 else {})), first)
    assert info.value.checkpoint is not None
    second = Recorder()
    again = respec(
        base,
        work_dir=tmp_path / "again",
        resume_from=info.value.checkpoint.path,
        **({} if first_devices == 2 else sharded),
    )
    train_on_devices(again, second)
    assert [m.step for m in second.steps] == list(range(4, 11))
    assert close(first.losses + second.losses, straight.losses), (
        first.losses + second.losses,
        straight.losses,
    )


def test_a_cancel_stops_every_sharded_rank_at_that_step(base: TrainingSpec) -> None:
    hooks = Recorder(decide=lambda step: "cancel" if step == 2 else "continue")
    with pytest.raises(TrainingStopped) as info:
        train_on_devices(respec(base, devices=2, fsdp=True), hooks)
    assert (info.value.kind, info.value.step) == ("cancel", 2)
    assert len(hooks.steps) == 2 and hooks.checkpoints == []
    assert multiprocessing.active_children() == []  # the other rank ended with it


def test_auto_shards_only_what_would_not_fit(base: TrainingSpec) -> None:
    assert too_big(free=1000, needed=1001)
    assert not too_big(free=1000, needed=1000)
    assert not too_big(free=None, needed=10**15)  # a CPU: never "auto"
    hooks = Recorder(decide=lambda step: "cancel")
    with pytest.raises(TrainingStopped):
        train_on_devices(respec(base, devices=2), hooks)  # fsdp "auto" on CPU workers: DDP
    assert [p.fsdp for p, _ in hooks.memory] == [False]


def _tied_model(target: Path) -> Path:
    """A two-layer Llama whose output head is its embeddings (as SmolLM2's and Qwen's small
    models are)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ftserve.modeling.tiny_model import build_byte_tokenizer

    tokenizer = build_byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def test_a_tied_model_is_written_as_one_device_writes_it(
    base: TrainingSpec, tmp_path: Path
) -> None:
    spec = respec(base, model=str(_tied_model(tmp_path / "tied")), validation_file=None)
    one, two = Recorder(), Recorder()
    single = train_on_devices(respec(spec, work_dir=tmp_path / "one"), one)
    sharded = train_on_devices(respec(spec, work_dir=tmp_path / "two", devices=2, fsdp=True), two)
    assert close(two.losses, one.losses), (two.losses, one.losses)
    mine = load_file(sharded.final_path / "model.safetensors")
    theirs = load_file(single.final_path / "model.safetensors")
    assert "lm_head.weight" not in theirs and mine.keys() == theirs.keys()
    for name, tensor in theirs.items():
        torch.testing.assert_close(mine[name], tensor, rtol=1e-4, atol=1e-5)
