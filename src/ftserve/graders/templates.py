"""Grader templates: ``{{item.<key>}}`` (dots reach nested keys), ``{{sample.output_text}}``,
``{{sample.output_json.<key>}}`` (the sample parsed as JSON) and ``{{sample.output_tools}}``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_VAR = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_NOT_JSON: Any = object()


class SampleParseError(Exception):
    """``sample.output_json`` was asked for and the sample is not JSON."""


class InvalidVariable(Exception):
    """A template names a variable the item or sample does not have."""


@dataclass
class Sample:
    output_text: str
    output_tools: list[Any] = field(default_factory=list)
    _json: Any = None

    def output_json(self) -> Any:
        if self._json is None:
            try:
                self._json = json.loads(self.output_text)
            except ValueError:
                self._json = _NOT_JSON
        if self._json is _NOT_JSON:
            raise SampleParseError("the model sample is not valid JSON")
        return self._json


def _walk(value: Any, path: list[str], name: str) -> Any:
    for key in path:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            raise InvalidVariable(f"'{name}' is not in the item or sample")
    return value


def lookup(name: str, sample: Sample, item: dict[str, Any]) -> Any:
    head, *rest = name.split(".")
    if head == "item":
        return _walk(item, rest, name)
    if head == "sample" and rest:
        if rest[0] == "output_text" and len(rest) == 1:
            return sample.output_text
        if rest[0] == "output_tools":
            return _walk(sample.output_tools, rest[1:], name)
        if rest[0] == "output_json":
            return _walk(sample.output_json(), rest[1:], name)
    raise InvalidVariable(f"'{name}' is not a template variable")


def _text(value: Any) -> str:
    # Strings as they are; anything else as compact JSON (what a grader compares against).
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def render(template: str, sample: Sample, item: dict[str, Any]) -> str:
    """``template`` with each ``{{…}}`` replaced; a missing variable raises InvalidVariable."""
    return _VAR.sub(lambda m: _text(lookup(m.group(1), sample, item)), template)


def variables(template: str) -> list[str]:
    return [m.group(1) for m in _VAR.finditer(template)]
