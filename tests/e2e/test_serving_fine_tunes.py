"""Fine-tunes of ftserve-tiny served back through /v1/chat/completions, with the official SDK.

The training rows all answer one question with one tool call. A random-init tiny model memorises
that answer within a few hundred steps, so at ``temperature: 0`` the fine-tuned model writes the
call in the form training taught it, and the API returns it as ``message.tool_calls``: what
training writes, inference reads back. Full fine-tunes and LoRA adapters, final and checkpoint
models, streamed and not.

SQLite only: what is tested is the model (what training taught it, what inference reads back);
the store's part of serving — which jobs' models exist, for whom — runs on both backends in
tests/api/test_models.py and test_models_lifecycle.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.conftest import Server, upload
from tests.e2e.conftest import wait_final

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
QUESTION = [{"role": "user", "content": "Weather in Oslo?"}]
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
}
ROW = {
    "tools": TOOLS,
    "messages": [*QUESTION, {"role": "assistant", "content": None, "tool_calls": [CALL]}],
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("serve-ft") / "data", env={"FTSERVE_WORKERS": "1"})
    server.start()
    yield server
    server.stop()


def trained(client: openai.OpenAI, adapter: str, lr: float) -> Any:
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=upload(client, [ROW] * 10),
        seed=5,
        hyperparameters={"n_epochs": 25, "batch_size": 1, "learning_rate_multiplier": lr},
        extra_body={"ftserve": {"adapter": adapter}},
    )
    assert wait_final(client, job.id, timeout=300) == "succeeded"
    return client.fine_tuning.jobs.retrieve(job.id)


def assert_calls_weather(message: Any) -> None:
    assert message.tool_calls, message
    [call] = message.tool_calls
    assert call.type == "function" and call.id.startswith("call_") and len(call.id) == 29
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}


@pytest.mark.parametrize(("adapter", "lr"), [("full", 50.0), ("lora", 10.0)])
def test_a_fine_tune_answers_with_the_tool_call_it_was_taught(
    srv: Server, adapter: str, lr: float
) -> None:
    client = srv.client()
    job = trained(client, adapter, lr)
    answer = client.chat.completions.create(
        model=job.fine_tuned_model, messages=QUESTION, tools=TOOLS, temperature=0, max_tokens=80
    )
    assert answer.model == job.fine_tuned_model
    [choice] = answer.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert_calls_weather(choice.message)
    assert answer.usage is not None and answer.usage.completion_tokens > 10

    # Streamed: the same call, delivered as tool_calls deltas, then finish_reason tool_calls.
    chunks = list(
        client.chat.completions.create(
            model=job.fine_tuned_model,
            messages=QUESTION,
            tools=TOOLS,
            temperature=0,
            max_tokens=80,
            stream=True,
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    calls = [t for d in deltas for t in (d.tool_calls or [])]
    assert calls and calls[0].function and calls[0].function.name == "get_weather"
    arguments = "".join(t.function.arguments or "" for t in calls if t.function)
    assert json.loads(arguments) == {"city": "Oslo"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    # A checkpoint model of the same job answers too (earlier in training: any text).
    ckpt = min(client.fine_tuning.jobs.checkpoints.list(job.id), key=lambda c: c.step_number)
    early = client.chat.completions.create(
        model=ckpt.fine_tuned_model_checkpoint, messages=QUESTION, temperature=0, max_tokens=8
    )
    assert early.model == ckpt.fine_tuned_model_checkpoint
    assert early.choices[0].finish_reason in ("stop", "length", "tool_calls")

    # The base model, never trained on it, does not produce the call.
    base = client.chat.completions.create(
        model="ftserve-tiny", messages=QUESTION, tools=TOOLS, temperature=0, max_tokens=80
    )
    assert not base.choices[0].message.tool_calls
