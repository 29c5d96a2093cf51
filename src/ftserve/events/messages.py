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


def files_unreachable() -> NewEvent:
    return make_event(
        "The job's files cannot be read right now (the file store or database is unreachable); "
        "validation will be retried until they can",
        level="warn",
        key="files-unreachable",
    )


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


def metrics(
    step: int,
    total_steps: int,
    train_loss: float,
    train_mean_token_accuracy: float,
    valid_loss: float | None = None,
    valid_mean_token_accuracy: float | None = None,
    full_valid_loss: float | None = None,
    full_valid_mean_token_accuracy: float | None = None,
) -> NewEvent:
    """``Step N/M: training loss=x.xx[, validation loss=…][, full validation loss=…]`` — the
    text cookbook notebooks parse — keyed by step so a resumed job never records a step twice."""
    text = f"Step {step}/{total_steps}: training loss={format_loss(train_loss)}"
    data: dict[str, Any] = {
        "step": step,
        "train_loss": train_loss,
        "total_steps": total_steps,
        "train_mean_token_accuracy": train_mean_token_accuracy,
    }
    if valid_loss is not None:
        text += f", validation loss={format_loss(valid_loss)}"
        data["valid_loss"] = valid_loss
        data["valid_mean_token_accuracy"] = valid_mean_token_accuracy
    if full_valid_loss is not None:
        text += f", full validation loss={format_loss(full_valid_loss)}"
        data["full_valid_loss"] = full_valid_loss
        data["full_valid_mean_token_accuracy"] = full_valid_mean_token_accuracy
    return make_event(text, kind="metrics", data=data, key=f"step:{step}")


def training_started() -> NewEvent:
    # Keyed: a job that resumes after a pause or a crash does not announce a second start.
    return make_event("Fine-tuning job started", data=None, key="started")


def training_resumed(step: int) -> NewEvent:
    return make_event(f"Fine-tuning job resumed from the checkpoint at step {step}")


def checkpoint_created(step: int, name: str) -> NewEvent:
    return make_event(
        f"Checkpoint created at step {step} with Snapshot ID: {name}", key=f"checkpoint:{step}"
    )


def model_created(name: str) -> NewEvent:
    return make_event(f"New fine-tuned model created: {name}", key="model")


def succeeded() -> NewEvent:
    return make_event("The job has successfully completed", key="succeeded")


def requeued(reason: str) -> NewEvent:
    return make_event(f"{reason}; the job will resume from its last checkpoint", level="warn")
