"""Reading a batch's input file: one request a line, checked as OpenAI checks it.

A file that breaks a rule fails the batch (``failed``, with ``errors.data`` naming the code, the
line and the param), and nothing of it runs. The codes are OpenAI's documented ones
(``empty_file``, ``too_many_tasks``, ``invalid_json_line``, ``duplicate_custom_id``,
``url_mismatch``, ``model_mismatch``); a line without ``custom_id`` or ``body.model`` is a
``missing_required_parameter`` and another method than POST an ``invalid_value`` on
``method``, worded as the endpoints word those. A line's ``body`` is otherwise checked where the
live endpoint checks it, when the line runs: a bad body is that line's 400 in the error file,
exactly the live endpoint's answer, as OpenAI reports such lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..store.batch_records import BatchLine
from .schemas import MAX_REQUESTS, batch_error

Json = dict[str, Any]
MAX_ERRORS = 100  # reported at most; the rest of a bad file is not read further


@dataclass
class Checked:
    lines: list[BatchLine]
    model: str | None
    errors: list[Json]


def _line_errors(
    number: int, raw: bytes, endpoint: str, seen: set[str], model: str | None
) -> tuple[BatchLine | None, str | None, list[Json]]:
    def error(code: str, message: str, param: str | None = None) -> list[Json]:
        return [batch_error(code, message, param=param, line=number)]

    try:
        request = orjson.loads(raw)
    except orjson.JSONDecodeError:
        request = None
    if not isinstance(request, dict):
        return None, model, error("invalid_json_line", "This line is not parseable as valid JSON.")
    custom_id = request.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return (
            None,
            model,
            error(
                "missing_required_parameter",
                "Missing required parameter: 'custom_id'.",
                "custom_id",
            ),
        )
    if custom_id in seen:
        return (
            None,
            model,
            error(
                "duplicate_custom_id",
                "The custom_id for this request is a duplicate of another request. The custom_id "
                "parameter must be unique for each request in a batch.",
                "custom_id",
            ),
        )
    seen.add(custom_id)
    if request.get("method") != "POST":
        return (
            None,
            model,
            error(
                "invalid_value", "Invalid value for 'method': only 'POST' is supported.", "method"
            ),
        )
    url = request.get("url")
    if url != endpoint:
        return (
            None,
            model,
            error(
                "url_mismatch",
                f"The URL provided for this request ({str(url)[:100]!r}) does not match the "
                f"batch's endpoint ({endpoint!r}). Every line's url must equal it.",
                "url",
            ),
        )
    body = request.get("body")
    if not isinstance(body, dict):
        return (
            None,
            model,
            error("invalid_type", "Invalid type for 'body': expected an object.", "body"),
        )
    line_model = body.get("model")
    if not isinstance(line_model, str) or not line_model:
        return (
            None,
            model,
            error(
                "missing_required_parameter", "Missing required parameter: 'model'.", "body.model"
            ),
        )
    if model is not None and line_model != model:
        return (
            None,
            model,
            error(
                "model_mismatch",
                f"The model {line_model[:100]!r} of this request does not match the model of the "
                f"batch's other requests ({model!r}). A batch holds requests for one model.",
                "body.model",
            ),
        )
    text = orjson.dumps(body).decode()
    return BatchLine(number, custom_id, text), line_model, []


def check_file(path: Path, endpoint: str) -> Checked:
    """Every request of the file, or the errors that fail the batch."""
    lines: list[BatchLine] = []
    errors: list[Json] = []
    seen: set[str] = set()
    model: str | None = None
    requests = 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            requests += 1
            if requests > MAX_REQUESTS:
                return Checked(
                    [],
                    None,
                    [
                        batch_error(
                            "too_many_tasks",
                            f"The batch input file has more than {MAX_REQUESTS:,} requests, "
                            f"the most one batch may hold.",
                            line=number,
                        )
                    ],
                )
            if len(errors) >= MAX_ERRORS:
                continue
            line, model, found = _line_errors(number, raw, endpoint, seen, model)
            errors += found
            if line is not None:
                lines.append(line)
    if requests == 0:
        errors.append(batch_error("empty_file", "The batch input file is empty."))
    return Checked([] if errors else lines, model, errors)
