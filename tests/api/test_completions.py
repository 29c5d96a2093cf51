"""POST /v1/completions (legacy) against the real inference process on ftserve-tiny, and the
parts of both endpoints that random weights cannot reach (tool calls in the output, fine-tuned
models of the other format), through their functions."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import openai
import pytest

from ftserve.api.context import Ctx
from ftserve.completions import routes
from ftserve.completions.chat_request import parse_chat
from ftserve.completions.objects import Head
from ftserve.completions.resolve import IS_CHAT, NOT_CHAT, served_model
from ftserve.completions.toolcalls import parse_tool_calls
from ftserve.errors import DeploymentNotFound, NotFound
from ftserve.inference.protocol import Accepted, Finished, Piece, ServedModel
from ftserve.modeling.tiny_model import build_byte_tokenizer
from tests.api.conftest import MODEL, sse_events
from tests.conftest import API_KEY, Server

pytestmark = pytest.mark.both_backends  # the [postgres] ids too (tests/conftest.py)


def test_basic_and_default_max_tokens(client: openai.OpenAI) -> None:
    tok = build_byte_tokenizer()
    resp = client.completions.create(model=MODEL, prompt="Once upon a time", temperature=0)
    assert re.fullmatch(r"cmpl-[0-9A-Za-z]{29}", resp.id)
    assert resp.object == "text_completion" and resp.model == MODEL
    (choice,) = resp.choices
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == len(tok("Once upon a time")["input_ids"])
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    if choice.finish_reason == "length":
        assert resp.usage.completion_tokens == 16  # the default max_tokens
    again = client.completions.create(model=MODEL, prompt="Once upon a time", temperature=0)
    assert again.choices[0].text == choice.text


def test_prompt_lists_and_n(client: openai.OpenAI) -> None:
    resp = client.completions.create(
        model=MODEL, prompt=["abc", "xyz"], n=2, max_tokens=4, temperature=0
    )
    assert [c.index for c in resp.choices] == [0, 1, 2, 3]
    texts = [c.text for c in resp.choices]
    assert texts[0] == texts[1] and texts[2] == texts[3]  # greedy: the same per prompt
    single = client.completions.create(model=MODEL, prompt="xyz", max_tokens=4, temperature=0)
    assert single.choices[0].text == texts[2]


def test_token_id_prompts(client: openai.OpenAI) -> None:
    tok = build_byte_tokenizer()
    ids = tok("abc", add_special_tokens=False)["input_ids"]
    by_ids = client.completions.create(model=MODEL, prompt=ids, max_tokens=3, temperature=0)
    many = client.completions.create(model=MODEL, prompt=[ids, ids], max_tokens=3, temperature=0)
    assert len(many.choices) == 2
    assert many.choices[0].text == many.choices[1].text == by_ids.choices[0].text


def test_echo_and_logprobs(server: Server, client: openai.OpenAI) -> None:
    # OpenAI answers null for the first echoed token's logprob, which the SDK's strict types
    # (List[float]) reject: a lenient client reads it.
    resp = server.client(strict=False).completions.create(
        model=MODEL, prompt="hello", max_tokens=3, echo=True, logprobs=2, temperature=0
    )
    choice = resp.choices[0]
    assert choice.text.startswith("hello")
    lp = choice.logprobs
    assert lp is not None and lp.tokens is not None and lp.token_logprobs is not None
    assert lp.top_logprobs is not None and lp.text_offset is not None
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset)
    assert lp.token_logprobs[0] is None  # the first prompt token has no logprob
    assert all(v is None or v <= 0 for v in lp.token_logprobs)
    assert all(t is None or 1 <= len(t) <= 3 for t in lp.top_logprobs)
    assert lp.text_offset == sorted(lp.text_offset)
    plain = client.completions.create(model=MODEL, prompt="hello", max_tokens=3, logprobs=0)
    assert plain.usage is not None and plain.choices[0].logprobs is not None
    assert len(plain.choices[0].logprobs.tokens or []) == plain.usage.completion_tokens


def test_stream(http: httpx.Client) -> None:
    resp = http.post(
        "/completions",
        json={
            "model": MODEL,
            "prompt": ["a", "b"],
            "n": 2,
            "max_tokens": 5,
            "stream": True,
            "temperature": 0,
            "stream_options": {"include_usage": True},
        },
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
    data = sse_events(resp.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "text_completion" for c in chunks)
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] <= 20
    for index in range(4):
        mine = [c["choices"][0] for c in chunks[:-1] if c["choices"][0]["index"] == index]
        assert mine[-1]["finish_reason"] in ("stop", "length")
        assert all(c["finish_reason"] is None for c in mine[:-1])
    # The lenient SDK reads it too (strict mode rejects finish_reason null, spec §9.6).
    server_client = openai.OpenAI(api_key=API_KEY, base_url=str(http.base_url), max_retries=0)
    with server_client:
        got = list(
            server_client.completions.create(
                model=MODEL, prompt="a", max_tokens=3, stream=True, temperature=0
            )
        )
        assert got[-1].choices[0].finish_reason in ("stop", "length")


ERRORS: list[tuple[str, dict[str, Any], int, str | None, str | None, str | None]] = [
    (
        "suffix",
        {"suffix": "x"},
        400,
        "Unsupported parameter: 'suffix' is not supported with this model.",
        "suffix",
        "unsupported_value",
    ),
    (
        "best_of-below-n",
        {"best_of": 1, "n": 2},
        400,
        "Invalid 'best_of': best_of must be greater than or equal to n.",
        "best_of",
        None,
    ),
    ("best_of-above-n", {"best_of": 3}, 400, None, "best_of", "unsupported_value"),
    (
        "logprobs-above",
        {"logprobs": 6},
        400,
        "Invalid 'logprobs': integer above maximum value. Expected a value <= 5, but got 6 "
        "instead.",
        "logprobs",
        "integer_above_max_value",
    ),
    (
        "missing-prompt",
        {"prompt": None},
        400,
        "Missing required parameter: 'prompt'.",
        "prompt",
        "missing_required_parameter",
    ),
    ("empty-prompt-list", {"prompt": []}, 400, None, "prompt", "empty_array"),
    ("bad-token-id", {"prompt": [1, 99999999]}, 400, None, "prompt", None),
    (
        "stream_options",
        {"stream_options": {"include_usage": True}},
        400,
        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        "stream_options",
        None,
    ),
    (
        "unknown",
        {"messages": []},
        400,
        "Unrecognized request argument supplied: messages",
        None,
        None,
    ),
    (
        "unknown-model",
        {"model": "davinci-002"},
        404,
        "The model `davinci-002` does not exist or you do not have access to it.",
        None,
        "model_not_found",
    ),
]


@pytest.mark.parametrize(
    ("case", "change", "status", "message", "param", "code"), ERRORS, ids=[e[0] for e in ERRORS]
)
def test_errors(
    http: httpx.Client,
    case: str,
    change: dict[str, Any],
    status: int,
    message: str | None,
    param: str | None,
    code: str | None,
) -> None:
    body = {
        k: v
        for k, v in {"model": MODEL, "prompt": "x", "max_tokens": 2, **change}.items()
        if v is not None
    }
    resp = http.post("/completions", json=body)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    if message is not None:
        assert err["message"] == message
    assert (err["param"], err["code"]) == (param, code), err


def test_best_of_equal_to_n_is_honoured(client: openai.OpenAI) -> None:
    resp = client.completions.create(model=MODEL, prompt="x", max_tokens=2, n=2, best_of=2)
    assert len(resp.choices) == 2


# -- what random weights cannot reach ----------------------------------------------------------


def test_parse_tool_calls() -> None:
    text = (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>\n'
        '<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>'
    )
    parsed = parse_tool_calls(text)
    assert parsed.content is None
    first, second = parsed.calls
    assert re.fullmatch(r"call_[0-9A-Za-z]{24}", first["id"])
    assert first["type"] == "function"
    assert first["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert json.loads(first["function"]["arguments"]) == {"city": "Paris"}
    assert second["function"] == {"name": "f", "arguments": '{"a": 1}'}
    mixed = parse_tool_calls('Let me check.\n<tool_call>{"name": "g", "arguments": {}}</tool_call>')
    assert mixed.content == "Let me check." and mixed.calls[0]["function"]["arguments"] == "{}"
    broken = parse_tool_calls("<tool_call>{not json}</tool_call>")
    assert broken.content == "<tool_call>{not json}</tool_call>" and broken.calls == ()
    assert parse_tool_calls("plain").content == "plain"


class FakeStream:
    """Stands in for the inference client's Stream: fixed pieces, then one finish."""

    def __init__(self, texts: list[str]) -> None:
        self.accepted = Accepted("r", prompt_tokens=3, context_length=256)
        self.texts = texts
        self.cancelled = False

    async def __aiter__(self) -> AsyncIterator[Piece | Finished]:
        for t in self.texts:
            yield Piece("r", 0, t)
        yield Finished("r", 0, "stop", len(self.texts))

    def cancel(self) -> None:
        self.cancelled = True


