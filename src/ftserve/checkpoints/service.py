"""Listing a job's checkpoints (``fine_tuning.job.checkpoint``), newest first."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidValue, JobNotFound
from ..events.metrics import checkpoint_metrics
from ..store.protocol import Store, UnknownCursor
from ..store.records import CheckpointRecord, Page


def checkpoint_object(c: CheckpointRecord) -> dict[str, Any]:
    return {
        "object": "fine_tuning.job.checkpoint",
        "id": c.id,
        "created_at": c.created_at,
        "fine_tuned_model_checkpoint": c.fine_tuned_model_checkpoint,
        "fine_tuning_job_id": c.job_id,
        "metrics": checkpoint_metrics(c.metrics),
        "step_number": c.step_number,
    }


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
