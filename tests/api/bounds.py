"""Every bound the OpenAPI document states on a request, found by walking the document.

A bound is a ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``, ``minLength``,
``maxLength``, ``minItems``, ``maxItems``, ``minProperties``, ``maxProperties`` or a
``propertyNames`` length, on a JSON or multipart body field or a query parameter, at any depth
(through ``$ref``, ``properties``, ``items``, ``additionalProperties`` and each ``anyOf`` /
``oneOf`` branch). For each one the walker gives two values, one just past the bound and one at it
(the smallest step past an exclusive bound), and where they go: a path of keys from the request's
root, with the schema of each container on the way, so that a request can be built around them
from valid values (:func:`place`). Nothing here knows ftserve's fields: a bound added to the
document is walked without a change here.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]
Key = str | int

_NUMERIC = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_SIZES = {
    "string": ("minLength", "maxLength"),
    "array": ("minItems", "maxItems"),
    "object": ("minProperties", "maxProperties"),
}
# Object keys and string values are made of these, the first the schema's pattern accepts.
_FILLERS = ("a", "0", "k", "1")


@dataclass(frozen=True)
class Step:
    """One level down: ``key`` in the container, whose value there must fit ``schema`` (the
    ``anyOf`` / ``oneOf`` branch already chosen)."""

    key: Key
    schema: Json


@dataclass(frozen=True)
class Bound:
    operation: str  # "POST /fine_tuning/jobs"
    location: str  # "body" (JSON), "form" (multipart) or "query"
    steps: tuple[Step, ...]  # from the root of the body or query to the bounded value
    keyword: str  # "maximum", "maxLength", "propertyNames.maxLength", ...
    limit: int | float
    past: Any  # the value placed at ``steps``, just past the bound
    at: Any  # ... and at it

    @property
    def param(self) -> str:
        """The field as OpenAI's errors name it: ``method.dpo.hyperparameters.beta``,
        ``messages[0].content``, ``limit``."""
        out = ""
        for step in self.steps:
            if isinstance(step.key, int):
                out += f"[{step.key}]"
            else:
                out += ("." if out else "") + step.key
        return out

    @property
    def id(self) -> str:
        """Unique: the param, with the ``anyOf`` branch taken where that is fixed by a value
        (``messages[0]{role=user}.content``)."""
        out = ""
        for step in self.steps:
            out += f"[{step.key}]" if isinstance(step.key, int) else ("." if out else "") + step.key
            fixed = _fixed_values(step.schema)
            if fixed and step is not self.steps[-1]:
                out += "{" + ",".join(f"{k}={v}" for k, v in fixed.items()) + "}"
        return f"{self.operation} {self.location} {out} ({_describe(self.steps[-1].schema)}) " + (
            self.keyword
        )


class Document:
    """The parts of an OpenAPI document the walk needs: ``$ref`` resolution."""

    def __init__(self, document: Json) -> None:
        self.document = document

    def resolve(self, schema: Json) -> Json:
        seen = 0
        while "$ref" in schema:
            node: Any = self.document
            for part in schema["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
            seen += 1
            assert seen < 32, schema
        return schema

    def branches(self, schema: Json) -> list[Json]:
        """The non-null alternatives of a schema (itself when it has none)."""
        schema = self.resolve(schema)
        options = schema.get("anyOf") or schema.get("oneOf")
        if not options:
            return [schema]
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
        out: list[Json] = []
        for option in options:
            for branch in self.branches({**rest, **self.resolve(option)}):
                if _types(branch) != {"null"}:
                    out.append(branch)
        return out

    # -- minimal valid values ------------------------------------------------------------------

    def minimal(self, schema: Json) -> Any:
        """A small value valid against ``schema``: its required properties only, the fewest
        items, the shortest string its pattern accepts."""
        schema = self.branches(schema)[0]
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return next(v for v in schema["enum"] if v is not None)
        kind = _main_type(schema)
        if kind == "object":
            props = schema.get("properties", {})
            return {name: self.minimal(props[name]) for name in schema.get("required", ())}
        if kind == "array":
            return [self.minimal(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
        if kind == "string":
            return string_of(schema, max(1, schema.get("minLength", 1)))
        if kind in ("integer", "number"):
            return _inside(schema, kind)
        if kind == "boolean":
            return False
        return None

    # -- the walk ------------------------------------------------------------------------------

    def bounds(self, operation: str, location: str, schema: Json) -> Iterator[Bound]:
        yield from self._walk(operation, location, (), schema, depth=0)

    def _walk(
        self, op: str, loc: str, steps: tuple[Step, ...], schema: Json, depth: int
    ) -> Iterator[Bound]:
        assert depth < 12, (op, steps)
        for branch in self.branches(schema):
            here = (*steps[:-1], Step(steps[-1].key, branch)) if steps else steps
            yield from self._bounds_of(op, loc, here, branch)
            for name, sub in branch.get("properties", {}).items():
                yield from self._walk(op, loc, (*here, Step(name, {})), sub, depth + 1)
            if isinstance(branch.get("items"), dict):
                yield from self._walk(op, loc, (*here, Step(0, {})), branch["items"], depth + 1)
            extra = branch.get("additionalProperties")
            if isinstance(extra, dict) and extra:
                key = string_of(branch.get("propertyNames", {}), 1)
                yield from self._walk(op, loc, (*here, Step(key, {})), extra, depth + 1)

    def _bounds_of(
        self, op: str, loc: str, steps: tuple[Step, ...], schema: Json
    ) -> Iterator[Bound]:
        if not steps:
            return  # the body itself: its own bounds would leave nothing to name
        kind = _main_type(schema)

        def bound(keyword: str, limit: int | float, past: Any, at: Any) -> Bound:
            return Bound(op, loc, steps, keyword, limit, past, at)

        if kind in ("integer", "number"):
            for keyword in _NUMERIC:
                if keyword in schema:
                    limit = schema[keyword]
                    past, at = _numbers(keyword, limit, kind)
                    yield bound(keyword, limit, past, at)
        low, high = _SIZES.get(kind or "", ("", ""))
        for keyword, step in ((low, -1), (high, 1)):
            if kind is None or keyword not in schema:
                continue
            limit = schema[keyword]
            if step < 0 and limit == 0:
                continue  # nothing is shorter than empty
            yield bound(
                keyword,
                limit,
                self._sized(schema, kind, limit + step),
                self._sized(schema, kind, limit),
            )
        names = schema.get("propertyNames", {})
        if kind == "object" and "maxLength" in names:
            limit = names["maxLength"]
            value = self.minimal(schema.get("additionalProperties") or {})
            yield bound(
                "propertyNames.maxLength",
                limit,
                {string_of(names, limit + 1): value},
                {string_of(names, limit): value},
            )

    def _sized(self, schema: Json, kind: str, size: int) -> Any:
        if kind == "string":
            return string_of(schema, size)
        if kind == "array":
            item = self.minimal(schema.get("items", {}))
            return [copy.deepcopy(item) for _ in range(size)]
        value = self.minimal(schema.get("additionalProperties") or {})
        names = schema.get("propertyNames", {})
        return {string_of(names, 1) + str(i): value for i in range(size)}


def string_of(schema: Json, length: int) -> str:
    """``length`` characters that the schema's ``pattern`` accepts."""
    pattern = schema.get("pattern")
    if length == 0:
        return ""  # too short for any pattern: only the length is tested
    for filler in _FILLERS:
        value = filler * length
        if pattern is None or re.search(pattern, value):
            return value
    raise AssertionError(f"no filler string fits {pattern!r}")


