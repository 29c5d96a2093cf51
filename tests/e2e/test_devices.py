"""`"ftserve": {"devices": 2}` through the server on a CPU worker of concurrency 2: the job trains
as two processes with the losses of one, kill -9 of its second rank restarts it from its last
checkpoint with no step recorded twice, and a job no worker can fit stays queued, told once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import Server, chat_rows, upload
from tests.e2e.conftest import _processes, metric_steps, training_children, wait_final, wait_steps

STEPS = 60  # 30 rows, 4 epochs of batch 2: an epoch checkpoint every 15 steps


def _losses(client: openai.OpenAI, job_id: str) -> dict[int, float]:
    return {
        int(e.data["step"]): float(e.data["train_loss"])
        for e in client.fine_tuning.jobs.list_events(job_id, limit=1000)
        if e.type == "metrics" and isinstance(e.data, dict)
    }


def _create(client: openai.OpenAI, file_id: str, devices: Any) -> str:
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=file_id,
        seed=3,
        hyperparameters={"n_epochs": 4, "batch_size": 2},
        extra_body={"ftserve": {"devices": devices}},
    )
    return job.id


def test_a_two_device_job_survives_kill_9_of_a_rank(tmp_path: Path) -> None:
    srv = Server(
        tmp_path / "data",
        env={"FTSERVE_WORKERS": "1", "FTSERVE_CONCURRENCY": "2", "FTSERVE_LEASE_SECONDS": "4"},
    )
    srv.start()
    try:
        client = srv.client()
        with pytest.raises(openai.BadRequestError) as refused:
            _create(client, "file-none", 65)
        assert refused.value.body["param"] == "ftserve.devices"  # type: ignore[index]
        file_id = upload(client, chat_rows(30))

        # Three devices on a worker of two: queued, told once, still cancellable.
        too_big = _create(client, file_id, 3)
        deadline = time.monotonic() + 30
        while not any(e.level == "warn" for e in client.fine_tuning.jobs.list_events(too_big)):
            assert time.monotonic() < deadline, "the unfit job was never told"
            time.sleep(0.2)
        assert client.fine_tuning.jobs.retrieve(too_big).status == "queued"
        assert client.fine_tuning.jobs.cancel(too_big).status == "cancelled"

        two = _create(client, file_id, 2)
        assert client.fine_tuning.jobs.retrieve(two).model_extra["ftserve"]["devices"] == 2  # type: ignore[index]
        wait_steps(client, two, 20)  # past the first epoch checkpoint
        assert srv.proc is not None
        rank0 = training_children(srv.proc.pid)
        peers = [pid for pid, ppid, _ in _processes() if ppid in rank0]
        assert len(rank0) == 1 and len(peers) == 1, (rank0, peers)
        os.kill(peers[0], signal.SIGKILL)
        assert wait_final(client, two) == "succeeded"
        messages = [e.message for e in client.fine_tuning.jobs.list_events(two, limit=1000)]
        assert any("ended unexpectedly" in m for m in messages), messages
        assert sorted(metric_steps(client, two)) == list(range(1, STEPS + 1))

        one = _create(client, file_id, 1)
        assert wait_final(client, one) == "succeeded"
        a, b = _losses(client, two), _losses(client, one)
        assert all(abs(a[s] - b[s]) <= 1e-4 * abs(b[s]) for s in b), (a, b)
    finally:
        srv.stop(signal.SIGKILL)
