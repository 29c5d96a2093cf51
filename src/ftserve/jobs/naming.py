"""Names of fine-tuned models and their checkpoints: ``ft:{base}:{org}:{suffix}:{id}``."""

from __future__ import annotations

from pathlib import PurePath

from ..ids import fine_tuned_model_name
from ..store.records import JobRecord


def base_name(job: JobRecord) -> str:
    # A directory or GGUF path would put slashes and maybe colons into the name; its last part
    # (without ``.gguf``) is what people call the model.
    if job.model.startswith(("/", ".", "~")) or job.model.lower().endswith(".gguf"):
        part = PurePath(job.model)
        name = part.stem if part.suffix.lower() == ".gguf" else part.name
        return (name or "model").replace(":", "-")
    return job.model.replace(":", "-")


def model_name(job: JobRecord) -> str:
    # The tail is the job id's last 8 characters: stable across restarts of the same job.
    return fine_tuned_model_name(base_name(job), job.organization, job.suffix, job.id[-8:])


def checkpoint_name(job: JobRecord, step: int) -> str:
    return f"{model_name(job)}:ckpt-step-{step}"
