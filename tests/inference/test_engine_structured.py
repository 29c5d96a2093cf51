"""Constrained decoding in the engine, on ftserve-tiny's random weights: whatever the model
prefers, a strict schema's answer parses and validates, tool-call grammars give calls whose
arguments validate, and unconstrained rows beside a constrained one decode as they would alone."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import jsonschema

from ftserve.completions.structured import ResponseFormat, grammar_for
from ftserve.completions.toolcalls import parse_tool_calls
from ftserve.inference.protocol import Rejected, TextPrompt
from tests.inference.engine_harness import CHAT, PROMPTS, TINY, Harness

SCHEMA = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["yes", "no", "maybe"]},
        "score": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "boolean"}},
        "note": {"anyOf": [{"type": "null"}, {"type": "string", "enum": ["a", "b"]}]},
    },
    "required": ["verdict", "score", "tags", "note"],
    "additionalProperties": False,
}
UNIT = {
    "type": "object",
    "properties": {"unit": {"type": "string", "enum": ["c", "f"]}},
    "required": ["unit"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "strict": True, "parameters": UNIT},
}
OTHER = {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}}


def test_strict_schema_always_validates_and_shares_a_batch(harness: Harness) -> None:
    grammar = grammar_for(ResponseFormat("json_schema", SCHEMA, True), None, None)
    alone = harness.one("free-alone", TINY, TextPrompt(PROMPTS[1]), max_tokens=40, temperature=0)
    for i in range(6):
        harness.submit(f"json{i}", TINY, CHAT, max_tokens=300, temperature=1.0, grammar=grammar)
    harness.submit("free", TINY, TextPrompt(PROMPTS[1]), max_tokens=40, temperature=0)
    harness.drain()
    assert harness.text("free") == alone  # the constrained rows beside it change nothing
    for i in range(6):
        (finished,) = harness.finished(f"json{i}")
        text = harness.text(f"json{i}")
        if finished.finish_reason == "length":
            continue  # a random model may write a long number; max_tokens is the only excuse
        jsonschema.validate(json.loads(text), SCHEMA)
    assert any(f.finish_reason == "stop" for i in range(6) for f in harness.finished(f"json{i}"))


def test_json_object_and_length(harness: Harness) -> None:
    grammar = grammar_for(ResponseFormat("json_object"), None, None)
    text = harness.one("obj", TINY, CHAT, max_tokens=100, temperature=0.7, seed=3, grammar=grammar)
    if harness.finished("obj")[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    strict = grammar_for(ResponseFormat("json_schema", SCHEMA, True), None, None)
    short = harness.one("short", TINY, CHAT, max_tokens=3, grammar=strict)
    assert harness.finished("short")[0].finish_reason == "length"
    assert short.startswith("{")


def test_forced_tool_calls_validate(harness: Harness) -> None:
    tools = (WEATHER, OTHER)
    named = grammar_for(None, tools, {"type": "function", "function": {"name": "get_weather"}})
    required = grammar_for(None, tools, "required")
    for i in range(3):
        harness.submit(f"named{i}", TINY, CHAT, max_tokens=200, temperature=1.0, grammar=named)
        harness.submit(f"req{i}", TINY, CHAT, max_tokens=200, temperature=1.0, grammar=required)
    harness.drain()
    for i in range(3):
        for rid in (f"named{i}", f"req{i}"):
            if harness.finished(rid)[0].finish_reason == "length":
                continue
            parsed = parse_tool_calls(harness.text(rid))
            assert parsed.calls and parsed.content is None, harness.text(rid)
            for call in parsed.calls:
                fn = call["function"]
                assert fn["name"] in ("get_weather", "other")
                if fn["name"] == "get_weather":
                    jsonschema.validate(json.loads(fn["arguments"]), UNIT)
        (call, *_) = parse_tool_calls(harness.text(f"named{i}")).calls or [None]
        if call is not None:
            assert call["function"]["name"] == "get_weather"


def test_grammar_the_tokenizer_cannot_follow_is_rejected(harness: Harness) -> None:
    harness.submit("bad", TINY, CHAT, max_tokens=5, grammar='start: %json {"type": 5}')
    (rejected,) = harness.of("bad")
    assert isinstance(rejected, Rejected)
    assert rejected.status == 400 and rejected.param == "response_format"


def test_auto_with_a_strict_tool_gives_text_or_valid_calls(harness: Harness) -> None:
    grammar = grammar_for(None, (WEATHER, OTHER), "auto")
    assert grammar is not None
    for i in range(4):
        harness.submit(f"auto{i}", TINY, CHAT, max_tokens=120, temperature=1.0, grammar=grammar)
    harness.drain()
    for i in range(4):
        text = harness.text(f"auto{i}")
        parsed = parse_tool_calls(text)
        if not parsed.calls:
            assert "<tool_call>" not in text  # no call the grammar did not check
        for call in parsed.calls:
            if call["function"]["name"] == "get_weather":
                jsonschema.validate(json.loads(call["function"]["arguments"]), UNIT)


def test_auto_with_a_json_schema_gives_calls_or_the_json(harness: Harness) -> None:
    grammar = grammar_for(ResponseFormat("json_schema", SCHEMA, True), (OTHER,), "auto")
    for i in range(4):
        harness.submit(f"mix{i}", TINY, CHAT, max_tokens=200, temperature=1.0, grammar=grammar)
    harness.drain()
    for i in range(4):
        if harness.finished(f"mix{i}")[0].finish_reason == "length":
            continue
        text = harness.text(f"mix{i}")
        parsed = parse_tool_calls(text)
        if parsed.calls:
            assert parsed.content is None and all(
                c["function"]["name"] == "other" for c in parsed.calls
            )
        else:
            jsonschema.validate(json.loads(text), SCHEMA)
