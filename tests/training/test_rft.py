"""Reinforcement fine-tuning in the trainer, on the tiny model (CPU, one thread): the step's
figures, checkpoints at validation steps, constrained answers, the GRPO update's direction, and
a pause that resumes to the same samples and rewards as a run that never stopped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from ftserve.events import rewards
from ftserve.training.grpo import GrpoObjective, Scored, advantages
from ftserve.training.spec import RewardMetrics, TrainingSpec, TrainingStopped
from ftserve.training.trainer import train
from tests.training.training_helpers import Recorder, make_spec, respec, write_jsonl

WORDS = ["cat", "dog", "sun", "tea", "map", "owl"]
# Scores how much of the item's word the answer holds (in [0, 1], rarely 0 or 1 on a random model).
GRADER = {
    "type": "text_similarity",
    "name": "word",
    "input": "{{sample.output_text}}",
    "reference": "{{item.word}}",
    "evaluation_metric": "fuzzy_match",
}


def prompt_rows(n: int, offset: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "messages": [{"role": "user", "content": f"Say {WORDS[(i + offset) % 6]}."}],
            "word": WORDS[(i + offset) % 6],
        }
        for i in range(n)
    ]


@pytest.fixture
def spec(tmp_path: Path, models_cache: Path) -> TrainingSpec:
    """8 prompts, batch 4, 2 epochs = 4 steps; validation every 2 steps on 3 prompts."""
    return make_spec(
        tmp_path,
        models_cache,
        write_jsonl(tmp_path / "train.jsonl", prompt_rows(8)),
        validation_file=write_jsonl(tmp_path / "valid.jsonl", prompt_rows(3, offset=1)),
        method="reinforcement",
        grader=GRADER,
        n_epochs=2,
        batch_size=4,
        eval_interval=2,
        max_completion_tokens=6,
        learning_rate_multiplier=5.0,
    )


def reward_steps(hooks: Recorder) -> list[dict[str, Any]]:
    steps = [m for m in hooks.steps if isinstance(m, RewardMetrics)]
    assert len(steps) == len(hooks.steps)
    return [m.data for m in steps]


def test_a_reinforcement_job_reports_rewards_and_keeps_validation_checkpoints(
    spec: TrainingSpec,
) -> None:
    hooks = Recorder()
    result = train(spec, hooks)
    hp = hooks.starts[0][0]
    assert (hp.total_steps, hp.samples_per_prompt, hp.eval_samples) == (4, 4, 1)
    assert hp.compute_multiplier == 1.0 and hp.reasoning_effort == "default"
    data = reward_steps(hooks)
    assert [d["step"] for d in data] == [1, 2, 3, 4]
    validated = [d["step"] for d in data if d["full_valid_mean_reward"] is not None]
    assert validated == [2, 4]
    for d in data:
        assert 0.0 <= d["train_mean_reward"] <= 1.0
        assert d["scores"]["graders"][0]["name"] == "word"
        assert d["completion_tokens_mean"] <= 6
        assert d["timing"]["step"]["full_iteration"] >= d["timing"]["step"]["sampling"] > 0
        assert d["errors"]["graders"][0]["train_sample_parse_error_count"] == 0
        assert rewards.message(d).startswith(f"Step {d['step']}/4 , train mean reward=")
    assert "full validation mean reward=" in rewards.message(data[1])
    # A checkpoint at each validation step, holding that step's figures.
    assert [(c.step, c.kind) for c in hooks.checkpoints] == [(2, "eval"), (4, "eval")]
    assert isinstance(hooks.checkpoints[0].metrics, RewardMetrics)
    metrics = rewards.checkpoint_metrics(hooks.checkpoints[0].metrics.data)
    assert metrics["train_loss"] is None and metrics["step"] == 2.0
    assert metrics["valid_reward_mean"] == data[1]["full_valid_mean_reward"]
    assert (result.final_path / "adapter_model.safetensors").is_file()


def test_a_pause_resumes_to_the_same_samples_and_rewards(spec: TrainingSpec) -> None:
    straight = Recorder()
    train(spec, straight)
    paused_spec = respec(spec, work_dir=spec.work_dir.parent / "paused")
    first = Recorder(decide=lambda step: "pause" if step == 1 else "continue")
    with pytest.raises(TrainingStopped) as stopped:
        train(paused_spec, first)
    assert stopped.value.checkpoint is not None
    second = Recorder()
    train(respec(paused_spec, resume_from=stopped.value.checkpoint.path), second)
    assert second.starts[0][1] == 1
    both = reward_steps(first) + reward_steps(second)
    expected = reward_steps(straight)
    assert [d["step"] for d in both] == [1, 2, 3, 4]
    for got, want in zip(both, expected, strict=True):
        assert got["train_mean_reward"] == pytest.approx(want["train_mean_reward"], abs=1e-9)
        assert got["completion_tokens_mean"] == want["completion_tokens_mean"]
        assert got["full_valid_mean_reward"] == want["full_valid_mean_reward"]


def test_a_response_format_makes_every_sampled_answer_json(
    spec: TrainingSpec, tmp_path: Path
) -> None:
    schema = {
        "type": "object",
        "properties": {"word": {"type": "string", "enum": WORDS}},
        "required": ["word"],
        "additionalProperties": False,
    }
    grader = {
        "type": "string_check",
        "name": "exact",
        "input": "{{sample.output_json.word}}",
        "reference": "{{item.word}}",
        "operation": "eq",
    }
    hooks = Recorder()
    train(
        respec(
            spec,
            grader=grader,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "w", "strict": True, "schema": schema},
            },
            max_completion_tokens=24,
            n_epochs=1,
        ),
        hooks,
    )
    for d in reward_steps(hooks):
        errors = d["errors"]["graders"][0]
        assert errors["train_sample_parse_error_count"] == 0
        assert errors["train_invalid_variable_error_count"] == 0
        assert d["train_mean_reward"] in {i / 16 for i in range(17)}


def test_advantages_are_relative_to_the_group() -> None:
    a = advantages([1.0, 0.0, 0.5, 0.5, 0.2, 0.2], 2)
    assert a[0] > 0 > a[1] and a[0] == pytest.approx(-a[1])
    assert a[2:] == [0.0, 0.0, 0.0, 0.0]  # all equal: nothing to learn from the group


def test_the_update_raises_the_better_answer(tmp_path: Path, models_cache: Path) -> None:
    from ftserve.modeling.device import resolve_device
    from ftserve.modeling.loading import load_model
    from ftserve.modeling.sources import materialize
    from ftserve.training.data import Example
    from ftserve.training.lora import attach_lora

    spec = make_spec(tmp_path, models_cache, tmp_path / "unused.jsonl")
    torch.manual_seed(0)
    model = attach_lora(
        load_model(
            materialize("ftserve-tiny", models_cache), resolve_device("cpu"), frozen_base=True
        ),
        spec,
    )
    good = Example([5, 6, 7, 8, 9], [False, False, True, True, True])
    bad = Example([5, 6, 7, 10, 11], [False, False, True, True, True])
    objective = GrpoObjective(
        model,
        reference=None,
        pad_id=0,
        device=torch.device("cpu"),
        autocast=lambda: torch.autocast("cpu", enabled=False),
        max_tokens=1024,
        use_logits_mask=False,
    )

    def logp(e: Example) -> float:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([e.input_ids])).logits.log_softmax(-1)[0]
        return sum(float(out[t - 1, e.input_ids[t]]) for t in range(3, 5))

    before = logp(good) - logp(bad)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        objective.train_step([Scored(good, 1.0), Scored(bad, -1.0)])
        optimizer.step()
    assert logp(good) - logp(bad) > before + 0.01
    assert objective.last_kl >= 0.0
    assert json.dumps(rewards.graders_of(GRADER)[0].name) == '"word"'
