"""Creating, reading, listing and cancelling batches (the runner runs them: runner.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import InferenceDisabled, InvalidValue, NotFound, StateConflict
from ..ids import batch_id
from ..store.batch_records import BatchRecord
from ..store.protocol import Store, UnknownCursor
from ..store.records import Page
from ..wire.fields import parse_body, unknown_parameter
from .schemas import CANCELLABLE, CREATE_FIELDS, MAX_FILE_BYTES, WINDOW_SECONDS


class BatchNotFound(NotFound):
    def __init__(self, batch_id: str) -> None:
        super().__init__(f"No batch found with id '{batch_id[:100]}'.", param="batch_id")


class BatchService:
    def __init__(self, store: Store, *, inference: bool) -> None:
        self._store = store
        self._inference = inference
        # Whether the server takes a POST to this path (set by the app once its routes exist;
        # /v1/responses is a batch endpoint only where the server has that route).
        self.serves: Callable[[str], bool] = lambda path: True
        self.changed: Callable[[], None] = lambda: None  # the app's runner looks at once

    def create(self, organization: str, body: Mapping[str, Any]) -> BatchRecord:
        req = parse_body(body, CREATE_FIELDS, unknown=unknown_parameter)
        endpoint: str = req["endpoint"]
        if not self.serves(endpoint):
            raise InvalidValue(
                f"Invalid value for 'endpoint': {endpoint} is not served by this server yet, so "
                "a batch cannot target it.",
                param="endpoint",
            )
        if not self._inference:
            raise InferenceDisabled()
        file_id: str = req["input_file_id"]
        now = int(time.time())
        record = self._store.get_file(organization, file_id, now)
        if record is None:
            raise InvalidValue(
                f"invalid input_file_id: {file_id[:100]}. No such file exists; upload it first "
                "with POST /v1/files (purpose 'batch').",
                param="input_file_id",
                code="invalid_file",
            )
        if record.purpose != "batch":
            raise InvalidValue(
                f"invalid input_file_id: {file_id} has purpose '{record.purpose}'; a batch's "
                "input file must be uploaded with purpose 'batch'.",
                param="input_file_id",
                code="invalid_file_purpose",
            )
        if record.bytes > MAX_FILE_BYTES:
            raise InvalidValue(
                f"invalid input_file_id: {file_id} has {record.bytes} bytes; a batch's input "
                f"file may hold at most {MAX_FILE_BYTES} bytes (200 MB).",
                param="input_file_id",
                code="file_too_large",
            )
        expiry = req["output_expires_after"]
        batch = BatchRecord(
            id=batch_id(),
            organization=organization,
            endpoint=endpoint,
            input_file_id=file_id,
            completion_window=req["completion_window"],
            status="validating",
            created_at=now,
            expires_at=now + WINDOW_SECONDS[req["completion_window"]],
            metadata=req["metadata"],
            output_expires_after=None if expiry is None else expiry["seconds"],
        )
        self._store.create_batch(batch)
        self.changed()
        return batch

    def get(self, organization: str, batch_id: str) -> BatchRecord:
        batch = self._store.get_batch(organization, batch_id)
        if batch is None:
            raise BatchNotFound(batch_id)
        return batch

    def list(self, organization: str, *, after: str | None, limit: int) -> Page[BatchRecord]:
        try:
            return self._store.list_batches(organization, after=after, limit=limit)
        except UnknownCursor:
            raise InvalidValue(
                f"Invalid 'after': no batch {after!r} to page from.", param="after"
            ) from None

    def cancel(self, organization: str, batch_id: str) -> BatchRecord:
        """``cancelling`` (the runner stops its lines and ends it ``cancelled``); a batch that is
        cancelling already is returned as it is; a finished one is a 400."""
        batch = self.get(organization, batch_id)
        if batch.status in CANCELLABLE:
            changes = {"status": "cancelling", "cancelling_at": int(time.time())}
            moved = self._store.update_batch(batch_id, expect=CANCELLABLE, changes=changes)  # type: ignore[arg-type]
            if moved is not None:
                self.changed()
                return moved
            batch = self.get(organization, batch_id)
        if batch.status in ("cancelling", "cancelled"):
            return batch
        raise StateConflict(
            f"Cannot cancel a batch with status '{batch.status}'.", code="invalid_batch_state"
        )
