"""The Responses request's translation into the chat pipeline's request, and the stored
responses' expiry and paging, without a server (the wire itself: tests/api/test_responses.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ftserve.errors import ApiError
from ftserve.responses.items import chat_messages, check_input
from ftserve.responses.request import chat_request, parse_response_request, response_format
from ftserve.responses.service import DAY, ResponseService
from ftserve.store.sqlite import SqliteStore

CALL = {"type": "function_call", "call_id": "call_a", "name": "f", "arguments": '{"x": 1}'}


def _items(value: Any) -> list[dict[str, Any]]:
    return check_input(value, "input")


def test_calls_join_the_assistant_message_before_them_and_outputs_answer_them() -> None:
    items = _items(
        [
            {"role": "user", "content": "q"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "t"}],
            },
            CALL,
            {**CALL, "call_id": "call_b"},
            {"type": "function_call_output", "call_id": "call_a", "output": "1"},
            {"type": "function_call_output", "call_id": "call_b", "output": "2"},
        ]
    )
    assert [i["id"][:3] for i in items] == ["msg", "msg", "fc_", "fc_", "fco", "fco"]
    messages = chat_messages("be brief", items)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "tool"]
    assert messages[2]["content"] == "t"
    assert [c["id"] for c in messages[2]["tool_calls"]] == ["call_a", "call_b"]
    assert messages[3] == {"role": "tool", "tool_call_id": "call_a", "content": "1"}


def test_an_output_without_its_call_is_a_400() -> None:
    items = _items([{"type": "function_call_output", "call_id": "call_z", "output": "1"}])
    with pytest.raises(ApiError) as refused:
        chat_messages(None, items)
    assert refused.value.param == "input" and "call_z" in refused.value.message


def test_text_format_becomes_response_format() -> None:
    schema = {"type": "json_schema", "name": "n", "schema": {"type": "object"}, "strict": True}
    assert response_format(schema) == {
        "type": "json_schema",
        "json_schema": {"name": "n", "schema": {"type": "object"}, "strict": True},
    }
    assert response_format({"type": "json_object"}) == {"type": "json_object"}


def test_the_chat_requests_errors_name_the_responses_params() -> None:
    req = parse_response_request({"model": "m", "input": "hi", "max_output_tokens": 500})
    with pytest.raises(ApiError) as refused:
        chat_request(req, chat_messages(None, req.items), max_generation_tokens=64)
    assert refused.value.param == "max_output_tokens"
    assert refused.value.message.startswith("max_output_tokens is too large: 500.")


def test_tools_reach_the_chat_request_in_one_key_order() -> None:
    params = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
    tool = {
        "strict": True,
        "parameters": params,
        "type": "function",
        "name": "f",
        "description": "d",
    }
    req = parse_response_request({"model": "m", "input": "hi", "tools": [tool]})
    chat = chat_request(req, chat_messages(None, req.items), max_generation_tokens=64)
    assert chat.prompt.tools is not None
    assert list(chat.prompt.tools[0]["function"]) == ["name", "description", "parameters", "strict"]


def test_stored_responses_expire_after_the_ttl_and_page_their_items(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    try:
        service = ResponseService(store, ttl_days=2)
        items = [{"id": f"msg_{i}"} for i in range(3)]
        service.save("org", {"id": "resp_1", "created_at": 1, "output": []}, items)
        record = store.get_response("org", "resp_1", int(time.time()))
        assert record is not None
        assert abs(record.expires_at - (time.time() + 2 * DAY)) < 60
        assert store.get_response("org", "resp_1", record.expires_at) is None
        page = service.input_items("org", "resp_1", after="msg_2", limit=1, order="desc")
        assert ([i["id"] for i in page.items], page.has_more) == (["msg_1"], True)
        with pytest.raises(ApiError) as refused:
            service.input_items("org", "resp_1", after="msg_9", limit=1, order="asc")
        assert refused.value.param == "after"
    finally:
        store.close()


def test_a_chat_tool_error_names_the_flat_tool() -> None:
    tool = {"type": "function", "name": "bad name!"}
    req = parse_response_request({"model": "m", "input": "hi", "tools": [tool]})
    with pytest.raises(ApiError) as refused:
        chat_request(req, chat_messages(None, req.items), max_generation_tokens=64)
    assert refused.value.param == "tools[0].name"
    assert refused.value.message.startswith("Invalid 'tools[0].name': string does not match")
