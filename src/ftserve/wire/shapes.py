"""Response objects, each declared once as a :class:`Shape`: its keys in wire order, each key's
JSON Schema, and the constant members (``"object": "fine_tuning.job"``).

The OpenAPI document takes the object's schema from the shape, and the builders make the object
through :meth:`Shape.make`, which fills the constants and lays the keys out in the declared order,
so a key cannot be documented and not sent, or sent and not documented. (The one exception is
the event body, built by hand on the training hot path; a test holds it to its shape.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .fields import MISSING

Json = dict[str, Any]

STR: Json = {"type": "string"}
INT: Json = {"type": "integer"}
BOOL: Json = {"type": "boolean"}
NULL: Json = {"type": "null"}
TIMESTAMP: Json = {"type": "integer", "description": "Unix time, seconds."}
STR_OR_NULL: Json = {"type": ["string", "null"]}
INT_OR_NULL: Json = {"type": ["integer", "null"]}


def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def or_null(schema: Json) -> Json:
    return {"anyOf": [schema, NULL]}


def closed(properties: Json, *, required: Sequence[str] | None = None, **extra: Any) -> Json:
    """A closed object; ``required`` defaults to every property (response objects)."""
    return {
        "type": "object",
        "required": list(properties if required is None else required),
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }


@dataclass(frozen=True, slots=True)
class Prop:
    name: str
    schema: Json
    const: Any = MISSING  # a member every object of the shape has with this value


def const(name: str, value: str | bool, description: str | None = None) -> Prop:
    schema: Json = {"type": "string" if isinstance(value, str) else "boolean", "const": value}
    if description:
        schema["description"] = description
    return Prop(name, schema, value)


class Shape:
    """A response object: ``name`` is its ``components.schemas`` key."""

    __slots__ = ("_free", "description", "name", "props")

    def __init__(self, name: str, props: Sequence[Prop], *, description: str | None = None):
        self.name = name
        self.props = tuple(props)
        self.description = description
        self._free = frozenset(p.name for p in self.props if p.const is MISSING)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.props)

    def schema(self) -> Json:
        extra = {} if self.description is None else {"description": self.description}
        return closed({p.name: p.schema for p in self.props}, **extra)

    def make(self, **values: Any) -> dict[str, Any]:
        """The object, keys in declared order; every non-constant key must be given."""
        if values.keys() != self._free:
            raise TypeError(f"{self.name}: expected {sorted(self._free)}, got {sorted(values)}")
        return {p.name: values[p.name] if p.const is MISSING else p.const for p in self.props}


def list_shape(name: str, item: str, *, ids: bool = False, description: str | None = None) -> Shape:
    """OpenAI's list envelope of ``item`` objects (``ids``: with first_id/last_id)."""
    props = [
        const("object", "list"),
        Prop("data", {"type": "array", "items": ref(item)}),
        Prop("has_more", BOOL),
    ]
    if ids:
        props += [Prop("first_id", STR_OR_NULL), Prop("last_id", STR_OR_NULL)]
    return Shape(name, props, description=description)


# -- the error envelope (ftserve.errors.ApiError.body) ------------------------------------------

ERROR = Shape(
    "Error",
    [
        Prop("message", STR),
        Prop("type", {"type": "string", "enum": ["invalid_request_error", "server_error"]}),
        Prop("param", STR_OR_NULL),
        Prop("code", STR_OR_NULL),
    ],
)
ERROR_RESPONSE = Shape("ErrorResponse", [Prop("error", ref("Error"))])


def components(*shapes: Shape) -> Json:
    """``components.schemas`` entries for ``shapes``."""
    return {s.name: s.schema() for s in shapes}
