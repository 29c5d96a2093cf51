"""Event construction. The wire body of each event is serialised once, here, and stored as is.

Message texts follow OpenAI's (wire-contract.md §6) verbatim where OpenAI has one; the texts for
cancel, pause and resume are ftserve's own (OpenAI publishes none).
"""

from __future__ import annotations

import time
from typing import Any, Literal

import orjson

from ..ids import event_id
from ..store.records import NewEvent

Level = Literal["info", "warn", "error"]
Kind = Literal["message", "metrics"]

_EMPTY: dict[str, Any] = {}


def make_event(
    message: str,
    *,
    level: Level = "info",
    kind: Kind = "message",
    data: dict[str, Any] | None = _EMPTY,
    key: str | None = None,
    created_at: int | None = None,
) -> NewEvent:
    eid = event_id()
    ts = int(time.time()) if created_at is None else created_at
    body = orjson.dumps(
        {
            "object": "fine_tuning.job.event",
            "id": eid,
            "created_at": ts,
            "level": level,
            "message": message,
            "data": data,
            "type": kind,
        }
    )
    return NewEvent(id=eid, created_at=ts, kind=kind, body=body, key=key)


def created(job_id: str) -> NewEvent:
    return make_event(f"Created fine-tuning job: {job_id}")


def validating(training_file: str, validation_file: str | None) -> NewEvent:
    if validation_file:
        text = f"Validating training file: {training_file} and validation file: {validation_file}"
    else:
        text = f"Validating training file: {training_file}"
    return make_event(text)


def files_validated() -> NewEvent:
    return make_event("Files validated, moving job to queued state")


def started() -> NewEvent:
    return make_event("Fine-tuning job started", data=None)


def cancelled() -> NewEvent:
    return make_event("Fine-tuning job cancelled")


def paused() -> NewEvent:
    return make_event("Fine-tuning job paused")


def resumed() -> NewEvent:
    return make_event("Fine-tuning job resumed, moving job to queued state")


def failed(message: str, code: str, param: str | None) -> NewEvent:
    return make_event(message, level="error", data={"error_code": code, "error_param": param})


def format_loss(value: float) -> str:
    return f"{value:.2f}"
