"""A batch's output and error files, in OpenAI's line format::

    {"id": "batch_req_…", "custom_id": "…", "response": {"status_code": 200, "request_id": "…",
     "body": {…}}, "error": null}

A line the endpoint answered 2xx goes to the output file, any other answer to the error file
(its ``response`` holds the endpoint's error body). A line that never ran (the batch was
cancelled or expired first) goes to the error file with ``response: null`` and an ``error``
saying why, as OpenAI's does."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import orjson

from ..files.service import FileService
from ..ids import batch_request_id
from ..store.batch_records import BatchLine, BatchRecord
from ..store.records import FileRecord
from .dispatch import Answer

_NOT_RUN = {
    "cancelled": (
        "batch_cancelled",
        "This request was not executed because the batch was cancelled.",
    ),
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
}


def result_line(custom_id: str, answer: Answer) -> str:
    """The output- or error-file line of a request the endpoint answered."""
    try:
        body = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        body = answer.body.decode(errors="replace")
    response = {"status_code": answer.status, "request_id": answer.request_id, "body": body}
    line = {"id": batch_request_id(), "custom_id": custom_id, "response": response, "error": None}
    return orjson.dumps(line).decode()


def _not_run_line(custom_id: str, why: str) -> bytes:
    code, message = _NOT_RUN[why]
    line = {
        "id": batch_request_id(),
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }
    return orjson.dumps(line)


def write_files(
    files: FileService, batch: BatchRecord, lines: Sequence[BatchLine], ending: str
) -> dict[str, FileRecord]:
    """The output file (when a line succeeded) and the error file (when one did not), in input
    order; not yet recorded (the batch's final write adds them). ``ending``: the status the
    batch ends in (lines without a result are written as not run when it is ``cancelled`` or
    ``expired``). Keyed ``output`` and ``error``."""
    good: list[bytes] = []
    bad: list[bytes] = []
    for line in lines:
        if line.result is not None:
            (bad if line.failed else good).append(line.result.encode())
        elif ending in _NOT_RUN:
            bad.append(_not_run_line(line.custom_id, ending))
    made: dict[str, FileRecord] = {}
    for kind, content in (("output", good), ("error", bad)):
        if not content:
            continue
        name = f"{batch.id}_{kind}.jsonl"
        record = files.write_generated(
            batch.organization, name, "batch_output", b"\n".join(content) + b"\n"
        )
        if batch.output_expires_after is not None:
            expiry = record.created_at + batch.output_expires_after
            record = dataclasses.replace(record, expires_at=expiry)
        made[kind] = record
    return made
