"""Records and small reads the store tests share."""

from __future__ import annotations

import time
from dataclasses import replace

import orjson

from ftserve.ids import job_id
from ftserve.jobs.method import Hyperparameters, Method
from ftserve.store.protocol import Store
from ftserve.store.records import Claim, JobRecord


def new_job(org: str = "personal", **fields: object) -> JobRecord:
    job = JobRecord(
        id=job_id(),
        organization=org,
        model="ftserve-tiny",
        model_source="ftserve-tiny",
        status="queued",
        created_at=1,
        training_file="file-x",
        validation_file=None,
        hyperparameters=Hyperparameters(),
        method=Method("supervised", Hyperparameters()),
        seed=1,
    )
    return replace(job, **fields)  # type: ignore[arg-type]


def claimed(store: Store, worker: str = "w1") -> tuple[JobRecord, Claim]:
    job = store.claim_job(worker, now=time.time(), lease_seconds=60, events=[])
    assert job is not None and job.claim_token is not None
    return job, Claim(job.id, job.claim_token)


def messages(store: Store, job_id: str) -> list[str]:
    return [orjson.loads(b)["message"] for b in store.event_bodies(job_id)]
