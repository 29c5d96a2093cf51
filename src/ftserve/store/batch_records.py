"""The records of the Batch API that cross the Store seam: a batch, one line of its input
file, and the claim a runner holds on a batch. No SQL, no HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class BatchRecord:
    id: str
    organization: str
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    created_at: int
    expires_at: int
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[JsonObject] | None = None  # the validation errors of a failed batch
    metadata: dict[str, str] | None = None
    output_expires_after: int | None = None  # seconds after their creation the files expire
    model: str | None = None  # the one model of its lines, known once validated
    total: int = 0
    completed: int = 0
    failed: int = 0
    lease_owner: str | None = None  # the runner holding the claim (for people and recovery)
    lease_expires_at: float | None = None
    claim_token: str | None = None  # new on every claim; every write of the runner carries it


class BatchChanges(TypedDict, total=False):
    """What ``update_batch`` may change (a misspelt column is a type error first)."""

    status: str
    expires_at: int
    in_progress_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    output_file_id: str | None
    error_file_id: str | None
    errors: list[JsonObject] | None
    model: str | None
    total: int
    lease_owner: str | None
    lease_expires_at: float | None
    claim_token: str | None


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One request of a batch: its place in the input file (1-based), its ``custom_id``, its
    request body as JSON text, and once it finished, its output-file line (``result``, JSON
    text) and whether that line belongs to the error file."""

    line: int
    custom_id: str
    body: str
    result: str | None = None
    failed: bool = False
