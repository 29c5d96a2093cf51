"""The claim sweep on every blob store: what no store row names under a job's claim trees is
garbage (an upload whose row never committed), and only that goes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftserve.blobs import Blobs
from ftserve.ids import checkpoint_id, job_id
from ftserve.jobs.method import Hyperparameters, Method
from ftserve.store.protocol import Store
from ftserve.store.records import CheckpointRecord, Claim, JobRecord
from ftserve.store.sqlite import SqliteStore
from ftserve.worker import claimdirs


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = SqliteStore(tmp_path / "db.sqlite")
    yield store
    store.close()


def _job(store: Store, token: str) -> JobRecord:
    job = JobRecord(
        id=job_id(),
        organization="personal",
        model="ftserve-tiny",
        model_source="ftserve-tiny",
        status="running",
        created_at=int(time.time()),
        training_file="file-x",
        validation_file=None,
        hyperparameters=Hyperparameters(),
        method=Method("supervised", Hyperparameters()),
        seed=1,
        suffix=None,
        extensions={"adapter": "lora", "lora_rank": 8},
        lease_owner="test",
        lease_expires_at=time.time() + 3600,
        claim_token=token,
    )
    store.create_job(job, [])
    return job


def _name(store: Store, job: JobRecord, token: str, step: int, key: str) -> None:
    store.write_claimed(
        Claim(job.id, token),
        fence="held",
        add_checkpoint=CheckpointRecord(
            id=checkpoint_id(),
            job_id=job.id,
            created_at=int(time.time()),
            step_number=step,
            fine_tuned_model_checkpoint=f"ft:x:ckpt-step-{step}",
            metrics={"step": float(step)},
            path=key,
        ),
    )


def _put(blobs: Blobs, tmp_path: Path, keys: list[str]) -> None:
    src = tmp_path / "bytes"
    src.write_bytes(b"weights")
    for key in keys:
        blobs.put_file(key, src)


def test_only_unnamed_blobs_of_the_swept_claims_go(
    blobs: Blobs, store: Store, tmp_path: Path
) -> None:
    job = _job(store, "cur")
    other = _job(store, "x")
    cur, old = f"jobs/{job.id}/claim-cur", f"jobs/{job.id}/claim-old"
    named = [f"{cur}/checkpoints/step-000001/a", f"{cur}/checkpoints/step-000001/sub/b"]
    unnamed = [
        f"{cur}/checkpoints/step-000002/a",  # retired, or uploaded with no row committed
        f"{cur}/checkpoints/.tmp-step-000003-q/a",  # half-written
        f"{cur}/stray.txt",
    ]
    stale = [f"{old}/checkpoints/step-000001/a", f"{old}/final/adapter_model.safetensors"]
    elsewhere = [f"jobs/{other.id}/claim-x/checkpoints/step-000001/a", "files/file-x"]
    _put(blobs, tmp_path, named + unnamed + stale + elsewhere)
    _name(store, job, "cur", 1, f"{cur}/checkpoints/step-000001")

    def listed() -> set[str]:
        return {i.key for i in blobs.list("")}

    # A new claim starting: every other claim of the job is stale; its own is being written.
    claimdirs.sweep(store, blobs, job.id, keep="cur")
    assert listed() == set(named + unnamed + elsewhere)
    # The claim's run ending while the job goes on: only its own unnamed blobs.
    claimdirs.sweep(store, blobs, job.id, only="cur")
    assert listed() == set(named + elsewhere)

    # The job's final model is named by the job row (where it lies, as the store says).
    final = [f"{cur}/final/adapter_config.json", f"{cur}/final/adapter_model.safetensors"]
    _put(blobs, tmp_path, [*final, f"{cur}/final-leftover/x"])
    store.write_claimed(
        Claim(job.id, "cur"),
        changes={
            "status": "succeeded",
            "extensions": {**job.extensions, "model_path": blobs.location(f"{cur}/final")},
        },
    )
    claimdirs.sweep(store, blobs, job.id)  # the job is over: every claim
    assert listed() == set(named + final + elsewhere)
