"""Gangs (one job on several workers): the leader opens its claim's gang, fenced by the claim;
other workers with room take its node ranks, each rank once even when they race; the leader
sees who joined; a gang of an earlier claim, or a closed one, takes nobody."""

from __future__ import annotations

import threading
import time

import pytest

from ftserve.store.protocol import Store
from ftserve.store.records import Claim, GangSeat
from tests.store.conftest import Opener
from tests.store.records import claimed, new_job

pytestmark = pytest.mark.both_backends


def test_a_gang_is_opened_by_its_claim_and_joined_once_per_rank(store: Store) -> None:
    store.create_job(new_job(devices=2), [])
    job = store.claim_job("leader", now=1.0, lease_seconds=60, events=[], free=2)
    assert job is not None and job.claim_token is not None
    claim = Claim(job.id, job.claim_token)
    assert not store.open_gang(Claim(job.id, "stale"), 3, 2, "10.0.0.1", 29500, 1.0)
    assert store.join_gang("w1", free=2, now=1.0) is None  # nothing opened yet
    assert store.open_gang(claim, 3, 2, "10.0.0.1", 29500, 1.0)
    # The leader does not join its own gang; a worker without room for 2 devices cannot.
    assert store.join_gang("leader", free=4, now=1.0) is None
    assert store.join_gang("small", free=1, now=1.0) is None
    first = store.join_gang("w1", free=2, now=2.0)
    assert first == GangSeat(claim, 1, 3, 2, "10.0.0.1", 29500)
    assert store.join_gang("w1", free=4, now=2.0) is None  # one rank per worker
    second = store.join_gang("w2", free=2, now=3.0)
    assert second is not None and second.node_rank == 2
    assert store.join_gang("w3", free=2, now=3.0) is None  # full
    assert store.gang_members(claim) == ["w1", "w2"]
    assert store.gang_members(Claim(job.id, "stale")) == []
    store.close_gang(claim)
    assert store.gang_members(claim) == []


def test_a_new_claim_replaces_the_gang_and_a_stopped_job_takes_nobody(store: Store) -> None:
    store.create_job(new_job(), [])
    job, claim = claimed(store, "leader")
    assert store.open_gang(claim, 2, 1, "127.0.0.1", 1000, 1.0)
    # The job is requeued (its run ended) and claimed again: the old gang is dead.
    store.update_job(
        job.id,
        expect=["running"],
        changes={"status": "queued", "claim_token": None, "lease_owner": None},
    )
    assert store.join_gang("w1", free=1, now=2.0) is None
    _, again = claimed(store, "other")
    assert again.token != claim.token
    assert store.open_gang(again, 2, 1, "127.0.0.2", 2000, 3.0)
    seat = store.join_gang("leader", free=1, now=3.0)  # the old leader may follow now
    assert seat == GangSeat(again, 1, 2, 1, "127.0.0.2", 2000)
    assert store.gang_members(again) == ["leader"]
    # A cancelled job's gang (its claim still set while the run stops) takes nobody.
    store.close_gang(again)
    assert store.open_gang(again, 3, 1, "127.0.0.2", 2000, 4.0)
    store.update_job(job.id, expect=["running"], changes={"status": "cancelled"})
    assert store.join_gang("w9", free=1, now=5.0) is None


def test_racing_workers_take_each_rank_once(open_store: Opener) -> None:
    setup = open_store()
    setup.create_job(new_job(), [])
    _, claim = claimed(setup, "leader")
    assert setup.open_gang(claim, 4, 1, "127.0.0.1", 1000, time.time())
    stores = [open_store() for _ in range(6)]
    seats: list[GangSeat] = []
    start = threading.Barrier(len(stores))

    def worker(i: int) -> None:
        start.wait()
        for _ in range(20):  # a worker that lost a race asks again, as its next cycle would
            seat = stores[i].join_gang(f"w{i}", 1, time.time())
            if seat is not None:
                seats.append(seat)
                return

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(s.node_rank for s in seats) == [1, 2, 3]
    assert len(setup.gang_members(claim)) == 3
