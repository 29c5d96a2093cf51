"""Letting go of a job: the fields a finished, stopped or abandoned run clears."""

from __future__ import annotations

from typing import Any

from ..store.protocol import Store

RELEASED: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}


def release(store: Store, job_id: str, owner: str | None) -> None:
    """Clear the lease if ``owner`` still holds it; the job's status is left as it is."""
    store.update_job(job_id, expect=None, expect_lease_owner=owner, changes=RELEASED)
