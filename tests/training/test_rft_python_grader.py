"""A reinforcement job whose grader holds a python grader: each grading of a step (training,
then validation) runs that grader's whole batch in one sandbox, and a sample it fails on is
counted in the step's events as a python runtime error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ftserve.graders import sandbox
from ftserve.training.spec import RewardMetrics
from ftserve.training.trainer import train
from tests.sandboxed import require_sandbox
from tests.training.test_rft import prompt_rows
from tests.training.training_helpers import Recorder, make_spec, write_jsonl

SOURCE = """
import numpy as np

def grade(sample, item):
    if item["word"] == "owl":
        raise ValueError("no owls")
    return float(np.float32(item["word"] in sample["output_text"]))
"""
GRADER = {
    "type": "multi",
    "name": "m",
    "graders": {
        "py": {"type": "python", "name": "py", "source": SOURCE},
        "word": {
            "type": "text_similarity",
            "name": "word",
            "input": "{{sample.output_text}}",
            "reference": "{{item.word}}",
            "evaluation_metric": "fuzzy_match",
        },
    },
    "calculate_output": "0.5 * py + 0.5 * word",
}


def test_each_step_grades_in_one_sandbox(
    tmp_path: Path, models_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_sandbox()
    started: list[int] = []
    session = sandbox._session

    def counted(source: str, jobs: Any) -> list[sandbox.Result]:
        started.append(len(jobs))
        return session(source, jobs)

    monkeypatch.setattr(sandbox, "_session", counted)
    # 8 prompts (one of them "owl"), batch 4: 2 steps; validation at step 2 on 3 prompts.
    spec = make_spec(
        tmp_path,
        models_cache,
        write_jsonl(tmp_path / "train.jsonl", prompt_rows(8)),
        validation_file=write_jsonl(tmp_path / "valid.jsonl", prompt_rows(3, offset=1)),
        method="reinforcement",
        grader=GRADER,
        n_epochs=1,
        batch_size=4,
        eval_interval=2,
        max_completion_tokens=6,
    )
    hooks = Recorder()
    train(spec, hooks)
    hp = hooks.starts[0][0]
    assert hp.samples_per_prompt and hp.eval_samples
    assert started == [4 * hp.samples_per_prompt] * 2 + [3 * hp.eval_samples]
    steps = [m.data for m in hooks.steps if isinstance(m, RewardMetrics)]
    errors = [s["errors"]["graders"][0] for s in steps]
    assert (
        sum(e["train_python_grader_runtime_error_count"] for e in errors) == hp.samples_per_prompt
    )
    assert sum(e["train_python_grader_server_error_count"] for e in errors) == 0
    assert errors[1]["valid_python_grader_runtime_error_count"] == 0  # no owl among them
