"""The response objects: chat completions and their chunks, text completions, usage, logprobs.

Their JSON Schemas (for the OpenAPI document) are declared once, in :mod:`.schemas`, next to
nothing else; the builders here are the only code that makes these objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..inference.protocol import TokenLogprob

Json = dict[str, Any]


def usage(prompt_tokens: int, completion_tokens: int) -> Json:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _bytes(value: tuple[int, ...] | None) -> list[int] | None:
    return None if value is None else list(value)


def chat_token_logprob(lp: TokenLogprob) -> Json:
    return {
        "token": lp.token,
        "logprob": lp.logprob,
        "bytes": _bytes(lp.bytes),
        "top_logprobs": [
            {"token": t.token, "logprob": t.logprob, "bytes": _bytes(t.bytes)} for t in lp.top
        ],
    }


def chat_logprobs(items: Sequence[TokenLogprob]) -> Json:
    return {"content": [chat_token_logprob(lp) for lp in items], "refusal": None}


@dataclass
class Choice:
    """What the inference process sent for one choice, accumulated."""

    text: list[str] = field(default_factory=list)
    # Per token with logprobs: (token, its logprob or None for an echoed first token, offset
    # of the token in the choice's text).
    tokens: list[tuple[str, TokenLogprob | None, int]] = field(default_factory=list)
    length: int = 0  # characters so far
    finish_reason: str | None = None
    completion_tokens: int = 0

    def add(self, text: str, logprob: TokenLogprob | None, *, first_echo: bool = False) -> None:
        if logprob is not None:
            self.tokens.append((logprob.token, logprob, self.length))
        elif first_echo:
            self.tokens.append((text, None, self.length))
        self.text.append(text)
        self.length += len(text)

    @property
    def logprobs(self) -> list[TokenLogprob]:
        return [lp for _, lp, _ in self.tokens if lp is not None]

    @property
    def joined(self) -> str:
        return "".join(self.text)


class Head:
    """What every object of one completion repeats: id, created, model."""

    def __init__(self, id: str, created: int, model: str) -> None:
        self.id, self.created, self.model = id, created, model

    def chat(self, choices: list[Json], usage: Json | None) -> Json:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": usage,
            "system_fingerprint": None,
            "service_tier": "default",
        }

    def chunk(self, choices: list[Json], *, include_usage: bool, usage: Json | None = None) -> Json:
        obj: Json = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "service_tier": "default",
            "choices": choices,
        }
        if include_usage:
            obj["usage"] = usage
        return obj

    def text(self, choices: list[Json], usage: Json | None, *, include_usage: bool = True) -> Json:
        obj: Json = {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if include_usage:
            obj["usage"] = usage
        return obj


def chat_message(content: str | None, tool_calls: Sequence[Json] = ()) -> Json:
    message: Json = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
    if tool_calls:
        message["tool_calls"] = list(tool_calls)
    return message


def chunk_choice(
    index: int, delta: Json, *, logprobs: Json | None = None, finish_reason: str | None = None
) -> Json:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}


def text_logprobs(choice: Choice) -> Json:
    """Legacy logprobs: tokens, token_logprobs, top_logprobs ({token: logprob}), text_offset."""
    top: list[dict[str, float] | None] = []
    for token, lp, _ in choice.tokens:
        if lp is None:
            top.append(None)
            continue
        entries = {t.token: t.logprob for t in lp.top}
        entries.setdefault(token, lp.logprob)
        top.append(entries)
    return {
        "tokens": [token for token, _, _ in choice.tokens],
        "token_logprobs": [None if lp is None else lp.logprob for _, lp, _ in choice.tokens],
        "top_logprobs": top,
        "text_offset": [offset for _, _, offset in choice.tokens],
    }
