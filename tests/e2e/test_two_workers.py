"""`"ftserve": {"nodes": 2}`: one job trained by two separate `ftserve worker` processes (one
process each, gloo, meeting through torch.distributed at the address the store hands out), as
it would be on two machines. Its losses are a one-process job's with the same global batch;
pause and resume work across the pair; kill -9 of the worker that joined (the follower) ends the
leader's run, and the job resumes from its last checkpoint once a worker joins again, with no
step recorded twice; a cancel stops both workers' processes. A gang that cannot assemble says
so, goes back to the queue without counting an attempt, and forms once a worker comes."""

from __future__ import annotations

import time

import openai
import pytest

from ftserve.store.records import JobRecord
from tests.conftest import Server, chat_rows, upload
from tests.e2e.conftest import (
    WorkerProc,
    metric_steps,
    running,
    training_children,
    wait_final,
    wait_steps,
)

STEPS = 60  # 30 rows, 4 epochs of batch 2: an epoch checkpoint every 15 steps
WORKER_ENV = {"FTSERVE_MAX_ATTEMPTS": "5", "FTSERVE_GANG_WAIT_SECONDS": "120"}


def _losses(client: openai.OpenAI, job_id: str) -> dict[int, float]:
    return {
        int(e.data["step"]): float(e.data["train_loss"])
        for e in client.fine_tuning.jobs.list_events(job_id, limit=1000)
        if e.type == "metrics" and isinstance(e.data, dict)
    }


def _create(client: openai.OpenAI, file_id: str, nodes: int, epochs: int = 4) -> str:
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=file_id,
        seed=3,
        hyperparameters={"n_epochs": epochs, "batch_size": 2},
        extra_body={"ftserve": {"nodes": nodes}},
    )
    return job.id


def _row(server: Server, job_id: str) -> JobRecord:
    store = server.open_store()
    try:
        job = store.get_job(job_id)
    finally:
        store.close()
    assert job is not None
    return job


def _leader_pid(server: Server, job_id: str) -> int:
    """The process id of the worker holding the job's claim (its id is host/pid/random)."""
    owner = _row(server, job_id).lease_owner
    assert owner, owner
    return int(owner.split("/")[1])


def _wait_status(client: openai.OpenAI, job_id: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while client.fine_tuning.jobs.retrieve(job_id).status != status:
        assert time.monotonic() < deadline, f"{job_id} never became {status}"
        time.sleep(0.1)


@pytest.mark.timeout(600)
def test_a_job_on_two_workers(api_only: Server) -> None:
    # The first worker alone gives a gang up quickly; the second waits as long as it takes.
    workers = [
        WorkerProc(api_only, env={**WORKER_ENV, "FTSERVE_GANG_WAIT_SECONDS": "2"}),
        WorkerProc(api_only, env=WORKER_ENV),
    ]
    workers[0].start()
    try:
        client = api_only.client(strict=False)  # "paused" is not in the SDK's status list
        with pytest.raises(openai.BadRequestError) as refused:
            _create(client, "file-none", 17)
        assert refused.value.body["param"] == "ftserve.nodes"  # type: ignore[index]
        file_id = upload(client, chat_rows(30))

        two = _create(client, file_id, 2)
        assert client.fine_tuning.jobs.retrieve(two).model_extra["ftserve"]["nodes"] == 2  # type: ignore[index]
        # One worker cannot train it: it says it waits, then gives the job back to the queue
        # (again and again, the attempts not counted) until a second worker comes.
        deadline = time.monotonic() + 240  # the worker's fork server starts first
        messages: list[str] = []
        while sum("did not join within 2 s" in m for m in messages) < 2:
            assert time.monotonic() < deadline, messages
            time.sleep(0.2)
            messages = [e.message for e in client.fine_tuning.jobs.list_events(two, limit=1000)]
        assert sum("Waiting for 1 more worker" in m for m in messages) == 1, messages
        assert _row(api_only, two).attempts <= 1
        workers[1].start()
        wait_steps(client, two, 3, timeout=240)
        # Both workers train it: one process each.
        assert all(len(training_children(w.pid)) == 1 for w in workers)

        # Pause and resume across the pair.
        assert client.fine_tuning.jobs.pause(two).status == "paused"
        _wait_status(client, two, "paused")
        paused_at = max(metric_steps(client, two))
        assert client.fine_tuning.jobs.resume(two).status == "queued"
        wait_steps(client, two, 20, timeout=120)  # past the first epoch checkpoint
        assert max(metric_steps(client, two)) > paused_at

        # kill -9 of the worker that joined: the leader's run ends and the job is requeued; it
        # waits (and says so) until a worker joins again, then resumes from its checkpoint.
        leader = _leader_pid(api_only, two)
        (follower,) = [w for w in workers if w.pid != leader]
        follower.kill()
        deadline = time.monotonic() + 60
        while not any("ended unexpectedly" in m for m in messages):
            assert time.monotonic() < deadline, messages
            time.sleep(0.2)
            messages = [e.message for e in client.fine_tuning.jobs.list_events(two, limit=1000)]
        follower.start()
        assert wait_final(client, two, timeout=240) == "succeeded"
        assert sorted(metric_steps(client, two)) == list(range(1, STEPS + 1))

        # The same job on one process: the same losses.
        one = _create(client, file_id, 1)
        assert wait_final(client, one) == "succeeded"
        a, b = _losses(client, two), _losses(client, one)
        assert all(abs(a[s] - b[s]) <= 1e-4 * abs(b[s]) for s in b), (a, b)

        # A cancel stops both workers' processes.
        cancelled = _create(client, file_id, 2, epochs=50)
        wait_steps(client, cancelled, 2, timeout=120)
        children = [pid for w in workers for pid in training_children(w.pid)]
        assert len(children) == 2
        assert client.fine_tuning.jobs.cancel(cancelled).status == "cancelled"
        deadline = time.monotonic() + 20
        while alive := [pid for pid in children if running(pid)]:
            assert time.monotonic() < deadline, f"training processes {alive} kept running"
            time.sleep(0.1)
        assert all(w.proc is not None and w.proc.poll() is None for w in workers)
    finally:
        for w in workers:
            w.kill()
