"""Many workers, each job exactly once: an API-only server and four separate ``ftserve worker``
processes on one store, and 100 real one-step jobs on ``ftserve-tiny``, each trained in a
training process of its own.

Every job must succeed with one claim and one run: one "training <job>" line over all the
workers' logs, one attempt and no claim left in its row, and exactly the event log of a job run
once — created, validated, queued, started, its one step, its checkpoint, its model, success —
with gap-free sequence numbers in that order, the terminal event last. The work must be shared
(at least two of the four workers trained jobs: the claim race decides who gets what, so an even
split is not asserted; the split is printed), within a bound of SECONDS_A_JOB per job.

Run on PostgreSQL (the multi-host store: FOR UPDATE SKIP LOCKED claims, LISTEN/NOTIFY wake-ups)
and on SQLite (the embedded default: four workers on one database file).

What a job costs (measured on the shared 2-core machine this was written on): a spawned training
process spent ~7 s importing torch (2.3 s), transformers with its model classes (1.7 s) and peft
(3.2 s), and ~2 s exiting, for ~0.4 s of work (tokenizer, model, LoRA, one step, checkpoint,
final save). Training processes now fork from a per-worker fork server that imported the engine
once (ftserve.worker.preload; 10-30 s at worker start, before its first claim, not counted in
the figures below), so 100 jobs took 38-71 s on PostgreSQL and 68-98 s on SQLite (0.4-1 s a
job over the four workers: the work itself, the child's store round trips and two model saves,
and the workers, the API and the test's polling sharing the two cores), against ~290 s for 40
jobs before.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import API_KEY, Server, chat_rows, database_url_for, upload
from tests.e2e.conftest import FAST_LEASE

pytestmark = pytest.mark.both_backends  # [sqlite] and [postgres] (tests/conftest.py)

N_WORKERS = 4
N_JOBS = 100
SECONDS_A_JOB = 3.0  # the bound, first create to last success (measured: 0.45-0.9 s a job)
STARTED = "Fine-tuning job started"
TERMINAL = "The job has successfully completed"
READY = "training fork server ready"


class LoggedWorker:
    """An ``ftserve worker`` process whose log (info level: one "training <job>" line per
    claim) goes to a file."""

    def __init__(self, server: Server, log_path: Path) -> None:
        self.log_path = log_path
        env = {
            **os.environ,
            "FTSERVE_API_KEYS": API_KEY,
            "FTSERVE_LEASE_SECONDS": FAST_LEASE,
            "FTSERVE_LOG_LEVEL": "info",
        }
        if server.database_url:
            env["FTSERVE_DATABASE_URL"] = server.database_url
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ftserve", "worker", "--data-dir", str(server.data_dir)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, deadline: float) -> None:
        """Until its training fork server has imported the engine (it claims only then)."""
        while READY not in self.log():
            assert self.proc.poll() is None, f"worker exited early:\n{self.log()}"
            assert time.monotonic() < deadline, f"worker did not start:\n{self.log()}"
            time.sleep(0.1)

    def trained(self) -> list[str]:
        return re.findall(r": training (ftjob-\S+) \(attempt", self.log())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def api_server(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[Server]:
    srv = Server(
        tmp_path / "data",
        env={"FTSERVE_WORKERS": "0"},
        database_url=database_url_for(request, backend),
    )
    srv.start()
    yield srv
    srv.stop()


def event_seqs(server: Server) -> dict[str, list[int]]:
    """Every job's event sequence numbers, read from the database itself."""
    query = "SELECT job_id, seq FROM events ORDER BY job_id, seq"
    if server.database_url:
        import psycopg

        with psycopg.connect(server.database_url) as pg:
            rows = pg.execute(query).fetchall()
    else:
        conn = sqlite3.connect(server.settings.sqlite_path)
        try:
            rows = conn.execute(query).fetchall()
        finally:
            conn.close()
    seqs: dict[str, list[int]] = {}
    for job_id, seq in rows:
        seqs.setdefault(job_id, []).append(int(seq))
    return seqs


def chronological_events(client: openai.OpenAI, job_id: str) -> list[Any]:
    return list(reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=1000))))


def expected_log(job: Any, file_id: str) -> list[str | re.Pattern[str]]:
    """The whole event log of a one-step job that ran once, oldest first."""
    return [
        f"Created fine-tuning job: {job.id}",
        f"Validating training file: {file_id}",
        "Files validated, moving job to queued state",
        STARTED,
        re.compile(r"Step 1/1: training loss=\d+\.\d\d"),
        f"Checkpoint created at step 1 with Snapshot ID: {job.fine_tuned_model}",
        f"New fine-tuned model created: {job.fine_tuned_model}",
        TERMINAL,
    ]


def matches(messages: list[str], expected: list[str | re.Pattern[str]]) -> bool:
    return len(messages) == len(expected) and all(
        e.fullmatch(m) if isinstance(e, re.Pattern) else m == e
        for m, e in zip(messages, expected, strict=True)
    )


@pytest.mark.timeout(600)  # the workers get 240 s to start, then the jobs their bound
def test_many_workers_run_each_job_exactly_once(
    api_server: Server, tmp_path: Path, backend: str
) -> None:
    bound = SECONDS_A_JOB * N_JOBS
    workers = [LoggedWorker(api_server, tmp_path / f"worker-{i}.log") for i in range(N_WORKERS)]
    try:
        deadline = time.monotonic() + 240
        for worker in workers:
            worker.wait_ready(deadline)
        client = api_server.client()
        fid = upload(client, chat_rows(10))
        began = time.monotonic()
        jobs = [
            client.fine_tuning.jobs.create(
                model="ftserve-tiny",
                training_file=fid,
                seed=i,
                hyperparameters={"n_epochs": 1, "batch_size": 10},  # 10 rows: one step
            ).id
            for i in range(N_JOBS)
        ]
        pending = set(jobs)
        while pending:
            assert time.monotonic() - began < bound, (
                f"{len(pending)} of {N_JOBS} jobs unfinished after {bound:.0f}s"
            )
            for job in client.fine_tuning.jobs.list(limit=100):
                if job.id in pending and job.status in ("succeeded", "failed", "cancelled"):
                    assert job.status == "succeeded", (job.id, job.status, job.error)
                    pending.discard(job.id)
            time.sleep(0.5)
        elapsed = time.monotonic() - began

        for job_id in jobs:
            job = client.fine_tuning.jobs.retrieve(job_id)
            messages = [e.message for e in chronological_events(client, job_id)]
            assert matches(messages, expected_log(job, fid)), (job_id, messages)
        store = api_server.open_store()
        try:
            for job_id in jobs:
                row = store.get_job(job_id)
                assert row is not None and row.attempts == 1, (job_id, row)
                assert row.claim_token is None and row.lease_owner is None, row
        finally:
            store.close()
        # The stored sequence numbers (the list above is in their order): gap-free from 1.
        stored = event_seqs(api_server)
        for job_id in jobs:
            assert stored[job_id] == list(range(1, 9)), (job_id, stored[job_id])

        per_worker = [w.trained() for w in workers]
        claims = [job for trained in per_worker for job in trained]
        assert sorted(claims) == sorted(jobs), "a job was claimed twice, or not by these workers"
        split = [len(trained) for trained in per_worker]
        print(
            f"\n[{backend}] {N_JOBS} jobs on {N_WORKERS} workers in {elapsed:.1f}s "
            f"({elapsed / N_JOBS:.2f} s a job); per worker: {split}"
        )
        assert sum(1 for n in split if n) >= 2, split
    finally:
        for worker in workers:
            worker.stop()
