"""Event construction. The wire body of each event is serialised once, here, and stored as is.

Message texts follow OpenAI's (wire-contract.md §6) verbatim where OpenAI has one; the texts for
cancel, pause and resume are ftserve's own (OpenAI publishes none).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

import orjson

from ..ids import event_id
from ..store.records import NewEvent
from . import metrics as step_metrics
from . import rewards

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


def memory_warning(message: str) -> NewEvent:
    """A training job backed off after running out of memory: said once per job (the key)."""
    return make_event(message, level="warn", key="out-of-memory-back-off")


NO_WORKER_FITS = "no-worker-fits"


def no_worker_fits(devices: int | str) -> NewEvent:
    return make_event(
        f"No running worker has the {devices} device(s) this job asks for "
        "(ftserve.devices); it stays queued until one does (a worker with that many GPUs, or "
        f"on CPU one started with FTSERVE_CONCURRENCY={devices} or more), and can be cancelled",
        level="warn",
        key=NO_WORKER_FITS,
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


def metrics(values: Mapping[str, Any]) -> NewEvent:
    """``Step N/M: training loss=x.xx[, validation loss=…][, full validation loss=…]`` — the
    text cookbook notebooks parse — keyed by step so a resumed job never records a step twice.
    ``values`` holds the step's figures by field name (events/metrics.py), absent ones None."""
    data = step_metrics.event_data(values)
    step = data[step_metrics.STEP.name]
    losses = ", ".join(
        f"{split.label} loss={format_loss(data[step_metrics.loss_of(split).name])}"
        for split in step_metrics.SPLITS
        if step_metrics.measured(values, split)
    )
    text = f"Step {step}/{data[step_metrics.TOTAL_STEPS.name]}: {losses}"
    return make_event(text, kind="metrics", data=data, key=f"step:{step}")


def reward_metrics(data: Mapping[str, Any]) -> NewEvent:
    """A reinforcement step's event: OpenAI's text and ``data`` layout (events/rewards.py),
    keyed by step like a loss step's."""
    return make_event(
        rewards.message(data), kind="metrics", data=dict(data), key=f"step:{data['step']}"
    )


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
