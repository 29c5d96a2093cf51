"""A PostgreSQL crash and restart while a job trains.

A private cluster of this test's own (never the session's shared one): ``ftserve migrate``, an
API-only ``ftserve serve --workers 0`` and one ``ftserve worker``. Once the job trains, the
database is stopped with ``pg_ctl stop -m immediate`` (every connection dropped, no shutdown
checkpoint: what a crash of the database server looks like to its clients) and started again a
few seconds later. Nothing is restarted by hand: the API answers again, the worker and its
training process carry on, and the job succeeds with its event log complete.

While the database is down the API answers each request, after waiting for the database or
with a 503 in OpenAI's envelope saying to retry; none hangs, none shows a traceback. The lease
is longer than the outage, so the job stays with its worker; what a takeover does is shown by
test_worker_kill.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import openai
import orjson
import psycopg
import pytest

from tests.conftest import API_KEY, Server, chat_rows, upload
from tests.reliability.conftest import (
    RestartablePg,
    Worker,
    assert_complete_log,
    chronological,
    metric_steps,
    migrate,
    wait_final,
    wait_for,
)

ROWS, EPOCHS = 20, 5  # batch 1: 100 steps; the outage comes after the first few
TOTAL = ROWS * EPOCHS
# Long enough that calls made during the outage fail rather than wait it out (a store that
# finds the database unreachable waits 0.25 s for a connection): the API answers them 503, the
# worker's loop and the training process must retry.
DOWN_SECONDS = 6.0
LEASE = "30"  # longer than the outage: the job stays with its worker


@pytest.fixture
def pg_api(private_pg: RestartablePg, tmp_path: Path) -> Iterator[Server]:
    with psycopg.connect(private_pg.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE ftserve")
    url = private_pg.durable_url("ftserve")
    migrate(url)
    srv = Server(tmp_path / "data", env={"FTSERVE_WORKERS": "0"}, database_url=url)
    srv.start()
    yield srv
    srv.stop()


def _listeners(url: str) -> int:
    """Connections of ftserve processes waiting on LISTEN: one per API and worker process (a
    worker's last LISTEN is its own channel's; training processes listen to nothing)."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN ftserve_%'"
            ).fetchone()
    except psycopg.OperationalError:
        return 0
    return int(row[0]) if row else 0


@pytest.mark.timeout(600)  # a job trained to the end across a database restart
def test_a_database_restart_mid_job_is_survived(
    private_pg: RestartablePg, pg_api: Server, tmp_path: Path
) -> None:
    api = pg_api
    assert api.database_url is not None
    worker = Worker(api, tmp_path / "worker.log", env={"FTSERVE_LEASE_SECONDS": LEASE})
    worker.start()
    try:
        worker.wait_ready()
        client = api.client()
        job = client.fine_tuning.jobs.create(
            model="ftserve-tiny",
            training_file=upload(client, chat_rows(ROWS)),
            seed=7,
            hyperparameters={"n_epochs": EPOCHS, "batch_size": 1},
        )
        steps = wait_for(
            "the job to train", lambda: metric_steps(chronological(client, job.id))[4:], 120
        )
        listening = _listeners(api.database_url)
        assert listening >= 2, listening  # the API and the worker

        stop = threading.Event()
        answers: list[tuple[str, int, str]] = []
        probe = threading.Thread(target=_probe, args=(api, job.id, stop, answers), daemon=True)
        private_pg.crash()
        assert max(steps) < TOTAL, "the job was not mid-training when the database went down"
        probe.start()
        time.sleep(DOWN_SECONDS)
        private_pg.start_again()
        restarted_at = time.monotonic()
        stop.set()
        probe.join(60)
        assert not probe.is_alive(), "a request hung"
        for path, status, body in answers:
            # Each request sent during the outage waited for a connection and was answered, or
            # was told to retry: a 503 in OpenAI's envelope, never a traceback.
            if status != 200:
                assert status == 503, (path, status, body)
                error = orjson.loads(body)["error"]
                assert error["code"] == "database_unavailable" and error["message"], body
                assert "Traceback" not in body and "psycopg" not in body, body
        failed = sum(1 for _path, status, _body in answers if status != 200)

        # Nothing is restarted by hand: the API answers again, from the sync and async pools.
        wait_for(
            "the API to answer again",
            lambda: _answers(client, job.id),
            timeout=30,
            interval=0.2,
        )
        back_after = time.monotonic() - restarted_at
        assert wait_final(client, job.id) == "succeeded", client.fine_tuning.jobs.retrieve(job.id)
        assert_complete_log(chronological(client, job.id), TOTAL)
        # Every process listens again (the training process has exited by now).
        wait_for("the listeners to reconnect", lambda: _listeners(api.database_url or "") >= 2, 10)
        # The worker takes new work after the outage.
        again = client.fine_tuning.jobs.create(
            model="ftserve-tiny",
            training_file=upload(client, chat_rows(10)),
            hyperparameters={"n_epochs": 1, "batch_size": 10},
        )
        assert wait_final(client, again.id) == "succeeded"
        assert worker.proc is not None and worker.proc.poll() is None
        assert worker.claims(job.id) == [1], worker.log()
        print(
            f"\nduring the outage: {len(answers)} requests, {failed} answered 5xx; "
            f"the API answered {back_after:.1f}s after the database was back"
        )
    finally:
        worker.stop()


def _probe(
    api: Server, job_id: str, stop: threading.Event, answers: list[tuple[str, int, str]]
) -> None:
    """Requests a client keeps sending while the database is down: a job and its events."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=api.base_url, headers=headers, timeout=30) as raw:
        while not stop.is_set():
            for path in (f"/fine_tuning/jobs/{job_id}", f"/fine_tuning/jobs/{job_id}/events"):
                r = raw.get(path)
                answers.append((path, r.status_code, r.text))
            stop.wait(0.5)


def _answers(client: openai.OpenAI, job_id: str) -> bool:
    try:
        client.fine_tuning.jobs.retrieve(job_id)
        client.fine_tuning.jobs.list_events(job_id, limit=5)
    except openai.APIError:
        return False
    return True
