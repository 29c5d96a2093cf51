"""Fine-tuned models planted straight into a server's store, for API tests that need one without
training: a job taken through ``running`` (with checkpoint rows, as a worker writes them) to the
status asked for, with small stand-in weight directories in the blob dir."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftserve.config import Settings
from ftserve.ids import checkpoint_id, job_id
from ftserve.jobs.method import Hyperparameters, Method
from ftserve.jobs.naming import checkpoint_name, model_name
from ftserve.store.open import open_store
from ftserve.store.records import CheckpointRecord, Claim, JobRecord, NewEvent
from tests.conftest import Server

HYPERPARAMETERS = Hyperparameters(batch_size=1, learning_rate_multiplier=1.0, n_epochs=3)


@dataclass(frozen=True)
class Planted:
    job_id: str
    model: str  # the fine-tuned model's name (also for jobs that did not succeed)
    checkpoints: list[str]  # checkpoint model names, oldest step first (not the final step)
    model_path: Path
    checkpoint_paths: list[Path]
    finished_at: int | None


def plant(
    where: Path | Server,
    *,
    organization: str = "personal",
    status: str = "succeeded",
    suffix: str | None = "planted",
    steps: tuple[int, ...] = (10, 20, 30),
    training_format: str = "chat",
    adapter: str = "lora",
    metrics_of: Callable[[int], dict[str, Any]] | None = None,
    events: Sequence[NewEvent] = (),
) -> Planted:
    """``where``: a server (its store, SQLite or PostgreSQL, and its blob dir) or the data dir
    of an SQLite setup. ``metrics_of(step)``: a checkpoint's stored metrics (else a loss);
    ``events``: written while the job runs, before its checkpoints."""
    settings = where.settings if isinstance(where, Server) else Settings(data_dir=where)
    store = open_store(settings)
    try:
        token = "planted"
        job = JobRecord(
            id=job_id(),
            organization=organization,
            model="ftserve-tiny",
            model_source="ftserve-tiny",
            status="running",
            created_at=int(time.time()) - 60,
            training_file="file-planted",
            validation_file=None,
            hyperparameters=HYPERPARAMETERS,
            method=Method("supervised", HYPERPARAMETERS),
            seed=1,
            suffix=suffix,
            extensions={
                "adapter": adapter,
                "lora_rank": 8,
                "base_model": "ftserve-tiny",
                "training_format": training_format,
            },
            lease_owner="planted",
            lease_expires_at=time.time() + 86_400,
            claim_token=token,
        )
        store.create_job(job, [])
        claim = Claim(job.id, token)
        if events:
            store.write_claimed(claim, events=events)
        work = settings.blob_dir / "jobs" / job.id / f"claim-{token}"
        marker = "adapter_config.json" if adapter == "lora" else "config.json"
        names, paths = [], []
        for step in steps:
            path = work / "checkpoints" / f"step-{step:06d}"
            path.mkdir(parents=True)
            (path / marker).write_text(json.dumps({"planted": step}))
            final = step == steps[-1]
            name = model_name(job) if final else checkpoint_name(job, step)
            store.write_claimed(
                claim,
                fence="held",
                add_checkpoint=CheckpointRecord(
                    id=checkpoint_id(),
                    job_id=job.id,
                    created_at=int(time.time()) - 30 + step,
                    step_number=step,
                    fine_tuned_model_checkpoint=name,
                    metrics=(
                        {"step": float(step), "train_loss": 1.0}
                        if metrics_of is None
                        else metrics_of(step)
                    ),
                    path=str(path.relative_to(settings.blob_dir)),
                ),
            )
            if not final:
                names.append(name)
                paths.append(path)
        model_path = work / "final"
        model_path.mkdir(parents=True)
        (model_path / marker).write_text("{}")
        finished_at = None
        if status != "running":
            changes: dict[str, object] = {"status": status}
            if status == "succeeded":
                finished_at = int(time.time())
                changes.update(
                    fine_tuned_model=model_name(job),
                    finished_at=finished_at,
                    extensions={**job.extensions, "model_path": str(model_path)},
                    lease_owner=None,
                    lease_expires_at=None,
                    claim_token=None,
                )
            store.write_claimed(claim, changes=changes)
        return Planted(job.id, model_name(job), names, model_path, paths, finished_at)
    finally:
        store.close()