def _types(schema: Json) -> set[str]:
    kind = schema.get("type")
    if kind is None:
        return set()
    return {kind} if isinstance(kind, str) else set(kind)


def _main_type(schema: Json) -> str | None:
    kinds = _types(schema) - {"null"}
    if not kinds:
        if "properties" in schema or "additionalProperties" in schema:
            return "object"
        return None
    assert len(kinds) == 1, schema
    return kinds.pop()


def _inside(schema: Json, kind: str) -> int | float:
    """A number that meets every numeric bound of ``schema``: its lowest allowed value."""
    if "minimum" in schema:
        low: int | float = schema["minimum"]
        return low
    if "exclusiveMinimum" in schema:
        inside: int | float = _numbers("exclusiveMinimum", schema["exclusiveMinimum"], kind)[1]
        return inside
    high: int | float | None = schema.get("maximum", schema.get("exclusiveMaximum"))
    return 0 if high is None or high > 0 else high - 1


def _numbers(keyword: str, limit: int | float, kind: str) -> tuple[Any, Any]:
    """(just past, at): one integer away, or the next float; an exclusive bound is itself past,
    and the next value inside is the one "at" it."""
    inward = 1 if "inimum" in keyword else -1
    if kind == "integer":
        if keyword.startswith("exclusive"):
            return limit, limit + inward
        return limit - inward, limit
    toward = math.inf if inward > 0 else -math.inf
    if keyword.startswith("exclusive"):
        return limit, math.nextafter(limit, toward)
    return math.nextafter(limit, -toward), limit


