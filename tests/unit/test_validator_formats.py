"""The validator holds a job's files to its method once it reads them whole: a reinforcement job
needs reinforcement rows in both files (a file whose format could not be read when the job was
created is only checked here), and the format it found rides on to the worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from ftserve.events.messages import make_event
from ftserve.files.service import FileService
from ftserve.jobs.method import Hyperparameters, Method
from ftserve.jobs.validator import JobValidator
from ftserve.store.records import FileRecord
from ftserve.store.sqlite import SqliteStore
from tests.store.records import new_job

CHAT = (
    b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
)
RFT = b'{"messages": [{"role": "user", "content": "2+2?"}], "answer": 4}\n'
GRADER = {
    "type": "string_check",
    "name": "g",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "operation": "eq",
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "db.sqlite")
    yield opened
    opened.close()


def _file(store: SqliteStore, root: Path, name: str, line: bytes) -> str:
    (root / "files").mkdir(parents=True, exist_ok=True)
    (root / "files" / name).write_bytes(line * 12)
    store.add_file(
        FileRecord(
            name, "personal", len(line) * 12, 1, f"{name}.jsonl", "fine-tune", f"files/{name}"
        )
    )
    return name


@pytest.mark.parametrize(
    ("validation", "status"), [(RFT, "queued"), (CHAT, "failed")], ids=["rft", "chat"]
)
def test_a_reinforcement_job_needs_reinforcement_rows(
    store: SqliteStore, tmp_path: Path, validation: bytes, status: str
) -> None:
    root = tmp_path / "blobs"
    job = new_job(
        status="validating_files",
        training_file=_file(store, root, "file-t", RFT),
        validation_file=_file(store, root, "file-v", validation),
        method=Method("reinforcement", Hyperparameters(), grader=GRADER),
    )
    store.create_job(job, [make_event("Created fine-tuning job")])
    JobValidator(store, FileService(store, root, reclaim_after=None), 10).validate(job.id)
    got = store.get_job(job.id)
    assert got is not None and got.status == status
    if status == "queued":
        assert got.extensions["training_format"] == "reinforcement"
        assert got.method.grader == GRADER
        return
    assert got.error is not None and got.error["param"] == "validation_file"
    assert got.error["message"] == (
        "The job failed due to a file format error in the validation file. A reinforcement job "
        "needs examples in the reinforcement (messages ending with a user message, plus the "
        "grader's item) format, but the file is in the chat (messages ending with the "
        "assistant's answer) format."
    )
    last = orjson.loads(store.event_bodies(job.id)[-1])
    assert last["level"] == "error"
