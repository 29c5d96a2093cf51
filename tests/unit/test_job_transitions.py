"""A user's cancel/pause lands even when the job's status moves between the service's read and
its write (the validator queues the job, a worker claims it): CI once saw a cancel of a job
that had just been queued answer "Job … is queued; only a job that is … queued … can be
cancelled"."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from ftserve.errors import StateConflict
from ftserve.events.messages import make_event
from ftserve.ids import job_id
from ftserve.jobs.service import JobService
from ftserve.store.records import JobRecord, NewEvent
from ftserve.store.sqlite import SqliteStore


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
    jid = job_id()
    store.create_job(
        JobRecord(
            id=jid,
            organization="personal",
            model="ftserve-tiny",
            model_source="ftserve-tiny",
            status=status,
            created_at=1,
            training_file="file-x",
            validation_file=None,
            hyperparameters={"n_epochs": "auto"},
            method={"type": "supervised"},
            seed=1,
        ),
        [make_event("Created fine-tuning job")],
    )
    return jid


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
