"""Memory savers on CPU: gradient checkpointing gives the same losses, an out-of-memory error
inside a step halves the micro-batch and retries the same step, a row that cannot fit fails
naming what a user can set, and the plan's arithmetic (``ftserve.training.memory``).

The out-of-memory fault is injected where the allocator would raise: a global forward pre-hook
(PyTorch's own ``register_module_forward_pre_hook``) raises ``torch.OutOfMemoryError`` when the
embedding layer is handed more tokens than a limit, so the trainer's real code runs around it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from ftserve.training import memory
from ftserve.training.spec import TrainingFailed, TrainingSpec
from ftserve.training.trainer import train
from tests.training.training_helpers import (
    Recorder,
    chat_rows,
    make_spec,
    preference_rows,
    respec,
    write_jsonl,
)

REL = 1e-4


@pytest.fixture(scope="module")
def chat_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "chat.jsonl", chat_rows(16))


@pytest.fixture
def base(tmp_path: Path, models_cache: Path, chat_file: Path) -> TrainingSpec:
    """16 chat rows, 1 epoch of batch 4 = 4 steps on ftserve-tiny (rows of 60-80 tokens)."""
    return make_spec(
        tmp_path,
        models_cache,
        chat_file,
        n_epochs=1,
        batch_size=4,
        learning_rate_multiplier=20.0,
        validation_file=chat_file,
    )


def close(a: list[float], b: list[float], rel: float = REL) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= rel * abs(y) for x, y in zip(a, b, strict=True))


@contextmanager
def counting_layer_calls() -> Iterator[list[int]]:
    """Counts the forward calls of decoder layers' MLPs: checkpointing runs each layer's body
    again in the backward pass."""
    calls = [0]

    def hook(module: torch.nn.Module, args: Any) -> None:
        if type(module).__name__.endswith("MLP"):
            calls[0] += 1

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


@contextmanager
def out_of_memory_above(tokens: int) -> Iterator[list[int]]:
    """Every forward of more than ``tokens`` tokens fails as the CUDA allocator would; yields
    the sizes (tokens) of the forwards that failed."""
    failed: list[int] = []

    def hook(module: torch.nn.Module, args: Any) -> None:
        if isinstance(module, torch.nn.Embedding) and args and args[0].numel() > tokens:
            failed.append(int(args[0].numel()))
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 20.00 GiB (injected by the test)"
            )

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield failed
    finally:
        handle.remove()


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_gradient_checkpointing_gives_the_same_losses(base: TrainingSpec, lora: bool) -> None:
    spec = respec(base, lora=lora, lora_dropout=0.1 if lora else 0.0)
    plain, checkpointed = Recorder(), Recorder()
    with counting_layer_calls() as without:
        train(respec(spec, gradient_checkpointing=False, work_dir=spec.work_dir / "a"), plain)
    with counting_layer_calls() as with_gc:
        train(respec(spec, gradient_checkpointing=True, work_dir=spec.work_dir / "b"), checkpointed)
    assert [p.gradient_checkpointing for p, _ in plain.memory] == [False]
    assert [p.gradient_checkpointing for p, _ in checkpointed.memory] == [True]
    # 4 steps x 2 layers are recomputed in the backward pass (evaluation is not checkpointed).
    assert with_gc[0] - without[0] == 4 * 2
    assert close(checkpointed.losses, plain.losses), (checkpointed.losses, plain.losses)
    valid = [m.valid_loss for m in plain.steps]
    assert close([m.valid_loss or 0.0 for m in checkpointed.steps], [v or 0.0 for v in valid])


def test_auto_on_a_cpu_is_off_with_the_default_budget(base: TrainingSpec) -> None:
    hooks = Recorder()
    train(respec(base, n_epochs=1, batch_size=16), hooks)
    assert hooks.memory == [(memory.MemoryPlan(False, memory.DEFAULT_MICRO_BATCH_TOKENS), None)]


@pytest.mark.parametrize("method", ["supervised", "dpo"])
def test_out_of_memory_halves_the_micro_batch_and_retries_the_same_step(
    base: TrainingSpec, tmp_path: Path, method: str
) -> None:
    spec = base
    if method == "dpo":
        data = write_jsonl(tmp_path / "pref.jsonl", preference_rows(16))
        spec = respec(base, method="dpo", training_file=data, validation_file=data)
    clean = Recorder()
    train(respec(spec, work_dir=spec.work_dir / "clean"), clean)
    backed_off = Recorder()
    # Two rows (a DPO pair is two rows) fit; four do not.
    limit = 2 * 110 if method == "supervised" else 2 * 64
    with out_of_memory_above(limit) as failed:
        result = train(respec(spec, work_dir=spec.work_dir / "oom"), backed_off)
    assert failed, "the fault never fired"
    assert [m.step for m in backed_off.steps] == [1, 2, 3, 4]
    assert close(backed_off.losses, clean.losses), (backed_off.losses, clean.losses)
    assert backed_off.steps[-1].train_mean_token_accuracy == pytest.approx(
        clean.steps[-1].train_mean_token_accuracy
    )
    # The first plan, then one back-off (said once), whose smaller budget the job keeps.
    first, *changes = backed_off.memory
    assert first == (memory.MemoryPlan(False, 16384), None)
    assert len(changes) >= 1 and changes[0][1] is not None
    assert "ftserve.max_tokens_per_micro_batch" in changes[0][1]
    assert all(warning is None for _, warning in changes[1:])
    budgets = [p.max_tokens_per_micro_batch for p, _ in changes]
    assert budgets == sorted(budgets, reverse=True) and budgets[-1] < 16384
    assert (result.final_path / "adapter_model.safetensors").is_file()


def test_a_row_that_cannot_fit_fails_naming_options_a_user_can_set(base: TrainingSpec) -> None:
    hooks = Recorder()
    with out_of_memory_above(20), pytest.raises(TrainingFailed) as info:
        train(base, hooks)
    failure = info.value
    assert failure.code == "out_of_memory"
    assert "step 1 even with one example per micro-batch" in failure.message
    for option in ("ftserve.max_seq_len", "ftserve.gradient_checkpointing", "ftserve.quantization"):
        assert option in failure.message
    # Option names a request cannot set never appear bare.
    assert "max_seq_len" not in failure.message.replace("ftserve.max_seq_len", "")
    assert hooks.steps == []
    assert [p.max_tokens_per_micro_batch for p, _ in hooks.memory][-1] < 16384


def test_an_explicit_budget_is_the_plan(base: TrainingSpec) -> None:
    hooks = Recorder()
    train(respec(base, max_tokens_per_micro_batch=100), hooks)
    assert hooks.memory == [(memory.MemoryPlan(False, 100), None)]


# -- the plan's arithmetic (what a GPU's free memory gives) -------------------------------------

COST = memory.ActivationCost(plain=1000, checkpointed=100)


def test_plan_keeps_activations_when_the_wanted_micro_batch_fits() -> None:
    plan = memory.plan(
        gradient_checkpointing=None,
        max_tokens=None,
        free_bytes=5_000_000,
        cost=COST,
        largest_step_tokens=4000,
    )
    assert plan == memory.MemoryPlan(False, 4000)


def test_plan_checkpoints_when_the_wanted_micro_batch_does_not_fit() -> None:
    plan = memory.plan(
        gradient_checkpointing=None,
        max_tokens=None,
        free_bytes=1_000_000,
        cost=COST,
        largest_step_tokens=100_000,
    )
    assert plan == memory.MemoryPlan(True, 10_000)  # wanted 16384; 1e6 / 100 fit


def test_plan_respects_what_was_asked() -> None:
    kw: dict[str, Any] = {"free_bytes": 1_000_000, "cost": COST, "largest_step_tokens": 100_000}
    assert memory.plan(gradient_checkpointing=False, max_tokens=None, **kw) == memory.MemoryPlan(
        False, 1000
    )
    assert memory.plan(gradient_checkpointing=None, max_tokens=500, **kw) == memory.MemoryPlan(
        False, 500
    )
    assert memory.plan(gradient_checkpointing=None, max_tokens=5000, **kw) == memory.MemoryPlan(
        True, 5000
    )
    tiny = {**kw, "free_bytes": 10}
    assert memory.plan(gradient_checkpointing=None, max_tokens=None, **tiny) == memory.MemoryPlan(
        True, memory.MIN_MICRO_BATCH_TOKENS
    )


def test_activation_cost_grows_with_the_model_and_checkpointing_saves_most_of_it() -> None:
    from transformers import LlamaConfig

    small = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30)
    cost = memory.activation_cost(small, compute_bytes=2)
    bigger = memory.activation_cost(
        LlamaConfig(hidden_size=896, intermediate_size=4864, num_hidden_layers=24), 2
    )
    assert bigger.plain > cost.plain
    assert cost.checkpointed < cost.plain / 3
    assert memory.activation_cost(small, compute_bytes=4).plain > cost.plain
