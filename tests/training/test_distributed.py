"""Jobs on several processes (gloo on loopback, ftserve-tiny, one thread each): the same losses
as one process with the same global batch, control from rank 0 only, a dead rank ends the run."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from ftserve.training.distributed import EXIT_RANK_LOST, train_on_devices
from ftserve.training.spec import TrainingSpec, TrainingStopped
from tests.training.training_helpers import (
    Recorder,
    chat_rows,
    make_spec,
    preference_rows,
    respec,
    write_jsonl,
)

# A rank that never came up must fail the test, not hold the suite.
pytestmark = pytest.mark.timeout(90)
REL = 1e-4  # the bound for jobs of up to 20 steps


@pytest.fixture(scope="module")
def chat_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "chat.jsonl", chat_rows(15))


@pytest.fixture
def base(tmp_path: Path, models_cache: Path, chat_file: Path) -> TrainingSpec:
    """15 rows, 2 epochs of batch 3 = 10 steps: 3 examples over 2 ranks is an uneven share."""
    return make_spec(
        tmp_path, models_cache, chat_file, n_epochs=2, batch_size=3, learning_rate_multiplier=20.0
    )


def close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= REL * abs(y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("lora", "method"),
    [(True, "supervised"), (False, "supervised"), (True, "dpo")],
    ids=["lora", "full", "dpo-lora"],
)
def test_two_processes_train_the_losses_of_one(
    base: TrainingSpec, tmp_path: Path, lora: bool, method: str
) -> None:
    spec = respec(base, lora=lora, method=method)
    if method == "dpo":
        data = write_jsonl(tmp_path / "pref.jsonl", preference_rows(15))
        spec = respec(spec, training_file=data, learning_rate_multiplier=1.0)
    one, two = Recorder(), Recorder()
    single = train_on_devices(respec(spec, work_dir=tmp_path / "one"), one)
    double = train_on_devices(respec(spec, work_dir=tmp_path / "two", devices=2), two)
    assert len(one.losses) == 10
    assert close(two.losses, one.losses), (two.losses, one.losses)
    # The second step is where a wrong gradient would show first; the losses must move.
    assert one.losses[0] != one.losses[-1]
    assert double.trained_tokens == single.trained_tokens
    # Rank 0 alone wrote: one checkpoint per epoch end, one final model.
    assert [c.step for c in two.checkpoints] == [5, 10]
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()) == [
        "step-000005",
        "step-000010",
    ]
    assert (double.final_path / "ftserve.json").is_file()


def test_a_pause_on_two_processes_resumes_on_one_with_the_same_losses(
    base: TrainingSpec, tmp_path: Path
) -> None:
    straight = Recorder()
    train_on_devices(respec(base, work_dir=tmp_path / "straight"), straight)
    first = Recorder(decide=lambda step: "pause" if step == 3 else "continue")
    with pytest.raises(TrainingStopped) as info:
        train_on_devices(respec(base, devices=2), first)
    assert (info.value.kind, info.value.step) == ("pause", 3)
    assert info.value.checkpoint is not None
    second = Recorder()
    again = respec(base, work_dir=tmp_path / "again", resume_from=info.value.checkpoint.path)
    train_on_devices(again, second)
    assert [m.step for m in second.steps] == list(range(4, 11))
    assert close(first.losses + second.losses, straight.losses)


def test_a_cancel_stops_every_rank_at_that_step(base: TrainingSpec) -> None:
    hooks = Recorder(decide=lambda step: "cancel" if step == 2 else "continue")
    with pytest.raises(TrainingStopped) as info:
        train_on_devices(respec(base, devices=2), hooks)
    assert (info.value.kind, info.value.step) == ("cancel", 2)
    assert len(hooks.steps) == 2
    assert multiprocessing.active_children() == []  # the other rank ended with it


def _kill_a_rank_at_step_2(spec: TrainingSpec) -> None:
    def decide(step: int) -> str:
        if step == 2:
            for child in multiprocessing.active_children():
                assert child.pid is not None
                os.kill(child.pid, signal.SIGKILL)
        return "continue"

    train_on_devices(spec, Recorder(decide=decide))  # type: ignore[arg-type]
    os._exit(0)  # not reached: rank 0 ends the run when another rank dies


def test_kill_9_of_another_rank_ends_the_run(base: TrainingSpec) -> None:
    # Spawned, not forked: a fork of this pytest worker would inherit whatever lock one of its
    # other threads (xdist's, a previous test's) held at that instant, and could hang on it. The
    # product's training child is itself a spawned, fresh process, which this one mirrors.
    process = multiprocessing.get_context("spawn").Process(
        target=_kill_a_rank_at_step_2, args=(respec(base, devices=2),)
    )
    process.start()
    try:
        process.join(timeout=75)
        assert process.exitcode == EXIT_RANK_LOST
    finally:
        if process.is_alive():  # never leave a stuck gang burning the suite's CPUs
            process.kill()
            process.join()
