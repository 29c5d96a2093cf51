"""OpenAI's strict-mode schema rules, as the API process checks them (no model needed): what the
SDK's Pydantic schemas look like passes; each rule's violation is refused in OpenAI's words."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel

from ftserve.completions.strict_schema import check_strict
from ftserve.completions.structured import check_response_format, check_tool_choice
from ftserve.errors import InvalidRequest


class Line(BaseModel):
    item: str
    quantity: int


class Invoice(BaseModel):
    customer: str
    lines: list[Line]
    currency: Literal["EUR", "USD"]
    note: str | None
    parent: Invoice | None  # recursive, through $ref


def strict(schema: Any) -> None:
    check_strict(schema, what="response_format", name="x", param="response_format")


def test_the_sdks_pydantic_schema_passes() -> None:
    strict(to_strict_json_schema(Invoice))
    parsed = check_response_format(
        {
            "type": "json_schema",
            "json_schema": {"name": "invoice", "schema": to_strict_json_schema(Invoice)},
        },
        "response_format",
    )
    assert parsed.kind == "json_schema" and not parsed.strict


def obj(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
        **extra,
    }


def nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = obj({"a": schema})
    return schema


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"type": "array", "items": {"type": "string"}},
            "Invalid schema for response_format 'x': schema must be a JSON Schema of 'type: "
            '"object"\', got \'type: "array"\'.',
        ),
        (
            obj({"a": {"anyOf": [{"type": "object", "properties": {}}]}}),
            "Invalid schema for response_format 'x': In context=('properties', 'a', 'anyOf', "
            "'0'), 'additionalProperties' is required to be supplied and to be false.",
        ),
        (
            obj({"a": {"type": "array"}}),
            "Invalid schema for response_format 'x': In context=('properties', 'a'), 'items' is "
            "required to be supplied for type 'array'.",
        ),
        (
            obj({"a": {"type": "string"}}, allOf=[]),
            "Invalid schema for response_format 'x': In context=(), 'allOf' is not permitted.",
        ),
        (
            obj({"a": {"type": "text"}}),
            "Invalid schema for response_format 'x': In context=('properties', 'a'), 'text' is "
            "not a valid type.",
        ),
        (
            nested(11),
            "Invalid schema for response_format 'x': In context=('properties', 'a', "
            "'properties', 'a', 'properties', 'a', 'properties', 'a', 'properties', 'a', "
            "'properties', 'a', 'properties', 'a', 'properties', 'a', 'properties', 'a', "
            "'properties', 'a'), schema must have at most 10 levels of nesting.",
        ),
        (
            obj({"a": {"type": "string", "enum": list(range(1001))}}),
            "Invalid schema for response_format 'x': In context=('properties', 'a'), schema must "
            "have at most 1000 enum values in total.",
        ),
    ],
)
def test_violations_are_refused_in_openais_words(schema: Any, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        strict(schema)
    assert info.value.message == message
    assert info.value.param == "response_format"


def test_ten_levels_pass() -> None:
    strict(nested(10))


def test_tool_choice_shapes() -> None:
    assert check_tool_choice("required", "tool_choice") == "required"
    named = {"type": "function", "function": {"name": "f"}}
    assert check_tool_choice(named, "tool_choice") == named
    with pytest.raises(InvalidRequest) as info:
        check_tool_choice({"type": "function", "function": {"name": "f", "x": 1}}, "tool_choice")
    assert info.value.message == "Unrecognized request argument supplied: tool_choice.function.x"
