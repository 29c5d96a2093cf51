"""Jobs on several devices in the queue: a claim takes only a job that fits the claimer's free
devices ("auto" asks for what it takes on that worker), workers record their capacity, and the
queued jobs no live worker could fit are found once (until their keyed event is written)."""

from __future__ import annotations

import pytest

from ftserve.events import messages as wording
from ftserve.store.protocol import Store
from tests.store.records import new_job

pytestmark = pytest.mark.both_backends


def test_a_claim_takes_the_oldest_job_that_fits(store: Store) -> None:
    big, auto, small = new_job(devices=3), new_job(devices=0), new_job(devices=1)
    for job in (big, auto, small):
        store.create_job(job, [])
    # Two free of four: the 3-device job and "auto" (all four) wait, the 1-device job goes.
    got = store.claim_job("w1", now=1.0, lease_seconds=5, events=[], free=2, auto=4)
    assert got is not None and (got.id, got.devices) == (small.id, 1)
    assert store.claim_job("w1", now=1.0, lease_seconds=5, events=[], free=2, auto=4) is None
    got = store.claim_job("w1", now=1.0, lease_seconds=5, events=[], free=3, auto=4)
    assert got is not None and got.id == big.id
    # On a CPU worker "auto" is one process.
    got = store.claim_job("w2", now=1.0, lease_seconds=5, events=[], free=1, auto=1)
    assert got is not None and got.id == auto.id


def test_jobs_no_live_worker_fits_are_found_until_told(store: Store) -> None:
    fits, too_big, auto = new_job(devices=2), new_job(devices=8), new_job(devices=0)
    for job in (fits, too_big, auto):
        store.create_job(job, [])
    store.record_worker("gpu-box", devices=4, free=1, auto=4, now=100.0)
    store.record_worker("gone", devices=16, free=16, auto=16, now=10.0)  # stale
    unfit = store.unfit_jobs(live_since=50.0, told=wording.NO_WORKER_FITS, limit=10)
    assert [j.id for j in unfit] == [too_big.id]
    store.update_job(too_big.id, expect=["queued"], changes={}, events=[wording.no_worker_fits(8)])
    assert store.unfit_jobs(live_since=50.0, told=wording.NO_WORKER_FITS, limit=10) == []
    # The stale row is dropped; with no worker at all every queued job fits none.
    store.forget_workers("gpu-box", seen_before=50.0)
    unfit = store.unfit_jobs(live_since=0.0, told=wording.NO_WORKER_FITS, limit=10)
    assert [j.id for j in unfit] == [fits.id, auto.id]
    # A worker says its capacity again (the upsert replaces its row).
    store.record_worker("cpu", devices=1, free=0, auto=1, now=200.0)
    store.record_worker("cpu", devices=2, free=2, auto=1, now=201.0)
    assert [j.id for j in store.unfit_jobs(200.5, wording.NO_WORKER_FITS, 10)] == []
