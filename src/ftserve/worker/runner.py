"""The worker: claims queued jobs, trains each in a child process, keeps its lease alive,
and recovers jobs whose worker died.

The jobs table is the queue (``Store.claim_job`` is atomic; every claim gets its own token).
The worker sleeps on the store's wake-up seam (``store.changes``), so it sees a queued job, a
released slot or a cancel within milliseconds, whichever process wrote it. It relays nothing to
its children: each training write is fenced by the claim in the store, and a cancel or pause
reaches the training process as the refusal of its next step's write. The worker only kills a
child that does not stop in time after a cancel, and one whose claim another worker took.
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
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Literal

from ..blobs import BlobError, BlobUnavailable, open_cache
from ..config import Settings
from ..errors import StoreError
from ..events import messages
from ..jobs.states import FINAL, Status
from ..store.protocol import Store
from ..store.records import Claim, GangSeat, JobChanges, JobRecord
from . import child, claimdirs, follower
from .lease import RELEASED
from .warm import WarmPool

log = logging.getLogger("ftserve.worker")

IDLE_SECONDS = 0.5  # longest sleep between checks when nothing wakes the worker
MIN_CYCLE_SECONDS = 0.005  # a busy store (a step's write every few ms) wakes it at most this often
CANCEL_GRACE_SECONDS = 1.0  # a child that has not stopped by then is killed
EXIT_GRACE_SECONDS = 30.0  # a child that released its job but does not exit is killed

# How a training process starts: forked from the pre-imported fork server ("fork"), handed the
# job as a spawned child that imported the engine ahead of time ("warm"), or spawned for the job
# ("cold"). "auto" is "fork" on CPU and "warm" on GPUs; the others exist for benchmarks and tests.
StartMethod = Literal["auto", "fork", "warm", "cold"]


def visible_gpus(device: str) -> list[str]:
    """The GPUs this worker may use: the operator's ``CUDA_VISIBLE_DEVICES`` when set (a child
    is only ever given a subset of it), else every GPU ``nvidia-smi`` lists."""
    gpus = count_gpus(device)
    if not gpus:
        return []
    chosen = os.environ.get("CUDA_VISIBLE_DEVICES")
    if chosen is None:
        return [str(i) for i in range(gpus)]
    return [d.strip() for d in chosen.split(",") if d.strip()][:gpus]


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
    claim: Claim
    process: BaseProcess
    slots: tuple[int, ...]  # the worker's devices it holds (indices into its GPUs, or CPU slots)
    renewed_at: float
    stop_sent_at: float | None = None
    released: bool = False  # the child let go of its job and is only exiting
    seat: GangSeat | None = None  # a node rank of another worker's job: nothing to record


def new_worker_id() -> str:
    """Host, process and a random part: unique across machines and restarts."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


