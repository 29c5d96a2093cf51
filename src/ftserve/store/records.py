"""Plain records that cross the Store seam. No SQL, no HTTP: the vocabulary both sides share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypedDict, TypeVar

from ..jobs.method import Hyperparameters, Method
from ..jobs.states import Status

T = TypeVar("T")

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class FileRecord:
    id: str
    organization: str
    bytes: int
    created_at: int
    filename: str
    purpose: str
    blob: str  # path relative to the blob dir
    expires_at: int | None = None
    status: str = "processed"
    status_details: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseRecord:
    """A stored response of the Responses API, kept until ``expires_at``."""

    id: str
    organization: str
    created_at: int
    expires_at: int
    body: str  # the response object, JSON
    items: str  # the input items it answered (a continued conversation's whole), JSON array


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    organization: str
    model: str  # the resolved base model name shown to clients
    model_source: str  # what the trainer loads: "ftserve-tiny" or an absolute directory
    status: Status
    created_at: int
    training_file: str
    validation_file: str | None
    hyperparameters: Hyperparameters
    method: Method
    seed: int
    suffix: str | None = None
    metadata: dict[str, str] | None = None
    integrations: list[JsonObject] | None = None
    extensions: JsonObject = field(default_factory=dict)
    finished_at: int | None = None
    fine_tuned_model: str | None = None
    error: JsonObject | None = None
    trained_tokens: int | None = None
    result_files: list[str] = field(default_factory=list)
    estimated_finish: int | None = None
    attempts: int = 0
    lease_owner: str | None = None  # the worker holding the claim (for people and recovery)
    lease_expires_at: float | None = None
    claim_token: str | None = None  # new on every claim; every write of the claim carries it
    devices: int = 1  # the devices it trains on; 0: "auto", every device of the worker


class JobChanges(TypedDict, total=False):
    """What ``update_job`` and ``write_claimed`` may change: a job's columns (every one but
    ``id``), so a misspelt column is a type error before it is the store's refusal."""

    organization: str
    model: str
    model_source: str
    status: Status
    created_at: int
    training_file: str
    validation_file: str | None
    hyperparameters: Hyperparameters
    method: Method
    seed: int
    suffix: str | None
    metadata: dict[str, str] | None
    integrations: list[JsonObject] | None
    extensions: JsonObject
    finished_at: int | None
    fine_tuned_model: str | None
    error: JsonObject | None
    trained_tokens: int | None
    result_files: list[str]
    estimated_finish: int | None
    attempts: int
    lease_owner: str | None
    lease_expires_at: float | None
    claim_token: str | None
    devices: int


@dataclass(frozen=True, slots=True)
class Claim:
    """One claim of a job by a worker: the fence every write for the job passes through.

    A new token is drawn on every claim, also when the same worker claims the same job again,
    so a process still running for an earlier claim can never write into the current one.
    """

    job_id: str
    token: str


@dataclass(frozen=True, slots=True)
class GangSeat:
    """A place in a job trained by several workers (a gang): the claim it belongs to, this
    worker's node rank (0: the leader, the worker that claimed the job), how many workers and
    devices each the gang has, and where its ranks meet (the leader's c10d store)."""

    claim: Claim
    node_rank: int
    nodes: int
    devices: int
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event ready to append: its id, time and serialised wire body are fixed by the caller.

    ``key`` makes an append idempotent per job (``"step:12"``): a second append with the same key
    is ignored, so a resumed job never records a step twice.
    """

    id: str
    created_at: int
    kind: str  # "message" | "metrics"
    body: bytes
    key: str | None = None


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    id: str
    job_id: str
    created_at: int
    step_number: int
    fine_tuned_model_checkpoint: str
    metrics: JsonObject
    path: str  # directory relative to the blob dir
    # "epoch" (kept by retention), "eval" (a reinforcement job's validation step: the best by
    # reward and the newest are kept) or "pause" (dropped once a newer exists)
    kind: str = "epoch"


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool


@dataclass(frozen=True, slots=True)
class JoinedPage:
    """A page of serialised items as one string: their JSON joined by commas (the inside of
    the list's array), newest first, ``count`` of them."""

    body: bytes
    count: int
    has_more: bool


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An event as its job's log holds it: ``seq`` is its place in that log (1, 2, … in commit
    order, the order every event list follows), ``body`` its serialised wire JSON."""

    seq: int
    id: str
    body: bytes


@dataclass(frozen=True, slots=True)
class EventsAfter:
    """Events that follow a point of a job's log, oldest first, and the job's status read just
    before them: when the status is final, no event follows the last of a short page."""

    status: Status
    after_seq: int  # the place of the event read after (0: the log's start)
    events: list[LoggedEvent]
