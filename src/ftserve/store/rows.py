"""How records map to table rows, the same for every SQL backend: the column lists, the JSON
columns and their encoding, and the row → record converters. Backends differ in their SQL
dialect and locking, not in what a row holds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import StoreError
from .records import CheckpointRecord, FileRecord, JobRecord

RELEASE = "lease_owner = NULL, lease_expires_at = NULL, claim_token = NULL"
JSON_COLUMNS = frozenset(
    {"hyperparameters", "method", "metadata", "integrations", "extensions", "error", "result_files"}
)
JOB_COLUMNS = [
    "id",
    "organization",
    "model",
    "model_source",
    "status",
    "created_at",
    "training_file",
    "validation_file",
    "hyperparameters",
    "method",
    "seed",
    "suffix",
    "metadata",
    "integrations",
    "extensions",
    "finished_at",
    "fine_tuned_model",
    "error",
    "trained_tokens",
    "result_files",
    "estimated_finish",
    "attempts",
    "lease_owner",
    "lease_expires_at",
    "claim_token",
]
JOB_SELECT = "SELECT " + ", ".join(JOB_COLUMNS) + " FROM jobs"
CHANGEABLE = frozenset(JOB_COLUMNS[1:])
FILE_COLUMNS = [
    "id",
    "organization",
    "bytes",
    "created_at",
    "filename",
    "purpose",
    "blob",
    "expires_at",
    "status",
    "status_details",
]
FILE_SELECT = "SELECT " + ", ".join(FILE_COLUMNS) + " FROM files"
CKPT_SELECT = (
    "SELECT id, job_id, created_at, step_number, fine_tuned_model_checkpoint, metrics, path, kind "
    "FROM checkpoints"
)


def check_changes(changes: Mapping[str, Any]) -> None:
    """Only job columns can change: a typo in a caller must fail, not write nothing."""
    unknown = changes.keys() - CHANGEABLE
    if unknown:
        raise StoreError(f"not job columns: {sorted(unknown)}")


def dump(value: Any) -> str | None:
    """A JSON column's text: orjson's compact, canonical encoding."""
    return None if value is None else orjson.dumps(value).decode()


def metadata_pair(key: str, value: str) -> str:
    """The text ``"key":"value"`` as it stands in a stored metadata column. Metadata is a flat
    string map and every quote inside a JSON string is escaped, so this text occurs in the
    column exactly when the pair is there (U+0000 included, which neither SQLite's json_each
    nor PostgreSQL's jsonb can hold)."""
    return orjson.dumps(key).decode() + ":" + orjson.dumps(value).decode()


def job_record(row: Any) -> JobRecord:
    values = dict(zip(JOB_COLUMNS, row, strict=True))
    for name in JSON_COLUMNS:
        raw = values[name]
        values[name] = None if raw is None else orjson.loads(raw)
    return JobRecord(**values)


def file_record(row: tuple[Any, ...]) -> FileRecord:
    return FileRecord(**dict(zip(FILE_COLUMNS, row, strict=True)))


def ckpt_record(row: tuple[Any, ...]) -> CheckpointRecord:
    id_, job_id, created_at, step, name, metrics, path, kind = row
    return CheckpointRecord(id_, job_id, created_at, step, name, orjson.loads(metrics), path, kind)
