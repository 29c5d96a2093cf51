"""How records map to table rows, the same for every SQL backend: the column lists, the JSON
columns and their encoding, and the row → record converters. Backends differ in their SQL
dialect and locking, not in what a row holds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import orjson

from ..errors import StoreError
from ..jobs.method import Hyperparameters, Method
from ..jobs.states import Status
from .records import CheckpointRecord, FileRecord, JobRecord, NewEvent, ResponseRecord

JSON_COLUMNS = frozenset(
    {"hyperparameters", "method", "metadata", "integrations", "extensions", "error", "result_files"}
)
# A table's columns are its record's fields, in their order (each statement names them).
JOB_COLUMNS = [f.name for f in fields(JobRecord)]
CHANGEABLE = frozenset(JOB_COLUMNS[1:])
FILE_COLUMNS = [f.name for f in fields(FileRecord)]
CKPT_COLUMNS = [f.name for f in fields(CheckpointRecord)]
RESPONSE_COLUMNS = [f.name for f in fields(ResponseRecord)]


def check_changes(changes: Mapping[str, Any]) -> None:
    """Only job columns can change (JobChanges says so to the type checker; this, to a caller
    the checker did not see): a typo must fail, not write nothing."""
    unknown = changes.keys() - CHANGEABLE
    if unknown:
        raise StoreError(f"not job columns: {sorted(unknown)}")


def dump(value: Any) -> str | None:
    """A JSON column's text: orjson's compact, canonical encoding (a typed value's to_json)."""
    value = value.to_json() if isinstance(value, Method | Hyperparameters) else value
    return None if value is None else orjson.dumps(value).decode()


def metadata_pair(key: str, value: str) -> str:
    """The text ``"key":"value"`` as it stands in a stored metadata column. Metadata is a flat
    string map and every quote inside a JSON string is escaped, so this text occurs in the
    column exactly when the pair is there (U+0000 included, which neither SQLite's json_each
    nor PostgreSQL's jsonb can hold)."""
    return orjson.dumps(key).decode() + ":" + orjson.dumps(value).decode()


def job_values(job: JobRecord) -> dict[str, Any]:
    """A job's row as the parameters of its insert."""
    return {c: dump(getattr(job, c)) if c in JSON_COLUMNS else getattr(job, c) for c in JOB_COLUMNS}


def change_values(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of an update's SET (``set_<column>``, see sql.job_update)."""
    return {f"set_{c}": dump(v) if c in JSON_COLUMNS else v for c, v in changes.items()}


def event_values(job_id: str, e: NewEvent) -> dict[str, Any]:
    return {
        "job": job_id,
        "id": e.id,
        "at": e.created_at,
        "kind": e.kind,
        "key": e.key,
        "body": e.body,
    }


def file_values(file: FileRecord) -> dict[str, Any]:
    return {c: getattr(file, c) for c in FILE_COLUMNS}


def response_values(r: ResponseRecord) -> dict[str, Any]:
    return {c: getattr(r, c) for c in RESPONSE_COLUMNS}


def ckpt_values(c: CheckpointRecord) -> dict[str, Any]:
    return {
        name: dump(c.metrics) if name == "metrics" else getattr(c, name) for name in CKPT_COLUMNS
    }


def job_record(row: Any) -> JobRecord:
    values = dict(zip(JOB_COLUMNS, row, strict=True))
    values["status"] = Status(values["status"])
    for name in JSON_COLUMNS:
        raw = values[name]
        values[name] = None if raw is None else orjson.loads(raw)
    values["method"] = Method.from_json(values["method"])
    values["hyperparameters"] = Hyperparameters.from_json(values["hyperparameters"])
    return JobRecord(**values)


def file_record(row: tuple[Any, ...]) -> FileRecord:
    return FileRecord(**dict(zip(FILE_COLUMNS, row, strict=True)))


def ckpt_record(row: tuple[Any, ...]) -> CheckpointRecord:
    id_, job_id, created_at, step, name, metrics, path, kind = row
    return CheckpointRecord(id_, job_id, created_at, step, name, orjson.loads(metrics), path, kind)
