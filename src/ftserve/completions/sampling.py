"""Fields the chat and the legacy request share, and the checks of the server's token limit."""

from __future__ import annotations

import re
from typing import Any

from ..errors import InvalidRequest, InvalidType, InvalidValue
from ..wire import metadata
from ..wire.fields import Field, check_number

Json = dict[str, Any]
MAX_STOP = 4
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_TOKEN_ID = re.compile(r"^[0-9]{1,9}$")


def check_stop(value: Any, param: str) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, list):
        if not value:
            raise InvalidValue(
                f"Invalid '{param}': empty array. Expected an array with minimum length 1, but "
                "got an empty array instead.",
                param=param,
                code="empty_array",
            )
        if len(value) > MAX_STOP:
            raise InvalidValue(
                f"Invalid '{param}': array too long. Expected an array with maximum length "
                f"{MAX_STOP}, but got an array with length {len(value)} instead.",
                param=param,
                code="array_above_max_length",
            )
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise InvalidType(f"{param}[{i}]", "a string", item)
        items = value
    else:
        raise InvalidType(param, "a string or an array of strings", value)
    # An empty stop string would end every generation before it starts; it stops nothing.
    return tuple(dict.fromkeys(s for s in items if s))


def check_logit_bias(value: Any, param: str) -> tuple[tuple[int, float], ...]:
    if not isinstance(value, dict):
        raise InvalidType(param, "an object", value)
    out: list[tuple[int, float]] = []
    for key, bias in value.items():
        if not _TOKEN_ID.match(key):
            raise InvalidValue(
                f"Invalid key in '{param}': {key[:64]!r}. Keys must be token ids (integers as "
                "strings).",
                param=param,
                code="invalid_value",
            )
        out.append((int(key), check_number(bias, f"{param}.{key}", -100, 100)))
    return tuple(out)


def check_stream_options(value: Any, param: str) -> Json:
    if not isinstance(value, dict):
        raise InvalidType(param, "an object", value)
    for key, item in value.items():
        if key not in ("include_usage", "include_obfuscation"):
            raise InvalidRequest(f"Unrecognized request argument supplied: {param}.{key}")
        if item is not None and not isinstance(item, bool):
            raise InvalidType(f"{param}.{key}", "a boolean", item)
    return value


def check_metadata(value: Any, param: str) -> Json:
    if not isinstance(value, dict):
        raise InvalidType(param, "an object", value)
    if len(value) > metadata.MAX_PAIRS:
        raise InvalidValue(
            f"Invalid '{param}': too many properties. Expected an object with at most "
            f"{metadata.MAX_PAIRS} properties, but got an object with {len(value)} properties "
            "instead.",
            param=param,
            code="object_above_max_properties",
        )
    for key, item in value.items():
        if len(key) > metadata.KEY_MAX_LENGTH:
            raise InvalidValue(
                f"Invalid '{param}': key too long; keys have at most {metadata.KEY_MAX_LENGTH} "
                "characters.",
                param=param,
            )
        if not isinstance(item, str):
            raise InvalidType(f"{param}.{key}", "a string", item)
        if len(item) > metadata.VALUE_MAX_LENGTH:
            raise InvalidValue(
                f"Invalid '{param}.{key}': string too long. Expected a string with maximum "
                f"length {metadata.VALUE_MAX_LENGTH}, but got a string with length {len(item)} "
                "instead.",
                param=f"{param}.{key}",
                code="string_above_max_length",
            )
    return value


STOP_SCHEMA: Json = {
    "anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_STOP},
    ]
}
LOGIT_BIAS_SCHEMA: Json = {
    "type": "object",
    "propertyNames": {"pattern": _TOKEN_ID.pattern},
    "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100},
}
STREAM_OPTIONS_SCHEMA: Json = {
    "type": "object",
    "properties": {
        "include_usage": {"type": ["boolean", "null"]},
        "include_obfuscation": {"type": ["boolean", "null"]},
    },
    "additionalProperties": False,
}
METADATA_SCHEMA: Json = metadata.SCHEMA


def common_fields() -> list[Field]:
    """temperature … user: the same in both requests."""
    return [
        Field("temperature", "number", "Sampling temperature; 0 is greedy.", 0, 2, default=1.0),
        Field("top_p", "number", "Nucleus sampling mass.", 0, 1, default=1.0),
        Field("n", "integer", "Choices to generate.", 1, 128, default=1),
        Field(
            "stop",
            "custom",
            "Up to 4 sequences where generation stops (not returned).",
            check=check_stop,
            schema=STOP_SCHEMA,
            default=(),
        ),
        Field(
            "seed",
            "integer",
            "Same seed and request, same text.",
            INT64_MIN,
            INT64_MAX,
        ),
        Field(
            "presence_penalty", "number", "Penalty on tokens already present.", -2, 2, default=0.0
        ),
        Field(
            "frequency_penalty", "number", "Penalty by token frequency so far.", -2, 2, default=0.0
        ),
        Field(
            "logit_bias",
            "custom",
            "Token id (as a string) to a bias in -100..100.",
            check=check_logit_bias,
            schema=LOGIT_BIAS_SCHEMA,
            default=(),
        ),
        Field("stream", "boolean", "Answer as data-only server-sent events.", default=False),
        Field(
            "stream_options",
            "custom",
            "`include_usage`: a last chunk with the usage; only with `stream`.",
            check=check_stream_options,
            schema=STREAM_OPTIONS_SCHEMA,
        ),
        Field("user", "string", "An end-user id.", handling="ignored"),
    ]


def check_stream_options_use(parsed: Json) -> bool:
    """Whether to send a usage chunk; stream_options without stream is OpenAI's 400."""
    options = parsed["stream_options"]
    if options is not None and not parsed["stream"]:
        raise InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    return bool(options and options.get("include_usage"))


def check_token_limit(max_tokens: int | None, name: str, n: int, limit: int) -> None:
    """The server's cap on generated tokens per request (FTSERVE_MAX_GENERATION_TOKENS)."""
    if max_tokens is not None and max_tokens > limit:
        raise InvalidRequest(
            f"{name} is too large: {max_tokens}. This model supports at most {limit} completion "
            f"tokens, whereas you provided {max_tokens}.",
            param=name,
        )
    if n * (max_tokens or 1) > limit:
        raise InvalidRequest(
            f"Invalid 'n': n * {name} = {n * (max_tokens or 1)} is above this server's limit of "
            f"{limit} generated tokens per request (FTSERVE_MAX_GENERATION_TOKENS).",
            param="n",
        )
