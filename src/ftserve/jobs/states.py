"""Job statuses and the transitions between them, in one pure module.

::

    validating_files ──► queued ──► running ──► succeeded
          │                │ ▲  ▲      │ │
          │                │ │  └──────┘ └──► failed        (running → queued: lease expired,
          │                ▼ │  resume         ▲                the job resumes elsewhere)
          │              paused ◄──── running  │
          └──────────────► failed ◄────────────┘
    cancel: validating_files | queued | running | paused ──► cancelled

There is no public ``pausing`` status. A pause answers ``paused`` at once (as OpenAI's own pause
example does); a worker that is training the job sees the request, saves a checkpoint at the
current step and stops. ``succeeded``, ``failed`` and ``cancelled`` are final.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    VALIDATING_FILES = "validating_files"
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Action(StrEnum):
    VALIDATED = "validated"  # files checked: validating_files → queued
    START = "start"  # a worker claims it: queued → running
    SUCCEED = "succeed"
    FAIL = "fail"
    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"
    REQUEUE = "requeue"  # a worker died; running → queued to resume from a checkpoint


FINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})

TRANSITIONS: dict[Action, dict[Status, Status]] = {
    Action.VALIDATED: {Status.VALIDATING_FILES: Status.QUEUED},
    Action.START: {Status.QUEUED: Status.RUNNING},
    Action.SUCCEED: {Status.RUNNING: Status.SUCCEEDED},
    Action.FAIL: {
        Status.VALIDATING_FILES: Status.FAILED,
        Status.QUEUED: Status.FAILED,
        Status.RUNNING: Status.FAILED,
    },
    Action.CANCEL: {
        Status.VALIDATING_FILES: Status.CANCELLED,
        Status.QUEUED: Status.CANCELLED,
        Status.RUNNING: Status.CANCELLED,
        Status.PAUSED: Status.CANCELLED,
    },
    Action.PAUSE: {Status.QUEUED: Status.PAUSED, Status.RUNNING: Status.PAUSED},
    Action.RESUME: {Status.PAUSED: Status.QUEUED},
    Action.REQUEUE: {Status.RUNNING: Status.QUEUED},
}


def sources(action: Action) -> frozenset[str]:
    """The statuses from which ``action`` is allowed."""
    return frozenset(TRANSITIONS[action])


def target(action: Action, status: str) -> Status | None:
    """Where ``action`` leads from ``status``, or None when the state forbids it."""
    try:
        return TRANSITIONS[action].get(Status(status))
    except ValueError:
        return None


def refusal(action: Action, status: str, job_id: str) -> str:
    """Why a user's request is refused, in words that say what would be allowed."""
    verb = action.value
    if status in FINAL:
        return f"Job {job_id} has already {_finished_words(status)}; it cannot be {_past(verb)}."
    allowed = ", ".join(sorted(sources(action)))
    return f"Job {job_id} is {status}; only a job that is {allowed} can be {_past(verb)}."


def _finished_words(status: str) -> str:
    return {"succeeded": "succeeded", "failed": "failed", "cancelled": "been cancelled"}[status]


def _past(verb: str) -> str:
    return {"cancel": "cancelled", "pause": "paused", "resume": "resumed"}.get(verb, verb + "ed")


# The statuses after which a job's log is closed: nothing is appended until a transition moves
# the job out of them (resume or cancel of a paused job; a final status never moves).
LOG_CLOSED = FINAL | {Status.PAUSED}


def log_accepts(before: str | None, after: str) -> bool:
    """Whether events may be appended by a write that takes a job from ``before`` (None for a
    new job) to ``after``: the log ends with the event of the terminal (or pause) transition."""
    return before != after or after not in LOG_CLOSED
