"""``kill -9`` of the worker training a job (its whole process group: the worker, its fork
server and the training child), with a second worker beside it.

An API-only ``ftserve serve --workers 0`` and two ``ftserve worker`` processes share one store.
Once the job has a complete (epoch) checkpoint and trains on, the worker holding it is killed.
The other worker takes the job back (the owner is a dead process on this host, so at its next
recovery look rather than after the lease), resumes from the last checkpoint the store lists,
and finishes it. Nothing is lost or repeated in the event log, and the dead claim's writes are
refused: a write under its token is answered WriteRefused, and a worker started again in the
killed one's place changes nothing of the finished job.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftserve.events import messages
from ftserve.store.protocol import WriteRefused
from ftserve.store.records import Claim
from tests.conftest import Server, chat_rows, database_url_for, upload
from tests.reliability.conftest import (
    Worker,
    assert_complete_log,
    chronological,
    group_alive,
    metric_steps,
    wait_final,
    wait_for,
)

# [sqlite] and [postgres] (tests/conftest.py).
# Servers and workers started (up to 120 s each on a loaded machine) and a job waited out.
pytestmark = [pytest.mark.both_backends, pytest.mark.timeout(600)]

ROWS, EPOCHS = 20, 6  # batch 1: 120 steps, an epoch checkpoint every 20
TOTAL = ROWS * EPOCHS


@pytest.fixture
def api(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[Server]:
    srv = Server(
        tmp_path / "data",
        env={"FTSERVE_WORKERS": "0"},
        database_url=database_url_for(request, backend),
    )
    srv.start()
    yield srv
    srv.stop()


def _snapshot(api: Server, job_id: str) -> dict[str, object]:
    client = api.client()
    return {
        "job": client.fine_tuning.jobs.retrieve(job_id).model_dump(),
        "events": [e.model_dump() for e in chronological(client, job_id)],
        "checkpoints": [
            c.model_dump() for c in client.fine_tuning.jobs.checkpoints.list(job_id, limit=100)
        ],
        "files": sorted(f.id for f in client.files.list()),
    }


def test_kill_9_of_the_training_worker_resumes_on_the_other(api: Server, tmp_path: Path) -> None:
    workers = [Worker(api, tmp_path / f"worker-{i}.log") for i in range(2)]
    store = api.open_store()
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.wait_ready()
        client = api.client()
        job = client.fine_tuning.jobs.create(
            model="ftserve-tiny",
            training_file=upload(client, chat_rows(ROWS)),
            seed=5,
            hyperparameters={"n_epochs": EPOCHS, "batch_size": 1},
        )
        # Mid-training, past the first complete checkpoint.
        wait_for(
            "the first epoch checkpoint",
            lambda: client.fine_tuning.jobs.checkpoints.list(job.id).data,
            timeout=120,
            interval=0.02,
        )
        held = store.get_job(job.id)
        assert held is not None and held.status == "running" and held.claim_token
        owner_pid = int(str(held.lease_owner).split("/")[1])
        (victim,) = [w for w in workers if w.pid == owner_pid]
        (other,) = [w for w in workers if w is not victim]
        stale = Claim(job.id, held.claim_token)
        victim.kill_group()
        # The last complete checkpoint: one whose row committed (a save the kill cut short has
        # none). The takeover trains for at least an epoch before it could add another.
        last = max(c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id))
        at_kill = metric_steps(chronological(client, job.id))
        assert at_kill and max(at_kill) < TOTAL, "the job was not mid-training when killed"
        wait_for("the killed worker's processes to be gone", lambda: not group_alive(owner_pid), 10)

        assert wait_final(client, job.id) == "succeeded"
        events = chronological(client, job.id)
        assert_complete_log(events, TOTAL)
        texts = [e.message for e in events]
        assert texts.count("Fine-tuning job started") == 1
        resumed = [int(m.group(1)) for t in texts if (m := re.search(r"resumed from the checkpoint at step (\d+)", t))]  # fmt: skip
        assert resumed == [last], texts
        assert other.claims(job.id) == [2] and victim.claims(job.id) == [1]

        # The dead claim is fenced off: its late write is refused and changes nothing.
        before = _snapshot(api, job.id)
        with pytest.raises(WriteRefused) as refused:
            store.write_claimed(stale, events=[messages.requeued("a late write")])
        assert not refused.value.claim_current
        # The killed worker's place taken again: it finds nothing of this job to do. Its first
        # loop makes a recovery look and then claims; with the other worker gone, a new job is
        # its to claim, and once it has, both are behind it.
        victim.start()
        victim.wait_ready()
        other.stop()
        probe = client.fine_tuning.jobs.create(
            model="ftserve-tiny", training_file=job.training_file, seed=5
        )
        wait_for("the restarted worker's claim", lambda: victim.claims(probe.id), 60)
        client.fine_tuning.jobs.cancel(probe.id)
        assert victim.claims(job.id) == [1]
        assert _snapshot(api, job.id) == before
    finally:
        store.close()
        for w in workers:
            w.stop()
