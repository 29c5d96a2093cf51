"""The database stops under a running server, then starts again.

A PostgreSQL cluster of this test's own (never the session's, which other tests share) behind a
real ``ftserve serve`` with its embedded worker. While the cluster is stopped (``pg_ctl stop -m
fast``: a clean shutdown, every connection closed), every request that needs the database —
reads on the sync pool, the events page on the async pool, writes — is answered with a 503 in
OpenAI's envelope (``server_error`` / ``database_unavailable``, a message saying the database is
unavailable and to retry, the request id), never a traceback or a driver's words; the process
stays up and answers what needs no database. Once the cluster is back, the same server answers
every request and trains a new job to success: nothing restarted by hand. SQLite, a file in the
server's own data dir, has no such outage.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import orjson
import pytest

from tests.conftest import API_KEY, Server, chat_rows, jsonl, upload
from tests.pg import PgCluster, private_cluster


class StoppablePg(PgCluster):
    """A private cluster that can be stopped and started again on its port, socket dir and
    data."""

    def stop_server(self) -> None:
        self.pg_ctl_stop("fast")


@pytest.fixture
def own_cluster() -> Iterator[StoppablePg]:
    with private_cluster(StoppablePg) as cluster:
        yield cluster


@pytest.fixture
def server_on_it(own_cluster: StoppablePg, tmp_path: Path) -> Iterator[Server]:
    import psycopg

    with psycopg.connect(own_cluster.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE ftserve")
    url = own_cluster.url("ftserve")
    out = subprocess.run(
        [sys.executable, "-m", "ftserve", "migrate"],
        env={**os.environ, "FTSERVE_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    srv = Server(tmp_path / "data", env={"FTSERVE_WORKERS": "1"}, database_url=url)
    srv.start()
    yield srv
    srv.stop()


def wait_for(what: str, ok: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.2)


def final(client: openai.OpenAI, job_id: str) -> str:
    status = ""

    def done() -> bool:
        nonlocal status
        status = client.fine_tuning.jobs.retrieve(job_id).status
        return status in ("succeeded", "failed", "cancelled")

    wait_for(f"{job_id} to finish", done, 120)
    return status


def test_a_stopped_database_is_a_clean_503_and_its_return_needs_no_restart(
    own_cluster: StoppablePg, server_on_it: Server
) -> None:
    srv = server_on_it
    assert srv.proc is not None
    pid = srv.proc.pid
    client = srv.client()
    fid = upload(client, chat_rows(10))
    one_step = {"n_epochs": 1, "batch_size": 10}
    done = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=fid, hyperparameters=one_step
    )
    assert final(client, done.id) == "succeeded"
    # The events page has been read through the async pool once, so its connections are open.
    assert list(client.fine_tuning.jobs.list_events(done.id, limit=2))

    own_cluster.stop_server()
    form = {"purpose": "fine-tune"}
    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/fine_tuning/jobs/{done.id}", {}),  # a sync read, retried once
        ("GET", f"/fine_tuning/jobs/{done.id}/events", {}),  # the async events page
        ("GET", f"/fine_tuning/jobs/{done.id}/checkpoints", {}),
        ("GET", "/fine_tuning/jobs", {}),
        ("GET", "/files", {}),
        ("GET", "/models", {}),
        ("POST", "/files", {"data": form, "files": {"file": ("t.jsonl", jsonl(chat_rows(10)))}}),
        ("POST", "/fine_tuning/jobs", {"json": {"model": "ftserve-tiny", "training_file": fid}}),
        ("POST", f"/fine_tuning/jobs/{done.id}/cancel", {}),
    ]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=srv.base_url, headers=headers, timeout=60) as raw:

        def send(attempt: tuple[str, str, dict[str, Any]]) -> httpx.Response:
            method, path, kwargs = attempt
            return raw.request(method, path, **kwargs)

        # At once: a read waits up to the pool's 10 s for a connection before it gives up.
        stopped_at = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(len(attempts)) as pool:
            answers = list(pool.map(send, attempts))
        answered_in = time.monotonic() - stopped_at
        for (method, path, _), r in zip(attempts, answers, strict=True):
            where = f"{method} {path}"
            assert r.status_code == 503, (where, r.status_code, r.text)
            body = orjson.loads(r.content)
            assert list(body) == ["error"] and set(body["error"]) == {
                "message",
                "type",
                "param",
                "code",
            }, (where, body)
            error = body["error"]
            assert (error["type"], error["code"], error["param"]) == (
                "server_error",
                "database_unavailable",
                None,
            ), (where, error)
            assert "database is unavailable" in error["message"], (where, error)
            assert f"request id {r.headers['x-request-id']}" in error["message"], (where, error)
            for leak in ("Traceback", "psycopg", "connection", "/tmp", "socket"):
                assert leak not in r.text, (where, leak, r.text)
        # What needs no database is answered; the process is the same one.
        assert raw.get(srv.root + "/health").status_code == 200
    assert srv.proc.poll() is None and srv.proc.pid == pid
    # The SDK sees a 503 with the code (and, left to its defaults, retries it by itself).
    with pytest.raises(openai.InternalServerError) as got:
        client.fine_tuning.jobs.retrieve(done.id)
    assert got.value.status_code == 503 and got.value.code == "database_unavailable"

    own_cluster.start_again()

    def answers_again() -> bool:
        try:
            client.fine_tuning.jobs.retrieve(done.id)
            client.fine_tuning.jobs.list_events(done.id, limit=2)
        except openai.InternalServerError:
            return False
        return True

    started_at = time.monotonic()
    wait_for("the server to answer again", answers_again, 30)
    back_in = time.monotonic() - started_at
    assert srv.proc.poll() is None and srv.proc.pid == pid  # not restarted
    assert [e.message for e in client.fine_tuning.jobs.list_events(done.id, limit=1).data] == [
        "The job has successfully completed"
    ]
    assert fid in {f.id for f in client.files.list()}
    name = client.fine_tuning.jobs.retrieve(done.id).fine_tuned_model
    assert name and client.models.retrieve(name).id == name
    # The validator and the embedded worker survived the outage: a new job trains to the end.
    again = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=upload(client, chat_rows(10)), hyperparameters=one_step
    )
    assert final(client, again.id) == "succeeded", client.fine_tuning.jobs.retrieve(again.id)
    log = srv.log()
    assert "Traceback" not in log, log[-4000:]
    # Each refused request is in the log, by its id, with what the store said.
    for r in answers:
        assert f"request {r.headers['x-request-id']} " in log, log[-4000:]
    print(
        f"\ndatabase down: {len(attempts)} requests answered 503 within {answered_in:.1f}s; "
        f"answered again {back_in:.1f}s after the database was back"
    )
