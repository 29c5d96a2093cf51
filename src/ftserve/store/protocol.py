"""The narrow storage seam. Services talk to this protocol only; SQL lives in its implementations.

Every method is one transaction. A method that changes a job's state takes the events that
describe the change and writes them in the same transaction, so the event log and the job never
disagree, even across ``kill -9``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

from .records import CheckpointRecord, FileRecord, JobRecord, NewEvent, Page


class UnknownCursor(Exception):
    """``after`` names no item of the list being paged."""


class Store(Protocol):
    # -- files -------------------------------------------------------------------------------
    def add_file(self, file: FileRecord) -> None: ...

    def get_file(self, organization: str, file_id: str, now: int) -> FileRecord | None: ...

    def list_files(
        self,
        organization: str,
        *,
        purpose: str | None,
        after: str | None,
        limit: int,
        ascending: bool,
        now: int,
    ) -> Page[FileRecord]: ...

    def delete_file(self, organization: str, file_id: str) -> FileRecord | None: ...

    # -- jobs --------------------------------------------------------------------------------
    def create_job(self, job: JobRecord, events: Sequence[NewEvent]) -> None: ...

    def get_job(self, job_id: str, organization: str | None = None) -> JobRecord | None: ...

    def list_jobs(
        self,
        organization: str,
        *,
        after: str | None,
        limit: int,
        metadata: Mapping[str, str] | None,
    ) -> Page[JobRecord]: ...

    def update_job(
        self,
        job_id: str,
        *,
        expect: Collection[str] | None,
        changes: Mapping[str, Any],
        events: Sequence[NewEvent] = (),
        expect_lease_owner: str | None = None,
    ) -> JobRecord | None:
        """Apply ``changes`` and append ``events`` atomically, only if the job's status is in
        ``expect`` (any status when None) and, when given, its lease is held by
        ``expect_lease_owner``. Returns the updated job, or None when the guard failed."""
        ...

    def jobs_with_status(self, status: str, limit: int) -> list[JobRecord]: ...

    # -- queue (the jobs table is the queue) -------------------------------------------------
    def claim_job(
        self, worker_id: str, now: float, lease_seconds: float, events: Sequence[NewEvent]
    ) -> JobRecord | None:
        """Atomically take the oldest ``queued`` job: status ``running``, lease to worker_id,
        attempts + 1, ``events`` appended (with their job id filled by the caller's factory)."""
        ...

    def renew_lease(self, job_id: str, worker_id: str, until: float) -> JobRecord | None: ...

    def expired_leases(self, now: float) -> list[JobRecord]: ...

    # -- events ------------------------------------------------------------------------------
    def append_events(self, job_id: str, events: Sequence[NewEvent]) -> int: ...

    def event_page(
        self, organization: str, job_id: str, *, after: str | None, limit: int
    ) -> Page[bytes] | None:
        """Serialised events, newest first. None when the job is unknown to this organization;
        raises UnknownCursor when ``after`` is not an event of this job."""
        ...

    def event_bodies(self, job_id: str, kind: str | None = None) -> list[bytes]:
        """All of a job's events, oldest first (for result files)."""
        ...

    # -- checkpoints -------------------------------------------------------------------------
    def add_checkpoint(self, checkpoint: CheckpointRecord, events: Sequence[NewEvent]) -> bool: ...

    def delete_checkpoint(self, checkpoint_id: str) -> None: ...

    def list_checkpoints(
        self, organization: str | None, job_id: str, *, after: str | None, limit: int
    ) -> Page[CheckpointRecord] | None: ...

    def close(self) -> None: ...
