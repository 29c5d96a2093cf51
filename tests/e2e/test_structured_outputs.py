"""Structured outputs on a fine-tuned ftserve-tiny, through unmodified clients: the SDK's
``chat.completions.parse`` and ``.stream`` with a Pydantic model, LangChain's
``with_structured_output``, ``json_object``, strict function tools under ``tool_choice``
``required`` and named, and ``finish_reason: "length"`` (the SDK's ``LengthFinishReasonError``).

The fine-tune is a LoRA adapter trained for a moment: what it learned does not matter, because
constrained decoding makes any model's answer parse (sampling at temperature 1 to show it).

SQLite only: what is tested is decoding, not the store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import openai
import pytest
from pydantic import BaseModel

from tests.conftest import Server, upload
from tests.e2e.conftest import wait_final

QUESTION = [{"role": "user", "content": "Is Oslo in Norway?"}]
ROW = {"messages": [*QUESTION, {"role": "assistant", "content": '{"verdict":"yes"}'}]}


class Verdict(BaseModel):
    verdict: Literal["yes", "no", "unsure"]
    confident: bool


class Weather(BaseModel):
    unit: Literal["c", "f"]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("structured") / "data", env={"FTSERVE_WORKERS": "1"})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def model(srv: Server) -> str:
    client = srv.client()
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=upload(client, [ROW] * 10),
        hyperparameters={"n_epochs": 1, "batch_size": 2},
        extra_body={"ftserve": {"adapter": "lora"}},
    )
    assert wait_final(client, job.id, timeout=240) == "succeeded"
    name = client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model
    assert name is not None
    return name


def test_parse_returns_the_pydantic_object_streamed_or_not(srv: Server, model: str) -> None:
    client = srv.client()
    for _ in range(3):
        completion = client.chat.completions.parse(
            model=model, messages=QUESTION, response_format=Verdict, temperature=1.0, max_tokens=60
        )
        [choice] = completion.choices
        assert choice.finish_reason == "stop"
        assert isinstance(choice.message.parsed, Verdict), choice.message.content
    with client.chat.completions.stream(
        model=model, messages=QUESTION, response_format=Verdict, temperature=1.0, max_tokens=60
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert len(deltas) > 1  # streamed as it was decoded, not in one piece at the end
    assert isinstance(final.choices[0].message.parsed, Verdict)
    assert "".join(deltas) == final.choices[0].message.content


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_structured_output(srv: Server, model: str, method: Any) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        model=model, base_url=srv.base_url, api_key=srv.client().api_key, max_retries=0
    )
    # json_schema (the default) sends response_format; function_calling forces a tool call.
    answer = chat.with_structured_output(Verdict, method=method).invoke("Is Oslo in Norway?")
    assert isinstance(answer, Verdict)


def test_json_object(srv: Server, model: str) -> None:
    client = srv.client()
    resp = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Answer in JSON: is Oslo in Norway?"}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=200,
    )
    if resp.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(resp.choices[0].message.content or ""), dict)
    else:  # a long string cut by max_tokens: still JSON so far
        assert (resp.choices[0].message.content or "").startswith("{")


def test_strict_tools_named_and_required(srv: Server, model: str) -> None:
    client = srv.client()
    tools: list[Any] = [
        openai.pydantic_function_tool(Weather, name="get_weather"),
        openai.pydantic_function_tool(Verdict, name="judge"),
    ]
    named = client.chat.completions.parse(
        model=model,
        messages=QUESTION,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=1.0,
        max_tokens=200,  # a byte per token: the call's framing alone is about 70
    )
    assert named.choices[0].finish_reason == "stop"  # as OpenAI's for a named function
    [call] = named.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert isinstance(call.function.parsed_arguments, Weather)
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=QUESTION,
            tools=tools,
            tool_choice={"type": "function", "function": {"name": "judge"}},
            max_tokens=200,
            stream=True,
        )
    )
    deltas = [t for c in chunks if c.choices for t in (c.choices[0].delta.tool_calls or [])]
    arguments = "".join(t.function.arguments or "" for t in deltas if t.function)
    Verdict.model_validate_json(arguments)
    assert chunks[-1].choices[0].finish_reason == "stop"
    required = client.chat.completions.parse(
        model=model, messages=QUESTION, tools=tools, tool_choice="required", max_tokens=400
    )
    calls = required.choices[0].message.tool_calls or []
    assert calls and required.choices[0].finish_reason == "tool_calls"
    for c in calls:
        assert isinstance(c.function.parsed_arguments, Weather | Verdict)


def test_length_finish(srv: Server, model: str) -> None:
    client = srv.client()
    with pytest.raises(openai.LengthFinishReasonError):
        client.chat.completions.parse(
            model=model, messages=QUESTION, response_format=Verdict, max_tokens=4
        )


def test_responses_parse_returns_the_pydantic_object_streamed_or_not(
    srv: Server, model: str
) -> None:
    """``text.format`` on the Responses API goes through the same constrained decoding."""
    client = srv.client()
    response = client.responses.parse(
        model=model, input=QUESTION, text_format=Verdict, temperature=1.0, max_output_tokens=60
    )
    assert response.status == "completed"
    assert isinstance(response.output_parsed, Verdict), response.output_text
    with client.responses.stream(
        model=model, input=QUESTION, text_format=Verdict, temperature=1.0, max_output_tokens=60
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) > 1
    assert isinstance(final.output_parsed, Verdict)
    assert "".join(deltas) == final.output_text
