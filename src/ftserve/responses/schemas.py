"""The Responses API's objects, each declared once as a :class:`~ftserve.wire.shapes.Shape`: the
response, its output items, the deletion, the input items list and the stream's events. The
builders below are the only code that makes them; the OpenAPI document takes their schemas from
the same shapes.
"""

from __future__ import annotations

from typing import Any

from ..wire import metadata
from ..wire.shapes import (
    BOOL,
    INT,
    INT_OR_NULL,
    NULL,
    STR,
    STR_OR_NULL,
    Prop,
    Shape,
    closed,
    const,
    list_shape,
    or_null,
    ref,
)

Json = dict[str, Any]
NUMBER: Json = {"type": "number"}
STATUS: Json = {"type": "string", "enum": ["in_progress", "completed", "incomplete", "failed"]}
ITEM_STATUS: Json = {"type": "string", "enum": ["in_progress", "completed", "incomplete"]}

OUTPUT_TEXT = Shape(
    "ResponseOutputText",
    [
        const("type", "output_text"),
        Prop("text", STR),
        Prop("annotations", {"type": "array", "maxItems": 0}),
        Prop("logprobs", {"type": "array", "maxItems": 0}),
    ],
)
INPUT_TEXT = Shape("ResponseInputText", [const("type", "input_text"), Prop("text", STR)])
OUTPUT_MESSAGE = Shape(
    "ResponseOutputMessage",
    [
        Prop("id", STR),
        const("type", "message"),
        const("role", "assistant"),
        Prop("content", {"type": "array", "items": ref("ResponseOutputText")}),
        Prop("status", ITEM_STATUS),
    ],
    description="The assistant's text.",
)
INPUT_MESSAGE = Shape(
    "ResponseInputMessageItem",
    [
        Prop("id", STR),
        const("type", "message"),
        Prop("role", {"type": "string", "enum": ["user", "system", "developer"]}),
        Prop("content", {"type": "array", "items": ref("ResponseInputText")}),
        Prop("status", ITEM_STATUS),
    ],
)
FUNCTION_CALL = Shape(
    "ResponseFunctionToolCall",
    [
        Prop("id", STR),
        const("type", "function_call"),
        Prop("status", ITEM_STATUS),
        Prop("arguments", STR),
        Prop("call_id", STR),
        Prop("name", STR),
    ],
    description="A call of one of the request's function tools.",
)
FUNCTION_CALL_OUTPUT = Shape(
    "ResponseFunctionToolCallOutputItem",
    [
        Prop("id", STR),
        const("type", "function_call_output"),
        Prop("call_id", STR),
        Prop("output", STR),
        Prop("status", ITEM_STATUS),
    ],
)
OUTPUT_ITEM: Json = {"anyOf": [ref("ResponseOutputMessage"), ref("ResponseFunctionToolCall")]}
INPUT_ITEM: Json = {
    "anyOf": [
        ref("ResponseInputMessageItem"),
        ref("ResponseOutputMessage"),
        ref("ResponseFunctionToolCall"),
        ref("ResponseFunctionToolCallOutputItem"),
    ]
}
USAGE = Shape(
    "ResponseUsage",
    [
        Prop("input_tokens", INT),
        Prop("input_tokens_details", closed({"cached_tokens": INT, "cache_write_tokens": INT})),
        Prop("output_tokens", INT),
        Prop("output_tokens_details", closed({"reasoning_tokens": INT})),
        Prop("total_tokens", INT),
    ],
)
FUNCTION_TOOL: Json = closed(
    {
        "type": {"const": "function"},
        "name": STR,
        "description": STR_OR_NULL,
        "parameters": {"type": ["object", "null"]},
        "strict": {"type": ["boolean", "null"]},
    }
)
RESPONSE = Shape(
    "Response",
    [
        Prop("id", {"type": "string", "pattern": "^resp_[0-9A-Za-z]{48}$"}),
        const("object", "response"),
        Prop("created_at", INT),
        Prop("status", STATUS),
        const("background", False),
        Prop("completed_at", INT_OR_NULL),
        Prop("error", or_null(closed({"code": STR, "message": STR}))),
        Prop(
            "incomplete_details",
            or_null(closed({"reason": {"const": "max_output_tokens"}})),
        ),
        Prop("instructions", STR_OR_NULL),
        Prop("max_output_tokens", INT_OR_NULL),
        Prop("max_tool_calls", NULL),
        Prop("model", STR),
        Prop("output", {"type": "array", "items": OUTPUT_ITEM}),
        const("parallel_tool_calls", True),
        Prop("previous_response_id", STR_OR_NULL),
        Prop("reasoning", closed({"effort": NULL, "summary": NULL})),
        const("service_tier", "default"),
        Prop("store", BOOL),
        Prop("temperature", NUMBER),
        Prop("text", {"type": "object", "description": "The request's `text`, resolved."}),
        Prop("tool_choice", {"description": "The request's `tool_choice`."}),
        Prop("tools", {"type": "array", "items": FUNCTION_TOOL}),
        Prop("top_p", NUMBER),
        const("truncation", "disabled"),
        Prop("usage", or_null(ref("ResponseUsage"))),
        Prop("user", NULL),
        Prop("metadata", metadata.SCHEMA),
    ],
    description="A model response. `usage` is null until it has finished.",
)
DELETED = Shape(
    "ResponseDeleted",
    [Prop("id", STR), const("object", "response"), const("deleted", True)],
)
INPUT_ITEMS = list_shape("ResponseItemList", "ResponseInputItem", ids=True)


