"""``POST /completions`` (legacy): the request's fields as one table, parsed into one
:class:`TextPrompt` per prompt and a :class:`Sampling`. The OpenAPI request schema is derived
from :data:`TEXT_FIELDS`, as the chat one is from its table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequest, InvalidType, InvalidValue
from ..inference.protocol import Sampling, TextPrompt
from ..wire.fields import Field, body_schema, check_integer, parse_body, unsupported_value
from .sampling import check_stream_options_use, check_token_limit, common_fields

Json = dict[str, Any]
MAX_PROMPTS = 128
MAX_TOKEN_ID = (1 << 31) - 1


def _empty(param: str) -> InvalidValue:
    return InvalidValue(
        f"Invalid '{param}': empty array. Expected an array with minimum length 1, but got an "
        "empty array instead.",
        param=param,
        code="empty_array",
    )


def _token_ids(value: list[Any], param: str) -> tuple[int, ...]:
    if not value:
        raise _empty(param)
    return tuple(check_integer(t, f"{param}[{i}]", 0, MAX_TOKEN_ID) for i, t in enumerate(value))


def check_prompt(value: Any, param: str) -> tuple[str | tuple[int, ...], ...]:
    """string | string[] | int[] | int[][] → one prompt (text or token ids) per element."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        raise InvalidType(param, "a string, an array of strings or an array of token ids", value)
    if not value:
        raise _empty(param)
    if len(value) > MAX_PROMPTS:
        raise InvalidValue(
            f"Invalid '{param}': array too long. Expected an array with maximum length "
            f"{MAX_PROMPTS}, but got an array with length {len(value)} instead.",
            param=param,
            code="array_above_max_length",
        )
    if all(isinstance(p, str) for p in value):
        return tuple(value)
    if all(isinstance(p, int) and not isinstance(p, bool) for p in value):
        return (_token_ids(value, param),)
    if all(isinstance(p, list) for p in value):
        return tuple(_token_ids(p, f"{param}[{i}]") for i, p in enumerate(value))
    raise InvalidType(param, "a string, an array of strings or an array of token ids", value)


_IDS: Json = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "integer", "minimum": 0, "maximum": MAX_TOKEN_ID},
}
PROMPT_SCHEMA: Json = {
    "anyOf": [
        {"type": "string"},
        {"type": "array", "minItems": 1, "maxItems": MAX_PROMPTS, "items": {"type": "string"}},
        _IDS,
        {"type": "array", "minItems": 1, "maxItems": MAX_PROMPTS, "items": _IDS},
    ]
}


def text_fields() -> list[Field]:
    return [
        Field(
            "model",
            "string",
            "A model id from `GET /models`. Optional on the Azure deployment routes.",
            required=True,
        ),
        Field(
            "prompt",
            "custom",
            "Text, texts, token ids or lists of token ids; each prompt "
            "gets `n` choices (choice index = prompt index * n + j).",
            required=True,
            check=check_prompt,
            schema=PROMPT_SCHEMA,
        ),
        Field("max_tokens", "integer", "Most tokens to generate per choice.", 0, default=16),
        *common_fields(),
        Field(
            "logprobs",
            "integer",
            "Return the log probabilities of the chosen token and of this many most likely ones.",
            0,
            5,
        ),
        Field("echo", "boolean", "Return the prompt before the completion.", default=False),
        Field(
            "best_of",
            "integer",
            "Must equal `n` (or be left out): choosing the best of more "
            "candidates is not supported.",
            0,
            20,
        ),
        Field(
            "suffix",
            "string",
            "Insertion (text after the completion).",
            handling="refused",
            refusal="Unsupported parameter: 'suffix' is not supported with this model.",
        ),
    ]


TEXT_FIELDS = tuple(text_fields())
DEPLOYMENT = frozenset({"model"})


def text_request_schema(*, deployment: bool = False) -> Json:
    return body_schema(
        TEXT_FIELDS,
        description="A (legacy) text completion request. Unknown fields are refused.",
        optional=DEPLOYMENT if deployment else frozenset(),
    )


@dataclass(frozen=True, slots=True)
class TextRequest:
    model: str | None
    prompts: tuple[TextPrompt, ...]
    sampling: Sampling
    stream: bool
    include_usage: bool


def parse_text(body: Json, *, max_generation_tokens: int, deployment: bool = False) -> TextRequest:
    f = parse_body(body, TEXT_FIELDS, optional=DEPLOYMENT if deployment else frozenset())
    n = f["n"]
    best_of = f["best_of"]
    if best_of is not None and best_of < n:
        raise InvalidRequest(
            "Invalid 'best_of': best_of must be greater than or equal to n.", param="best_of"
        )
    if best_of is not None and best_of > n:
        raise unsupported_value(
            "best_of",
            f"Unsupported value: 'best_of' does not support {best_of} with n={n} here; only "
            "best_of equal to n (every candidate returned) is supported.",
        )
    prompts = f["prompt"]
    check_token_limit(f["max_tokens"], "max_tokens", n * len(prompts), max_generation_tokens)
    include_usage = check_stream_options_use(f)
    sampling = Sampling(
        max_tokens=f["max_tokens"],
        temperature=f["temperature"],
        top_p=f["top_p"],
        n=n,
        stop=f["stop"],
        seed=f["seed"],
        presence_penalty=f["presence_penalty"],
        frequency_penalty=f["frequency_penalty"],
        logit_bias=f["logit_bias"],
        logprobs=f["logprobs"] is not None,
        top_logprobs=f["logprobs"] or 0,
    )
    return TextRequest(
        model=f["model"],
        prompts=tuple(TextPrompt(text=p, echo=f["echo"]) for p in prompts),
        sampling=sampling,
        stream=f["stream"],
        include_usage=include_usage,
    )
