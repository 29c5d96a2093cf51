"""The services one API process needs, built once from settings and handed to the routes."""

from __future__ import annotations

from dataclasses import dataclass

from ..batches.service import BatchService
from ..blobs import open_cache
from ..checkpoints.service import CheckpointService
from ..config import Settings
from ..events.service import EventService
from ..files.service import FileService
from ..inference.client import InferenceClient, build_client
from ..jobs.service import JobService
from ..jobs.validator import JobValidator
from ..models.registry import ModelRegistry
from ..models.service import ModelService
from ..responses.service import ResponseService
from ..store.open import open_store
from ..store.protocol import Store
from ..worker.runner import Worker
from .auth import KeyChecker


@dataclass
class Services:
    settings: Settings
    store: Store
    keys: KeyChecker
    files: FileService
    jobs: JobService
    events: EventService
    checkpoints: CheckpointService
    models: ModelService
    validator: JobValidator
    workers: list[Worker]
    responses: ResponseService
    batches: BatchService
    inference: InferenceClient | None = None  # None: inference is off


def build_services(settings: Settings, store: Store | None = None) -> Services:
    store = store or open_store(settings)
    blobs = open_cache(settings)
    # Cut-off uploads (tmp files, incomplete multipart uploads) are reclaimed at start.
    files = FileService(store, blobs, reclaim_after=settings.upload_grace_seconds)
    registry = ModelRegistry(settings)
    models = ModelService(registry, store, blobs)
    workers = [Worker(settings, store) for _ in range(settings.workers)]
    validator = JobValidator(store, files, settings.min_training_examples)
    jobs = JobService(
        store,
        files,
        registry,
        on_created=validator.submit,
        judges=models.judge,
        python_graders=settings.python_graders,
    )
    return Services(
        settings=settings,
        store=store,
        keys=KeyChecker(settings.api_keys),
        files=files,
        jobs=jobs,
        events=EventService(store, async_reads=settings.pg_async_events),
        checkpoints=CheckpointService(store),
        models=models,
        validator=validator,
        workers=workers,
        responses=ResponseService(store, settings.responses_ttl_days),
        batches=BatchService(store, inference=settings.inference),
        inference=build_client(settings),
    )
