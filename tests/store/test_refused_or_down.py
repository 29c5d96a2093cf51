"""A refused write and a database that is down are different things to a training process.

A write the claim fence refuses (``WriteRefused``) is an answer: the job was paused or
cancelled, or another claim has it, and the trainer stops — "pause", "cancel", or "cancel" with
the claim lost. A database that cannot be reached (``StoreUnavailable``, a ``StoreError``) is no
answer: the training process's store (worker/store_retry.py) waits it out while its worker
lives, and the step's write lands once; past its patience the error propagates — never taken
for a stop — and nothing is recorded for the job, which stays running under its claim for the
worker to requeue. Driven through the real hooks on real stores; the outage is real too
(PostgreSQL refusing connections to the database, its backends terminated).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from ftserve.errors import StoreError
from ftserve.events.messages import make_event
from ftserve.store.protocol import Store
from ftserve.store.records import Claim, JobRecord
from ftserve.training.spec import StepMetrics
from ftserve.worker.hooks import StoreHooks
from ftserve.worker.lease import RELEASED
from ftserve.worker.store_retry import retrying
from tests.store.records import new_job as _job


def claimed(store: Store, worker: str = "w1") -> tuple[JobRecord, Claim]:
    job = store.claim_job(worker, time.time(), 60, [make_event("Fine-tuning job started")])
    assert job is not None and job.claim_token is not None
    return job, Claim(job.id, job.claim_token)


def step(n: int) -> StepMetrics:
    return StepMetrics(step=n, total_steps=10, train_loss=1.0, train_mean_token_accuracy=0.5)


def logged_steps(store: Store, job_id: str) -> list[int]:
    return [int(orjson.loads(b)["data"]["step"]) for b in store.event_bodies(job_id, "metrics")]


@pytest.mark.both_backends
def test_a_refused_write_is_the_signal_to_stop(store: Store, tmp_path: Path) -> None:
    store.create_job(_job(), [])
    job, claim = claimed(store)
    hooks = StoreHooks(store, job, claim, lambda: True, tmp_path)
    assert hooks.on_step(step(1)) == "continue"
    store.update_job(
        job.id, expect=["running"], changes={"status": "paused"}, events=[make_event("paused")]
    )
    assert hooks.on_step(step(2)) == "pause" and not hooks.lost
    store.update_job(
        job.id, expect=["paused"], changes={"status": "cancelled"}, events=[make_event("cancel")]
    )
    assert hooks.on_step(step(3)) == "cancel" and not hooks.lost
    assert logged_steps(store, job.id) == [1]

    # Another claim took the job over: the stale run stops and lets go of nothing.
    store.create_job(_job(), [])
    other, stale = claimed(store)
    hooks = StoreHooks(store, other, stale, lambda: True, tmp_path)
    store.update_job(
        other.id, expect=["running"], changes={"status": "queued", **RELEASED}, events=[]
    )
    taken, current = claimed(store, "w2")
    assert taken.id == other.id and current.token != stale.token
    assert hooks.on_step(step(1)) == "cancel" and hooks.lost
    assert logged_steps(store, other.id) == []


def _refuse_connections(url: str, admin_url: str, refuse: bool) -> None:
    """The database refuses new connections (and its backends are ended), or accepts again."""
    import psycopg

    name = url.split("?")[0].rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {'false' if refuse else 'true'}")
        if refuse:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


@pytest.fixture
def pg(pg_store_url: str, pg_url: str) -> Iterator[tuple[Store, str, str]]:
    from ftserve.store.postgres import PostgresStore

    opened = PostgresStore(pg_store_url)
    yield opened, pg_store_url, pg_url
    _refuse_connections(pg_store_url, pg_url, refuse=False)
    opened.close()


def test_an_outage_is_waited_out_not_taken_for_a_stop(
    pg: tuple[Store, str, str], tmp_path: Path
) -> None:
    base, url, admin = pg
    base.create_job(_job(), [])
    job, claim = claimed(base)
    store = retrying(base, lambda: True, patience=60)
    hooks = StoreHooks(store, job, claim, lambda: True, tmp_path)
    assert hooks.on_step(step(1)) == "continue"
    _refuse_connections(url, admin, refuse=True)
    back = threading.Timer(1.5, _refuse_connections, args=(url, admin, False))
    back.start()
    t0 = time.monotonic()
    try:
        answer = hooks.on_step(step(2))
    finally:
        back.join()
    assert answer == "continue" and not hooks.lost
    assert time.monotonic() - t0 >= 1.4  # it did wait for the database
    assert logged_steps(base, job.id) == [1, 2]  # the step's write landed, once
    assert hooks.on_step(step(3)) == "continue"


def test_an_outage_past_patience_raises_and_records_nothing(
    pg: tuple[Store, str, str], tmp_path: Path
) -> None:
    base, url, admin = pg
    base.create_job(_job(), [])
    job, claim = claimed(base)
    hooks = StoreHooks(
        retrying(base, lambda: True, patience=1.0), job, claim, lambda: True, tmp_path
    )
    _refuse_connections(url, admin, refuse=True)
    with pytest.raises(StoreError):
        hooks.on_step(step(1))
    assert not hooks.lost
    # A worker that is gone is not waited for: the error comes at once.
    gone = StoreHooks(
        retrying(base, lambda: False, patience=60), job, claim, lambda: True, tmp_path
    )
    t0 = time.monotonic()
    with pytest.raises(StoreError):
        gone.on_step(step(1))
    assert time.monotonic() - t0 < 5
    _refuse_connections(url, admin, refuse=False)
    deadline = time.monotonic() + 15
    while True:
        try:
            now = base.get_job(job.id)
            break
        except StoreError:
            assert time.monotonic() < deadline, "the database did not come back"
            time.sleep(0.2)
    # Nothing was recorded as a stop: the job runs on under its claim, no step logged.
    assert now is not None and now.status == "running" and now.claim_token == claim.token
    assert logged_steps(base, job.id) == []
