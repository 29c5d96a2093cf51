"""The process a worker runs for a node rank it took in another worker's job (``ftserve.nodes``):
it trains its ranks of the job and records nothing.

It reads the job, the training file and the checkpoint the store lists, as the leader does
(through the blob store: the machines share it, each keeps its own cache), then meets the
leader's ranks at the address the store gave (``GangSeat``). Rank 0, on the leader, writes every
record and broadcasts every cancel and pause, so this process ends with the run however it ends:
with the others when they stop, on a failed collective when a rank elsewhere is gone, and at
once when its own worker dies (its lifeline reads EOF). Whatever it wrote locally goes with it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

from ..blobs import open_cache
from ..config import Settings
from ..files.service import FileService
from ..jobs.states import Status
from ..store.open import open_store
from ..store.records import GangSeat, JobRecord
from ..store.wakes import Wakes
from .child import resume_point, training_spec

log = logging.getLogger("ftserve.child")

EXIT_WORKER_GONE = 75  # the same code as a lost rank's: the run is over, not the job


def main(
    seat: GangSeat, settings: Settings, lifeline: Connection, gpus: list[str] | None, devices: int
) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Nothing of this run is recorded here, so nothing waits for a step's write to notice
    # that the worker is gone: a thread does, and ends the process (its local ranks die with
    # it, and the leader's run ends on its next collective).
    threading.Thread(target=_die_with_worker, args=(lifeline,), daemon=True).start()
    try:
        prepared = _prepare(seat, settings)
        if prepared is None:
            return
        _train(seat, settings, *prepared)
    except Exception:
        log.exception("job %s: node %d ended with an error", seat.claim.job_id, seat.node_rank)
        raise


def _die_with_worker(lifeline: Connection) -> None:
    lifeline.poll(None)  # returns at EOF: only the worker held the write end
    os._exit(EXIT_WORKER_GONE)


def _prepare(
    seat: GangSeat, settings: Settings
) -> tuple[JobRecord, Path, Path | None, Path | None] | None:
    """The job's files and resume checkpoint in this machine's cache; None when the claim is
    over already."""
    store = open_store(settings, per_step_writes=False, wakes=Wakes.nothing())
    try:
        job = store.get_job(seat.claim.job_id)
        if job is None or job.claim_token != seat.claim.token or job.status != Status.RUNNING:
            return None
        blobs = open_cache(settings)
        files = FileService(store, blobs, reclaim_after=None)
        now = int(time.time())
        training = store.get_file(job.organization, job.training_file, now)
        validation = (
            store.get_file(job.organization, job.validation_file, now)
            if job.validation_file
            else None
        )
        if training is None or (job.validation_file and validation is None):
            return None  # the leader fails the job, saying so
        training_path = files.blob_path(training)
        validation_path = files.blob_path(validation) if validation else None
        key = resume_point(store, job.id)
        resume_from = blobs.tree(key) if key is not None else None
        return job, training_path, validation_path, resume_from
    finally:
        store.close()  # not needed while training: the leader writes everything


def _train(
    seat: GangSeat,
    settings: Settings,
    job: JobRecord,
    training_path: Path,
    validation_path: Path | None,
    resume_from: Path | None,
) -> None:
    from ..training.distributed import Rendezvous, train_on_devices
    from ..training.spec import TrainingFailed, TrainingStopped

    rendezvous = Rendezvous(seat.node_rank, seat.nodes, seat.address, seat.port)
    # Its own scratch directory: rank 0 alone writes checkpoints and the model, so nothing of
    # the job's is ever written here (the trainer only creates the directory).
    with tempfile.TemporaryDirectory(prefix=f"ftserve-{job.id}-node{seat.node_rank}-") as work:
        spec = training_spec(
            job, settings, training_path, validation_path, resume_from, Path(work), seat.devices
        )
        try:
            train_on_devices(spec, None, rendezvous)
        except (TrainingStopped, TrainingFailed) as end:
            log.info("job %s: node %d stopped with the others: %s", job.id, seat.node_rank, end)
