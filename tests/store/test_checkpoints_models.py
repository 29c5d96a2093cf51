"""Checkpoints (pages by step, newest first; one row per step) and fine-tuned models (the jobs
that made them, and their deletion)."""

from __future__ import annotations

import pytest

from ftserve.store.protocol import Store, UnknownCursor
from ftserve.store.records import CheckpointRecord
from tests.store.records import claimed, new_job

pytestmark = pytest.mark.both_backends


def test_checkpoint_pages_walk_newest_step_first(store: Store) -> None:
    store.create_job(new_job(), [])
    job, claim = claimed(store)
    for step in (10, 20, 30):
        ckpt = CheckpointRecord(f"ftckpt_{step}", job.id, step, step, f"m{step}", {"s": step}, "p")
        store.write_claimed(claim, add_checkpoint=ckpt)
    # The same step again (a resumed run) replaces the row.
    again = CheckpointRecord("ftckpt_20b", job.id, 99, 20, "m20", {"s": 2}, "q", "pause")
    store.write_claimed(claim, add_checkpoint=again)
    first = store.list_checkpoints("personal", job.id, after=None, limit=2)
    assert first is not None and first.has_more
    assert [(c.id, c.step_number) for c in first.items] == [("ftckpt_30", 30), ("ftckpt_20", 20)]
    assert (first.items[1].created_at, first.items[1].metrics) == (99, {"s": 2})
    assert (first.items[1].path, first.items[1].kind) == ("q", "pause")
    rest = store.list_checkpoints(None, job.id, after="ftckpt_20", limit=2)
    assert rest is not None and [c.id for c in rest.items] == ["ftckpt_10"] and not rest.has_more
    assert store.list_checkpoints("other", job.id, after=None, limit=2) is None
    with pytest.raises(UnknownCursor):
        store.list_checkpoints("personal", job.id, after="ftckpt_nope", limit=2)
    store.write_claimed(claim, fence="held", drop_checkpoints=["ftckpt_30"])
    left = store.list_checkpoints(None, job.id, after=None, limit=10)
    assert left is not None and [c.id for c in left.items] == ["ftckpt_20", "ftckpt_10"]


def test_models_of_succeeded_jobs_and_their_deletion(store: Store) -> None:
    jobs = [new_job(fine_tuned_model=f"ft:m:personal::{i}") for i in range(3)]
    for job in jobs:
        store.create_job(job, [])
    store.create_job(new_job("other", fine_tuned_model="ft:m:other::9"), [])
    for job, finished in zip(jobs, (30, None, 20), strict=True):
        store.update_job(
            job.id, expect=None, changes={"status": "succeeded", "finished_at": finished}
        )
    queued = new_job(fine_tuned_model="ft:m:personal::q")
    store.create_job(queued, [])
    # Oldest finish first (no finish time before any).
    assert [j.id for j in store.succeeded_jobs("personal")] == [jobs[1].id, jobs[2].id, jobs[0].id]
    found = store.job_for_model("personal", "ft:m:personal::q")
    assert found is not None and found.id == queued.id  # in any status
    assert store.job_for_model("other", "ft:m:personal::q") is None
    names = ["ft:m:personal::0", "ft:m:personal::0:ckpt-step-2"]
    assert store.delete_models("personal", jobs[0].id, names, 5) == names
    assert store.delete_models("personal", jobs[0].id, names[:1], 6) == []  # deleted before
    assert store.delete_models("other", jobs[1].id, ["ft:m:personal::1"], 6) == []
    assert store.delete_models("personal", queued.id, ["ft:m:personal::q"], 6) == []
    assert store.deleted_models("personal") == set(names)
    assert store.deleted_models("personal", ["ft:m:personal::0", "ft:m:personal::1"]) == {
        "ft:m:personal::0"
    }
    assert store.deleted_models("personal", []) == set()
    assert store.deleted_models("other") == set()
