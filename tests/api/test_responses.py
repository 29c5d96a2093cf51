"""POST /v1/responses and the stored responses, with the official SDK in strict mode, against a
real server and the real inference process (ftserve-tiny: random weights, so only shapes and
bookkeeping are asserted here; tests/e2e/test_responses_agents.py has a fine-tune that answers).
"""

from __future__ import annotations

import json
from typing import Any

import httpx2 as httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.api.conftest import MODEL
from tests.conftest import OTHER_ORG_KEY, Server

pytestmark = pytest.mark.both_backends  # stored responses live in the Store

EVENT_ORDER = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
EVENT_END = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]


def _error(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict)
    return body if "message" in body else body["error"]


def test_create_retrieve_list_and_delete(client: openai.OpenAI, server: Server) -> None:
    made = client.responses.create(
        model=MODEL,
        input="Hello there",
        instructions="Be brief.",
        max_output_tokens=16,
        temperature=0,
        metadata={"k": "v"},
        include=[],
        truncation="disabled",
        parallel_tool_calls=True,
        prompt_cache_key="x",
        store=True,
    )
    assert made.id.startswith("resp_") and made.object == "response"
    assert made.status in ("completed", "incomplete") and made.model == MODEL
    [message] = made.output
    assert message.type == "message" and message.role == "assistant"
    assert made.output_text == message.content[0].text
    assert made.usage is not None and made.usage.output_tokens > 0
    assert made.usage.total_tokens == made.usage.input_tokens + made.usage.output_tokens
    assert made.metadata == {"k": "v"} and made.instructions == "Be brief."
    assert made.store is True and made.previous_response_id is None

    again = client.responses.retrieve(made.id)
    assert again == made
    assert server.client(azure=True).responses.retrieve(made.id) == made  # /openai/v1 too
    items = client.responses.input_items.list(made.id)
    [item] = items.data
    assert item.type == "message" and item.role == "user"
    assert item.content[0].type == "input_text" and item.content[0].text == "Hello there"
    assert items.first_id == item.id == items.last_id and not items.has_more

    other = server.client(key=OTHER_ORG_KEY)
    for call in (
        lambda c: c.responses.retrieve(made.id),
        lambda c: c.responses.input_items.list(made.id),
        lambda c: c.responses.delete(made.id),
    ):
        with pytest.raises(openai.NotFoundError) as missing:
            call(other)
        assert _error(missing.value)["message"] == f"Response with id '{made.id}' not found."

    client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(made.id)

    unstored = client.responses.create(model=MODEL, input="Hi", max_output_tokens=16, store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_previous_response_id_continues_the_conversation(client: openai.OpenAI) -> None:
    first = client.responses.create(model=MODEL, input="Hello there", max_output_tokens=16)
    second = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "And then?"}]}],
        max_output_tokens=16,
    )
    assert second.previous_response_id == first.id
    assert first.usage is not None and second.usage is not None
    # The first exchange is in the prompt.
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    items = client.responses.input_items.list(second.id, order="asc")
    assert [(i.type, getattr(i, "role", None)) for i in items.data] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ]
    assert items.data[1].id == first.output[0].id
    page = client.responses.input_items.list(second.id, limit=1)  # newest first
    assert page.has_more and page.data[0].id == items.data[2].id
    rest = client.responses.input_items.list(second.id, limit=5, after=page.data[0].id)
    assert [i.id for i in rest.data] == [items.data[1].id, items.data[0].id]


def test_every_streamed_event_passes_the_sdks_strict_types(http: httpx.Client) -> None:
    body = {"model": MODEL, "input": "Hello there", "max_output_tokens": 16, "stream": True}
    with http.stream("POST", "/responses", json=body) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        raw = answer.read().decode()
    blocks = raw.split("\n\n")
    assert blocks[-1] == ""
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    for block in blocks[:-1]:
        kind, data = block.split("\n")
        obj = json.loads(data.removeprefix("data: "))
        assert kind == f"event: {obj['type']}"
        adapter.validate_python(obj, strict=True)


def test_streamed_events_come_in_openais_order(client: openai.OpenAI) -> None:
    events = list(
        client.responses.create(
            model=MODEL, input="Hello there", max_output_tokens=16, temperature=0, stream=True
        )
    )
    kinds = [e.type for e in events]
    assert kinds[:4] == EVENT_ORDER
    assert kinds[-4:-1] == EVENT_END and kinds[-1] in ("response.completed", "response.incomplete")
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert final.output_text == deltas and final.usage is not None
    assert events[0].response.status == "in_progress"  # type: ignore[union-attr]
    assert client.responses.retrieve(final.id) == final

    # The SDK's stream helper accumulates the same sequence (it checks each event against the
    # response it builds). Random weights rarely stop before the limit: ``incomplete``.
    # Greedy, so that what it writes (not an end-of-turn at once) is the same every run.
    with client.responses.stream(
        model=MODEL, input="Hello", max_output_tokens=16, temperature=0
    ) as stream:
        seen = list(stream)
    assert seen[-1].type in ("response.completed", "response.incomplete")
    texts = [e for e in seen if e.type == "response.output_text.delta"]
    assert texts and texts[-1].snapshot == "".join(e.delta for e in texts)


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        (
            {"previous_response_id": "resp_nope"},
            "previous_response_id",
            "previous_response_not_found",
        ),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type", "unsupported_value"),
        ({"background": True}, "background", "unsupported_value"),
        ({"reasoning": {"effort": "high"}}, "reasoning", "unsupported_value"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type", "unsupported_value"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input[0].content[0].type",
            "unsupported_value",
        ),
        ({"max_output_tokens": 5}, "max_output_tokens", "integer_below_min_value"),
        ({"frequency": 1}, "frequency", "unknown_parameter"),
        ({"truncation": "middle"}, "truncation", "invalid_value"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type", "invalid_value"),
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]},
            "input",
            None,
        ),
    ],
)
def test_what_cannot_be_done_is_a_400_naming_it(
    client: openai.OpenAI, extra: dict[str, Any], param: str, code: str | None
) -> None:
    body: dict[str, Any] = {"model": MODEL, "input": "Hi", **extra}
    with pytest.raises(openai.BadRequestError) as refused:
        client.post("/responses", body=body, cast_to=Response)
    error = _error(refused.value)
    assert (error["param"], error["code"]) == (param, code), error


def test_another_organizations_response_cannot_be_continued(
    client: openai.OpenAI, server: Server
) -> None:
    mine = client.responses.create(model=MODEL, input="Hi", max_output_tokens=16)
    with pytest.raises(openai.BadRequestError) as refused:
        server.client(key=OTHER_ORG_KEY).responses.create(
            model=MODEL, input="Hi", previous_response_id=mine.id
        )
    error = _error(refused.value)
    assert error["message"] == f"Previous response with id '{mine.id}' not found."
    assert error["code"] == "previous_response_not_found"
