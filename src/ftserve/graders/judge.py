"""Model graders: the judge's messages rendered, sent to the server's own chat route (a model it
serves to the organization) with a strict JSON schema for the answer, so that even a small model
answers ``{"result": …}``; then read as a score within ``range`` or as one of ``labels``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .templates import Sample, render

Json = dict[str, Any]
# (model, chat completion request) -> (HTTP status, response body)
Chat = Callable[[Json], tuple[int, Json]]


@dataclass
class Verdict:
    reward: float
    errors: dict[str, Any] = field(default_factory=dict)
    usage: Json | None = None  # prompt/completion/total/cached tokens


def _answer_schema(g: Json) -> Json:
    if g["type"] == "label_model":
        result: Json = {"type": "string", "enum": list(g["labels"])}
    else:
        result = {"type": "number"}
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "grade",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"result": result},
                "required": ["result"],
                "additionalProperties": False,
            },
        },
    }


def request(g: Json, sample: Sample, item: Json) -> Json:
    messages = [
        {"role": m["role"], "content": render(m["content"], sample, item)} for m in g["input"]
    ]
    body: Json = {"model": g["model"], "messages": messages, "response_format": _answer_schema(g)}
    sampling = g.get("sampling_params") or {}
    for ours, theirs in (
        ("max_completions_tokens", "max_completion_tokens"),
        ("seed", "seed"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
    ):
        if sampling.get(ours) is not None:
            body[theirs] = sampling[ours]
    return body


def _usage(body: Json) -> Json | None:
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return None
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    return {
        "prompt_tokens": usage.get("prompt_tokens", 0),
        "completion_tokens": usage.get("completion_tokens", 0),
        "total_tokens": usage.get("total_tokens", 0),
        "cached_tokens": cached or 0,
    }


def _read(g: Json, content: str) -> float | None:
    try:
        result = json.loads(content)["result"]
    except (ValueError, KeyError, TypeError):
        return None
    if g["type"] == "label_model":
        if result not in g["labels"]:
            return None
        return 1.0 if result in g["passing_labels"] else 0.0
    low, high = g.get("range") or [0.0, 1.0]
    if isinstance(result, bool) or not isinstance(result, int | float) or not low <= result <= high:
        return None
    return float(result)


def grade(g: Json, sample: Sample, item: Json, chat: Chat) -> Verdict:
    status, body = chat(request(g, sample, item))
    if status != 200:
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        details = str((error or {}).get("message") or f"HTTP {status}")
        return Verdict(
            0.0,
            {"model_grader_server_error": True, "model_grader_server_error_details": details},
        )
    usage = _usage(body)
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    if message.get("refusal"):
        return Verdict(0.0, {"model_grader_refusal_error": True}, usage)
    score = _read(g, message.get("content") or "")
    if score is None:
        flag = "truncated_observation_error" if choice.get("finish_reason") == "length" else None
        errors = {"model_grader_parse_error": True, **({flag: True} if flag else {})}
        return Verdict(0.0, errors, usage)
    return Verdict(score, {}, usage)
