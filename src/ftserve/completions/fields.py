"""One declarative table per request body: each field's JSON type, bounds, default and doc.

Both the validation (with OpenAI's wording and codes) and the request's JSON Schema in the
OpenAPI document are derived from the same :class:`Field` rows, so the two cannot drift apart.
Written by hand: no validation library produces OpenAI's messages (``Invalid 'temperature':
decimal above maximum value. Expected a value <= 2, but got 200 instead.``), and none knows the
shape of a chat ``messages`` array; fields with such structure carry their own ``check`` and
``schema``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import InvalidRequest, InvalidType, InvalidValue, MissingParameter
from ..params import above_max, below_min, finite_number

Json = dict[str, Any]
Kind = Literal["integer", "number", "boolean", "string", "object", "custom"]
# ok: validated and used; ignored: validated, accepted and has no effect; refused: any value but
# null (or the field's ``allowed`` values) is a 400 naming the field.
Handling = Literal["ok", "ignored", "refused"]

_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "string": "a string",
    "object": "an object",
}
_JSON_TYPES = {
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "string": "string",
    "object": "object",
}


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind
    doc: str
    minimum: int | float | None = None
    maximum: int | float | None = None
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


def unrecognized(name: str) -> InvalidRequest:
    return InvalidRequest(f"Unrecognized request argument supplied: {name}")


def unsupported_value(param: str, message: str) -> InvalidValue:
    return InvalidValue(message, param=param, code="unsupported_value")


def _check(field: Field, value: Any) -> Any:
    name = field.name
    if field.kind == "integer":
        lo = None if field.minimum is None else int(field.minimum)
        hi = None if field.maximum is None else int(field.maximum)
        return check_integer(value, name, lo, hi)
    if field.kind == "number":
        return check_number(value, name, field.minimum, field.maximum)
    if field.kind == "boolean":
        if not isinstance(value, bool):
            raise InvalidType(name, "a boolean", value)
        return value
    if field.kind == "string":
        if not isinstance(value, str):
            raise InvalidType(name, "a string", value)
        if field.maximum is not None and len(value) > field.maximum:
            raise InvalidValue(
                f"Invalid '{name}': string too long. Expected a string with maximum length "
                f"{int(field.maximum)}, but got a string with length {len(value)} instead.",
                param=name,
                code="string_above_max_length",
            )
        return value
    if field.kind == "object":
        if not isinstance(value, dict):
            raise InvalidType(name, "an object", value)
        return value
    assert field.check is not None, name
    return field.check(value, name)


def parse_body(
    body: Mapping[str, Any], table: Sequence[Field], *, optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Every field of ``table`` by name, checked; absent or null fields get their default.
    ``optional`` names required fields that this route does not require (a deployment route's
    ``model``)."""
    by_name = {f.name: f for f in table}
    for key in body:
        if key not in by_name:
            raise unrecognized(key)
    out: dict[str, Any] = {}
    for field in table:
        value = body.get(field.name)
        if value is None:
            if field.required and field.name not in optional:
                raise MissingParameter(field.name)
            out[field.name] = field.default
            continue
        if field.handling == "refused" and not (field.allowed and field.allowed(value)):
            # Type errors first, then the refusal.
            if field.kind != "custom":
                _check(field, value)
            raise unsupported_value(
                field.name, field.refusal or f"Unsupported parameter: '{field.name}'."
            )
        out[field.name] = _check(field, value)
    return out


# -- JSON Schema ----------------------------------------------------------------------------------


def field_schema(field: Field) -> Json:
    schema: Json
    if field.kind == "custom":
        assert field.schema is not None, field.name
        schema = dict(field.schema)
    else:
        schema = {"type": _JSON_TYPES[field.kind]}
        if field.kind in ("integer", "number"):
            if field.minimum is not None:
                schema["minimum"] = field.minimum
            if field.maximum is not None:
                schema["maximum"] = field.maximum
        elif field.kind == "string" and field.maximum is not None:
            schema["maxLength"] = field.maximum
    if field.handling == "refused":
        # Only null (or the allowed values) are accepted.
        schema = dict(field.allowed_schema) if field.allowed_schema else {"type": "null"}
    elif not field.required:
        schema = {"anyOf": [schema, {"type": "null"}]}
    doc = field.doc
    if field.handling == "ignored":
        doc += " Accepted and ignored."
    elif field.handling == "refused":
        doc += " Refused (400 naming it) unless null" + (
            " or one of the values shown." if field.allowed_schema else "."
        )
    schema["description"] = doc
    if field.default is not None and field.kind != "custom":
        schema["default"] = field.default
    return schema


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
