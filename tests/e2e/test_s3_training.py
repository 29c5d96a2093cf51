"""Training and serving on S3: an API server and a separate ``ftserve worker`` (its own cache
directory, as on another machine: it shares only the database and the bucket) with
``FTSERVE_BLOB_URL=s3://…`` against moto's S3 server on loopback, reached through a TCP proxy the
tests can cut, so "S3 unreachable" is a refused connection, as when the store is down.

A file uploaded with the SDK lands in the bucket; the worker downloads it, trains ftserve-tiny
(LoRA), uploads each checkpoint and the model before the row that names it; the API serves the
model through its read-through cache and deleting the model deletes its objects. Then the
fault: the store going away during a save is ridden out (the save is retried, the job succeeds
once S3 is back), and a store that stays away fails the job with a clear error; a job never
reports success without its weights in the bucket.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.blobs.moto_server import AWS_ENV, MotoServer
from tests.conftest import Server, chat_rows, free_port, upload
from tests.e2e.conftest import wait_final

pytest.importorskip("boto3", reason="the s3 extra is not installed")
pytest.importorskip("moto", reason="moto[server] (test extra) is not installed")

PREFIX = "ftserve"
RETRY_SECONDS = "10"  # the worker's save-retry window: outlasted by one test, not by the other


class Proxy:
    """A TCP forwarder to moto. ``down()`` stops listening and cuts every open connection, so
    new ones are refused; ``up()`` listens again on the same port."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes accept(); connects are refused
            listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class S3Worker:
    """``ftserve worker`` on the server's database, with a cache directory of its own."""

    def __init__(self, server: Server, env: dict[str, str], cache: Path, log: Path) -> None:
        self.log_path = log
        log_file = open(log, "ab")  # noqa: SIM115 - handed to the child, closed with it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ftserve", "worker", "--data-dir", str(server.data_dir)],
            env={**os.environ, **env, "FTSERVE_CACHE_DIR": str(cache)},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        log_file.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class S3Setup:
    def __init__(self, tmp: Path) -> None:
        self.moto = MotoServer(tmp / "moto.log")
        self.moto.start()
        self.bucket = self.moto.new_bucket()
        self.proxy = Proxy(self.moto.port)
        self.env = {
            **AWS_ENV,
            "FTSERVE_BLOB_URL": f"s3://{self.bucket}/{PREFIX}",
            "FTSERVE_S3_ENDPOINT_URL": f"http://127.0.0.1:{self.proxy.port}",
            "FTSERVE_BLOB_RETRY_SECONDS": RETRY_SECONDS,
            "FTSERVE_LEASE_SECONDS": "10",
            "FTSERVE_LOG_LEVEL": "warning",
        }
        self.server = Server(tmp / "data", env={**self.env, "FTSERVE_WORKERS": "0"})
        self.worker_cache = tmp / "worker-cache"
        self.worker: S3Worker | None = None
        self.tmp = tmp

    def plant_cut_off_upload(self) -> None:
        """What an upload killed midway leaves in the bucket: a multipart upload with a part
        and no completion (moto dates every upload 2010, so it is past any grace period)."""
        client = self.moto.client()
        key = f"{PREFIX}/files/file-cut-off"
        upload = client.create_multipart_upload(Bucket=self.bucket, Key=key)
        client.upload_part(
            Bucket=self.bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=1,
            Body=b"x" * (5 << 20),
        )

    def uploads(self) -> list[str]:
        answer = self.moto.client().list_multipart_uploads(Bucket=self.bucket)
        return [u["Key"] for u in answer.get("Uploads", [])]

    def start(self) -> None:
        self.plant_cut_off_upload()
        self.server.start()
        self.worker = S3Worker(self.server, self.env, self.worker_cache, self.tmp / "worker.log")

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.server.stop()
        self.proxy.down()
        self.moto.stop()

    def keys(self, prefix: str = "") -> dict[str, int]:
        """What the bucket holds under our prefix, straight from moto (not through the proxy)."""
        found: dict[str, int] = {}
        pages = self.moto.client().get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=f"{PREFIX}/{prefix}"):
            for obj in page.get("Contents", []):
                found[obj["Key"][len(PREFIX) + 1 :]] = int(obj["Size"])
        return found

    def worker_log(self) -> str:
        return self.worker.log() if self.worker is not None else ""


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Setup]:
    setup = S3Setup(tmp_path_factory.mktemp("s3-training"))
    try:
        setup.start()
        yield setup
    finally:
        setup.stop()


def _key_of(location: str, bucket: str) -> str:
    head = f"s3://{bucket}/{PREFIX}/"
    assert location.startswith(head), location
    return location[len(head) :]


def _model_path(job: Any) -> str:
    path: str = job.model_extra["ftserve"]["model_path"]
    return path


def test_the_start_reclaimed_a_cut_off_upload(s3: S3Setup) -> None:
    assert s3.uploads() == []
    assert "files/file-cut-off" not in s3.keys("files/")