@dataclass
class Worker:
    settings: Settings
    store: Store
    worker_id: str = field(default_factory=lambda: new_worker_id())
    start_method: StartMethod = "auto"

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._running: dict[str, _Running] = {}
        self._gpu_ids = visible_gpus(self.settings.device)
        gpus = self._gpus = len(self._gpu_ids)
        # Each job trains in a process of its own. On CPU it is forked from a fork server that
        # imported the training engine once (preload.py: ~7 s of imports a spawned child paid
        # per job). On GPUs it is spawned, as CUDA cannot be used in a process forked after it
        # was initialised, ahead of time: a warm child per free slot has imported the engine and
        # picks its device when handed a job (warm.py).
        method = self.start_method if self.start_method != "auto" else "warm" if gpus else "fork"
        self._ctx: SpawnContext | ForkServerContext
        if method == "fork":
            self._ctx = multiprocessing.get_context("forkserver")
            # ftserve.modeling first: it quiets a library's import-time warning (see there).
            self._ctx.set_forkserver_preload(["ftserve.modeling", "ftserve.worker.preload"])
        else:
            self._ctx = multiprocessing.get_context("spawn")
        # Only this process holds the write end: children see EOF on theirs once it is gone.
        self._lifeline, self._lifeline_w = self._ctx.Pipe(duplex=False)
        self.warm: WarmPool | None = None
        if method == "warm":
            assert isinstance(self._ctx, SpawnContext)
            self.warm = WarmPool(self._ctx, self.settings, self._lifeline, self.store.changes.poke)
        # Set once a child can start at once: a job is claimed (its lease running) only then.
        self._ready = threading.Event()
        # A slot is a device: a GPU, or on CPU one training process (the concurrency setting
        # says how many). A job takes as many as its `devices` asks for; "auto" takes every GPU
        # (1 on CPU).
        self.slots = gpus if gpus else max(self.settings.concurrency, 1)
        self.auto_devices = gpus if gpus else 1
        self._published: tuple[int, float] = (-1, 0.0)  # free slots said, and when
        self.blobs = open_cache(self.settings)

    # -- control from outside ----------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        self.store.changes.poke()

    # -- main loop -----------------------------------------------------------------------------
    def run(self) -> None:
        log.info(
            "worker %s: %d slot(s)%s",
            self.worker_id,
            self.slots,
            f" on {self._gpus} GPU(s)" if self._gpus else " on CPU",
        )
        if isinstance(self._ctx, ForkServerContext):
            threading.Thread(target=self._warm_up, name="ftserve-warm-up", daemon=True).start()
        else:
            self._ready.set()
        self._reclaim()
        changes = self.store.changes
        seen = changes.version()
        last_recover = float("-inf")  # the first cycle recovers before it claims
        store_down = False
        while not self._stop.is_set():
            cycle = time.monotonic()
            try:
                if time.monotonic() - last_recover > self.settings.lease_seconds / 2:
                    self._publish(force=True)
                    self.recover()
                    self._tell_unfit()
                    last_recover = time.monotonic()
                self._supervise()
                self._publish()
                while self._busy_slots() < self.slots and self._can_start():
                    # A gang already waiting for workers comes before a new job: it holds a
                    # worker's devices idle until it fills (docs/distributed.md).
                    if self._stop.is_set() or not (self._join() or self._claim()):
                        break
                if self.warm is not None:
                    self.warm.top_up(self.slots - self._busy_slots())
                if store_down:
                    log.warning("worker %s: the store answers again", self.worker_id)
                    store_down = False
            except StoreError as exc:
                # The database is down or restarting: the children retry their own writes, and
                # this loop looks again (each call waits for a connection first, so no spin).
                if not store_down:
                    log.warning("worker %s: the store is unreachable: %s", self.worker_id, exc)
                store_down = True
            rest = MIN_CYCLE_SECONDS - (time.monotonic() - cycle)
            if rest > 0 and not self._stop.is_set():
                time.sleep(rest)
            seen = changes.wait(seen, self._sleep_seconds())
        self._shutdown()

    def _warm_up(self) -> None:
        """Start the fork server and wait until it has imported the engine (it forked a no-op
        child), so the first job's start does not stall this loop for seconds after its claim
        (its lease would run out unrenewed)."""
        try:
            began = time.monotonic()
            process = self._ctx.Process(target=_nothing, name="ftserve-train-warm-up")
            process.start()
            process.join()
            log.info(
                "worker %s: training fork server ready (engine imported in %.1f s)",
                self.worker_id,
                time.monotonic() - began,
            )
        except Exception:
            log.exception("worker %s: the training fork server did not start", self.worker_id)
        finally:
            self._ready.set()
            self.store.changes.poke()

    def _reclaim(self) -> None:
        """Give back the space of uploads a crash cut off (this machine's cache temporaries;
        the blob store's staged objects and incomplete multipart uploads)."""
        try:
            removed = self.blobs.reclaim(self.settings.upload_grace_seconds)
        except (BlobError, BlobUnavailable) as exc:
            log.warning("worker %s: could not reclaim cut-off uploads: %s", self.worker_id, exc)
            return
        if removed:
            log.info("worker %s: reclaimed %d cut-off upload(s)", self.worker_id, removed)

    def _sleep_seconds(self) -> float:
        # Children that must be killed after a grace period need a timely look even when
        # nothing is written; otherwise sleep until the store changes.
        if any(r.stop_sent_at is not None for r in self._running.values()):
            return 0.1
        return IDLE_SECONDS

    def _can_start(self) -> bool:
        """A claimed job's process can start at once (a job is claimed, its lease running, only
        then): the fork server has imported the engine, or a warm child is ready."""
        return self._ready.is_set() and (self.warm is None or self.warm.can_start_job())

    def _busy_slots(self) -> int:
        # A child that has released its job only has interpreter teardown left (a second or
        # two with torch loaded); its slots are free for the next job already.
        return sum(len(r.slots) for r in self._running.values() if not r.released)

    def _publish(self, *, force: bool = False) -> None:
        """Record this worker's free devices in the store when they changed (and within every
        lease, so the row stays live): the queue is claimed against them, and a job no
        worker can fit is told so."""
        free = self.slots - self._busy_slots()
        said, at = self._published
        now = time.time()
        if force or free != said or now - at > self.settings.lease_seconds / 3:
            self.store.record_worker(self.worker_id, self.slots, free, self.auto_devices, now)
            self._published = (free, now)

    def _tell_unfit(self) -> None:
        """Say once, in its log, that a queued job fits no live worker (it stays queued)."""
        live_since = time.time() - self.settings.lease_seconds
        self.store.forget_workers(None, live_since)
        for job in self.store.unfit_jobs(live_since, messages.NO_WORKER_FITS, 100):
            asked = job.extensions.get("devices", job.devices)
            self.store.update_job(
                job.id,
                expect=[Status.QUEUED],
                changes={},
                events=[messages.no_worker_fits(asked)],
            )

    def _claim(self) -> bool:
        free = self.slots - self._busy_slots()
        job = self.store.claim_job(
            self.worker_id,
            time.time(),
            self.settings.lease_seconds,
            [messages.training_started()],
            free=free,
            auto=self.auto_devices,
        )
        if job is None:
            return False
        assert job.claim_token is not None
        claim = Claim(job.id, job.claim_token)
        need = job.devices or self.auto_devices
        if job.extensions.get("devices") == "auto":
            # The job's `ftserve` object says what "auto" came to on this worker.
            self.store.update_job(
                job.id,
                expect=[Status.RUNNING],
                expect_claim=claim.token,
                changes={"extensions": {**job.extensions, "devices": need}},
            )
        slots, gpus = self._take(need)
        args = (job.id, claim.token, self.settings, self._lifeline, gpus, need)
        process = self.warm.hand(args) if self.warm is not None else None
        if process is None:
            process = self._ctx.Process(
                target=child.main, args=args, name=f"ftserve-train-{job.id}", daemon=False
            )
            process.start()
        if job.id in self._running:  # an earlier run of this job is still exiting
            self._running[f"{job.id}#{process.pid}"] = self._running.pop(job.id)
        self._running[job.id] = _Running(claim, process, slots, time.monotonic())
        self._publish()
        log.info("worker %s: training %s (attempt %d)", self.worker_id, job.id, job.attempts)
        return True

    def _take(self, need: int) -> tuple[tuple[int, ...], list[str] | None]:
        """``need`` free slots, and their GPUs on a GPU worker."""
        used = {i for r in self._running.values() if not r.released for i in r.slots}
        slots = tuple(i for i in range(self.slots) if i not in used)[:need]
        return slots, [self._gpu_ids[i] for i in slots] if self._gpus else None

    def _join(self) -> bool:
        """Take a node rank of another worker's job (``ftserve.nodes``) when one fits."""
        seat = self.store.join_gang(self.worker_id, self.slots - self._busy_slots(), time.time())
        if seat is None:
            return False
        slots, gpus = self._take(seat.devices)
        process = self._ctx.Process(
            target=follower.main,
            args=(seat, self.settings, self._lifeline, gpus, seat.devices),
            name=f"ftserve-train-{seat.claim.job_id}-node{seat.node_rank}",
            daemon=False,
        )
        process.start()
        key = f"{seat.claim.job_id}/{seat.claim.token}/node{seat.node_rank}"
        self._running[key] = _Running(seat.claim, process, slots, time.monotonic(), seat=seat)
        self._publish()
        log.info(
            "worker %s: training %s as node %d of %d",
            self.worker_id,
            seat.claim.job_id,
            seat.node_rank,
            seat.nodes,
        )
        return True

    def _supervise(self) -> None:
        now = time.monotonic()
        for key, run in list(self._running.items()):
            if not run.process.is_alive():
                run.process.join()
                del self._running[key]
                if not run.released and run.seat is None:
                    self._after_exit(run)
                continue
            if run.seat is not None:
                self._supervise_node(run, now)
                continue
            if run.released:
                if run.stop_sent_at is not None and now - run.stop_sent_at > EXIT_GRACE_SECONDS:
                    run.process.kill()
                continue
            job = self.store.get_job(run.claim.job_id)
            if job is None or job.claim_token != run.claim.token:
                if job is not None and job.claim_token is not None:
                    # Another claim has the job: this run's writes are refused already; stop it.
                    log.warning(
                        "worker %s lost its claim of %s to %s; stopping its run",
                        self.worker_id,
                        run.claim.job_id,
                        job.lease_owner,
                    )
                    run.process.kill()
                else:
                    run.released = True  # finished and released: let it exit by itself
                    run.stop_sent_at = now
                continue
            if job.status in FINAL:
                # Cancelled: the child stops at its next step's write; a child stuck in a long
                # load or evaluation is killed after a grace period (there is nothing to save).
                if run.stop_sent_at is None:
                    run.stop_sent_at = now
                elif now - run.stop_sent_at > CANCEL_GRACE_SECONDS:
                    run.process.kill()
            if now - run.renewed_at > self.settings.lease_seconds / 3:
                if not self.store.renew_lease(run.claim, time.time() + self.settings.lease_seconds):
                    continue  # the claim just went; the next look stops the run
                run.renewed_at = now

    def _supervise_node(self, run: _Running, now: float) -> None:
        """A node rank of another worker's job ends with the run: it stops by itself when the
        others do; once the leader's claim is gone (released, or taken by a recovery), a
        process still stuck (in a rendezvous, in a collective with a machine that vanished) is
        killed after a grace period."""
        job = self.store.get_job(run.claim.job_id)
        if job is not None and job.claim_token == run.claim.token:
            return
        if run.stop_sent_at is None:
            run.stop_sent_at = now
        elif now - run.stop_sent_at > CANCEL_GRACE_SECONDS:
            run.process.kill()

    def _after_exit(self, run: _Running) -> None:
        job = self.store.get_job(run.claim.job_id)
        if job is None or job.claim_token != run.claim.token:
            return  # the child finished the job and released it, or the claim is gone
        if job.status == Status.RUNNING:
            code = run.process.exitcode
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            self._requeue_or_fail(job, f"The training process ended unexpectedly ({how})")
        else:
            # Cancelled, or paused before the child could save: release; a pause resumes from
            # the last checkpoint the store lists.
            self.store.release_claim(run.claim)
            if job.status in FINAL:
                try:
                    claimdirs.sweep(self.store, self.blobs.blobs, job.id)
                except (BlobError, BlobUnavailable) as exc:
                    log.warning("worker: could not sweep the unnamed blobs of %s: %s", job.id, exc)

    def _requeue_or_fail(self, job: JobRecord, reason: str) -> None:
        token = job.claim_token
        clear: JobChanges = {**RELEASED, "estimated_finish": None}
        if job.attempts >= self.settings.max_attempts:
            message = (
                f"{reason}. The job was attempted {job.attempts} times and has "
                "failed for good; see the server log for the cause."
            )
            self.store.update_job(
                job.id,
                expect=[Status.RUNNING],
                expect_claim=token,
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
                expect_claim=token,
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
            elif job.claim_token is not None:
                self.store.release_claim(Claim(job.id, job.claim_token))

    def _shutdown(self) -> None:
        """Stopping the worker pauses nothing: children are stopped and their jobs requeued so
        the next worker resumes them from their checkpoints."""
        if self.warm is not None:
            self.warm.close()
        try:
            self.store.forget_workers(self.worker_id, time.time() - self.settings.lease_seconds)
        except StoreError as exc:  # its row goes stale by itself
            log.warning("worker %s: could not remove its capacity row: %s", self.worker_id, exc)
        for run in list(self._running.values()):
            run.process.kill()
            run.process.join()
            if run.seat is not None:
                continue  # the leader's run ends on its next collective and requeues the job
            job = self.store.get_job(run.claim.job_id)
            if job is not None and job.claim_token == run.claim.token:
                if job.status == Status.RUNNING:
                    self.store.update_job(
                        job.id,
                        expect=[Status.RUNNING],
                        expect_claim=run.claim.token,
                        changes={
                            "status": Status.QUEUED,
                            **RELEASED,
                            "estimated_finish": None,
                            "attempts": max(job.attempts - 1, 0),
                        },
                        events=[messages.requeued("The worker was shut down")],
                    )
                else:
                    self.store.release_claim(run.claim)
        self._running.clear()


def _nothing() -> None:
    """The warm-up child's work: its start shows the fork server is ready."""


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
