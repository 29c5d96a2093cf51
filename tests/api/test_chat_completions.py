"""POST /v1/chat/completions against a real server and the real inference process, on
ftserve-tiny (random weights: gibberish, but deterministic under temperature 0 or a seed)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import openai
import pytest

from ftserve.modeling.tiny_model import build_byte_tokenizer
from tests.conftest import API_KEY, Server

pytestmark = pytest.mark.both_backends  # the [postgres] ids too (tests/conftest.py)

MODEL = "ftserve-tiny"
HELLO: Any = [{"role": "user", "content": "Hello there"}]
BEARER = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_byte_tokenizer()


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=BEARER, timeout=60) as client:
        yield client


def sse_events(body: str) -> list[str]:
    """The data of each event; asserts the framing is data-only."""
    assert body.endswith("data: [DONE]\n\n"), body[-200:]
    events = body.split("\n\n")
    assert events[-1] == ""
    out = []
    for raw in events[:-1]:
        assert raw.startswith("data: ") and "\n" not in raw, raw
        out.append(raw[len("data: ") :])
    return out


def test_basic_completion_is_strictly_valid(client: openai.OpenAI, tokenizer: Any) -> None:
    resp = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=5)
    assert re.fullmatch(r"chatcmpl-[0-9A-Za-z]{29}", resp.id)
    assert resp.object == "chat.completion" and resp.model == MODEL
    assert resp.system_fingerprint is None and resp.service_tier == "default"
    (choice,) = resp.choices
    assert choice.index == 0 and choice.message.role == "assistant"
    assert choice.message.refusal is None and choice.logprobs is None
    assert isinstance(choice.message.content, str)
    usage = resp.usage
    assert usage is not None
    rendered = tokenizer.apply_chat_template(HELLO, add_generation_prompt=True, tokenize=False)
    assert usage.prompt_tokens == len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_max_tokens_length_and_n(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_completion_tokens=7, n=3, temperature=1.0, seed=1
    )
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert resp.usage is not None
    finished_by_length = [c for c in resp.choices if c.finish_reason == "length"]
    assert finished_by_length, "random weights rarely pick the end-of-turn token in 7 steps"
    assert resp.usage.completion_tokens <= 21
    one = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=6, temperature=0)
    assert one.usage is not None
    if one.choices[0].finish_reason == "length":
        assert one.usage.completion_tokens == 6


def test_temperature_zero_and_seed_are_deterministic(client: openai.OpenAI) -> None:
    def text(**kw: Any) -> str | None:
        resp = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=12, **kw)
        content: str | None = resp.choices[0].message.content
        return content

    assert text(temperature=0) == text(temperature=0)
    assert text(seed=42) == text(seed=42)
    assert len({text(seed=s) for s in (1, 2, 3)}) > 1


def test_stop_text_is_not_returned(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=20, temperature=0)
    full = resp.choices[0].message.content
    assert full
    stop = next((c for c in full[2:] if c.strip() and c != "\ufffd"), None)
    if stop is None:
        pytest.skip("greedy output has no printable character to stop on")
    cut = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=20, temperature=0, stop=[stop, "\x00zz"]
    )
    got = cut.choices[0]
    assert got.finish_reason == "stop"
    assert got.message.content == full[: full.index(stop)]
    assert stop not in (got.message.content or "")


def test_logprobs_shape(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=5, logprobs=True, top_logprobs=3, temperature=0
    )
    choice = resp.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    assert choice.logprobs.refusal is None
    assert resp.usage is not None
    assert len(choice.logprobs.content) == resp.usage.completion_tokens
    for item in choice.logprobs.content:
        assert item.logprob <= 0
        assert len(item.top_logprobs) == 3
        assert item.bytes is None or all(0 <= b < 256 for b in item.bytes)
        # Greedy: the chosen token is the most likely one.
        assert item.logprob >= max(t.logprob for t in item.top_logprobs) - 1e-4


def _chunks(http: httpx.Client, **body: Any) -> tuple[httpx.Response, list[dict[str, Any]]]:
    resp = http.post(
        "/chat/completions", json={"model": MODEL, "messages": HELLO, "stream": True, **body}
    )
    assert resp.status_code == 200, resp.text
    data = sse_events(resp.text)
    assert data[-1] == "[DONE]"
    return resp, [json.loads(d) for d in data[:-1]]


def test_stream_chunk_order(http: httpx.Client) -> None:
    resp, chunks = _chunks(http, max_tokens=6, n=2, temperature=0)
    assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1
    assert all("usage" not in c for c in chunks)
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == index]
        assert mine[0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
        assert mine[-1]["delta"] == {} and mine[-1]["finish_reason"] in ("stop", "length")
        assert all(c["finish_reason"] is None for c in mine[:-1])
        assert all(c["delta"]["content"] for c in mine[1:-1]), "no empty content deltas"
    non_stream = http.post(
        "/chat/completions",
        json={"model": MODEL, "messages": HELLO, "max_tokens": 6, "temperature": 0},
    ).json()
    text = "".join(
        c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"][0]["index"] == 0
    )
    assert text == non_stream["choices"][0]["message"]["content"]


def test_stream_include_usage(http: httpx.Client) -> None:
    _, chunks = _chunks(http, max_tokens=4, stream_options={"include_usage": True})
    assert all("usage" in c for c in chunks)
    assert all(c["usage"] is None for c in chunks[:-1])
    last = chunks[-1]
    assert last["choices"] == []
    usage = last["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] <= 4


def test_sdk_stream_strict(client: openai.OpenAI) -> None:
    with client.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        max_tokens=5,
        stream=True,
        logprobs=True,
        top_logprobs=1,
        stream_options={"include_usage": True},
    ) as stream:
        chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-2].choices[0].finish_reason is not None


def test_stream_closed_early_then_server_still_serves(
    server: Server, client: openai.OpenAI
) -> None:
    with (
        httpx.Client(base_url=server.base_url, headers=BEARER, timeout=60) as http,
        http.stream(
            "POST",
            "/chat/completions",
            json={"model": MODEL, "messages": HELLO, "stream": True, "max_tokens": 64},
        ) as resp,
    ):
        assert resp.status_code == 200
        next(resp.iter_lines())
    again = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=2)
    assert again.choices[0].finish_reason in ("stop", "length")


def test_tools_accepted_and_tool_choice_none(client: openai.OpenAI) -> None:
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    messages: Any = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    with_tools = client.chat.completions.create(
        model=MODEL, messages=messages, tools=tools, max_tokens=4
    )
    without = client.chat.completions.create(
        model=MODEL, messages=messages, tools=tools, tool_choice="none", max_tokens=4
    )
    assert with_tools.usage is not None and without.usage is not None
    # The tool definitions are rendered into the prompt only when tools are in play.
    assert with_tools.usage.prompt_tokens > without.usage.prompt_tokens


def test_content_parts_and_roles(client: openai.OpenAI) -> None:
    messages: Any = [
        {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "system", "content": "S"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            "name": "u",
        },
    ]
    resp = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=2,
        user="x",
        metadata={"a": "b"},
        store=False,
        parallel_tool_calls=True,
        response_format={"type": "text"},
        modalities=["text"],
        safety_identifier="s",
        prompt_cache_key="k",
        service_tier="auto",
    )
    assert resp.choices[0].message.role == "assistant"


LONG = "x" * 5000
ERRORS: list[tuple[str, dict[str, Any], int, str | None, str | None, str | None]] = [
    (
        "temperature-above",
        {"temperature": 200},
        400,
        "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 200 "
        "instead.",
        "temperature",
        "decimal_above_max_value",
    ),
    (
        "temperature-below",
        {"temperature": -2.5},
        400,
        "Invalid 'temperature': decimal below minimum value. Expected a value >= 0, but got -2.5 "
        "instead.",
        "temperature",
        "decimal_below_min_value",
    ),
    (
        "top_p",
        {"top_p": 1.5},
        400,
        "Invalid 'top_p': decimal above maximum value. Expected a value <= 1, but got 1.5 instead.",
        "top_p",
        "decimal_above_max_value",
    ),
    (
        "n-zero",
        {"n": 0},
        400,
        "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead.",
        "n",
        "integer_below_min_value",
    ),
    (
        "penalty",
        {"presence_penalty": 3},
        400,
        "Invalid 'presence_penalty': decimal above maximum value. Expected a value <= 2, but got 3 "
        "instead.",
        "presence_penalty",
        "decimal_above_max_value",
    ),
    (
        "missing-messages",
        {"messages": None},
        400,
        "Missing required parameter: 'messages'.",
        "messages",
        "missing_required_parameter",
    ),
    (
        "empty-messages",
        {"messages": []},
        400,
        "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty "
        "array instead.",
        "messages",
        "empty_array",
    ),
    (
        "both-limits",
        {"max_tokens": 5, "max_completion_tokens": 5},
        400,
        "Setting 'max_tokens' and 'max_completion_tokens' at the same time is not supported.",
        "max_tokens",
        "invalid_parameter_combination",
    ),
    (
        "max-tokens-zero",
        {"max_tokens": 0},
        400,
        "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got 0 "
        "instead.",
        "max_tokens",
        "integer_below_min_value",
    ),
    (
        "max-tokens-over-server-cap",
        {"max_tokens": 8192},
        400,
        "max_tokens is too large: 8192. This model supports at most 64 completion tokens, whereas "
        "you provided 8192.",
        "max_tokens",
        None,
    ),
    (
        "top_logprobs-without-logprobs",
        {"top_logprobs": 2},
        400,
        "Invalid 'top_logprobs': 'logprobs' must be set to true if this parameter is used.",
        "top_logprobs",
        "invalid_value",
    ),
    (
        "top_logprobs-above",
        {"logprobs": True, "top_logprobs": 21},
        400,
        "Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20, but got 21 "
        "instead.",
        "top_logprobs",
        "integer_above_max_value",
    ),
    (
        "stream_options-without-stream",
        {"stream_options": {"include_usage": True}},
        400,
        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        "stream_options",
        None,
    ),
    (
        "unknown-field",
        {"frobnicate": 1},
        400,
        "Unrecognized request argument supplied: frobnicate",
        None,
        None,
    ),
    (
        "reasoning_effort",
        {"reasoning_effort": "low"},
        400,
        "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
        "reasoning_effort",
        "unsupported_value",
    ),
    (
        "orphan-tool",
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "tool", "tool_call_id": "x", "content": "r"},
            ]
        },
        400,
        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
        "with 'tool_calls'.",
        "messages.[1].role",
        None,
    ),
    (
        "image-part",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this"},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                    ],
                }
            ]
        },
        400,
        "Unsupported value: 'messages[0].content[1].type' does not support 'image_url' with this "
        "model.",
        "messages[0].content[1].type",
        "unsupported_value",
    ),
    (
        "function-role",
        {"messages": [{"role": "function", "name": "f", "content": "x"}]},
        400,
        "Unsupported value: 'messages[0].role' does not support 'function' with this model.",
        "messages[0].role",
        "unsupported_value",
    ),
    (
        "json-mode",
        {"response_format": {"type": "json_object"}},
        400,
        None,
        "response_format",
        "unsupported_value",
    ),
    (
        "json-schema",
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
        400,
        None,
        "response_format",
        "unsupported_value",
    ),
    (
        "audio-modality",
        {"modalities": ["text", "audio"]},
        400,
        None,
        "modalities",
        "unsupported_value",
    ),
    (
        "audio",
        {"audio": {"voice": "alloy", "format": "wav"}},
        400,
        None,
        "audio",
        "unsupported_value",
    ),
    (
        "prediction",
        {"prediction": {"type": "content", "content": "x"}},
        400,
        None,
        "prediction",
        "unsupported_value",
    ),
    (
        "web_search",
        {"web_search_options": {}},
        400,
        None,
        "web_search_options",
        "unsupported_value",
    ),
    ("functions", {"functions": [{"name": "f"}]}, 400, None, "functions", "unsupported_value"),
    (
        "tool_choice-required",
        {"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"},
        400,
        None,
        "tool_choice",
        "unsupported_value",
    ),
    (
        "tool_choice-named",
        {
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
        },
        400,
        None,
        "tool_choice",
        "unsupported_value",
    ),
    (
        "stop-too-many",
        {"stop": ["a", "b", "c", "d", "e"]},
        400,
        None,
        "stop",
        "array_above_max_length",
    ),
    (
        "logit-bias-range",
        {"logit_bias": {"5": 101}},
        400,
        None,
        "logit_bias.5",
        "decimal_above_max_value",
    ),
    ("logit-bias-outside-vocab", {"logit_bias": {"99999999": 1}}, 400, None, "logit_bias", None),
    (
        "wrong-type",
        {"temperature": "hot"},
        400,
        "Invalid type for 'temperature': expected a number, but got a string instead.",
        "temperature",
        "invalid_type",
    ),
    (
        "context-too-long",
        {"messages": [{"role": "user", "content": LONG}]},
        400,
        None,
        "messages",
        "context_length_exceeded",
    ),
    (
        "unknown-model",
        {"model": "gpt-4"},
        404,
        "The model `gpt-4` does not exist or you do not have access to it.",
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
    body: dict[str, Any] = {"model": MODEL, "messages": HELLO, "max_tokens": 2, **change}
    body = {k: v for k, v in body.items() if v is not None}
    if "max_completion_tokens" in change or case == "both-limits":
        body["max_tokens"] = change.get("max_tokens", 5)
    if case == "max-tokens-zero":
        body["max_tokens"] = 0
    resp = http.post("/chat/completions", json=body)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    if message is not None:
        assert err["message"] == message
    assert err["param"] == param and err["code"] == code, err
    assert err["type"] == "invalid_request_error"


def test_sdk_raises_the_status_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=[], max_tokens=1)
    assert info.value.code == "empty_array"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=HELLO, stream=True)


def test_azure_prefixes(server: Server) -> None:
    azure = openai.AzureOpenAI(
        api_version="2024-10-21",
        azure_endpoint=server.root,
        api_key=API_KEY,
        max_retries=0,
        _strict_response_validation=True,
    )
    with azure:
        resp = azure.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=3)
        assert resp.model == MODEL and resp.choices[0].message.role == "assistant"
        with azure.chat.completions.create(
            model=MODEL, messages=HELLO, max_tokens=3, stream=True
        ) as stream:
            assert any(c.choices and c.choices[0].finish_reason for c in stream)
        with pytest.raises(openai.NotFoundError) as info:
            azure.chat.completions.create(model="no-such-deployment", messages=HELLO)
        assert info.value.body == {
            "code": "DeploymentNotFound",
            "message": "The API deployment for this resource does not exist. If you created the "
            "deployment within the last 5 minutes, please wait a moment and try again.",
        }
    v1 = server.client(azure=True)
    assert v1.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=2).choices
    with httpx.Client(base_url=server.root, headers={"api-key": API_KEY}, timeout=60) as http:
        # The deployment names the model; a body `model` is optional there.
        resp2 = http.post(
            "/openai/deployments/ftserve-tiny/chat/completions?api-version=2024-10-21",
            json={"messages": HELLO, "max_tokens": 2},
        )
        assert resp2.status_code == 200, resp2.text
        assert resp2.headers["apim-request-id"] == resp2.headers["x-request-id"]
        missing = http.post("/openai/v1/chat/completions", json={"messages": HELLO})
        assert missing.status_code == 400
        assert missing.json()["error"]["message"] == "Missing required parameter: 'model'."


@pytest.fixture(scope="module")
def no_inference_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp("noinf") / "data",
        env={"FTSERVE_WORKERS": "0", "FTSERVE_INFERENCE": "0"},
    )
    srv.start()
    yield srv
    srv.stop()


def test_inference_off_is_503(no_inference_server: Server) -> None:
    client = no_inference_server.client()
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=MODEL, messages=HELLO)
    assert info.value.status_code == 503
    assert "Inference is turned off on this server" in info.value.message
    with pytest.raises(openai.APIStatusError) as info2:
        client.completions.create(model=MODEL, prompt="x")
    assert info2.value.status_code == 503
    body = info2.value.body
    assert isinstance(body, dict) and body["code"] == "inference_disabled"
