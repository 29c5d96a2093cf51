"""Listing a job's checkpoints (``fine_tuning.job.checkpoint``), newest first."""

from __future__ import annotations

from ..errors import InvalidValue, JobNotFound
from ..store.protocol import Store, UnknownCursor
from ..store.records import CheckpointRecord, Page


class CheckpointService:
    def __init__(self, store: Store) -> None:
        self._store = store

    def list(
        self, organization: str, job_id: str, *, after: str | None, limit: int
    ) -> Page[CheckpointRecord]:
        try:
            page = self._store.list_checkpoints(organization, job_id, after=after, limit=limit)
        except UnknownCursor:
            raise InvalidValue(
                f"Invalid 'after': {after!r} is not a checkpoint of fine-tuning job {job_id}.",
                param="after",
            ) from None
        if page is None:
            raise JobNotFound(job_id)
        return page
