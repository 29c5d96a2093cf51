"""A job started the way GPU workers start theirs: handed to a warm spawned child (worker/warm.py).

On CPU the worker forks training processes from its fork server; GPU workers spawn them, and
keep one spawned, imported child ready per free slot. Here a real worker (in this process, as
``ftserve serve`` embeds it) is made to take that path on CPU: the job must train to success in
the warm child it was handed to, and a fresh child must be started for the next job. How fast
each path reaches its first step is bench/start_latency.py's to measure.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ftserve.blobs import open_cache
from ftserve.config import Settings
from ftserve.events import messages
from ftserve.files.service import FileService
from ftserve.ids import job_id
from ftserve.store.open import open_store
from ftserve.store.records import JobRecord
from ftserve.worker.runner import Worker
from tests.conftest import chat_rows


def _wait(what: str, condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_job_trains_in_a_warm_spawned_child(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", device="cpu", log_level="warning")
    settings.data_dir.mkdir()
    store = open_store(settings)
    files = FileService(store, open_cache(settings), reclaim_after=None)
    rows = b"".join(json.dumps(r).encode() + b"\n" for r in chat_rows(4))
    training = files.write_generated("personal", "train.jsonl", "fine-tune", rows)
    store.add_file(training)
    job = JobRecord(
        id=job_id(),
        organization="personal",
        model="ftserve-tiny",
        model_source="ftserve-tiny",
        status="queued",
        created_at=int(time.time()),
        training_file=training.id,
        validation_file=None,
        hyperparameters={"n_epochs": 1, "batch_size": 2},
        method={"type": "supervised"},
        seed=0,
    )
    store.create_job(job, [messages.created(job.id)])

    worker = Worker(settings, store, start_method="warm")
    pool = worker.warm
    assert pool is not None
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        _wait(
            "the job to end", lambda: _status(store, job.id) in ("succeeded", "failed", "cancelled")
        )
        record = store.get_job(job.id)
        assert record is not None and record.status == "succeeded", record
        assert record.attempts == 1
        assert pool.handed == [job.id]  # trained by the warm child, not a process of its own
        assert pool.broken is None
        # The slot is free again: another child is being made ready for the next job.
        _wait("a new warm child", lambda: len(pool._children) == 1)
        (fresh,) = pool._children
        assert fresh.process.is_alive() and fresh.process.name == "ftserve-train-warm"
    finally:
        worker.stop()
        thread.join(timeout=60)
        store.close()
    assert not thread.is_alive()
    assert not fresh.process.is_alive()  # the stopped worker left no idle child behind


def _status(store: object, job: str) -> str:
    record = store.get_job(job)  # type: ignore[attr-defined]
    return str(record.status) if record is not None else "missing"
