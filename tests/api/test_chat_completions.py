"""POST /v1/chat/completions against a real server and the real inference process, on
ftserve-tiny (random weights: gibberish, but deterministic under temperature 0 or a seed): the
response object, sampling, tools and content parts, the Azure prefixes, inference turned off.
Streaming and refused requests have modules of their own."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import openai
import pytest

from ftserve.modeling.tiny_model import build_byte_tokenizer
from tests.api.conftest import HELLO, MODEL
from tests.conftest import API_KEY, Server

pytestmark = pytest.mark.both_backends  # the [postgres] ids too (tests/conftest.py)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_byte_tokenizer()


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
