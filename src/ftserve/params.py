"""Checks for request parameters that answer with OpenAI's error codes and wording.

Written by hand because no validation library produces OpenAI's messages (``Invalid 'limit':
integer below minimum value. Expected a value >= 1, but got 0 instead.``) and codes, and those are
part of the wire contract that clients and their tests read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import InvalidType, InvalidValue, MissingParameter

# ASCII digits only: int() would also take "1_0" and digits of other scripts.
_INTEGER = re.compile(r"-?[0-9]{1,18}")
CURSOR_MAX_LENGTH = 512  # the longest id a query parameter may name


def below_min(param: str, minimum: int | float, got: object) -> InvalidValue:
    kind = "integer" if isinstance(minimum, int) else "number"
    return InvalidValue(
        f"Invalid '{param}': {kind} below minimum value. "
        f"Expected a value >= {minimum}, but got {got} instead.",
        param=param,
        code=f"{kind}_below_min_value",
    )


def above_max(param: str, maximum: int | float, got: object) -> InvalidValue:
    kind = "integer" if isinstance(maximum, int) else "number"
    return InvalidValue(
        f"Invalid '{param}': {kind} above maximum value. "
        f"Expected a value <= {maximum}, but got {got} instead.",
        param=param,
        code=f"{kind}_above_max_value",
    )


def query_int(
    query: Mapping[str, str], param: str, *, default: int, minimum: int, maximum: int
) -> int:
    raw = query.get(param)
    if raw is None:
        return default
    if _INTEGER.fullmatch(raw) is None:
        raise InvalidValue(
            f"Invalid type for '{param}': expected an integer, but got '{raw[:64]}' instead.",
            param=param,
            code="invalid_type",
        )
    value = int(raw)
    if value < minimum:
        raise below_min(param, minimum, value)
    if value > maximum:
        raise above_max(param, maximum, value)
    return value


def query_str(
    query: Mapping[str, str], param: str, *, max_length: int = CURSOR_MAX_LENGTH
) -> str | None:
    raw = query.get(param)
    if raw is None:
        return None
    if raw == "" or len(raw) > max_length:
        raise InvalidValue(f"Invalid '{param}': expected a non-empty string id.", param=param)
    return raw


def query_choice(
    query: Mapping[str, str], param: str, choices: tuple[str, ...], default: str
) -> str:
    raw = query.get(param)
    if raw is None:
        return default
    if raw not in choices:
        raise InvalidValue(
            f"Invalid '{param}': expected one of {', '.join(choices)}, but got '{raw[:64]}'.",
            param=param,
        )
    return raw


# -- JSON bodies ------------------------------------------------------------------------------


def require(body: Mapping[str, Any], param: str, prefix: str = "") -> Any:
    if param not in body or body[param] is None:
        raise MissingParameter(prefix + param)
    return body[param]


def expect_str(
    value: Any, param: str, *, max_length: int | None = None, min_length: int = 0
) -> str:
    if not isinstance(value, str):
        raise InvalidType(param, "a string", value)
    if len(value) < min_length:
        raise InvalidValue(
            f"Invalid '{param}': string too short. Expected a string with minimum length "
            f"{min_length}, but got an empty string instead.",
            param=param,
            code="empty_string" if min_length == 1 else "string_below_min_length",
        )
    if max_length is not None and len(value) > max_length:
        raise InvalidValue(
            f"Invalid '{param}': string too long. Expected a string with maximum length "
            f"{max_length}, but got a string with length {len(value)} instead.",
            param=param,
            code="string_above_max_length",
        )
    return value


def expect_int(value: Any, param: str, *, minimum: int, maximum: int) -> int:
    number: int
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise InvalidType(param, "an integer", value)
    if number < minimum:
        raise below_min(param, minimum, number)
    if number > maximum:
        raise above_max(param, maximum, number)
    return number


def finite_number(value: Any, param: str) -> float:
    """A JSON number (not a boolean), finite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidType(param, "a number", value)
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise InvalidValue(f"Invalid '{param}': expected a finite number.", param=param)
    return number


def expect_number(
    value: Any, param: str, *, exclusive_minimum: float | None = None, maximum: float | None = None
) -> float:
    number = finite_number(value, param)
    if exclusive_minimum is not None and number <= exclusive_minimum:
        raise InvalidValue(
            f"Invalid '{param}': number below minimum value. "
            f"Expected a value > {exclusive_minimum}, but got {value} instead.",
            param=param,
            code="number_below_min_value",
        )
    if maximum is not None and number > maximum:
        raise above_max(param, maximum, value)
    return number


def expect_object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidType(param, "an object", value)
    return value


def expect_list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidType(param, "an array", value)
    return value


def reject_unknown(body: Mapping[str, Any], known: frozenset[str], prefix: str = "") -> None:
    for key in body:
        if key not in known:
            raise InvalidValue(
                f"Unrecognized request argument supplied: {prefix}{key}",
                param=prefix + key,
                code="unknown_parameter",
            )
