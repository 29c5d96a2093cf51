"""The process that trains one job. Started with ``spawn`` by the worker, so a crash, an
out-of-memory kill or a cancel never takes the worker or the API down, and GPU memory goes back
to the system when it exits. The only place that imports the training engine."""

from __future__ import annotations

import logging
import os
import time
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

from ..config import Settings
from ..events import messages
from ..files.service import FileService
from ..jobs.naming import model_name
from ..jobs.states import Status
from ..store.open import open_store
from ..store.protocol import Store
from ..store.records import JobRecord
from .hooks import StoreHooks
from .lease import RELEASED, release
from .results import results_csv

log = logging.getLogger("ftserve.child")


def _hp(job: JobRecord, name: str) -> object:
    kind = str(job.method.get("type", "supervised"))
    value = job.method.get(kind, {}).get("hyperparameters", {}).get(name, "auto")
    return None if value == "auto" else value


def main(
    job_id: str,
    worker_id: str,
    settings: Settings,
    command: Synchronized[int],
    parent_pid: int,
    gpu: int | None,
) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    store = open_store(settings)
    try:
        _run(job_id, worker_id, settings, store, command, parent_pid)
    finally:
        store.close()


def _fail(store: Store, job: JobRecord, worker_id: str, code: str, message: str) -> None:
    store.update_job(
        job.id,
        expect=[Status.RUNNING],
        expect_lease_owner=worker_id,
        changes={
            "status": Status.FAILED,
            "finished_at": int(time.time()),
            "error": {"code": code, "message": message, "param": None},
            "estimated_finish": None,
            **RELEASED,
        },
        events=[messages.failed(message, code, None)],
    )


def _run(
    job_id: str,
    worker_id: str,
    settings: Settings,
    store: Store,
    command: Synchronized[int],
    parent_pid: int,
) -> None:
    job = store.get_job(job_id)
    if job is None or job.lease_owner != worker_id:
        return
    files = FileService(store, settings.blob_dir)
    now = int(time.time())
    training = store.get_file(job.organization, job.training_file, now)
    validation = (
        store.get_file(job.organization, job.validation_file, now) if job.validation_file else None
    )
    if training is None or (job.validation_file and validation is None):
        _fail(
            store,
            job,
            worker_id,
            "invalid_file",
            "A file of this job was deleted before training could start.",
        )
        return
    hooks = StoreHooks(store, job, worker_id, command, parent_pid, settings.blob_dir)
    try:
        from ..training.spec import TrainingFailed, TrainingSpec, TrainingStopped
        from ..training.trainer import train

        lr = _hp(job, "learning_rate_multiplier")
        beta = _hp(job, "beta")
        spec = TrainingSpec(
            model=job.model_source,
            training_file=files.blob_path(training),
            validation_file=files.blob_path(validation) if validation else None,
            method="dpo" if job.method.get("type") == "dpo" else "supervised",
            n_epochs=_int_or_none(_hp(job, "n_epochs")),
            batch_size=_int_or_none(_hp(job, "batch_size")),
            learning_rate_multiplier=float(lr) if isinstance(lr, int | float) else None,
            beta=float(beta) if isinstance(beta, int | float) else None,
            seed=job.seed,
            work_dir=settings.blob_dir / "jobs" / job.id,
            models_cache_dir=settings.models_dir,
            lora=job.extensions.get("adapter", "lora") != "full",
            lora_rank=int(job.extensions.get("lora_rank", 8)),
            device=settings.device,  # type: ignore[arg-type]
            torch_threads=settings.torch_threads,
        )
        result = train(spec, hooks)
    except TrainingStopped as stop:
        hooks.flush()
        if not hooks.parent_gone:
            release(store, job.id, worker_id)
        log.info("job %s stopped: %s", job.id, stop)
        return
    except TrainingFailed as failure:
        hooks.flush()
        _fail(store, job, worker_id, failure.code, failure.message)
        return
    except MemoryError:
        hooks.flush()
        _fail(
            store,
            job,
            worker_id,
            "out_of_memory",
            "Training ran out of memory. Try a smaller batch_size or a smaller model.",
        )
        return
    except Exception as exc:
        log.exception("job %s failed in training", job.id)
        hooks.flush()
        _fail(
            store,
            job,
            worker_id,
            "training_error",
            f"Training failed: {type(exc).__name__}: {exc}"[:2000],
        )
        return
    hooks.flush()
    hooks.prune_checkpoints()  # the rows now match the checkpoints kept on disk
    _finish(store, files, job, worker_id, result.trained_tokens, result.final_path)


def _finish(
    store: Store,
    files: FileService,
    job: JobRecord,
    worker_id: str,
    trained_tokens: int,
    final_path: Path,
) -> None:
    csv = results_csv(store.event_bodies(job.id, "metrics"))
    results = files.add_generated(job.organization, "step_metrics.csv", "fine-tune-results", csv)
    name = model_name(job)
    page = store.list_checkpoints(None, job.id, after=None, limit=1000)
    checkpoints = sorted(page.items if page else [], key=lambda c: c.step_number)
    # OpenAI announces the kept checkpoints at the end, oldest first.
    events = [
        messages.checkpoint_created(c.step_number, c.fine_tuned_model_checkpoint)
        for c in checkpoints
    ]
    events += [messages.model_created(name), messages.succeeded()]
    done = store.update_job(
        job.id,
        expect=[Status.RUNNING],
        expect_lease_owner=worker_id,
        changes={
            "status": Status.SUCCEEDED,
            "fine_tuned_model": name,
            "finished_at": int(time.time()),
            "trained_tokens": trained_tokens,
            "result_files": [results.id],
            "estimated_finish": None,
            **RELEASED,
            "extensions": {**job.extensions, "model_path": os.fspath(final_path)},
        },
        events=events,
    )
    if done is None:
        release(store, job.id, worker_id)


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) else None
