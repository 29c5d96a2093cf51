"""A job's event log ends where the job ended: cancel and pause at random moments, the
latency of a stop request measured from the training process's own step log, and the claim
fence tested by freezing a worker (alone, and with its training process) until another worker
has taken over and finished the job. All of it is about the store's part, so it runs on
PostgreSQL too (the fence is row locks there, the wake-ups LISTEN/NOTIFY), except the latency
with the embedded worker: on PostgreSQL it is the separate worker's test again (the same fence
refuses the same child's write), and CI time is better spent elsewhere."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from ftserve.store.protocol import Store
from tests.conftest import Server, chat_rows, database_url_for, upload
from tests.e2e.conftest import (
    FAST_LEASE,
    CommitWatch,
    WorkerProc,
    metric_steps,
    running,
    steps_computed_after,
    training_children,
    wait_final,
    wait_gone,
    wait_steps,
)

LONG = {"n_epochs": 40, "batch_size": 1}  # 50 rows: 2,000 steps of ~10 ms, far longer than a try


def newest_first(client: openai.OpenAI, job_id: str) -> list[Any]:
    return list(client.fine_tuning.jobs.list_events(job_id, limit=1000))


def assert_steps_once_and_contiguous(client: openai.OpenAI, job_id: str) -> list[int]:
    chronological = list(reversed(metric_steps(client, job_id)))
    assert chronological == list(range(1, len(chronological) + 1)), chronological[-10:]
    return chronological


def db(server: Server) -> Store:
    return server.open_store()


def wait_released(server: Server, job_id: str, timeout: float = 30.0) -> None:
    """Until the training process has let go of the job (it stopped)."""
    store = db(server)
    try:
        deadline = time.monotonic() + timeout
        while store.get_job(job_id).claim_token is not None:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"{job_id} still held after {timeout}s"
            time.sleep(0.02)
    finally:
        store.close()


def trainers(server: Server) -> list[int]:
    """The server's training processes now (its job is running: one)."""
    assert server.proc is not None
    children = training_children(server.proc.pid)
    assert children, "no training process to watch"
    return children


@pytest.fixture
def step_log_server(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> Iterator[Server]:
    srv = Server(
        tmp_path / "data",
        env={
            "FTSERVE_WORKERS": "1",
            "FTSERVE_LEASE_SECONDS": FAST_LEASE,
            "FTSERVE_STEP_LOG_DIR": str(tmp_path / "steps"),
        },
        database_url=database_url_for(request, backend),
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.both_backends
def test_cancel_at_random_moments_ends_the_log(step_log_server: Server) -> None:
    srv = step_log_server
    client = srv.client()
    fid = upload(client, chat_rows(50))
    rng = random.Random(7)
    for _ in range(3):
        job = client.fine_tuning.jobs.create(
            model="ftserve-tiny", training_file=fid, hyperparameters=LONG
        )
        wait_steps(client, job.id, rng.randint(2, 40))
        time.sleep(rng.uniform(0, 0.05))
        children = trainers(srv)
        assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
        wait_released(srv, job.id)
        wait_gone(children)  # nothing late can land now
        events = newest_first(client, job.id)
        assert events[0].message == "Fine-tuning job cancelled", [e.message for e in events[:5]]
        assert_steps_once_and_contiguous(client, job.id)
        assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"


@pytest.mark.both_backends
def test_pause_at_random_moments_ends_the_log_until_resumed(step_log_server: Server) -> None:
    srv = step_log_server
    client = srv.client(strict=False)  # the SDK's strict status Literal lacks "paused"
    rows = chat_rows(20)
    hp = {"n_epochs": 15, "batch_size": 1}  # 300 steps
    fid = upload(client, rows)
    straight = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=fid, seed=5, hyperparameters=hp
    )
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=fid, seed=5, hyperparameters=hp
    )
    assert wait_final(client, straight.id) == "succeeded"
    rng = random.Random(11)
    pauses = 0
    while pauses < 3:
        logged = len(metric_steps(client, job.id))
        with contextlib.suppress(AssertionError):
            wait_steps(client, job.id, logged + rng.randint(2, 30), timeout=20)
        time.sleep(rng.uniform(0, 0.05))
        if client.fine_tuning.jobs.retrieve(job.id).status != "running":
            break  # finished before the next pause
        children = trainers(srv)
        assert client.fine_tuning.jobs.pause(job.id).status == "paused"
        pauses += 1
        wait_released(srv, job.id)
        wait_gone(children)
        events = newest_first(client, job.id)
        assert events[0].message == "Fine-tuning job paused", [e.message for e in events[:5]]
        steps = assert_steps_once_and_contiguous(client, job.id)
        # The step that finished after the pause is in the pause checkpoint, not in the log.
        newest = client.fine_tuning.jobs.checkpoints.list(job.id).data[0].step_number
        assert newest in (steps[-1], steps[-1] + 1)
        assert client.fine_tuning.jobs.resume(job.id).status == "queued"
    assert pauses >= 2
    assert wait_final(client, job.id) == "succeeded"
    assert assert_steps_once_and_contiguous(client, job.id) == list(range(1, 301))

    def losses(job_id: str) -> list[float]:
        return [
            float(e.data["train_loss"])  # type: ignore[index]
            for e in reversed(newest_first(client, job_id))
            if e.type == "metrics"
        ]

    assert losses(job.id) == losses(straight.id)
    messages = [e.message for e in newest_first(client, job.id)]
    assert messages[0] == "The job has successfully completed"
    assert messages.count("Fine-tuning job started") == 1


