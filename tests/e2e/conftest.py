"""A server with an embedded worker, for jobs that really train, on the store the ``backend``
fixture names (tests/conftest.py): SQLite always, PostgreSQL too for tests marked
``both_backends`` (those about the store's part: claims, fences, pause/resume, cancel, separate
and frozen workers), not for those where the backend is irrelevant (model quality)."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import API_KEY, Server, database_url_for
from tests.training.conftest import gpt2_dir, llama_dir  # noqa: F401 - shared model fixtures

FAST_LEASE = "4"


@pytest.fixture(scope="module")
def trainer_server(
    tmp_path_factory: pytest.TempPathFactory, backend: str, request: pytest.FixtureRequest
) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp(f"train-{backend}") / "data",
        env={"FTSERVE_WORKERS": "1", "FTSERVE_LEASE_SECONDS": FAST_LEASE},
        database_url=database_url_for(request, backend),
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def own_trainer_server(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> Iterator[Server]:
    srv = Server(
        tmp_path / "data",
        env={"FTSERVE_WORKERS": "1", "FTSERVE_LEASE_SECONDS": FAST_LEASE},
        database_url=database_url_for(request, backend),
    )
    yield srv
    srv.stop(signal.SIGKILL)


@pytest.fixture
def api_only(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[Server]:
    """An API-only server (no embedded worker), for separate ``ftserve worker`` processes."""
    srv = Server(
        tmp_path / "data",
        env={"FTSERVE_WORKERS": "0"},
        database_url=database_url_for(request, backend),
    )
    srv.start()
    yield srv
    srv.stop()


def wait_final(client: openai.OpenAI, job_id: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.fine_tuning.jobs.retrieve(job_id).status
        if status in ("succeeded", "failed", "cancelled"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"{job_id} did not finish in {timeout}s")


def metric_steps(client: openai.OpenAI, job_id: str) -> list[int]:
    return [
        int(e.data["step"])
        for e in client.fine_tuning.jobs.list_events(job_id, limit=1000)
        if e.type == "metrics" and isinstance(e.data, dict)
    ]


def wait_steps(client: openai.OpenAI, job_id: str, at_least: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(metric_steps(client, job_id)) >= at_least:
            return
        time.sleep(0.1)
    raise AssertionError(f"{job_id} logged fewer than {at_least} steps in {timeout}s")


def _processes() -> list[tuple[int, int, bytes]]:
    """(pid, ppid, cmdline) of every live process."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        if fields[0] != "Z":
            found.append((int(entry), int(fields[1]), cmd))
    return found


def fork_servers(server_pid: int) -> list[int]:
    """PIDs of the worker fork servers of a server or worker process."""
    return [
        pid
        for pid, ppid, cmd in _processes()
        if ppid == server_pid and b"multiprocessing.forkserver" in cmd
    ]


def training_children(server_pid: int) -> list[int]:
    """PIDs of the training processes of a server or worker: forked by its fork server (CPU),
    or spawned by it (GPUs)."""
    procs = _processes()
    servers = {
        pid
        for pid, ppid, cmd in procs
        if ppid == server_pid and b"multiprocessing.forkserver" in cmd
    }
    return [
        pid
        for pid, ppid, cmd in procs
        if ppid in servers or (ppid == server_pid and b"spawn_main" in cmd)
    ]


def wait_gone(pids: list[int], timeout: float = 30.0) -> None:
    """Until every one of the processes has exited: a training process that is gone writes
    nothing more, so what its job's log holds then is final."""
    deadline = time.monotonic() + timeout
    while alive := [pid for pid in pids if running(pid)]:
        assert time.monotonic() < deadline, f"processes {alive} still running after {timeout}s"
        time.sleep(0.02)


class WorkerProc:
    """A separate ``ftserve worker`` process on a server's data dir and store (in a session of
    its own when ``new_session``, so its process group — the worker, its fork server and its
    training children — can be signalled as one)."""

    def __init__(
        self, server: Server, env: dict[str, str] | None = None, new_session: bool = False
    ) -> None:
        self.data_dir = server.data_dir
        self.database_url = server.database_url
        self.env = env or {}
        self.new_session = new_session
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        env = {
            **os.environ,
            "FTSERVE_API_KEYS": API_KEY,
            "FTSERVE_LEASE_SECONDS": FAST_LEASE,
            "FTSERVE_LOG_LEVEL": "warning",
            **self.env,
        }
        if self.database_url:
            env["FTSERVE_DATABASE_URL"] = self.database_url
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ftserve", "worker", "--data-dir", str(self.data_dir)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=self.new_session,
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if self.new_session:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGCONT)
                    os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.send_signal(signal.SIGCONT)
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, exited but not yet reaped, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class CommitWatch:
    """Timestamps the commit that takes a job out of ``running``, seen from outside: a thread
    reads the job's status every ``interval`` seconds (straight from the SQLite file, or over
    its own PostgreSQL connection), so the time it reports is at most one interval plus one
    read after the commit (a read: microseconds on SQLite, ~0.1-0.3 ms on PostgreSQL here)."""

    def __init__(self, server: Server, job_id: str, interval: float = 0.0005) -> None:
        self.committed_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, args=(server, job_id, interval), daemon=True
        )
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait(5)

    def _watch(self, server: Server, job_id: str, interval: float) -> None:
        if server.database_url:
            import psycopg

            with psycopg.connect(server.database_url, autocommit=True) as pg:
                query = "SELECT status FROM jobs WHERE id = %s"
                self._poll(lambda: pg.execute(query, (job_id,)).fetchone(), interval)
            return
        conn = sqlite3.connect(server.settings.sqlite_path, isolation_level=None)
        try:
            query = "SELECT status FROM jobs WHERE id = ?"
            self._poll(lambda: conn.execute(query, (job_id,)).fetchone(), interval)
        finally:
            conn.close()

    def _poll(self, read: Callable[[], tuple[Any, ...] | None], interval: float) -> None:
        self._ready.set()
        while not self._stop.is_set():
            row = read()
            assert row is not None
            if row[0] != "running":
                self.committed_at = time.time()
                return
            time.sleep(interval)

    def result(self, timeout: float = 10.0) -> float:
        self._thread.join(timeout)
        self._stop.set()
        assert self.committed_at is not None, "the job never left running"
        return self.committed_at


def steps_computed_after(log_dir: Path, job_id: str, moment: float) -> int:
    """Steps of the job that its training process finished computing after ``moment``, read
    from the step log it keeps (``FTSERVE_STEP_LOG_DIR``)."""
    count = 0
    for log in log_dir.glob(f"{job_id}.*.log"):
        for line in log.read_text().splitlines():
            _step, computed, _answered, _answer = line.split()
            count += float(computed) > moment
    return count