# -- builders -------------------------------------------------------------------------------------


def output_text(text: str) -> Json:
    return OUTPUT_TEXT.make(text=text, annotations=[], logprobs=[])


def output_message(item_id: str, text: str | None, status: str) -> Json:
    content = [] if text is None else [output_text(text)]
    return OUTPUT_MESSAGE.make(id=item_id, content=content, status=status)


def function_call(item_id: str, call_id: str, name: str, arguments: str, status: str) -> Json:
    return FUNCTION_CALL.make(
        id=item_id, status=status, arguments=arguments, call_id=call_id, name=name
    )


def usage(input_tokens: int, output_tokens: int) -> Json:
    return USAGE.make(
        input_tokens=input_tokens,
        input_tokens_details={"cached_tokens": 0, "cache_write_tokens": 0},
        output_tokens=output_tokens,
        output_tokens_details={"reasoning_tokens": 0},
        total_tokens=input_tokens + output_tokens,
    )


def deleted(response_id: str) -> Json:
    return DELETED.make(id=response_id)


EVENT_TYPES = (
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.completed",
    "response.incomplete",
    "response.failed",
)


def event_schema() -> Json:
    """One stream event: ``type`` and ``sequence_number`` always, the rest by type."""
    return {
        "type": "object",
        "required": ["type", "sequence_number"],
        "properties": {
            "type": {"type": "string", "enum": list(EVENT_TYPES)},
            "sequence_number": INT,
            "response": ref("Response"),
            "item": OUTPUT_ITEM,
            "output_index": INT,
            "item_id": STR,
            "content_index": INT,
            "part": ref("ResponseOutputText"),
            "delta": STR,
            "text": STR,
            "arguments": STR,
            "logprobs": {"type": "array", "maxItems": 0},
        },
        "description": "A server-sent event (`event:` its type, `data:` this object), in "
        "OpenAI's order: `response.created`, `response.in_progress`, per output item "
        "`response.output_item.added` … `response.output_item.done` (text: content part and "
        "`response.output_text.delta`/`.done` events; a function call: "
        "`response.function_call_arguments.delta`/`.done`), then `response.completed` (or "
        "`response.incomplete` at `max_output_tokens`, `response.failed` on an error).",
    }


def schemas() -> Json:
    out: Json = {
        s.name: s.schema()
        for s in (
            OUTPUT_TEXT,
            INPUT_TEXT,
            OUTPUT_MESSAGE,
            INPUT_MESSAGE,
            FUNCTION_CALL,
            FUNCTION_CALL_OUTPUT,
            USAGE,
            RESPONSE,
            DELETED,
            INPUT_ITEMS,
        )
    }
    out["ResponseInputItem"] = INPUT_ITEM
    out["ResponseStreamEvent"] = event_schema()
    return out