def _latency_tries(
    client: openai.OpenAI, server: Server, log_dir: Path, tries: int, seed: int
) -> list[int]:
    """For each try (cancel and pause alternating, at a random moment): the steps the training
    process computed after the API committed the request, from the process's own step log."""
    fid = upload(client, chat_rows(50))
    rng = random.Random(seed)
    found = []
    for i in range(tries):
        job = client.fine_tuning.jobs.create(
            model="ftserve-tiny", training_file=fid, hyperparameters=LONG
        )
        wait_steps(client, job.id, rng.randint(3, 30))
        time.sleep(rng.uniform(0, 0.05))
        watch = CommitWatch(server, job.id)
        if i % 2:
            client.fine_tuning.jobs.pause(job.id)
        else:
            client.fine_tuning.jobs.cancel(job.id)
        # Less one poll interval (0.5 ms) and a read, with margin: the watch sees the commit at
        # most that late when it is scheduled. Any more margin would count a step finished just
        # before the commit as one computed after it (a false "2" in 1 try of ~10 with 2 ms).
        committed = watch.result() - 0.001
        wait_released(server, job.id)
        found.append(steps_computed_after(log_dir, job.id, committed))
        if i % 2:
            client.fine_tuning.jobs.cancel(job.id)
    return found


def _assert_latency(after: list[int]) -> None:
    # The bound is the step in flight when the request commits.
    within = sum(n <= 1 for n in after)
    assert within >= len(after) - 1 and max(after) <= 2, after


def test_stop_latency_with_the_embedded_worker(step_log_server: Server, tmp_path: Path) -> None:
    client = step_log_server.client(strict=False)
    after = _latency_tries(client, step_log_server, tmp_path / "steps", 6, seed=1)
    _assert_latency(after)


@pytest.mark.both_backends
def test_stop_latency_with_a_separate_worker(api_only: Server, tmp_path: Path) -> None:
    worker = WorkerProc(api_only, env={"FTSERVE_STEP_LOG_DIR": str(tmp_path / "steps")})
    worker.start()
    try:
        client = api_only.client(strict=False)
        after = _latency_tries(client, api_only, tmp_path / "steps", 6, seed=2)
        _assert_latency(after)
    finally:
        worker.kill()


# -- the claim fence: freeze a worker until another has finished its job ----------------------


