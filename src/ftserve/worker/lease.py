"""Letting go of a job: the fields a finished, stopped or abandoned claim clears."""

from __future__ import annotations

from typing import Any

RELEASED: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None, "claim_token": None}
