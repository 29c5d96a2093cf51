"""``kill -9`` of an API server while clients create jobs.

Six clients create jobs back to back on an API-only server; the server is killed mid-stream,
with requests in every stage (being read, validated, committed, answered). After a restart on
the same data dir and store: every job that was answered is there; every job that is there is
whole (retrievable, in the list exactly once, its creation events written with it); and the
jobs the crash left in ``validating_files`` are picked up again and queued, none stuck.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import API_KEY, Server, chat_rows, database_url_for, upload
from tests.reliability.conftest import chronological, wait_for

# [sqlite] and [postgres] (tests/conftest.py).
# Servers and workers started (up to 120 s each on a loaded machine) and a job waited out.
pytestmark = [pytest.mark.both_backends, pytest.mark.timeout(600)]

CLIENTS = 6
ANSWERED_BEFORE_KILL = 30


@pytest.fixture
def api(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[Server]:
    srv = Server(
        tmp_path / "data",
        env={"FTSERVE_WORKERS": "0"},
        database_url=database_url_for(request, backend),
    )
    yield srv
    srv.stop()


def test_kill_9_during_job_creation_leaves_no_partial_job(api: Server) -> None:
    api.start(timeout=120)
    training_file = upload(api.client(), chat_rows(12))
    answered: list[str] = []
    sent = [0]
    lock = threading.Lock()

    def create_jobs(n: int) -> None:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=api.base_url, headers=headers, timeout=30) as raw:
            while True:
                with lock:
                    sent[0] += 1
                try:
                    r = raw.post(
                        "/fine_tuning/jobs",
                        json={
                            "model": "ftserve-tiny",
                            "training_file": training_file,
                            "metadata": {"client": str(n)},
                        },
                    )
                except httpx.HTTPError:
                    return  # the server is gone
                assert r.status_code == 200, r.text
                with lock:
                    answered.append(r.json()["id"])

    clients = [threading.Thread(target=create_jobs, args=(n,), daemon=True) for n in range(CLIENTS)]
    for c in clients:
        c.start()
    wait_for("jobs to be created", lambda: len(answered) >= ANSWERED_BEFORE_KILL, 60, 0.01)
    api.stop(signal.SIGKILL)  # mid-stream
    for c in clients:
        c.join(30)
        assert not c.is_alive()
    answered_at_kill = list(answered)

    api.start(timeout=120)
    client = api.client()
    listed = [j.id for j in client.fine_tuning.jobs.list(limit=100)]
    assert len(listed) == len(set(listed)), "a job is listed twice"
    assert set(answered_at_kill) <= set(listed), "a job that was answered is gone"
    # At most the requests in flight at the kill committed without their answer.
    assert len(listed) <= len(answered_at_kill) + CLIENTS, (len(listed), len(answered_at_kill))
    for job_id in listed:
        job = client.fine_tuning.jobs.retrieve(job_id)
        assert job.training_file == training_file and job.model == "ftserve-tiny"
        texts = [e.message for e in chronological(client, job_id)]
        assert texts[:2] == [
            f"Created fine-tuning job: {job_id}",
            f"Validating training file: {training_file}",
        ], texts
    # The crash stopped validations half-way: the restarted server finishes them.
    wait_for(
        "every job to be validated and queued",
        lambda: all(j.status == "queued" for j in client.fine_tuning.jobs.list(limit=100)),
        60,
        0.2,
    )
    print(
        f"\n{sent[0]} creates sent, {len(answered_at_kill)} answered before the kill, "
        f"{len(listed)} jobs after the restart, all queued"
    )