def _no_transaction_held(server: Server) -> bool:
    """Whether no process holds a transaction open: on SQLite, the write lock; on PostgreSQL,
    any transaction begun over 40 ms ago (a live process's last a few ms)."""
    if server.database_url:
        import psycopg

        with psycopg.connect(server.database_url, autocommit=True) as pg:
            row = pg.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND xact_start < now() - interval '40 milliseconds'"
            ).fetchone()
        return row is not None and row[0] == 0
    conn = sqlite3.connect(server.settings.sqlite_path, timeout=0.3, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def _freeze(pid: int, group: bool, server: Server) -> None:
    """SIGSTOP the worker (or its whole process group), at a moment it holds no transaction: a
    process frozen inside one blocks the others' writes (every writer of the SQLite file; on
    PostgreSQL, every writer of the job's row, which the transaction has locked), which is the
    nature of a lock held by a process that cannot run, not something a fence can cure."""
    send = (lambda s: os.killpg(pid, s)) if group else (lambda s: os.kill(pid, s))
    for _ in range(100):
        send(signal.SIGSTOP)
        time.sleep(0.05)
        if _no_transaction_held(server):
            return
        send(signal.SIGCONT)
        time.sleep(0.02)
    raise AssertionError("could not freeze the worker outside a transaction")


def _tree(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def _snapshot(client: openai.OpenAI, server: Server, job_id: str) -> dict[str, Any]:
    job = client.fine_tuning.jobs.retrieve(job_id)
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job_id, limit=100).data
    store = db(server)
    try:
        rows = store.list_checkpoints(None, job_id, after=None, limit=100)
        paths = [server.data_dir / "blobs" / c.path for c in (rows.items if rows else [])]
    finally:
        store.close()
    model_path = Path(job.model_extra["ftserve"]["model_path"])  # type: ignore[index]
    return {
        "job": job.model_dump(),
        "events": [e.model_dump() for e in newest_first(client, job_id)],
        "checkpoints": [c.model_dump() for c in checkpoints],
        "files": sorted(f.id for f in client.files.list()),
        "checkpoint_files": {str(p): _tree(p) for p in paths},
        "model_files": _tree(model_path),
    }


@pytest.mark.both_backends
@pytest.mark.parametrize("group", [False, True], ids=["worker-only", "whole-process-group"])
def test_a_frozen_worker_writes_nothing_after_another_took_over(
    api_only: Server, group: bool
) -> None:
    api = api_only
    # The shortest lease, and the second worker up before the first is frozen: the takeover
    # must win the race against the stale child, which trains on (worker-only case).
    lease = {"FTSERVE_LEASE_SECONDS": "2"}
    first = WorkerProc(api, env=lease, new_session=True)
    second = WorkerProc(api, env=lease)
    first.start()
    try:
        client = api.client()
        job = client.fine_tuning.jobs.create(
            model="ftserve-tiny",
            training_file=upload(client, chat_rows(40)),
            seed=3,
            # 480 steps, checkpoints every 40: long enough that the frozen worker's child (which
            # trains on in the worker-only case) cannot finish before the lease expires.
            hyperparameters={"n_epochs": 12, "batch_size": 1},
        )
        wait_steps(client, job.id, 5)
        second.start()  # the first holds the job; the second starts up while it trains
        wait_steps(client, job.id, 45)
        store = db(api)
        stale = store.get_job(job.id).claim_token  # type: ignore[union-attr]
        stale_children = training_children(first.pid)
        assert stale and len(stale_children) == 1
        _freeze(first.pid, group, api)
        deadline = time.monotonic() + 60
        while (now := store.get_job(job.id)).claim_token in (stale, None):  # type: ignore[union-attr]
            assert now.status in ("running", "queued"), f"the job ended ({now.status}) first"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no other worker took the job over"
            time.sleep(0.1)
        if not group:
            # Its worker is frozen, but the training process runs on; its next step's write is
            # refused and it stops by itself.
            deadline = time.monotonic() + 30
            while running(stale_children[0]):
                assert time.monotonic() < deadline, "the stale training process kept running"
                time.sleep(0.05)
        assert wait_final(client, job.id, timeout=180) == "succeeded"
        store.close()
        before = _snapshot(client, api, job.id)

        (os.killpg if group else os.kill)(first.pid, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while running(stale_children[0]):
            assert time.monotonic() < deadline, "the stale training process kept running"
            time.sleep(0.05)
        # The stale worker wakes, looks at its run and must leave everything alone. Its next
        # claim comes after that look in its loop: with the other worker gone, a new job is its
        # to claim, and once it has, it has looked.
        second.kill()
        probe = client.fine_tuning.jobs.create(
            model="ftserve-tiny", training_file=job.training_file, seed=3
        )
        store = db(api)
        try:
            deadline = time.monotonic() + 60
            while store.get_job(probe.id).lease_owner is None:  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the woken worker claimed nothing"
                time.sleep(0.05)
        finally:
            store.close()
        client.fine_tuning.jobs.cancel(probe.id)
        assert first.proc is not None and first.proc.poll() is None  # it survives
        assert _snapshot(client, api, job.id) == before
        assert sorted(metric_steps(client, job.id)) == list(range(1, 481))
        messages = [e["message"] for e in before["events"]]
        assert messages[0] == "The job has successfully completed"
        assert any("stopped responding" in m for m in messages)
    finally:
        first.kill()
        second.kill()