def place(root: Any, bound: Bound, value: Any, doc: Document) -> Any:
    """A copy of ``root`` (a valid request body or query) with ``value`` at the bound's place.
    Containers missing on the way are made from their schema's minimal value; one that is there
    but is another ``anyOf`` branch (another message role, another method type) is replaced, or,
    in an array, a fitting one is put first (the rest of the array stays as it was)."""
    out = copy.deepcopy(root)
    node = out
    for i, step in enumerate(bound.steps):
        last = i == len(bound.steps) - 1
        if last:
            _set(node, step.key, value)
            break
        existing = _get(node, step.key)
        if existing is None or not _fits(existing, step.schema, doc):
            fresh = doc.minimal(step.schema)
            if isinstance(node, list) and existing is not None:
                node.insert(step.key, fresh)  # type: ignore[arg-type]
            else:
                _set(node, step.key, fresh)
        node = _get(node, step.key)
    return out


def _get(node: Any, key: Key) -> Any:
    if isinstance(node, list):
        assert isinstance(key, int)
        return node[key] if key < len(node) else None
    return node.get(key)


def _set(node: Any, key: Key, value: Any) -> None:
    if isinstance(node, list):
        assert isinstance(key, int)
        if key < len(node):
            node[key] = value
        else:
            node.append(value)
    else:
        node[key] = value


def _describe(schema: Json) -> str:
    """The leaf's type, to tell apart the branches of one field (``prompt``: a string, or an
    array of strings, of token ids or of arrays of token ids)."""
    kind = _main_type(schema) or "any"
    items = schema.get("items")
    return f"{kind} of {_describe(items)}" if kind == "array" and isinstance(items, dict) else kind


def _fixed_values(schema: Json) -> dict[str, Any]:
    """The properties a schema fixes to one value (``role``, ``type``): what tells an ``anyOf``
    branch from the others. (Properties are used as written: a ``$ref`` there fixes nothing.)"""
    out: dict[str, Any] = {}
    for name, sub in schema.get("properties", {}).items():
        if "const" in sub:
            out[name] = sub["const"]
        elif len(sub.get("enum", ())) == 1:
            out[name] = sub["enum"][0]
    return out


def _fits(value: Any, schema: Json, doc: Document) -> bool:
    """Whether ``value`` is of the branch ``schema`` chose: its type, and every property that
    the branch fixes to one value (``role``, ``type``) has that value."""
    schema = doc.resolve(schema)
    kind = _main_type(schema)
    if kind == "object":
        return isinstance(value, dict) and all(
            value.get(k) == v for k, v in _fixed_values(schema).items()
        )
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    return True
