"""Reinforcement jobs through the server with the official SDK, on the tiny model: a job with a
model grader (its judge served by this same server) runs to ``succeeded`` with OpenAI's events,
checkpoints and results file, and its model answers; a paused and resumed job, and one whose
training process is killed, record the same rewards, each step once, as one that ran straight."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import time
from typing import Any

import openai
import pytest

from tests.conftest import Server, upload
from tests.e2e.conftest import metric_steps, training_children, wait_final, wait_steps
from tests.training.test_rft import GRADER, prompt_rows

JUDGED = {
    "type": "multi",
    "name": "both",
    "graders": {
        "word": GRADER,
        "judge": {
            "type": "score_model",
            "name": "judge",
            "model": "ftserve-tiny",
            "input": [
                {"role": "user", "content": "Rate {{sample.output_text}} for {{item.word}}."}
            ],
            "range": [0, 10],
            "sampling_params": {"max_completions_tokens": 12, "temperature": 0},
        },
    },
    "calculate_output": "word",
}
MESSAGE = re.compile(
    r"Step \d+/\d+ , train mean reward=\d\.\d\d"
    r"(, full validation mean reward=\d\.\d\d, full validation mean parse error=\d\.\d\d)?"
)


def create(client: openai.OpenAI, grader: dict[str, Any], **hp: Any) -> str:
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=upload(client, prompt_rows(12)),
        validation_file=upload(client, prompt_rows(3, offset=1), "valid.jsonl"),
        seed=3,
        method={  # type: ignore[typeddict-item]
            "type": "reinforcement",
            "reinforcement": {"grader": grader, "hyperparameters": hp},
        },
        extra_body={"ftserve": {"max_completion_tokens": 6}},
    )
    return job.id


def rewards_of(client: openai.OpenAI, job_id: str) -> list[tuple[int, float]]:
    events = client.fine_tuning.jobs.list_events(job_id, limit=1000)
    return sorted(
        (int(e.data["step"]), float(e.data["train_mean_reward"]))
        for e in events
        if e.type == "metrics" and isinstance(e.data, dict)
    )


@pytest.mark.both_backends
def test_an_rft_job_with_a_judge_runs_to_succeeded(trainer_server: Server) -> None:
    # A multi grader in OpenAI's object form: the SDK's strict type admits one grader only.
    client = trainer_server.client(strict=False)
    job_id = create(client, JUDGED, n_epochs=1, batch_size=4, eval_interval=2)
    assert wait_final(client, job_id, timeout=240) == "succeeded", client.fine_tuning.jobs.retrieve(
        job_id
    ).error
    job = client.fine_tuning.jobs.retrieve(job_id)
    assert job.method.reinforcement is not None
    hp = job.method.reinforcement.hyperparameters
    assert hp is not None and (hp.n_epochs, hp.batch_size, hp.eval_interval) == (1, 4, 2)
    assert hp.compute_multiplier == 1.0 and hp.eval_samples == 1
    assert hp.learning_rate_multiplier == 5.0  # auto, for LoRA
    assert job.trained_tokens and job.trained_tokens > 0

    events = list(reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=100))))
    steps = [e for e in events if e.type == "metrics"]
    assert [e.data["step"] for e in steps] == [1, 2, 3]  # type: ignore[index]
    assert all(MESSAGE.fullmatch(e.message) for e in steps), [e.message for e in steps]
    last: Any = steps[-1].data
    assert [g["name"] for g in last["scores"]["graders"]] == ["both", "word", "judge"]
    (usage,) = last["usage"]["graders"]
    assert usage["model"] == "ftserve-tiny" and usage["train_prompt_tokens_count"] > 0
    assert last["model_graders_token_usage"]["ftserve-tiny"]["total_tokens"] > 0
    # The judge answered every sample (a server error would be flagged).
    assert last["errors"]["graders"][0]["train_model_grader_server_error_count"] == 0

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job_id).data
    assert sorted(c.step_number for c in checkpoints) == [2, 3]
    for c in checkpoints:
        assert c.metrics.train_loss is None and c.metrics.step == float(c.step_number)
    (results,) = job.result_files
    table = list(csv.DictReader(io.StringIO(client.files.content(results).text)))
    assert [r["step"] for r in table] == ["1", "2", "3"]
    assert table[1]["valid_reward_mean"] != "" and table[0]["valid_reward_mean"] == ""

    assert job.fine_tuned_model
    answer = client.chat.completions.create(
        model=job.fine_tuned_model, messages=[{"role": "user", "content": "Say cat."}], max_tokens=4
    )
    assert answer.model == job.fine_tuned_model


def test_pause_resume_and_kill_9_record_the_same_rewards(trainer_server: Server) -> None:
    client = trainer_server.client(strict=False)  # the SDK's strict status Literal lacks "paused"
    hp = {"n_epochs": 6, "batch_size": 4, "eval_interval": 3}
    straight = create(client, GRADER, **hp)
    assert wait_final(client, straight, timeout=240) == "succeeded"
    expected = rewards_of(client, straight)
    assert [s for s, _ in expected] == list(range(1, 19))

    paused = create(client, GRADER, **hp)
    wait_steps(client, paused, 2, timeout=120)
    assert client.fine_tuning.jobs.pause(paused).status == "paused"
    deadline = time.monotonic() + 60
    while client.fine_tuning.jobs.retrieve(paused).status != "paused" or not (
        client.fine_tuning.jobs.checkpoints.list(paused).data
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1.0)  # the claim let go
    assert client.fine_tuning.jobs.resume(paused).status == "queued"
    # Past the first validation checkpoint (step 3), the training process dies.
    wait_steps(client, paused, 5, timeout=120)
    assert trainer_server.proc is not None
    children = training_children(trainer_server.proc.pid)
    assert children
    for child in children:
        os.kill(child, signal.SIGKILL)
    assert wait_final(client, paused, timeout=240) == "succeeded"
    assert sorted(metric_steps(client, paused)) == list(range(1, 19))
    assert rewards_of(client, paused) == expected
