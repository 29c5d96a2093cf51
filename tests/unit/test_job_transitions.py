"""Jobs meeting a world that moves under them.

A user's cancel/pause lands even when the job's status moves between the service's read and
its write (the validator queues the job, a worker claims it): CI once saw a cancel of a job
that had just been queued answer "Job … is queued; only a job that is … queued … can be
cancelled". And a job whose files cannot be read for a while (blob store or database down)
waits, then is validated, instead of staying in validating_files for good."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from ftserve.blobs.protocol import BlobUnavailable
from ftserve.errors import StateConflict
from ftserve.events.messages import make_event
from ftserve.files.service import FileService
from ftserve.jobs.service import JobService
from ftserve.jobs.validator import JobValidator
from ftserve.store.records import FileRecord, JobRecord, NewEvent
from ftserve.store.sqlite import SqliteStore
from tests.store.records import new_job as _job


class _MovesFirst(SqliteStore):
    """A real store whose next ``update_job`` call first lets another writer move the job
    (the seam the race goes through; the move is a real committed transition)."""

    moves: list[tuple[list[str], dict[str, Any]]]

    def update_job(
        self,
        job_id: str,
        *,
        expect: Collection[str] | None,
        changes: Mapping[str, Any],
        events: Sequence[NewEvent] = (),
        expect_claim: str | None = None,
    ) -> JobRecord | None:
        if self.moves:
            before, after = self.moves.pop(0)
            assert super().update_job(job_id, expect=before, changes=after) is not None
        return super().update_job(
            job_id, expect=expect, changes=changes, events=events, expect_claim=expect_claim
        )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[_MovesFirst]:
    opened = _MovesFirst(tmp_path / "db.sqlite")
    opened.moves = []
    yield opened
    opened.close()


def _created(store: SqliteStore, status: str = "validating_files") -> str:
    job = dataclasses.replace(_job(), status=status)
    store.create_job(job, [make_event("Created fine-tuning job")])
    return job.id


def _service(store: SqliteStore) -> JobService:
    # cancel and pause read and write jobs only: files and models are never consulted.
    return JobService(store, cast(Any, None), cast(Any, None))


def test_cancel_lands_after_the_validator_queued_the_job(store: _MovesFirst) -> None:
    jid = _created(store)
    store.moves = [(["validating_files"], {"status": "queued"})]
    job = _service(store).cancel("personal", jid)
    assert job.status == "cancelled"
    assert store.moves == []


def test_pause_lands_after_two_moves(store: _MovesFirst) -> None:
    # Claimed, then requeued (a worker lost): each write finds the status it read gone.
    jid = _created(store, "queued")
    store.moves = [
        (["queued"], {"status": "running"}),
        (["running"], {"status": "queued"}),
    ]
    job = _service(store).pause("personal", jid)
    assert job.status == "paused"


def test_a_move_to_a_final_status_is_still_refused(store: _MovesFirst) -> None:
    jid = _created(store)
    store.moves = [(["validating_files"], {"status": "failed", "finished_at": 2})]
    with pytest.raises(StateConflict, match="has already failed"):
        _service(store).cancel("personal", jid)
    got = store.get_job(jid, "personal")
    assert got is not None and got.status == "failed"


class _StoreDownFirst(FileService):
    """Real file service whose blob store cannot be reached for its first ``outages`` reads."""

    def __init__(self, store: SqliteStore, root: Path, outages: int) -> None:
        super().__init__(store, root, reclaim_after=None)
        self.outages = outages
        self.reads = 0

    def blob_path(self, f: FileRecord) -> Path:
        self.reads += 1
        if self.reads <= self.outages:
            raise BlobUnavailable("s3://bucket/files/x: connection refused")
        return super().blob_path(f)


def _events(store: SqliteStore, jid: str) -> list[dict[str, Any]]:
    return [orjson.loads(e) for e in store.event_bodies(jid)]


def test_a_job_whose_file_cannot_be_read_now_waits_then_is_validated(
    store: _MovesFirst, tmp_path: Path
) -> None:
    blobs = tmp_path / "blobs"
    (blobs / "files").mkdir(parents=True)
    line = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
    (blobs / "files" / "file-abc").write_bytes(line * 12)
    store.add_file(
        FileRecord(
            id="file-x",
            organization="personal",
            bytes=len(line) * 12,
            created_at=1,
            filename="train.jsonl",
            purpose="fine-tune",
            blob="files/file-abc",
        )
    )
    jid = _created(store)
    files = _StoreDownFirst(store, blobs, outages=2)
    validator = JobValidator(store, files, min_examples=10)
    validator.start()  # picks up the job left validating_files
    try:
        deadline = time.monotonic() + 30
        while (job := store.get_job(jid)) is not None and job.status == "validating_files":
            assert time.monotonic() < deadline, "the job was never validated"
            time.sleep(0.05)
    finally:
        validator.stop()
    assert job is not None and job.status == "queued"
    assert files.reads == 3  # two outages (1 s, then 2 s apart), then the check that passed
    messages = [(e["level"], e["message"]) for e in _events(store, jid)]
    waiting = [m for m in messages if m[0] == "warn"]
    assert len(waiting) == 1 and "cannot be read right now" in waiting[0][1]  # said once
    assert messages[-1] == ("info", "Files validated, moving job to queued state")
