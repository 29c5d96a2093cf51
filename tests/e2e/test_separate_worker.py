"""`ftserve worker` as its own process beside an API-only `ftserve serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Server, chat_rows, upload
from tests.e2e.conftest import WorkerProc, metric_steps, training_children, wait_final, wait_steps


@pytest.mark.both_backends
def test_separate_worker_trains_and_survives_kill_9(api_only: Server) -> None:
    worker = WorkerProc(api_only)
    worker.start()
    try:
        client = api_only.client()
        job = client.fine_tuning.jobs.create(
            model="ftserve-tiny",
            training_file=upload(client, chat_rows(40)),
            seed=2,
            hyperparameters={"n_epochs": 8, "batch_size": 1},
        )
        wait_steps(client, job.id, 60)
        assert worker.proc is not None
        children = training_children(worker.proc.pid)
        worker.kill()  # the worker dies; its child notices and stops without touching the job
        deadline = time.monotonic() + 20  # it stops at its next step; CI machines are busy
        while any(os.path.exists(f"/proc/{pid}") for pid in children):
            assert time.monotonic() < deadline, "orphaned training process kept running"
            time.sleep(0.1)
        assert client.fine_tuning.jobs.retrieve(job.id).status == "running"
        worker.start()  # a new worker on this host sees the dead owner and resumes at once
        assert wait_final(client, job.id) == "succeeded"
        assert sorted(metric_steps(client, job.id)) == list(range(1, 321))
    finally:
        worker.kill()


def test_worker_without_a_database_says_so(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ftserve", "worker", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "start `ftserve serve`" in out.stderr


def test_model_that_cannot_load_fails_the_job(tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    srv = Server(tmp_path / "data", env={"FTSERVE_WORKERS": "1"})
    srv.start()
    try:
        client = srv.client()
        job = client.fine_tuning.jobs.create(
            model=str(broken), training_file=upload(client, chat_rows(10))
        )
        assert wait_final(client, job.id) == "failed"
        err = client.fine_tuning.jobs.retrieve(job.id).error
        assert err is not None and err.code == "model_load_failed"
        events = list(client.fine_tuning.jobs.list_events(job.id))
        assert events[0].level == "error"
        ok = client.fine_tuning.jobs.create(
            model="ftserve-tiny",
            training_file=upload(client, chat_rows(10)),
            hyperparameters={"n_epochs": 1},
        )
        assert wait_final(client, ok.id) == "succeeded"
    finally:
        srv.stop()


def test_bad_settings_stop_the_start(tmp_path: Path) -> None:
    env = {**os.environ, "FTSERVE_PORT": "not-a-port"}
    out = subprocess.run(
        [sys.executable, "-m", "ftserve", "serve", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 2 and "FTSERVE_PORT" in out.stderr


def test_first_start_generates_and_prints_a_key(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data")
    srv.env["FTSERVE_API_KEYS"] = ""
    srv.env["FTSERVE_WORKERS"] = "0"
    srv.start()
    try:
        key = (tmp_path / "data" / "api_key").read_text().strip()
        assert key.startswith("sk-ftserve-")
        assert f"export OPENAI_API_KEY={key}" in srv.log()
        assert f"export OPENAI_BASE_URL=http://127.0.0.1:{srv.port}/v1" in srv.log()
        assert srv.client(key=key).models.list().data
    finally:
        srv.stop()
    srv.start()  # the stored key is reused and not printed again
    try:
        assert srv.log().count("export OPENAI_API_KEY") == 1
    finally:
        srv.stop()
