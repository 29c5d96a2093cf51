"""The Batch API's statements and row conversions, written once for both databases (markers as
in sql.py: ``{lock}``, ``{skip_locked}``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import orjson

from ..errors import StoreError
from .batch_records import BatchChanges, BatchLine, BatchRecord
from .sql import insert

BATCH_COLUMNS = [f.name for f in fields(BatchRecord)]
_JSON = frozenset({"errors", "metadata"})
_CHANGEABLE = frozenset(BatchChanges.__annotations__)

BATCH_SELECT = "SELECT " + ", ".join(BATCH_COLUMNS) + " FROM batches"
BATCH_INSERT = insert("batches", BATCH_COLUMNS)
BATCH_GET = f"{BATCH_SELECT} WHERE id = :id AND (CAST(:org AS TEXT) IS NULL OR organization = :org)"
BATCH_LOCK = f"{BATCH_SELECT} WHERE id = :id{{lock}}"
BATCH_SEQ = "SELECT seq FROM batches WHERE id = :after AND organization = :org"
BATCHES_OF_ORG = f"{BATCH_SELECT} WHERE organization = :org"
BATCHES_AFTER = " AND seq < :seq"
BATCHES_NEWEST_FIRST = " ORDER BY seq DESC LIMIT :limit"
# A batch needs a runner while it is not finished; it is claimable when nobody holds it or the
# holder's lease ran out (a runner that died: its successor resumes the batch).
_CLAIMABLE = (
    "status IN ('validating', 'in_progress', 'finalizing', 'cancelling') "
    "AND (claim_token IS NULL OR lease_expires_at < :now)"
)
ANY_CLAIMABLE = f"SELECT 1 FROM batches WHERE {_CLAIMABLE} LIMIT 1"
BATCH_CLAIM = (
    "UPDATE batches SET lease_owner = :worker, lease_expires_at = :until, claim_token = :token "
    f"WHERE id = (SELECT id FROM batches WHERE {_CLAIMABLE} ORDER BY seq LIMIT 1{{skip_locked}}) "
    f"RETURNING {', '.join(BATCH_COLUMNS)}"
)
BATCH_RENEW = "UPDATE batches SET lease_expires_at = :until WHERE id = :id AND claim_token = :token"
BATCH_COUNT = (
    "UPDATE batches SET completed = completed + :ok, failed = failed + :bad WHERE id = :id"
)

LINE_INSERT = insert("batch_lines", ["batch_id", "line", "custom_id", "body"])
LINES_PENDING = (
    "SELECT line, custom_id, body, result, failed FROM batch_lines "
    "WHERE batch_id = :id AND result IS NULL AND line > :after ORDER BY line LIMIT :limit"
)
LINES_ALL = (
    "SELECT line, custom_id, body, result, failed FROM batch_lines "
    "WHERE batch_id = :id AND line > :after ORDER BY line LIMIT :limit"
)
LINE_FINISH = (
    "UPDATE batch_lines SET result = :result, failed = :failed, finished_at = :now "
    "WHERE batch_id = :id AND line = :line AND result IS NULL"
)


def batch_update(columns: Mapping[str, Any]) -> str:
    unknown = columns.keys() - _CHANGEABLE
    if unknown:
        raise StoreError(f"not batch columns: {sorted(unknown)}")
    sets = ", ".join(f"{c} = :set_{c}" for c in columns)
    return f"UPDATE batches SET {sets} WHERE id = :id RETURNING {', '.join(BATCH_COLUMNS)}"


def _dump(column: str, value: Any) -> Any:
    if column in _JSON and value is not None:
        return orjson.dumps(value).decode()
    return value


def batch_values(batch: BatchRecord) -> dict[str, Any]:
    return {c: _dump(c, getattr(batch, c)) for c in BATCH_COLUMNS}


def change_values(changes: Mapping[str, Any]) -> dict[str, Any]:
    return {f"set_{c}": _dump(c, v) for c, v in changes.items()}


def batch_record(row: Any) -> BatchRecord:
    values = dict(zip(BATCH_COLUMNS, row, strict=True))
    for name in _JSON:
        raw = values[name]
        values[name] = None if raw is None else orjson.loads(raw)
    return BatchRecord(**values)


def line_record(row: Any) -> BatchLine:
    line, custom_id, body, result, failed = row
    return BatchLine(int(line), custom_id, body, result, bool(failed))