def test_train_serve_and_delete_a_model_on_s3(s3: S3Setup) -> None:
    client = s3.server.client()
    file_id = upload(client, chat_rows(12))
    assert list(s3.keys("files/")) == [f"files/{file_id}"]
    assert not (s3.server.data_dir / "blobs" / "files").exists()  # nothing on the local disk
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=file_id,
        hyperparameters={"n_epochs": 2, "batch_size": 4},
    )
    assert wait_final(client, job.id, timeout=120) == "succeeded", s3.worker_log()
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.fine_tuned_model is not None
    # The worker read the training file from the bucket into its own cache, and kept no local
    # copy of what it uploaded.
    assert (s3.worker_cache / "files" / file_id).is_file()
    work = s3.worker_cache / "work" / "jobs" / job.id
    deadline = time.monotonic() + 30  # the child tidies up after its final commit
    while work.exists():
        assert time.monotonic() < deadline, sorted(work.rglob("*"))
        time.sleep(0.05)

    # Each listed checkpoint, and the model, lie in the bucket under the claim's tree.
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert sorted(c.step_number for c in checkpoints) == [3, 6]
    model_key = _key_of(_model_path(job), s3.bucket)
    claim = model_key.split("/")[2]
    assert model_key == f"jobs/{job.id}/{claim}/final"
    objects = s3.keys(f"jobs/{job.id}/")
    assert f"{model_key}/adapter_config.json" in objects
    assert f"{model_key}/adapter_model.safetensors" in objects
    for step in (3, 6):
        tree = f"jobs/{job.id}/{claim}/checkpoints/step-{step:06d}/"
        assert f"{tree}adapter_model.safetensors" in objects, sorted(objects)
    # Nothing else: no stale claim, no half-written directory.
    assert {k.split("/")[2] for k in objects} == {claim}
    assert not any("/.tmp-" in k for k in objects)
    [results] = job.result_files
    assert f"files/{results}" in s3.keys("files/")
    assert client.files.content(results).text.startswith("step,train_loss")

    # Served from the bucket through the API machine's read-through cache.
    answer = client.chat.completions.create(
        model=job.fine_tuned_model,
        messages=[{"role": "user", "content": "What is 2 plus 2?"}],
        max_tokens=8,
        temperature=0,
    )
    assert answer.model == job.fine_tuned_model and answer.choices[0].message.content
    cached = s3.server.data_dir / "cache" / "models" / model_key
    assert (cached / "adapter_config.json").is_file()

    client.models.delete(job.fine_tuned_model)
    assert s3.keys(f"jobs/{job.id}/") == {}
    assert not cached.exists()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model=job.fine_tuned_model, messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )


def _long_job(client: openai.OpenAI) -> str:
    """Two epochs long enough (2 x 150 one-row steps) that a save comes well after the first
    step, when the tests cut the store off."""
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=upload(client, chat_rows(150)),
        hyperparameters={"n_epochs": 2, "batch_size": 1},
    )
    deadline = time.monotonic() + 120
    while not any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job.id)):
        assert time.monotonic() < deadline, "the job logged no step"
        time.sleep(0.05)
    return job.id


def _wait_for_log(s3: S3Setup, text: str, after: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in s3.worker_log()[after:]:
        assert time.monotonic() < deadline, f"no {text!r} in the worker's log:\n{s3.worker_log()}"
        time.sleep(0.05)


def test_a_save_during_an_outage_is_retried_and_succeeds(s3: S3Setup) -> None:
    client = s3.server.client()
    seen = len(s3.worker_log())
    job_id = _long_job(client)
    s3.proxy.down()
    try:
        # The first epoch's checkpoint comes while the store is away, and its upload retries.
        _wait_for_log(s3, "could not save checkpoint step 150", seen)
        time.sleep(1.0)
    finally:
        s3.proxy.up()
    assert wait_final(client, job_id, timeout=120) == "succeeded", s3.worker_log()[seen:]
    job = client.fine_tuning.jobs.retrieve(job_id)
    model_key = _key_of(_model_path(job), s3.bucket)
    objects = s3.keys(f"jobs/{job_id}/")
    assert f"{model_key}/adapter_model.safetensors" in objects
    rows = client.fine_tuning.jobs.checkpoints.list(job_id).data
    assert sorted(c.step_number for c in rows) == [150, 300]
    claim = model_key.split("/")[2]
    for c in rows:
        tree = f"jobs/{job_id}/{claim}/checkpoints/step-{c.step_number:06d}/"
        assert f"{tree}adapter_model.safetensors" in objects
    answer = client.chat.completions.create(
        model=job.fine_tuned_model or "", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert answer.choices[0].finish_reason in ("stop", "length")


def test_a_store_that_stays_down_fails_the_job_with_a_clear_error(s3: S3Setup) -> None:
    client = s3.server.client()
    job_id = _long_job(client)
    s3.proxy.down()
    try:
        status = wait_final(client, job_id, timeout=120)
    finally:
        s3.proxy.up()
    job = client.fine_tuning.jobs.retrieve(job_id)
    assert status == "failed", s3.worker_log()
    assert job.error is not None and job.error.code == "blob_store_unavailable"
    message = job.error.message or ""
    assert "could not save checkpoint step 150" in message
    assert f"stayed unreachable for {RETRY_SECONDS} s" in message
    assert job.fine_tuned_model is None and not job.result_files
    assert not any(m.id.endswith(job_id[-8:]) for m in client.models.list())
    events = [e.message for e in client.fine_tuning.jobs.list_events(job_id, limit=1000)]
    assert "The job has successfully completed" not in events
    assert not any(m.startswith("New fine-tuned model created") for m in events)
