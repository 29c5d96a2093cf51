"""End-to-end training runs on tiny models (CPU, one thread)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import mean
from typing import Any

import pytest
import torch

from ftserve.training.spec import TrainingFailed, TrainingSpec, TrainingStopped
from ftserve.training.trainer import train
from tests.training.training_helpers import (
    Recorder,
    chat_rows,
    completion_rows,
    make_spec,
    preference_rows,
    respec,
    write_jsonl,
)

# peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` when wrapping a model;
# ftserve silences it around its own call, but PeftModel.from_pretrained in a test triggers it too.
PEFT_DEPRECATION = pytest.mark.filterwarnings(
    "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"
)


@pytest.fixture(scope="module")
def chat_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "chat.jsonl", chat_rows(24))


@pytest.fixture
def base(tmp_path: Path, models_cache: Path, chat_file: Path) -> TrainingSpec:
    """24 chat rows, 2 epochs of batch 2 = 24 steps on ftserve-tiny."""
    return make_spec(
        tmp_path,
        models_cache,
        chat_file,
        n_epochs=2,
        batch_size=2,
        learning_rate_multiplier=20.0,
    )


def falls(losses: list[float], by: float) -> bool:
    return mean(losses[-4:]) < mean(losses[:4]) - by


@PEFT_DEPRECATION
def test_lora_sft_on_tiny_model_learns_and_saves_a_loadable_adapter(base: TrainingSpec) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    hooks = Recorder()
    result = train(base, hooks)

    assert [m.step for m in hooks.steps] == list(range(1, 25))
    assert all(m.total_steps == 24 for m in hooks.steps)
    assert falls(hooks.losses, 0.7), hooks.losses
    assert hooks.steps[-1].train_mean_token_accuracy > hooks.steps[0].train_mean_token_accuracy
    assert hooks.starts[0][1] == 0
    hp = result.hyperparameters
    assert (hp.n_epochs, hp.batch_size, hp.total_steps, hp.n_examples) == (2, 2, 24, 24)
    assert result.steps == 24
    assert result.trained_tokens > 24 * 2 * 40

    final = result.final_path
    assert final == base.work_dir / "final"
    described = json.loads((final / "ftserve.json").read_text())
    assert described["lora"] is True and described["base_model"] == "ftserve-tiny"
    base_model = AutoModelForCausalLM.from_pretrained(base.models_cache_dir / "ftserve-tiny")
    tuned = PeftModel.from_pretrained(base_model, final)
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        adapted = tuned(ids).logits
        with tuned.disable_adapter():
            plain = tuned(ids).logits
    assert not torch.allclose(adapted, plain)


def test_full_fine_tuning_saves_a_whole_model(base: TrainingSpec) -> None:
    from transformers import AutoModelForCausalLM

    hooks = Recorder()
    spec = respec(base, lora=False, learning_rate_multiplier=100.0)
    result = train(spec, hooks)
    assert falls(hooks.losses, 1.5), hooks.losses
    assert json.loads((result.final_path / "ftserve.json").read_text())["lora"] is False
    assert not (result.final_path / "adapter_config.json").exists()
    AutoModelForCausalLM.from_pretrained(result.final_path)


def test_gpt2_from_a_path_gets_the_chatml_fallback(base: TrainingSpec, gpt2_dir: Path) -> None:
    from transformers import AutoTokenizer

    hooks = Recorder()
    # Hidden size 64 and a frozen random head: LoRA moves the loss slowly, but it must move.
    result = train(respec(base, model=str(gpt2_dir), learning_rate_multiplier=50.0), hooks)
    assert falls(hooks.losses, 0.3), hooks.losses
    saved = AutoTokenizer.from_pretrained(result.final_path)
    assert "<|im_start|>" in saved.chat_template
    assert saved.pad_token == "<|endoftext|>"


def test_llama_from_a_path_with_a_plain_template(
    base: TrainingSpec, llama_dir: Path, tmp_path: Path
) -> None:
    hooks = Recorder()
    completions = write_jsonl(tmp_path / "pc.jsonl", completion_rows(12))
    spec = respec(base, model=str(llama_dir), n_epochs=3, learning_rate_multiplier=50.0)
    train(spec, hooks)
    assert falls(hooks.losses, 0.3), hooks.losses

    completion_hooks = Recorder()
    train(respec(spec, training_file=completions, work_dir=tmp_path / "pc"), completion_hooks)
    assert falls(completion_hooks.losses, 0.3), completion_hooks.losses


def test_weight_zero_turns_do_not_change_the_loss(base: TrainingSpec, tmp_path: Path) -> None:
    def rows(last: str | None) -> list[dict[str, Any]]:
        out = []
        for row in chat_rows(6):
            messages = list(row["messages"])
            if last is not None:
                messages += [
                    {"role": "user", "content": "And more?"},
                    {"role": "assistant", "content": last, "weight": 0},
                ]
            out.append({"messages": messages})
        return out

    losses = []
    for name, last in [("none", None), ("short", "No."), ("long", "Certainly, a lot more " * 3)]:
        hooks = Recorder()
        data = write_jsonl(tmp_path / f"{name}.jsonl", rows(last))
        train(respec(base, training_file=data, work_dir=tmp_path / name, n_epochs=1), hooks)
        losses.append(hooks.losses)
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    assert losses[2] == pytest.approx(losses[0], rel=1e-5)


def test_dpo_with_lora_prefers_the_chosen_answers(base: TrainingSpec, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "pref.jsonl", preference_rows(12))
    valid = write_jsonl(tmp_path / "pref_valid.jsonl", preference_rows(4, seed=1))
    hooks = Recorder()
    spec = respec(
        base, method="dpo", training_file=data, validation_file=valid, n_epochs=3, beta=None
    )
    result = train(spec, hooks)
    assert result.hyperparameters.beta == 0.1
    first, last = hooks.steps[0], hooks.steps[-1]
    assert first.train_loss == pytest.approx(math.log(2), abs=1e-6)
    assert first.train_mean_token_accuracy == 0.0
    assert last.train_loss < 0.6 and last.train_mean_token_accuracy == 1.0
    assert last.full_valid_loss is not None and last.full_valid_loss < math.log(2)
    assert last.full_valid_mean_token_accuracy == 1.0


def test_dpo_full_fine_tuning_uses_a_frozen_reference(base: TrainingSpec, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "pref.jsonl", preference_rows(8))
    hooks = Recorder()
    spec = respec(base, method="dpo", training_file=data, lora=False, n_epochs=2)
    train(spec, hooks)
    assert hooks.steps[0].train_loss == pytest.approx(math.log(2), abs=1e-6)
    assert hooks.steps[-1].train_loss < hooks.steps[0].train_loss


def test_validation_metrics_at_eval_steps_and_full_validation_at_the_end(
    base: TrainingSpec, tmp_path: Path
) -> None:
    valid = write_jsonl(tmp_path / "valid.jsonl", chat_rows(12, seed=7))
    hooks = Recorder()
    train(respec(base, validation_file=valid, eval_interval=5), hooks)
    evaluated = [m.step for m in hooks.steps if m.valid_loss is not None]
    assert evaluated == [5, 10, 15, 20, 24]
    assert [m.step for m in hooks.steps if m.full_valid_loss is not None] == [24]
    assert all(m.valid_mean_token_accuracy is not None for m in hooks.steps if m.valid_loss)
    final = hooks.steps[-1]
    assert final.full_valid_mean_token_accuracy is not None
    assert final.valid_loss is not None and final.valid_loss < hooks.steps[4].valid_loss  # type: ignore[operator]

    auto = Recorder()
    train(respec(base, validation_file=valid, work_dir=tmp_path / "auto"), auto)
    assert [m.step for m in auto.steps if m.valid_loss is not None] == [2 * k for k in range(1, 13)]


def test_same_seed_same_losses_other_seed_other_losses(base: TrainingSpec, tmp_path: Path) -> None:
    runs = []
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        hooks = Recorder()
        train(respec(base, seed=seed, n_epochs=1, work_dir=tmp_path / name), hooks)
        runs.append(hooks.losses)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


@pytest.mark.parametrize(
    ("lora", "method", "epoch_steps"),
    [(True, "supervised", [12, 24]), (False, "supervised", [12, 24]), (False, "dpo", [10, 20])],
    ids=["lora", "full", "dpo-full"],
)
def test_pause_then_resume_reproduces_an_uninterrupted_run(
    base: TrainingSpec, tmp_path: Path, lora: bool, method: str, epoch_steps: list[int]
) -> None:
    # Dropout on, so resuming must restore the RNG state too.
    spec = respec(base, lora=lora, lora_dropout=0.1, n_epochs=2, method=method)
    if method == "dpo":
        data = write_jsonl(tmp_path / "pref.jsonl", preference_rows(20))
        spec = respec(spec, training_file=data, learning_rate_multiplier=1.0)
    straight = Recorder()
    uninterrupted = train(respec(spec, work_dir=tmp_path / "straight"), straight)

    # The pause is the answer to step 7's record: step 7 is kept in the pause checkpoint.
    first = Recorder(decide=lambda step: "pause" if step == 7 else "continue")
    with pytest.raises(TrainingStopped) as info:
        train(spec, first)
    stopped = info.value
    assert (stopped.kind, stopped.step) == ("pause", 7)
    assert stopped.checkpoint is not None and stopped.checkpoint.step == 7
    assert stopped.checkpoint.path.name == "step-000007" and stopped.checkpoint.kind == "pause"
    assert first.checkpoints[-1] == stopped.checkpoint
    assert first.checkpoints[-1].metrics == first.steps[-1]

    # A new claim trains in a directory of its own, from the checkpoint it is given.
    second = Recorder()
    again = respec(spec, work_dir=tmp_path / "second", resume_from=stopped.checkpoint.path)
    resumed = train(again, second)
    assert second.starts[0][1] == 7
    assert [m.step for m in second.steps] == list(range(8, epoch_steps[-1] + 1))
    assert first.losses + second.losses == straight.losses
    assert resumed.trained_tokens == uninterrupted.trained_tokens
    assert [c.step for c in second.checkpoints] == epoch_steps


def test_pause_on_an_epoch_boundary_reuses_the_epoch_checkpoint(base: TrainingSpec) -> None:
    hooks = Recorder(decide=lambda step: "pause" if step == 12 else "continue")
    with pytest.raises(TrainingStopped) as info:
        train(base, hooks)
    assert info.value.checkpoint is not None and info.value.checkpoint.step == 12
    assert [c.step for c in hooks.checkpoints] == [12]


def test_cancel_stops_at_once_without_a_checkpoint(base: TrainingSpec) -> None:
    hooks = Recorder(decide=lambda step: "cancel" if step == 3 else "continue")
    with pytest.raises(TrainingStopped) as info:
        train(base, hooks)
    assert (info.value.kind, info.value.step, info.value.checkpoint) == ("cancel", 3, None)
    assert len(hooks.steps) == 3 and hooks.control_calls == 3
    assert not (base.work_dir / "checkpoints").exists() or not any(
        (base.work_dir / "checkpoints").iterdir()
    )


def test_epoch_checkpoints_are_complete_and_atomic(base: TrainingSpec) -> None:
    hooks = Recorder()
    spec = respec(base, n_epochs=5, batch_size=6)
    result = train(spec, hooks)
    assert [c.step for c in hooks.checkpoints] == [4, 8, 12, 16, 20]
    assert [c.epoch for c in hooks.checkpoints] == [1, 2, 3, 4, 5]
    # The trainer deletes nothing: retention is decided where checkpoints are recorded.
    root = spec.work_dir / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == [
        f"step-0000{n:02d}" for n in (4, 8, 12, 16, 20)
    ]
    assert not [p for p in spec.work_dir.rglob(".tmp*")]
    newest = root / "step-000020"
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "training_state.pt",
        "ftserve_checkpoint.json",
    ):
        assert (newest / name).is_file(), name
    meta = json.loads((newest / "ftserve_checkpoint.json").read_text())
    assert meta["step"] == 20 and meta["epoch"] == 5 and meta["batches_done_in_epoch"] == 4
    state = torch.load(newest / "training_state.pt", weights_only=True)
    assert set(state) == {"optimizer", "scheduler", "rng"}
    assert hooks.checkpoints[-1].metrics == hooks.steps[-1]

    # Resuming from the last checkpoint has no step left and rewrites the final model.
    again = Recorder()
    assert train(respec(spec, resume_from=newest), again).trained_tokens == result.trained_tokens
    assert again.starts[0][1] == 20 and again.steps == []


def test_absurd_learning_rate_fails_with_nan_loss(base: TrainingSpec) -> None:
    with pytest.raises(TrainingFailed) as info:
        train(respec(base, learning_rate_multiplier=1e30), Recorder())
    assert info.value.code == "nan_loss"
    assert "at step" in info.value.message


def test_unusable_inputs_fail_with_clear_codes(base: TrainingSpec, tmp_path: Path) -> None:
    pref = write_jsonl(tmp_path / "pref.jsonl", preference_rows(3))
    with pytest.raises(TrainingFailed) as info:
        train(respec(base, training_file=pref), Recorder())
    assert info.value.code == "invalid_training_data"

    with pytest.raises(TrainingFailed) as info:
        train(respec(base, max_seq_len=20), Recorder())
    assert info.value.code == "invalid_training_data"

    with pytest.raises(TrainingFailed) as info:
        train(respec(base, model=str(tmp_path / "missing")), Recorder())
    assert info.value.code == "model_load_failed"

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(TrainingFailed) as info:
        train(respec(base, model=str(broken)), Recorder())
    assert info.value.code == "model_load_failed"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_job_runs_with_bf16_autocast(base: TrainingSpec) -> None:
    hooks = Recorder(decide=lambda step: "pause" if step == 5 else "continue")
    spec = respec(base, device="cuda")
    with pytest.raises(TrainingStopped) as info:
        train(spec, hooks)
    assert info.value.checkpoint is not None
    resumed = Recorder()
    result = train(respec(spec, resume_from=info.value.checkpoint.path), resumed)
    losses = hooks.losses + resumed.losses
    assert len(losses) == 24 and all(math.isfinite(x) for x in losses)
    assert falls(losses, 0.7), losses
    assert (result.final_path / "adapter_model.safetensors").is_file()
