"""The worker: claims queued jobs, trains each in a child process, keeps its lease alive,
relays cancel and pause, and recovers jobs whose worker died.

The jobs table is the queue (``Store.claim_job`` is atomic). A worker inside ``ftserve serve`` is
woken the moment a job is queued; a separate ``ftserve worker`` process polls every
``POLL_SECONDS``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from multiprocessing.sharedctypes import Synchronized

from ..config import Settings
from ..events import messages
from ..jobs.states import Status
from ..store.protocol import Store
from ..store.records import JobRecord
from . import child
from .hooks import CANCEL, CONTINUE, PAUSE
from .lease import RELEASED, release

log = logging.getLogger("ftserve.worker")

POLL_SECONDS = 0.5  # between checks on running children and on the queue
CANCEL_GRACE_SECONDS = 1.0  # a child that has not stopped by then is killed
EXIT_GRACE_SECONDS = 30.0  # a child that released its job but does not exit is killed


def count_gpus(device: str) -> int:
    if device == "cpu" or shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


@dataclass
class _Running:
    job_id: str
    process: SpawnProcess
    command: Synchronized[int]
    slot: int
    renewed_at: float
    stop_sent_at: float | None = None
    released: bool = False  # the child let go of its job and is only exiting


@dataclass
class Worker:
    settings: Settings
    store: Store
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"
    )

    def __post_init__(self) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._running: dict[str, _Running] = {}
        gpus = count_gpus(self.settings.device)
        self._gpus = gpus
        # One job per GPU; on CPU, as many as the concurrency setting allows.
        self.slots = gpus if gpus else max(self.settings.concurrency, 1)

    # -- control from outside ----------------------------------------------------------------
    def wake(self, _job_id: str | None = None) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    # -- main loop -----------------------------------------------------------------------------
    def run(self) -> None:
        log.info(
            "worker %s: %d slot(s)%s",
            self.worker_id,
            self.slots,
            f" on {self._gpus} GPU(s)" if self._gpus else " on CPU",
        )
        self.recover()
        last_recover = time.monotonic()
        while not self._stop.is_set():
            self._wake.clear()
            self._supervise()
            while self._busy_slots() < self.slots and not self._stop.is_set():
                if not self._claim():
                    break
            if time.monotonic() - last_recover > self.settings.lease_seconds / 2:
                self.recover()
                last_recover = time.monotonic()
            self._wake.wait(POLL_SECONDS)
        self._shutdown()

    def _busy_slots(self) -> int:
        # A child that has released its job only has interpreter teardown left (a second or
        # two with torch loaded); its slot is free for the next job already.
        return sum(1 for r in self._running.values() if not r.released)

    def _claim(self) -> bool:
        job = self.store.claim_job(
            self.worker_id,
            time.time(),
            self.settings.lease_seconds,
            [messages.training_started()],
        )
        if job is None:
            return False
        used = {r.slot for r in self._running.values() if not r.released}
        slot = next(i for i in range(self.slots) if i not in used)
        command: Synchronized[int] = self._ctx.Value("i", CONTINUE)
        process = self._ctx.Process(
            target=child.main,
            args=(
                job.id,
                self.worker_id,
                self.settings,
                command,
                os.getpid(),
                slot if self._gpus else None,
            ),
            name=f"ftserve-train-{job.id}",
            daemon=False,
        )
        process.start()
        if job.id in self._running:  # an earlier run of this job is still exiting
            self._running[f"{job.id}#{process.pid}"] = self._running.pop(job.id)
        self._running[job.id] = _Running(job.id, process, command, slot, time.monotonic())
        log.info("worker %s: training %s (attempt %d)", self.worker_id, job.id, job.attempts)
        return True

    def _supervise(self) -> None:
        now = time.monotonic()
        for key, run in list(self._running.items()):
            if not run.process.is_alive():
                run.process.join()
                del self._running[key]
                if not run.released:
                    self._after_exit(run)
                continue
            if run.released:
                if run.stop_sent_at is not None and now - run.stop_sent_at > EXIT_GRACE_SECONDS:
                    run.process.kill()
                continue
            job = self.store.get_job(run.job_id)
            if job is None or job.lease_owner != self.worker_id:
                if job is not None and job.lease_owner is not None:
                    # Another worker took the job over: this copy must not write any more.
                    log.warning(
                        "worker %s lost the lease of %s to %s; stopping it",
                        self.worker_id,
                        run.job_id,
                        job.lease_owner,
                    )
                    run.process.kill()
                else:
                    run.released = True  # finished and released: let it exit by itself
                    run.stop_sent_at = now
                    self._wake.set()
                continue
            # The status is the request: the API changed it, the training process acts on it.
            if job.status == Status.CANCELLED:
                if run.stop_sent_at is None:
                    run.command.value = CANCEL
                    run.stop_sent_at = now
                elif now - run.stop_sent_at > CANCEL_GRACE_SECONDS:
                    run.process.kill()
            elif job.status in (Status.PAUSED, Status.QUEUED):
                run.command.value = PAUSE
            if now - run.renewed_at > self.settings.lease_seconds / 3:
                self.store.renew_lease(
                    run.job_id, self.worker_id, time.time() + self.settings.lease_seconds
                )
                run.renewed_at = now

    def _after_exit(self, run: _Running) -> None:
        job = self.store.get_job(run.job_id)
        if job is None or job.lease_owner != self.worker_id:
            return  # the child finished the job and released it
        if job.status == Status.RUNNING:
            code = run.process.exitcode
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            self._requeue_or_fail(job, f"The training process ended unexpectedly ({how})")
        else:
            # Cancelled, or paused before the child could save: release; pause resumes from
            # the last checkpoint on disk.
            release(self.store, job.id, self.worker_id)
        self._wake.set()

    def _requeue_or_fail(self, job: JobRecord, reason: str) -> None:
        owner = job.lease_owner
        clear = {
            **RELEASED,
            "estimated_finish": None,
        }
        if job.attempts >= self.settings.max_attempts:
            message = (
                f"{reason}. The job was attempted {job.attempts} times and has "
                "failed for good; see the server log for the cause."
            )
            self.store.update_job(
                job.id,
                expect=[Status.RUNNING],
                expect_lease_owner=owner,
                changes={
                    **clear,
                    "status": Status.FAILED,
                    "finished_at": int(time.time()),
                    "error": {"code": "training_crashed", "message": message, "param": None},
                },
                events=[messages.failed(message, "training_crashed", None)],
            )
        else:
            self.store.update_job(
                job.id,
                expect=[Status.RUNNING],
                expect_lease_owner=owner,
                changes={**clear, "status": Status.QUEUED},
                events=[messages.requeued(reason)],
            )

    def recover(self) -> None:
        """Take back jobs whose worker is gone: leases expired anywhere, or held by a dead
        process on this host (so a restarted ``ftserve serve`` resumes at once)."""
        host = socket.gethostname()
        now = time.time()
        for job in self.store.expired_leases(float("inf")):
            owner = job.lease_owner or ""
            if owner == self.worker_id:
                continue
            expired = job.lease_expires_at is not None and job.lease_expires_at < now
            if not expired and not _dead_local(owner, host):
                continue
            log.warning("worker %s: recovering %s from %s", self.worker_id, job.id, owner)
            if job.status == Status.RUNNING:
                self._requeue_or_fail(job, "The worker training this job stopped responding")
            else:
                release(self.store, job.id, owner)
        self._wake.set()

    def _shutdown(self) -> None:
        """Stopping the worker pauses nothing: children are stopped and their jobs requeued so
        the next worker resumes them from their checkpoints."""
        for run in list(self._running.values()):
            run.process.kill()
            run.process.join()
            job = self.store.get_job(run.job_id)
            if job is not None and job.lease_owner == self.worker_id:
                if job.status == Status.RUNNING:
                    self.store.update_job(
                        job.id,
                        expect=[Status.RUNNING],
                        expect_lease_owner=self.worker_id,
                        changes={
                            "status": Status.QUEUED,
                            **RELEASED,
                            "estimated_finish": None,
                            "attempts": max(job.attempts - 1, 0),
                        },
                        events=[messages.requeued("The worker was shut down")],
                    )
                else:
                    release(self.store, job.id, self.worker_id)
        self._running.clear()


def _dead_local(owner: str, host: str) -> bool:
    parts = owner.split("/")
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
