"""The model graders' tables: ``score_model`` (the judge's answer read as a number within
``range``) and ``label_model`` (the judge picks one of ``labels``). The judge is any model this
server serves to the organization, reached through the server's own chat route."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidType, InvalidValue
from ..wire.fields import Field, check_number, supported_values

Json = dict[str, Any]
ROLES = ("user", "assistant", "system", "developer")


_role_error = supported_values(ROLES)

MESSAGE: tuple[Field, ...] = (
    Field("role", "string", required=True, enum=ROLES, enum_error=_role_error),
    Field("content", "string", "The text; may hold templates.", required=True),
    Field("type", "string", "Always `message`.", enum=("message",), enum_error=_role_error),
)
_INPUT = Field(
    "input",
    "array",
    "The judge's messages; templates in their content.",
    required=True,
    items=Field("message", "object", fields=MESSAGE),
)
_MODEL = Field("model", "string", "The judge: a model this server serves.", required=True)


def _range(value: Any, param: str) -> list[float]:
    if not isinstance(value, list) or len(value) != 2:
        raise InvalidType(param, "an array of two numbers", value)
    low, high = (check_number(v, f"{param}[{i}]", None, None) for i, v in enumerate(value))
    if not low < high:
        raise InvalidValue(
            f"Invalid '{param}': the first bound must be below the second.", param=param
        )
    return [low, high]


# Types only: the values' bounds are the chat route's, which the judge's request goes through
# (a value it refuses is a model_grader_server_error with its wording), so they cannot differ.
SAMPLING: tuple[Field, ...] = (
    Field("max_completions_tokens", "integer", "The judge's longest answer."),
    Field("reasoning_effort", "string", "No effect: no judge here reasons.", handling="ignored"),
    Field("seed", "integer", "The judge's sampling seed."),
    Field("temperature", "number", "The judge's temperature (the chat route's bounds)."),
    Field("top_p", "number", "The judge's nucleus (the chat route's bounds)."),
)
SCORE_MODEL_FIELDS: tuple[Field, ...] = (
    _MODEL,
    _INPUT,
    Field(
        "range",
        "custom",
        "The score's bounds (default [0, 1]).",
        check=_range,
        schema={"type": "array", "items": {"type": "number"}},
    ),
    Field("sampling_params", "object", "How the judge samples.", fields=SAMPLING),
)


def _labels(value: Any, param: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidType(param, "a non-empty array of strings", value)
    return list(value)


LABEL_MODEL_FIELDS: tuple[Field, ...] = (
    _MODEL,
    _INPUT,
    Field(
        "labels",
        "custom",
        "The labels the judge picks from.",
        required=True,
        check=_labels,
        schema={"type": "array", "items": {"type": "string"}},
    ),
    Field(
        "passing_labels",
        "custom",
        "The labels that score 1 (each one of `labels`).",
        required=True,
        check=_labels,
        schema={"type": "array", "items": {"type": "string"}},
    ),
)


def check_labels(parsed: Json, param: str) -> None:
    for i, label in enumerate(parsed["passing_labels"]):
        if label not in parsed["labels"]:
            name = f"{param}.passing_labels[{i}]"
            raise InvalidValue(
                f"Invalid '{name}': '{label[:64]}' is not one of the labels.", param=name
            )
