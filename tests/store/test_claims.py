"""The queue and its fences: claims, leases, claimed writes (WriteRefused with its reason),
one transaction per write, racing claims, and expired leases in queue order."""

from __future__ import annotations

import threading
import time

import pytest

from ftserve.events.messages import make_event
from ftserve.store.protocol import Store, WriteRefused
from ftserve.store.records import CheckpointRecord, Claim, FileRecord, JobRecord
from tests.store.conftest import Opener
from tests.store.records import claimed, messages, new_job

pytestmark = pytest.mark.both_backends


def test_update_guard_and_claim(store: Store) -> None:
    job = new_job()
    store.create_job(job, [])
    assert store.update_job(job.id, expect=["running"], changes={"status": "failed"}) is None
    got = store.claim_job("w1", now=10.0, lease_seconds=5, events=[make_event("started")])
    assert got is not None and got.status == "running" and got.lease_owner == "w1"
    assert got.attempts == 1 and got.claim_token and got.lease_expires_at == 15.0
    assert store.claim_job("w2", now=10.0, lease_seconds=5, events=[]) is None
    mine = Claim(job.id, got.claim_token)
    assert not store.renew_lease(Claim(job.id, "not-the-token"), 99.0)
    assert store.renew_lease(mine, 99.0)
    assert [j.id for j in store.expired_leases(100.0)] == [job.id]
    assert store.expired_leases(98.0) == []
    assert store.update_job(job.id, expect=None, expect_claim="other", changes={}) is None
    updated = store.update_job(job.id, expect=None, expect_claim=got.claim_token, changes={})
    assert updated is not None and updated.lease_expires_at == 99.0
    assert messages(store, job.id) == ["started"]
    assert store.update_job("ftjob-nope", expect=None, changes={}) is None


def test_unknown_columns_are_refused(store: Store) -> None:
    from ftserve.errors import StoreError

    job = new_job()
    store.create_job(job, [])
    with pytest.raises(StoreError, match="not job columns"):
        store.update_job(job.id, expect=None, changes={"stauts": "failed"})
    _, claim = claimed(store)
    with pytest.raises(StoreError, match="not job columns"):
        store.write_claimed(claim, changes={"seq": 1})


def test_expired_leases_are_in_queue_order(store: Store) -> None:
    jobs = [new_job() for _ in range(4)]
    for job in jobs:
        store.create_job(job, [])
    for i in range(4):
        store.claim_job(f"w{i}", now=float(10 - i), lease_seconds=1, events=[])
    # Leases end in the reverse order of the claims; the answer follows the queue (seq).
    assert [j.id for j in store.expired_leases(100.0)] == [j.id for j in jobs]


def test_every_claim_gets_a_new_token_even_for_the_same_worker(store: Store) -> None:
    store.create_job(new_job(), [])
    job, first = claimed(store)
    assert store.release_claim(first)
    assert not store.release_claim(first)  # released already: no longer current
    released = store.get_job(job.id)
    assert released is not None and released.claim_token is None
    assert released.lease_owner is None and released.status == "running"
    store.update_job(job.id, expect=["running"], changes={"status": "queued"})
    _, second = claimed(store)
    assert second.token != first.token
    with pytest.raises(WriteRefused) as info:
        store.write_claimed(first, events=[make_event("stale")])
    assert not info.value.claim_current and info.value.status == "running"
    store.write_claimed(second, events=[make_event("current")])
    assert messages(store, job.id) == ["current"]
    with pytest.raises(WriteRefused) as info:
        store.write_claimed(Claim("ftjob-nope", "t"), events=[])
    assert info.value.status is None and not info.value.claim_current


