"""What the fault tests share: separate ``ftserve worker`` processes that can be killed with their
whole process tree, the checks of a job's event log, disk usage of a blob dir, and a private
PostgreSQL cluster that can be crashed and started again.

Everything runs as real processes on loopback; a fault is a real signal or a real database
shutdown, and what survived is read back through the API (the official SDK) as a client would.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import API_KEY, Server
from tests.pg import PgCluster, private_cluster

# Short leases keep takeovers quick: a dead worker's job is taken back within seconds.
LEASE_SECONDS = "4"
SUCCEEDED = "The job has successfully completed"
CANCELLED = "Fine-tuning job cancelled"
FINAL = ("succeeded", "failed", "cancelled")


class Worker:
    """An ``ftserve worker`` in a session of its own, so that its process group (the worker,
    its fork server and its training children) can be killed as one; its log (info level: a
    "training <job> (attempt N)" line per claim) goes to a file."""

    def __init__(self, server: Server, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.server = server
        self.log_path = log_path
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        env = {
            **os.environ,
            "FTSERVE_API_KEYS": API_KEY,
            "FTSERVE_LEASE_SECONDS": LEASE_SECONDS,
            "FTSERVE_LOG_LEVEL": "info",
            **self.env,
        }
        if self.server.database_url:
            env["FTSERVE_DATABASE_URL"] = self.server.database_url
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ftserve",
                    "worker",
                    "--data-dir",
                    str(self.server.data_dir),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while "slot(s)" not in self.log():
            assert self.proc is not None and self.proc.poll() is None, (
                f"worker exited early:\n{self.log()}"
            )
            assert time.monotonic() < deadline, f"worker did not start:\n{self.log()}"
            time.sleep(0.1)

    def claims(self, job_id: str) -> list[int]:
        """The attempt numbers of this worker's claims of the job, from its log."""
        return [int(n) for n in re.findall(rf": training {job_id} \(attempt (\d+)\)", self.log())]

    def kill_group(self) -> None:
        """SIGKILL to the worker and every process of its group, then reap the worker."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        self.kill_group()  # whatever of its group is left (a fork server, a stuck child)
        self.proc = None


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in the process group."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            return True
    return False


def chronological(client: openai.OpenAI, job_id: str) -> list[Any]:
    """Every event of the job, oldest first (the API pages newest first)."""
    return list(reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=1000))))


def metric_steps(events: list[Any]) -> list[int]:
    return [int(e.data["step"]) for e in events if e.type == "metrics"]


def is_terminal(event: Any) -> bool:
    return bool(event.message in (SUCCEEDED, CANCELLED) or event.level == "error")


def assert_complete_log(events: list[Any], total_steps: int) -> None:
    """Nothing lost, nothing repeated: unique event ids, every step's metrics once and in
    order, exactly one terminal event, and it is the last."""
    ids = [e.id for e in events]
    assert len(set(ids)) == len(ids), "an event id appears twice"
    assert metric_steps(events) == list(range(1, total_steps + 1))
    terminal = [e for e in events if is_terminal(e)]
    assert len(terminal) == 1, [e.message for e in terminal]
    assert events[-1].id == terminal[0].id, [e.message for e in events[-5:]]
    stamps = [e.created_at for e in events]
    assert stamps == sorted(stamps)


def wait_for(what: str, check: Any, timeout: float, interval: float = 0.05) -> Any:
    """Poll ``check()`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(interval)


def wait_final(client: openai.OpenAI, job_id: str, timeout: float = 180.0) -> str:
    status: str = wait_for(
        f"{job_id} to finish",
        lambda: (s := client.fine_tuning.jobs.retrieve(job_id).status) in FINAL and s,
        timeout,
        interval=0.2,
    )
    return status


def tree_bytes(root: Path) -> int:
    """Bytes in the regular files under ``root`` (0 when it does not exist)."""
    total = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                total += st.st_size
    return total


def tree_files(root: Path) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, n), root)
        for d, _dirs, names in os.walk(root)
        for n in names
    )


class RestartablePg(PgCluster):
    """A private cluster of the test's own (never the session's, which other tests use) that
    can be crashed (``pg_ctl stop -m immediate``: every backend killed, no shutdown checkpoint,
    every connection dropped, as when the database server process dies) and started again on
    the same port, socket dir and data."""

    def durable_url(self, dbname: str) -> str:
        """The database's URL for clients whose commits are synchronous, PostgreSQL's default.
        The test cluster turns ``synchronous_commit`` off for speed, and a crash then loses
        the last commits it acknowledged (up to three WAL-writer rounds, ~0.6 s): measured
        here as four steps' metrics gone after the restart. The host does not crash, so
        ``fsync=off`` loses nothing: written WAL is in the page cache."""
        return self.url(dbname) + "&options=-c%20synchronous_commit%3Don"

    def crash(self) -> None:
        self.pg_ctl_stop("immediate")


@pytest.fixture
def private_pg() -> Iterator[RestartablePg]:
    with private_cluster(RestartablePg) as cluster:
        yield cluster


def migrate(url: str) -> None:
    """``ftserve migrate``, as an operator runs it before starting servers."""
    out = subprocess.run(
        [sys.executable, "-m", "ftserve", "migrate"],
        env={**os.environ, "FTSERVE_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"ftserve migrate failed:\n{out.stdout}{out.stderr}"
