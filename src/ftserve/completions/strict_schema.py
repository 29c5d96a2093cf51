"""The JSON schemas OpenAI's strict mode accepts, checked as OpenAI words the refusals.

Strict structured outputs (``response_format`` json_schema with ``strict: true``, and function
tools with ``strict: true``) take a subset of JSON Schema: the root is an object; every object
lists all its properties in ``required`` and sets ``additionalProperties: false``; only the
keywords below; at most 10 levels of nesting, 5000 properties, 1000 enum values. A violation is
a 400 ``Invalid schema for <what> '<name>': In context=(<path>), <reason>.``, the path being
the keys from the schema's root as a Python tuple, as OpenAI prints it.

Then llguidance, the engine that decodes, is asked whether it can honour the grammar (it has no
torch in it, so the API process can ask); a schema it cannot compile is refused the same way.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import InvalidRequest

Json = dict[str, Any]

MAX_DEPTH = 10
MAX_PROPERTIES = 5000
MAX_ENUM_VALUES = 1000
TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
PERMITTED = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "anyOf",
        "$ref",
        "$defs",
        "definitions",
        "description",
        "title",
        "$schema",
        "$id",
        # string, number and array constraints strict mode honours
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
    }
)
# At most one space where JSON allows whitespace: an answer may be compact or spaced, as the
# model was trained to write it, but a model cannot pad it with endless blanks.
_GUIDANCE: Json = {"whitespace_pattern": " ?"}
# A tool call's JSON exactly as the chat templates render it in training (Jinja's ``tojson``,
# ``json.dumps``' default separators): forced into another spacing, a fine-tune strays from
# what it learned (compact separators turned a taught ``"Oslo"`` into ``": "``).
TEMPLATE_JSON: Json = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class SchemaRefused(InvalidRequest):
    def __init__(self, what: str, name: str, context: tuple[str, ...], reason: str, param: str):
        code = "invalid_function_parameters" if what == "function" else None
        super().__init__(
            f"Invalid schema for {what} '{name}': In context={context!r}, {reason}",
            param=param,
            code=code,
        )


class _Walk:
    def __init__(self, what: str, name: str, param: str):
        self.what, self.name, self.param = what, name, param
        self.properties = 0
        self.enum_values = 0

    def refuse(self, context: tuple[str, ...], reason: str) -> SchemaRefused:
        return SchemaRefused(self.what, self.name, context, reason, self.param)

    def node(self, schema: Any, context: tuple[str, ...], depth: int) -> None:
        if not isinstance(schema, dict):
            raise self.refuse(context, "schema must be a JSON Schema object.")
        if depth > MAX_DEPTH + 1:  # a leaf below the deepest object allowed, or a runaway
            raise self.refuse(context, f"schema must have at most {MAX_DEPTH} levels of nesting.")
        for key in schema:
            if key not in PERMITTED:
                raise self.refuse(context, f"'{key}' is not permitted.")
        kinds = schema.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds] if kinds is not None else []
        for kind in kinds:
            if kind not in TYPES:
                raise self.refuse(context, f"'{kind}' is not a valid type.")
        if "enum" in schema:
            if not isinstance(schema["enum"], list) or not schema["enum"]:
                raise self.refuse(context, "'enum' must be a non-empty array.")
            self.enum_values += len(schema["enum"])
            if self.enum_values > MAX_ENUM_VALUES:
                raise self.refuse(
                    context, f"schema must have at most {MAX_ENUM_VALUES} enum values in total."
                )
        if "object" in kinds or "properties" in schema:
            self.object(schema, context, depth)
        if "items" in schema:
            self.node(schema["items"], (*context, "items"), depth + 1)
        elif "array" in kinds:
            raise self.refuse(context, "'items' is required to be supplied for type 'array'.")
        if "anyOf" in schema:
            options = schema["anyOf"]
            if not isinstance(options, list) or not options:
                raise self.refuse(context, "'anyOf' must be a non-empty array.")
            for i, option in enumerate(options):
                self.node(option, (*context, "anyOf", str(i)), depth + 1)
        for defs in ("$defs", "definitions"):
            if defs in schema:
                if not isinstance(schema[defs], dict):
                    raise self.refuse(context, f"'{defs}' must be an object.")
                for key, sub in schema[defs].items():
                    self.node(sub, (*context, defs, key), depth + 1)
        if not kinds and not any(k in schema for k in ("anyOf", "$ref", "enum", "const")):
            raise self.refuse(context, "schema must have a 'type' key.")

    def object(self, schema: Json, context: tuple[str, ...], depth: int) -> None:
        if depth > MAX_DEPTH:  # objects nested deeper than OpenAI's ten levels
            raise self.refuse(context, f"schema must have at most {MAX_DEPTH} levels of nesting.")
        if schema.get("additionalProperties") is not False:
            raise self.refuse(
                context, "'additionalProperties' is required to be supplied and to be false."
            )
        properties = schema.get("properties", {})
        if not isinstance(properties, dict):
            raise self.refuse(context, "'properties' must be an object.")
        required = schema.get("required", [])
        missing = [
            key for key in properties if not isinstance(required, list) or key not in required
        ]
        if missing:
            raise self.refuse(
                context,
                "'required' is required to be supplied and to be an array including every key "
                f"in properties. Missing '{missing[0]}'.",
            )
        extra = [key for key in required if key not in properties]
        if extra:
            raise self.refuse(
                context, f"'required' names '{extra[0]}', which is not in 'properties'."
            )
        self.properties += len(properties)
        if self.properties > MAX_PROPERTIES:
            raise self.refuse(
                context, f"schema must have at most {MAX_PROPERTIES} object properties in total."
            )
        for key, sub in properties.items():
            self.node(sub, (*context, "properties", key), depth + 1)


def check_strict(schema: Any, *, what: str, name: str, param: str) -> None:
    """400 naming ``param`` unless ``schema`` is one strict mode accepts. ``what``:
    ``response_format`` or ``function``."""
    walk = _Walk(what, name, param)
    if not isinstance(schema, dict) or schema.get("type") != "object":
        got = schema.get("type") if isinstance(schema, dict) else None
        raise InvalidRequest(
            f"Invalid schema for {what} '{name}': schema must be a JSON Schema of "
            f"'type: \"object\"', got 'type: \"{got}\"'.",
            param=param,
            code="invalid_function_parameters" if what == "function" else None,
        )
    walk.node(schema, (), 1)


def json_rule(schema: Json, *, strict: bool, spacing: Json | None = None) -> str:
    """The body of an llguidance rule for one JSON value matching ``schema`` (guided when not
    strict: keywords the engine cannot enforce are skipped rather than refused); ``spacing``:
    llguidance's whitespace options, when not the default's."""
    guided = {**schema, "x-guidance": {**(spacing or _GUIDANCE), "lenient": not strict}}
    return "%json " + json.dumps(guided, separators=(",", ":"))


def json_grammar(schema: Json, *, strict: bool) -> str:
    return "start: " + json_rule(schema, strict=strict)


def engine_refusal(grammar: str) -> str | None:
    """Why llguidance cannot compile ``grammar`` (the first line of its message, without the
    grammar text it quotes); None if it can."""
    import llguidance  # on the first structured request, not at every server start (~70 ms)

    try:
        error = llguidance.LLMatcher.validate_grammar(grammar, None)
    except Exception as exc:  # a schema it chokes on is as much a refusal as one it names
        return _first_line(str(exc)) or type(exc).__name__
    return _first_line(str(error)) if error else None


def _first_line(message: str) -> str:
    # "at 1(8): failed to compile JSON schema: …" — the position is in ftserve's grammar text,
    # which the caller never wrote.
    return re.sub(r"^at \d+\(\d+\): ", "", message.strip().split("\n")[0])