def test_claimed_writes_stop_when_the_user_stops_the_job(store: Store) -> None:
    store.create_job(new_job(), [])
    job, claim = claimed(store)
    assert store.write_claimed(claim, events=[make_event("Step 1", key="step:1")]) == "running"
    store.update_job(
        job.id, expect=["running"], changes={"status": "paused"}, events=[make_event("paused")]
    )
    # A step's metrics after the pause are refused, with the reason the trainer acts on ...
    with pytest.raises(WriteRefused) as info:
        store.write_claimed(claim, events=[make_event("Step 2", key="step:2")])
    assert info.value.claim_current and info.value.status == "paused"
    # ... while the holder may still record its pause checkpoint, without an event.
    ckpt = CheckpointRecord("ftckpt_a", job.id, 1, 2, "ft:x:ckpt-step-2", {}, "p", "pause")
    assert store.write_claimed(claim, fence="held", add_checkpoint=ckpt) == "paused"
    with pytest.raises(WriteRefused):
        store.write_claimed(claim, fence="held", events=[make_event("after pause")])
    page = store.list_checkpoints(None, job.id, after=None, limit=10)
    assert page is not None and [(c.step_number, c.kind) for c in page.items] == [(2, "pause")]
    store.update_job(
        job.id, expect=["paused"], changes={"status": "cancelled"}, events=[make_event("cancelled")]
    )
    for fence in ("running", "held"):
        with pytest.raises(WriteRefused) as info:
            store.write_claimed(claim, fence=fence, changes={"estimated_finish": 1})  # type: ignore[arg-type]
        assert info.value.status == "cancelled"
    assert store.release_claim(claim)  # letting go is always allowed to the holder
    assert messages(store, job.id) == ["Step 1", "paused", "cancelled"]


def test_claimed_write_is_one_transaction(store: Store) -> None:
    store.create_job(new_job(), [])
    job, claim = claimed(store)
    old = CheckpointRecord("ftckpt_old", job.id, 1, 1, "n1", {}, "a", "epoch")
    store.write_claimed(claim, add_checkpoint=old)
    result = FileRecord("file-r", "personal", 3, 1, "step_metrics.csv", "fine-tune-results", "b")
    new = CheckpointRecord("ftckpt_new", job.id, 1, 2, "n2", {}, "c", "epoch")
    store.write_claimed(
        claim,
        changes={"status": "succeeded", "claim_token": None},
        events=[make_event("done")],
        add_checkpoint=new,
        drop_checkpoints=["ftckpt_old"],
        add_files=[result],
    )
    page = store.list_checkpoints(None, job.id, after=None, limit=10)
    assert page is not None and [c.id for c in page.items] == ["ftckpt_new"]
    assert store.get_file("personal", "file-r", 0) is not None
    assert store.get_job(job.id).status == "succeeded"  # type: ignore[union-attr]


def test_a_refused_claimed_write_writes_nothing(store: Store) -> None:
    store.create_job(new_job(), [])
    job, claim = claimed(store)
    store.update_job(job.id, expect=None, changes={"status": "cancelled"})
    result = FileRecord("file-r", "personal", 3, 1, "f.csv", "fine-tune-results", "b")
    ckpt = CheckpointRecord("ftckpt_a", job.id, 1, 2, "n", {}, "p", "epoch")
    with pytest.raises(WriteRefused):
        store.write_claimed(claim, add_checkpoint=ckpt, add_files=[result])
    assert store.get_file("personal", "file-r", 0) is None
    page = store.list_checkpoints(None, job.id, after=None, limit=10)
    assert page is not None and page.items == []


def test_racing_claims_never_share_a_job(open_store: Opener) -> None:
    setup = open_store()
    jobs = [new_job() for _ in range(20)]
    for job in jobs:
        setup.create_job(job, [])
    stores = [open_store() for _ in range(4)]
    got: list[list[JobRecord]] = [[] for _ in stores]
    start = threading.Barrier(len(stores))

    def worker(i: int) -> None:
        start.wait()
        while True:
            job = stores[i].claim_job(f"w{i}", time.time(), 60, [make_event(f"claimed by w{i}")])
            if job is None:
                # SKIP LOCKED can miss a job another worker is claiming right now; ask again
                # only while some are left.
                if not setup.jobs_with_status("queued", 1):
                    return
                continue
            got[i].append(job)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    ids = [j.id for mine in got for j in mine]
    assert sorted(ids) == sorted(j.id for j in jobs)  # every job once, none twice
    for job in jobs:
        now = setup.get_job(job.id)
        assert now is not None and now.status == "running" and now.attempts == 1
        assert len(messages(setup, job.id)) == 1
    assert len({j.claim_token for mine in got for j in mine}) == 20
    assert [j.id for j in setup.jobs_with_status("running", 100)] == [j.id for j in jobs]
    assert len(setup.jobs_with_status("running", 3)) == 3