TOOL_TEXT = [
    '<tool_call>{"name": "get_weather", ',
    '"arguments": {"city": "Paris"}}',
    "</tool_call>",
]


def _tool_request() -> Any:
    return parse_chat(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "w?"}],
            "stream": True,
            "tools": [{"type": "function", "function": {"name": "get_weather"}}],
        },
        max_generation_tokens=64,
    )


def test_tool_calls_in_a_response() -> None:
    req = _tool_request()
    stream = FakeStream(TOOL_TEXT)
    from ftserve.completions.objects import Choice

    choice = Choice()
    for t in TOOL_TEXT:
        choice.add(t, None)
    choice.finish_reason = "stop"
    out = routes._chat_choice(0, choice, req)
    assert out["finish_reason"] == "tool_calls"
    assert out["message"]["content"] is None
    assert out["message"]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    assert stream.cancelled is False


def test_tool_calls_in_a_stream() -> None:
    req = _tool_request()
    stream = FakeStream(TOOL_TEXT)

    async def run() -> list[bytes]:
        head = Head("chatcmpl-" + "a" * 29, 1, MODEL)
        return [c async for c in routes._chat_events(stream, req, head)]  # type: ignore[arg-type]

    raw = asyncio.run(run())
    assert raw[-1] == b"data: [DONE]\n\n"
    chunks = [json.loads(c[len(b"data: ") :]) for c in raw[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": "", "refusal": None}
    (call,) = deltas[1]["tool_calls"]
    assert call["index"] == 0 and call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert deltas[2] == {} and chunks[2]["choices"][0]["finish_reason"] == "tool_calls"
    assert stream.cancelled  # closing the generator always cancels (a no-op once finished)


@dataclass
class _Models:
    model: ServedModel | None

    def served(self, organization: str, name: str) -> ServedModel:
        if self.model is None:
            raise NotFound(
                f"The model `{name}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        return self.model


@dataclass
class _Services:
    models: _Models


def _ctx(model: ServedModel | None) -> Ctx:
    return Ctx("personal", _Services(_Models(model)))  # type: ignore[arg-type]


def test_endpoint_formats() -> None:
    text_ft = ServedModel("ft:x:personal::a", "lora", "ftserve-tiny", "/w", chat=False)
    chat_ft = ServedModel("ft:x:personal::b", "lora", "ftserve-tiny", "/w", chat=True)
    base = ServedModel("ftserve-tiny", "base", "ftserve-tiny")
    with pytest.raises(NotFound) as info:
        served_model(_ctx(text_ft), text_ft.name, "chat", deployment=False)
    assert info.value.message == NOT_CHAT and info.value.param == "model"
    assert info.value.code is None
    with pytest.raises(NotFound) as info:
        served_model(_ctx(chat_ft), chat_ft.name, "text", deployment=False)
    assert info.value.message == IS_CHAT and info.value.param == "model"
    assert served_model(_ctx(text_ft), text_ft.name, "text", deployment=False) is text_ft
    for endpoint in ("chat", "text"):
        assert served_model(_ctx(base), "ftserve-tiny", endpoint, deployment=False) is base
    with pytest.raises(DeploymentNotFound):
        served_model(_ctx(None), "x", "chat", deployment=True)
    with pytest.raises(NotFound) as info:
        served_model(_ctx(None), "x", "chat", deployment=False)
    assert info.value.code == "model_not_found"


def test_inference_settings() -> None:
    from ftserve.config import ConfigError, settings_from_env
    from ftserve.inference.client import engine_settings

    s = settings_from_env(
        {
            "FTSERVE_INFERENCE_MEMORY": "1.5GiB",
            "FTSERVE_INFERENCE": "0",
            "FTSERVE_TORCH_THREADS": "3",
            "FTSERVE_MAX_ADAPTERS": "2",
        }
    )
    assert s.inference is False and s.inference_memory == 3 << 29 and s.max_adapters == 2
    e = engine_settings(s)
    assert e.memory_budget == 3 << 29 and e.torch_threads == 3 and e.max_adapters == 2
    assert settings_from_env({}).inference_memory == 8 << 30
    assert settings_from_env({"FTSERVE_INFERENCE_MEMORY": "512MiB"}).inference_memory == 512 << 20
    assert settings_from_env({"FTSERVE_INFERENCE_THREADS": "2"}).inference_threads == 2
    with pytest.raises(ConfigError):
        settings_from_env({"FTSERVE_INFERENCE_MEMORY": "lots"})
    with pytest.raises(ConfigError):
        settings_from_env({"FTSERVE_INFERENCE": "maybe"})
