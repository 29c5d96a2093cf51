"""One declarative table per request body: each field's JSON type, bounds, default and doc.

The validation (with OpenAI's wording and codes), the request's JSON Schema in the OpenAPI
document and, where a request value is echoed back (hyperparameters), the response schema are
all derived from the same :class:`Field` rows, so they cannot drift apart. Tables nest: a field
of kind ``object`` holds its own table, a field of kind ``array`` holds the field of its items,
and strings may carry an ``enum`` or a ``pattern``.

Written by hand rather than on msgspec or pydantic: no validation library produces OpenAI's
messages (``Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got
200 instead.``) or its codes, which clients and their tests read, and none knows the shape of a
chat ``messages`` array; fields with such structure carry their own ``check`` and ``schema``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ApiError, InvalidRequest, InvalidType, InvalidValue, MissingParameter
from ..params import above_max, below_min, expect_number, expect_str, finite_number

Json = dict[str, Any]
Kind = Literal["integer", "number", "boolean", "string", "object", "array", "custom"]
# ok: validated and used; ignored: validated, accepted and has no effect; refused: any value but
# null (or the field's ``allowed`` values) is a 400 naming the field.
Handling = Literal["ok", "ignored", "refused"]

_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "string": "a string",
    "object": "an object",
    "array": "an array",
}
AUTO_SCHEMA: Json = {"type": "string", "const": "auto"}
_NULL: Json = {"type": "null"}


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind
    doc: str = ""
    minimum: int | float | None = None  # numbers; for strings see ``min_length``
    maximum: int | float | None = None  # numbers; the longest string for strings
    default: Any = None  # what an absent or null value means
    required: bool = False
    handling: Handling = "ok"
    # kind "custom": check(value, param) -> parsed value, raising an ApiError; schema: its JSON
    # Schema (without null, which is added for optional fields).
    check: Callable[[Any, str], Any] | None = None
    schema: Json | None = None
    # handling "refused": the message for a refused value (param is the field name).
    refusal: str | None = None
    # values accepted although the field is refused otherwise (e.g. response_format text).
    allowed: Callable[[Any], bool] | None = None
    allowed_schema: Json | None = None
    # strings
    min_length: int = 0
    enum: tuple[str, ...] | None = None
    enum_error: Callable[[str, str], ApiError] | None = None  # (param, value) -> the 400
    pattern: str | None = None  # Python regex the whole string must match (``\s`` as Python's)
    pattern_error: str | None = None  # its message (param is the field)
    # numbers: a bound that excludes itself, worded as OpenAI's job endpoint words it
    exclusive_minimum: int | float | None = None
    # "auto" or a value; null and absent mean "auto"
    auto: bool = False
    # kind "object": the nested table (a closed object); kind "array": the items' field
    fields: tuple[Field, ...] = ()
    items: Field | None = None
    max_items: int | None = None
    max_items_error: Callable[[str, int], ApiError] | None = None  # (param, length)
    # computed from the whole body instead (fields that are only meaningful together),
    # validated in this field's turn; null does not skip it
    from_body: Callable[[Mapping[str, Any]], Any] | None = None
    examples: tuple[Any, ...] = ()  # shown in the schema


def refused_field(name: str, doc: str, message: str | None = None, **kwargs: Any) -> Field:
    """A field ftserve cannot honour: documented, and a 400 naming it when sent (``message``,
    else OpenAI's "not supported with this model")."""
    return Field(
        name,
        "custom",
        doc,
        handling="refused",
        check=lambda v, p: v,
        schema={},
        refusal=message or f"Unsupported parameter: '{name}' is not supported with this model.",
        **kwargs,
    )


def ignored_field(name: str, kind: Any, doc: str, **kwargs: Any) -> Field:
    """A field that only labels or routes a request: checked, documented, then ignored."""
    return Field(name, kind, doc, handling="ignored", **kwargs)


def _num(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def decimal_below_min(param: str, minimum: int | float, got: object) -> InvalidValue:
    return InvalidValue(
        f"Invalid '{param}': decimal below minimum value. "
        f"Expected a value >= {_num(minimum)}, but got {got} instead.",
        param=param,
        code="decimal_below_min_value",
    )


def decimal_above_max(param: str, maximum: int | float, got: object) -> InvalidValue:
    return InvalidValue(
        f"Invalid '{param}': decimal above maximum value. "
        f"Expected a value <= {_num(maximum)}, but got {got} instead.",
        param=param,
        code="decimal_above_max_value",
    )


def check_integer(value: Any, param: str, minimum: int | None, maximum: int | None) -> int:
    if isinstance(value, bool) or not (
        isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    ):
        raise InvalidType(param, "an integer", value)
    number = int(value)
    if minimum is not None and number < minimum:
        raise below_min(param, minimum, number)
    if maximum is not None and number > maximum:
        raise above_max(param, maximum, number)
    return number


def check_number(
    value: Any, param: str, minimum: int | float | None, maximum: int | float | None
) -> float:
    number = finite_number(value, param)
    if minimum is not None and number < minimum:
        raise decimal_below_min(param, minimum, value)
    if maximum is not None and number > maximum:
        raise decimal_above_max(param, maximum, value)
    return number


def supported_values(values: Sequence[str]) -> Callable[[str, str], InvalidValue]:
    """An ``enum_error``: a value outside ``values``, worded as the fine-tuning, batch and
    grader endpoints word it (``Invalid value for 'p': 'x'. Supported values are: 'a', 'b'.``)."""

    def error(param: str, value: str) -> InvalidValue:
        return InvalidValue(
            f"Invalid value for '{param}': '{value[:64]}'. Supported values are: "
            + ", ".join(f"'{v}'" for v in values)
            + ".",
            param=param,
            code="invalid_value",
        )

    return error


def unrecognized(name: str) -> InvalidRequest:
    """An unknown key, as the completion endpoints word it (no param, no code)."""
    return InvalidRequest(f"Unrecognized request argument supplied: {name}")


def unknown_parameter(name: str) -> InvalidValue:
    """An unknown key, as the fine-tuning endpoints word it (the key is the param)."""
    return InvalidValue(
        f"Unrecognized request argument supplied: {name}", param=name, code="unknown_parameter"
    )


def unsupported_value(param: str, message: str) -> InvalidValue:
    return InvalidValue(message, param=param, code="unsupported_value")


def _check_string(field: Field, value: Any, name: str) -> str:
    hi = None if field.maximum is None else int(field.maximum)
    text = expect_str(value, name, max_length=hi, min_length=field.min_length)
    if field.enum is not None and text not in field.enum:
        assert field.enum_error is not None, name
        raise field.enum_error(name, text)
    if field.pattern is not None and re.fullmatch(field.pattern, text) is None:
        raise InvalidValue(field.pattern_error or f"Invalid '{name}'.", param=name)
    return text


def _check_array(field: Field, value: Any, name: str, unknown: Callable[[str], ApiError]) -> Any:
    if not isinstance(value, list):
        raise InvalidType(name, "an array", value)
    if field.max_items is not None and len(value) > field.max_items:
        assert field.max_items_error is not None, name
        raise field.max_items_error(name, len(value))
    assert field.items is not None, name
    return [_check(field.items, item, f"{name}[{i}]", unknown) for i, item in enumerate(value)]


def _check(field: Field, value: Any, name: str, unknown: Callable[[str], ApiError]) -> Any:
    if field.auto and isinstance(value, str):
        if value == "auto":
            return "auto"
        what = "a boolean" if field.kind == "boolean" else "a number"
        raise InvalidValue(
            f"Invalid value for '{name}': expected 'auto' or {what}, but got '{value[:64]}'.",
            param=name,
        )
    if field.kind == "integer":
        lo = None if field.minimum is None else int(field.minimum)
        hi = None if field.maximum is None else int(field.maximum)
        return check_integer(value, name, lo, hi)
    if field.kind == "number":
        if field.exclusive_minimum is not None:
            top = None if field.maximum is None else float(field.maximum)
            return expect_number(
                value, name, exclusive_minimum=float(field.exclusive_minimum), maximum=top
            )
        return check_number(value, name, field.minimum, field.maximum)
    if field.kind == "boolean":
        if not isinstance(value, bool):
            raise InvalidType(name, "a boolean", value)
        return value
    if field.kind == "string":
        return _check_string(field, value, name)
    if field.kind == "object":
        if not isinstance(value, dict):
            raise InvalidType(name, "an object", value)
        if field.fields:
            return parse_body(value, field.fields, unknown=unknown, prefix=name + ".")
        return value
    if field.kind == "array":
        return _check_array(field, value, name, unknown)
    assert field.check is not None, name
    return field.check(value, name)


def parse_body(
    body: Mapping[str, Any],
    table: Sequence[Field],
    *,
    optional: frozenset[str] = frozenset(),
    unknown: Callable[[str], ApiError] = unrecognized,
    prefix: str = "",
) -> dict[str, Any]:
    """Every field of ``table`` by name, checked in table order after the unknown keys; absent
    or null fields get their default. ``optional`` names required fields that this route does
    not require (a deployment route's ``model``); ``unknown`` words an unknown key; ``prefix``
    is the path of a nested table (``integrations[0].``)."""
    by_name = {f.name for f in table}
    for key in body:
        if key not in by_name:
            raise unknown(prefix + key)
    out: dict[str, Any] = {}
    for field in table:
        if field.from_body is not None:
            out[field.name] = field.from_body(body)
            continue
        name = prefix + field.name
        value = body.get(field.name)
        if value is None:
            if field.required and field.name not in optional:
                raise MissingParameter(name)
            out[field.name] = "auto" if field.auto else field.default
            continue
        if field.handling == "refused" and not (field.allowed and field.allowed(value)):
            # Type errors first, then the refusal.
            if field.kind != "custom":
                _check(field, value, name, unknown)
            raise unsupported_value(
                name, field.refusal or f"Unsupported parameter: '{field.name}'."
            )
        out[field.name] = _check(field, value, name, unknown)
    return out


# -- JSON Schema ----------------------------------------------------------------------------------


def whitespace_class() -> str:
    """Every character Python's ``\\s`` matches, spelled out (ECMA-262's ``\\s`` differs)."""
    chars = [c for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    ranges: list[tuple[int, int]] = []
    for c in chars:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1] = (ranges[-1][0], c)
        else:
            ranges.append((c, c))
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


def _core_schema(field: Field, *, response: bool) -> Json:
    """The schema of a present, non-null value."""
    if field.kind == "custom" or field.schema is not None:
        assert field.schema is not None, field.name
        return dict(field.schema)
    schema: Json = {"type": field.kind}
    if field.kind in ("integer", "number"):
        if field.minimum is not None:
            schema["minimum"] = field.minimum
        if field.exclusive_minimum is not None:
            schema["exclusiveMinimum"] = field.exclusive_minimum
        if field.maximum is not None:
            schema["maximum"] = field.maximum
    elif field.kind == "string":
        if field.enum is not None:
            schema["enum"] = list(field.enum)
        if field.min_length:
            schema["minLength"] = field.min_length
        if field.maximum is not None:
            schema["maxLength"] = field.maximum
        if field.pattern is not None:
            schema["pattern"] = "^" + field.pattern.replace("\\s", whitespace_class()) + "$"
    elif field.kind == "object" and field.fields:
        schema = object_schema(field.fields, response=response)
    elif field.kind == "array":
        assert field.items is not None, field.name
        schema["items"] = _core_schema(field.items, response=response)
        if field.max_items is not None:
            schema["maxItems"] = field.max_items
    return schema


def field_schema(field: Field, *, response: bool = False) -> Json:
    """The field's schema in a request (null allowed where it means the default), or, with
    ``response``, as a response echoes the parsed value (never null, ``auto`` kept)."""
    schema = _core_schema(field, response=response)
    # A response echoes what parsing produced: null only where that is an absent field's value.
    nullable = not field.required and (not response or (field.default is None and not field.auto))
    if field.auto:
        schema = {"anyOf": [AUTO_SCHEMA, schema, *([_NULL] if nullable else [])]}
    elif field.handling == "refused":
        # Only null (or the allowed values) are accepted.
        schema = dict(field.allowed_schema) if field.allowed_schema else dict(_NULL)
    elif nullable:
        schema = {"anyOf": [schema, _NULL]}
    doc = field.doc
    if field.handling == "ignored":
        doc += " Accepted and ignored."
    elif field.handling == "refused":
        doc += " Refused (400 naming it) unless null" + (
            " or one of the values shown." if field.allowed_schema else "."
        )
    if doc:
        schema["description"] = doc
    if field.examples:
        schema["examples"] = list(field.examples)
    if field.default is not None and field.kind not in ("custom", "object") and not response:
        schema["default"] = field.default
    return schema


def object_schema(table: Sequence[Field], *, response: bool = False, **extra: Any) -> Json:
    """A closed object of ``table``'s fields; a response object has every one of them."""
    return {
        "type": "object",
        "required": [f.name for f in table if f.required or response],
        "properties": {f.name: field_schema(f, response=response) for f in table},
        "additionalProperties": False,
        **extra,
    }


def body_schema(
    table: Sequence[Field], *, description: str, optional: frozenset[str] = frozenset()
) -> Json:
    return {
        "type": "object",
        "description": description,
        "required": [f.name for f in table if f.required and f.name not in optional],
        "properties": {f.name: field_schema(f) for f in table},
        "additionalProperties": False,
    }


def type_word(kind: str) -> str:
    return _TYPE_WORDS[kind]
