"""Nothing is lost across a restart, including kill -9 of the server."""

from __future__ import annotations

import signal

import pytest

from tests.conftest import Server, chat_rows, upload, wait_status

pytestmark = pytest.mark.both_backends  # the [postgres] ids too (tests/conftest.py)


def test_kill_9_loses_nothing(fresh_server: Server) -> None:
    fresh_server.env["FTSERVE_WORKERS"] = "0"
    fresh_server.start()
    client = fresh_server.client(strict=False)
    fid = upload(client, chat_rows(20))
    jobs = [
        client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=fid).id for _ in range(3)
    ]
    for jid in jobs:
        wait_status(client, jid, {"queued"})
    client.fine_tuning.jobs.cancel(jobs[0])
    client.fine_tuning.jobs.pause(jobs[1])
    before = {
        jid: [e.model_dump() for e in client.fine_tuning.jobs.list_events(jid)] for jid in jobs
    }
    states = {jid: client.fine_tuning.jobs.retrieve(jid).model_dump() for jid in jobs}
    content = client.files.content(fid).read()

    fresh_server.stop(signal.SIGKILL)
    fresh_server.start()
    client = fresh_server.client(strict=False)
    assert client.files.content(fid).read() == content
    for jid in jobs:
        assert client.fine_tuning.jobs.retrieve(jid).model_dump() == states[jid]
        assert [e.model_dump() for e in client.fine_tuning.jobs.list_events(jid)] == before[jid]
    assert [s["status"] for s in states.values()] == ["cancelled", "paused", "queued"]


def test_job_left_validating_is_validated_after_restart(fresh_server: Server) -> None:
    """A job created just before a crash still gets its files checked on the next start."""
    from ftserve.events import messages
    from ftserve.jobs.states import Status

    fresh_server.env["FTSERVE_WORKERS"] = "0"
    fresh_server.start()
    client = fresh_server.client()
    fid = upload(client, chat_rows(20))
    job = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=fid)
    wait_status(client, job.id, {"queued"})
    fresh_server.stop(signal.SIGKILL)
    # Put a job back to where a crash between create and validation would leave it.
    store = fresh_server.open_store()
    stuck = store.get_job(job.id)
    assert stuck is not None
    from dataclasses import replace

    from ftserve.ids import job_id

    copy = replace(stuck, id=job_id(), status=Status.VALIDATING_FILES)
    store.create_job(copy, [messages.created(copy.id), messages.validating(fid, None)])
    store.close()
    fresh_server.start()
    client = fresh_server.client()
    assert wait_status(client, copy.id, {"queued"}) == "queued"
