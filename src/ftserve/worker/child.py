"""The process that trains one job. Started by the worker (forked from its fork server on CPU,
spawned on GPUs, see runner.py), so a crash, an out-of-memory kill or a cancel never takes the
worker or the API down, and GPU memory goes back to the system when it exits. The only place that
imports the training engine."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..blobs import BlobCache, BlobError, BlobUnavailable, open_cache
from ..config import Settings
from ..errors import StoreError
from ..events import messages
from ..files.service import FileService
from ..jobs.method import given
from ..jobs.naming import model_name
from ..jobs.schemas import DEFAULT_MAX_SEQ_LEN
from ..jobs.states import FINAL, Status
from ..store.open import open_store
from ..store.protocol import Store, WriteRefused
from ..store.records import Claim, FileRecord, JobRecord
from ..store.wakes import Wakes
from . import claimdirs
from .hooks import StoreHooks
from .lease import RELEASED
from .results import results_csv
from .store_retry import retrying

if TYPE_CHECKING:
    from ..training.spec import TrainingSpec

log = logging.getLogger("ftserve.child")


def main(
    job_id: str,
    token: str,
    settings: Settings,
    lifeline: Connection,
    gpus: list[str] | None,
    devices: int = 1,
) -> None:
    """``lifeline``: the read end of a pipe whose write end only the worker holds; it reads as
    ready (EOF) once the worker is gone, however it died. (The parent process is no such sign:
    a forked child's parent is the fork server, which outlives the worker while children run.)
    ``gpus``: the GPUs the worker gave this job (a subset of the ones it may use); ``devices``:
    how many processes it trains on."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    def worker_alive() -> bool:
        return not lifeline.poll()

    # Calls that find the database down (a restart, a fail-over) are retried, not failures.
    store = retrying(
        open_store(settings, per_step_writes=True, wakes=Wakes.nothing()), worker_alive
    )
    try:
        _run(Claim(job_id, token), settings, store, worker_alive, devices)
    finally:
        store.close()


def _fail(store: Store, claim: Claim, code: str, message: str) -> None:
    with contextlib.suppress(WriteRefused):  # cancelled meanwhile, or the claim is gone
        store.write_claimed(
            claim,
            changes={
                "status": Status.FAILED,
                "finished_at": int(time.time()),
                "error": {"code": code, "message": message, "param": None},
                "estimated_finish": None,
                **RELEASED,
            },
            events=[messages.failed(message, code, None)],
        )


def resume_point(store: Store, job_id: str) -> str | None:
    """The key of the newest checkpoint the store lists for the job: what the job has,
    whatever else lies in the blob store."""
    page = store.list_checkpoints(None, job_id, after=None, limit=1)
    if page is None or not page.items:
        return None
    return page.items[0].path


def _run(
    claim: Claim,
    settings: Settings,
    store: Store,
    worker_alive: Callable[[], bool],
    devices: int,
) -> None:
    job = store.get_job(claim.job_id)
    if job is None or job.claim_token != claim.token:
        return
    blobs = open_cache(settings)
    # Earlier claims of this job are stale: what none of the job's rows names is garbage.
    _sweep(store, blobs, job.id, keep=claim.token)
    files = FileService(store, blobs, reclaim_after=None)
    now = int(time.time())
    training = store.get_file(job.organization, job.training_file, now)
    validation = (
        store.get_file(job.organization, job.validation_file, now) if job.validation_file else None
    )
    if training is None or (job.validation_file and validation is None):
        _fail(
            store,
            claim,
            "invalid_file",
            "A file of this job was deleted before training could start.",
        )
        return
    step_log = (
        settings.step_log_dir / f"{job.id}.{claim.token}.log" if settings.step_log_dir else None
    )
    hooks = StoreHooks(
        store,
        job,
        claim,
        worker_alive,
        blobs,
        step_log=step_log,
        retry_seconds=settings.blob_retry_seconds,
    )
    try:
        outcome = _train(job, claim, settings, files, training, validation, hooks, store, devices)
        if outcome is not None:
            _finish(store, files, hooks, job, claim, *outcome)
    finally:
        hooks.close()
        if int(job.extensions.get("nodes", 1)) > 1:
            with contextlib.suppress(StoreError):  # a later claim's gang replaces it anyway
                store.close_gang(claim)
    _let_go(store, blobs, claim, hooks.lost)


def _blob_failure(store: Store, claim: Claim, hooks: StoreHooks, exc: BlobUnavailable) -> None:
    """The blob store stayed unreachable through a save's retries: the job fails, saying so
    (unless it is not this run's any more: then another run carries on)."""
    if hooks.lost:
        log.info("job %s: a stale run stopped on an unreachable blob store", claim.job_id)
        return
    log.error("job %s: %s", claim.job_id, exc.detail)
    _fail(store, claim, "blob_store_unavailable", f"The blob store failed: {exc.detail}"[:2000])


def _train(
    job: JobRecord,
    claim: Claim,
    settings: Settings,
    files: FileService,
    training: FileRecord,
    validation: FileRecord | None,
    hooks: StoreHooks,
    store: Store,
    devices: int,
) -> tuple[int, Path] | None:
    """Train; the trained tokens and final model directory, or None when the job stopped or
    failed (recorded already)."""
    try:
        from ..training.distributed import train_on_devices
        from ..training.spec import TrainingFailed, TrainingStopped
        from .gang import GangNotAssembled, leading, requeue_unassembled

        # From a remote store these are downloaded into this machine's cache (once per file).
        training_path = hooks.with_retries(
            "download the training file", lambda: files.blob_path(training)
        )
        validation_path = (
            hooks.with_retries("download the validation file", lambda: files.blob_path(validation))
            if validation
            else None
        )
        resume_key = resume_point(store, job.id)
        resume_from = (
            hooks.with_retries(
                "download the checkpoint to resume from", lambda: hooks.blobs.tree(resume_key)
            )
            if resume_key is not None
            else None
        )
        spec = training_spec(
            job,
            settings,
            training_path,
            validation_path,
            resume_from,
            hooks.blobs.work_path(claimdirs.claim_key(job.id, claim.token)),
            devices,
        )
        nodes = int(job.extensions.get("nodes", 1))
        rendezvous = leading(store, claim, settings, devices, nodes) if nodes > 1 else None
        result = train_on_devices(spec, hooks, rendezvous)
    except GangNotAssembled as exc:
        requeue_unassembled(store, claim, job.attempts, str(exc))
        return None
    except BlobUnavailable as exc:
        _blob_failure(store, claim, hooks, exc)
        return None
    except TrainingStopped as stop:
        log.info("job %s stopped: %s", job.id, stop)
        return None
    except TrainingFailed as failure:
        _fail(store, claim, failure.code, failure.message)
        return None
    except MemoryError:
        _fail(
            store,
            claim,
            "out_of_memory",
            "Training ran out of memory. Try a smaller batch_size or a smaller model.",
        )
        return None
    except StoreError:
        # The database stayed unreachable past the retries: no fault of the job's. Exit
        # without recording anything; the worker requeues it to resume from its checkpoint.
        raise
    except Exception as exc:
        if hooks.lost:  # e.g. the current claim swept this stale run's files away
            log.info("job %s: a stale run stopped on %s", job.id, type(exc).__name__)
            return None
        log.exception("job %s failed in training", job.id)
        message = f"Training failed: {type(exc).__name__}: {exc}"[:2000]
        _fail(store, claim, "training_error", message)
        return None
    return result.trained_tokens, result.final_path


def training_spec(
    job: JobRecord,
    settings: Settings,
    training_path: Path,
    validation_path: Path | None,
    resume_from: Path | None,
    work_dir: Path,
    devices: int,
) -> TrainingSpec:
    """What the trainer is told about the job: the same on every worker of a job on several."""
    from ..training.spec import TrainingSpec

    hp = job.method.hyperparameters
    rft: dict[str, Any] = {}
    if job.method.type == "reinforcement":
        from ..graders.remote import endpoint

        url, key = endpoint(settings, job.organization)
        rft = {
            "grader": job.method.grader,
            "response_format": job.method.response_format,
            "compute_multiplier": given(hp.compute_multiplier),
            "eval_interval": given(hp.eval_interval),
            "eval_samples": given(hp.eval_samples),
            "reasoning_effort": hp.reasoning_effort or "default",
            "max_completion_tokens": _int_or_none(job.extensions.get("max_completion_tokens")),
            "judge_url": url,
            "judge_api_key": key,
        }
    return TrainingSpec(
        model=job.model_source,
        training_file=training_path,
        validation_file=validation_path,
        method=job.method.type,
        n_epochs=given(hp.n_epochs),
        batch_size=given(hp.batch_size),
        learning_rate_multiplier=given(hp.learning_rate_multiplier),
        beta=given(hp.beta),
        seed=job.seed,
        work_dir=work_dir,
        models_cache_dir=settings.models_dir,
        lora=job.extensions.get("adapter", "lora") != "full",
        lora_rank=int(job.extensions.get("lora_rank", 8)),
        **_memory_options(job.extensions),
        packing=bool(job.extensions.get("packing", True)),
        device=settings.device,  # type: ignore[arg-type]
        torch_threads=settings.torch_threads,
        resume_from=resume_from,
        devices=devices,
        **rft,
    )


def _sweep(
    store: Store, blobs: BlobCache, job_id: str, *, only: str | None = None, keep: str | None = None
) -> None:
    try:
        claimdirs.sweep(store, blobs.blobs, job_id, only=only, keep=keep)
    except (BlobError, BlobUnavailable) as exc:
        # Unnamed blobs stay garbage; a later sweep of the job deletes them.
        log.warning("job %s: could not sweep its unnamed blobs: %s", job_id, exc)


def _let_go(store: Store, blobs: BlobCache, claim: Claim, lost: bool) -> None:
    """Release the claim (a no-op when it is no longer current) and delete what this run wrote
    that no row names; once the job is over, the same goes for every earlier claim."""
    if not lost:
        store.release_claim(claim)
    job = store.get_job(claim.job_id)
    if job is not None and job.status in FINAL:
        _sweep(store, blobs, claim.job_id)
    else:  # a newer claim may be writing already: only this one's tree is ours to tidy
        _sweep(store, blobs, claim.job_id, only=claim.token)
    # What this run wrote locally for a remote store is uploaded, or garbage.
    blobs.forget_work(claimdirs.claim_key(claim.job_id, claim.token))


def _finish(
    store: Store,
    files: FileService,
    hooks: StoreHooks,
    job: JobRecord,
    claim: Claim,
    trained_tokens: int,
    final_path: Path,
) -> None:
    # The model and the results file are in the blob store before the commit that names them:
    # a job never reports success without its weights.
    model_key = hooks.blobs.key_for(final_path)
    csv = results_csv(store.event_bodies(job.id, "metrics"))
    try:
        hooks.save_tree(model_key, final_path, "save the fine-tuned model")
        results = hooks.with_retries(
            "save the results file",
            lambda: files.write_generated(
                job.organization, "step_metrics.csv", "fine-tune-results", csv
            ),
        )
    except BlobUnavailable as exc:
        _blob_failure(store, claim, hooks, exc)
        return
    name = model_name(job)
    page = store.list_checkpoints(None, job.id, after=None, limit=1000)
    checkpoints = sorted(page.items if page else [], key=lambda c: c.step_number)
    # OpenAI announces the kept checkpoints at the end, oldest first.
    events = [
        messages.checkpoint_created(c.step_number, c.fine_tuned_model_checkpoint)
        for c in checkpoints
    ]
    events += [messages.model_created(name), messages.succeeded()]
    try:
        # The results file, the model and the status become the job's in one fenced commit.
        store.write_claimed(
            claim,
            changes={
                "status": Status.SUCCEEDED,
                "fine_tuned_model": name,
                "finished_at": int(time.time()),
                "trained_tokens": trained_tokens,
                "result_files": [results.id],
                "estimated_finish": None,
                **RELEASED,
                "extensions": {
                    **hooks.job.extensions,  # with what the trainer resolved
                    "model_path": hooks.blobs.blobs.location(model_key),
                },
            },
            events=events,
            add_files=[results],
        )
    except WriteRefused:
        # Refused on a retry because the first try committed (the connection dropped before
        # its answer): the job names the results file then, and keeps it.
        current = store.get_job(job.id)
        if current is None or results.id not in current.result_files:
            files.discard_generated(results)


def _memory_options(ext: dict[str, Any]) -> dict[str, Any]:
    """The TrainingSpec fields of the job's memory options ("auto" and absent are None; the
    values a previous run resolved, echoed in ``ext``, are kept)."""
    gc = ext.get("gradient_checkpointing")
    fsdp = ext.get("fsdp")
    quantization = ext.get("quantization")
    return {
        "gradient_checkpointing": gc if isinstance(gc, bool) else None,
        "fsdp": fsdp if isinstance(fsdp, bool) else None,
        "quantization": "nf4" if quantization == "nf4" else None,
        "max_seq_len": int(ext.get("max_seq_len") or DEFAULT_MAX_SEQ_LEN),
        "max_tokens_per_micro_batch": _int_or_none(ext.get("max_tokens_per_micro_batch")),
    }


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) else None
