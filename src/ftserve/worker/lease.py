"""Letting go of a job: the fields a finished, stopped or abandoned claim clears."""

from __future__ import annotations

from ..store.records import JobChanges

RELEASED: JobChanges = {"lease_owner": None, "lease_expires_at": None, "claim_token": None}
