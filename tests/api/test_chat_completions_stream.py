"""POST /v1/chat/completions with ``stream: true``: the chunks' order and framing, usage in the
last chunk, the SDK's strict stream, a stream the client closes early."""

from __future__ import annotations

import json
from typing import Any

import httpx2 as httpx
import openai
import pytest

from tests.api.conftest import BEARER, HELLO, MODEL, sse_events
from tests.conftest import Server

pytestmark = pytest.mark.both_backends  # the [postgres] ids too (tests/conftest.py)


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
