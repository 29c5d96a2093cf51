"""The OpenAI Agents SDK, unmodified, running an agent with one function tool on a fine-tuned
model through its default model, the Responses API.

A random tiny model calls no tool by itself, so ftserve-tiny is first taught the whole exchange
the agent will have: the agent's instructions and the user's question, the call of
``get_weather``, the tool's answer, the final sentence. The tools and instructions in the rows
are the ones the agent sends, so at ``temperature: 0`` the fine-tune replays the exchange: the
SDK runs the tool on the ``function_call`` item, replays the items back (it does not chain
responses), and ends on the model's text. Tracing is turned off (its default posts to OpenAI's
servers). A streamed run goes through the same events the SDK's stream reads, and a checkpoint
model of the same job answers too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import openai
import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from tests.conftest import API_KEY, Server, upload
from tests.e2e.conftest import wait_final

INSTRUCTIONS = "You answer questions about the weather."
QUESTION = "Weather in Oslo?"
ANSWER = "It is sunny in Oslo."
PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": PARAMETERS,
        "strict": True,
    },
}
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
}
ROW = {
    "tools": [TOOL],
    "messages": [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
        {"role": "assistant", "content": ANSWER},
    ],
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("agents") / "data", env={"FTSERVE_WORKERS": "1"})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fine_tuned(srv: Server) -> str:
    client = srv.client()
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=upload(client, [ROW] * 10),
        seed=5,
        hyperparameters={"n_epochs": 25, "batch_size": 1, "learning_rate_multiplier": 50.0},
        extra_body={"ftserve": {"adapter": "full"}},
    )
    assert wait_final(client, job.id, timeout=300) == "succeeded"
    name = client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model
    assert name is not None
    return name


def test_a_checkpoint_model_answers_too(srv: Server, fine_tuned: str) -> None:
    client = srv.client()
    [job] = [j for j in client.fine_tuning.jobs.list() if j.fine_tuned_model == fine_tuned]
    ckpt = min(client.fine_tuning.jobs.checkpoints.list(job.id), key=lambda c: c.step_number)
    early = client.responses.create(
        model=ckpt.fine_tuned_model_checkpoint, input=QUESTION, max_output_tokens=16
    )
    assert early.model == ckpt.fine_tuned_model_checkpoint and early.output


async def _run(srv: Server, model: str, *, streamed: bool) -> tuple[Any, list[str]]:
    from agents import (
        Agent,
        FunctionTool,
        ModelSettings,
        OpenAIProvider,
        RunConfig,
        Runner,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)
    asked: list[str] = []

    async def get_weather(ctx: Any, arguments: str) -> str:
        asked.append(json.loads(arguments)["city"])
        return "Sunny"

    tool = FunctionTool(
        name="get_weather",
        description="Weather in a city",
        params_json_schema=PARAMETERS,
        on_invoke_tool=get_weather,
        strict_json_schema=True,
    )
    agent = Agent(
        name="weather",
        instructions=INSTRUCTIONS,
        tools=[tool],
        model=model,
        model_settings=ModelSettings(temperature=0, max_tokens=80),
    )
    async with openai.AsyncOpenAI(base_url=srv.base_url, api_key=API_KEY, max_retries=0) as api:
        config = RunConfig(model_provider=OpenAIProvider(openai_client=api))
        if not streamed:
            return await Runner.run(agent, QUESTION, run_config=config), asked
        run = Runner.run_streamed(agent, QUESTION, run_config=config)
        async for _ in run.stream_events():
            pass
        return run, asked


@pytest.mark.parametrize("streamed", [False, True])
def test_an_agent_calls_its_tool_on_a_fine_tune_and_answers(
    srv: Server, fine_tuned: str, streamed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    result, asked = asyncio.run(_run(srv, fine_tuned, streamed=streamed))
    assert asked == ["Oslo"]
    assert result.final_output == ANSWER
    # Two model calls: the tool call, then the answer after the tool's output.
    [first, second] = result.raw_responses
    assert [item.type for item in first.output] == ["function_call"]
    assert [item.type for item in second.output] == ["message"]
    # Each was stored, and the second answered the whole replayed exchange.
    items = srv.client().responses.input_items.list(second.response_id, order="asc")
    assert [i.type for i in items.data] == ["message", "function_call", "function_call_output"]


def test_a_streamed_call_is_openais_function_call_events(srv: Server, fine_tuned: str) -> None:
    """The events of a turn that calls the tool, each held to the SDK's strict types."""
    tool = {"type": "function", **TOOL["function"]}
    body = {
        "model": fine_tuned,
        "instructions": INSTRUCTIONS,
        "input": QUESTION,
        "tools": [tool],
        "temperature": 0,
        "max_output_tokens": 80,
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=srv.base_url, headers=headers, timeout=120) as http:
        raw = http.post("/responses", json=body).text
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    events = [
        adapter.validate_python(json.loads(block.split("\ndata: ", 1)[1]), strict=True)
        for block in raw.split("\n\n")[:-1]
    ]
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    call = events[-2].item
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Oslo"} and call.call_id.startswith("call_")
    assert events[3].delta == events[4].arguments == call.arguments
    assert events[-1].response.output == [call]
