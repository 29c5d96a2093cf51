"""Job start: the time from a job becoming ``running`` to its first training step, for each way
the worker can start a training process, side by side in one run.

- fork server: forked from a process that imported the training engine once (CPU workers);
- warm spawned: a spawned child that imported the engine ahead of time is handed the job (GPU
  workers; CUDA is not initialised until the job picks its device);
- cold spawn: a child spawned for the job, importing the engine first (GPU workers before the
  warm children; shown for comparison).

A real worker (``ftserve.worker.runner.Worker``, in this process, as ``ftserve serve`` runs it)
on a SQLite store trains ``ftserve-tiny`` jobs (10 chat rows, 1 epoch, batch 1) on CPU, each
job created when the previous one is over and the worker is ready again (its fork server or a
warm child ready: the steady state of jobs that do not arrive back to back). "running" is when
the claim committed (timed around ``claim_job``), "first step" when the training process had
computed it (its step log, FTSERVE_STEP_LOG_DIR). Goal: running -> first step <= 1 s, every way.

Run: .venv/bin/python bench/start_latency.py [--jobs 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ftserve.blobs import open_cache
from ftserve.config import Settings
from ftserve.events import messages
from ftserve.files.service import FileService
from ftserve.ids import job_id
from ftserve.modeling.sources import materialize
from ftserve.store.open import open_store
from ftserve.store.records import JobRecord
from ftserve.worker.runner import StartMethod, Worker

METHODS: dict[StartMethod, str] = {
    "fork": "fork server",
    "warm": "warm spawned",
    "cold": "cold spawn",
}


def chat_rows(n: int) -> bytes:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} plus {i}?"},
                {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."},
            ]
        }
        for i in range(n)
    ]
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def wait(what: str, condition: Any, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.005)


def measure(method: StartMethod, work: Path, jobs: int, threads: int) -> dict[str, Any]:
    settings = Settings(
        data_dir=work / method,
        device="cpu",
        torch_threads=threads,
        step_log_dir=work / method / "steps",
        log_level="warning",
    )
    settings.data_dir.mkdir(parents=True)
    materialize("ftserve-tiny", settings.models_dir)  # built once, as after a server's first job
    store = open_store(settings)
    files = FileService(store, open_cache(settings), reclaim_after=None)
    training = files.write_generated("personal", "train.jsonl", "fine-tune", chat_rows(10))
    store.add_file(training)

    claimed_at: dict[str, float] = {}
    claim = store.claim_job

    def timed_claim(*args: Any, **kwargs: Any) -> JobRecord | None:
        job = claim(*args, **kwargs)
        if job is not None:
            claimed_at[job.id] = time.time()
        return job

    store.claim_job = timed_claim  # type: ignore[method-assign]
    worker = Worker(settings, store, start_method=method)
    began = time.monotonic()
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    ready_s = None
    found: dict[str, list[float]] = {"queued_to_running": [], "running_to_first_step": []}
    try:
        for n in range(jobs):
            wait("the worker to be ready", worker._can_start)
            if ready_s is None:
                ready_s = time.monotonic() - began
            job = JobRecord(
                id=job_id(),
                organization="personal",
                model="ftserve-tiny",
                model_source="ftserve-tiny",
                status="queued",
                created_at=int(time.time()),
                training_file=training.id,
                validation_file=None,
                hyperparameters={"n_epochs": 1, "batch_size": 1},
                method={"type": "supervised"},
                seed=n,
            )
            queued = time.time()
            store.create_job(job, [messages.created(job.id)])
            wait(f"{job.id} to end", lambda j=job.id: _status(store, j) in ("succeeded", "failed"))
            assert _status(store, job.id) == "succeeded", store.get_job(job.id)
            (log,) = settings.step_log_dir.glob(f"{job.id}.*.log")  # type: ignore[union-attr]
            first_step = float(log.read_text().split("\n", 1)[0].split()[1])
            found["queued_to_running"].append(claimed_at[job.id] - queued)
            found["running_to_first_step"].append(first_step - claimed_at[job.id])
        if worker.warm is not None:
            assert worker.warm.handed == list(claimed_at), "a job did not go to a warm child"
    finally:
        worker.stop()
        thread.join(timeout=60)
        store.close()
    return {"ready_s": ready_s, **found}


def _status(store: Any, job: str) -> str:
    record = store.get_job(job)
    return str(record.status) if record is not None else "missing"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=3, help="jobs per way of starting")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="ftserve-start-latency-") as tmp:
        for method in METHODS:
            print(f"{METHODS[method]}: {args.jobs} job(s) ...", flush=True)
            results[method] = measure(method, Path(tmp), args.jobs, args.threads)

    print(f"\n== job start, ftserve-tiny on CPU, {args.jobs} jobs each (seconds)")
    print(f"{'':26}" + "".join(f"{METHODS[m]:>16}" for m in METHODS))
    print(
        f"{'worker ready after':26}" + "".join(f"{results[m]['ready_s']:>16.2f}" for m in METHODS)
    )
    for key, label in (
        ("queued_to_running", "queued -> running"),
        ("running_to_first_step", "running -> 1st step"),
    ):
        for name, pick in (("median", statistics.median), ("max", max)):
            cells = "".join(f"{pick(results[m][key]):>16.2f}" for m in METHODS)
            print(f"{label + ' ' + name:26}{cells}")
    worst = max(max(results[m]["running_to_first_step"]) for m in ("fork", "warm"))
    print(f"\nrunning -> first step, fork server and warm spawned: max {worst:.2f} s (goal <= 1 s)")


if __name__ == "__main__":
    main()
