"""The step metrics on the wire, byte for byte: the metrics event a step writes, the metrics a
checkpoint row stores and its ``fine_tuning.job.checkpoint`` object, and the results CSV.
These bytes (key order included) are what clients already parse, so they are pinned here."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import orjson
import pytest

from ftserve.checkpoints.schemas import checkpoint_object
from ftserve.events import messages
from ftserve.events.messages import make_event
from ftserve.store.records import CheckpointRecord, Claim
from ftserve.store.sqlite import SqliteStore
from ftserve.training.spec import CheckpointInfo, StepMetrics
from ftserve.worker.hooks import StoreHooks
from ftserve.worker.results import results_csv
from tests.store.records import new_job as _job

TRAIN = StepMetrics(step=3, total_steps=10, train_loss=1.23456, train_mean_token_accuracy=0.5)
VALID = StepMetrics(
    step=4,
    total_steps=10,
    train_loss=1.0,
    train_mean_token_accuracy=0.625,
    valid_loss=2.5,
    valid_mean_token_accuracy=0.25,
)
FULL = StepMetrics(
    step=10,
    total_steps=10,
    train_loss=0.75,
    train_mean_token_accuracy=0.875,
    valid_loss=0.9,
    valid_mean_token_accuracy=0.75,
    full_valid_loss=0.875,
    full_valid_mean_token_accuracy=0.8,
)
# A validation loss without its accuracy: the accuracy still rides along, as null.
NO_VALID_ACC = StepMetrics(
    step=5, total_steps=10, train_loss=1.0, train_mean_token_accuracy=0.5, valid_loss=2.0
)


def _event(m: StepMetrics) -> bytes:
    return messages.metrics(asdict(m)).body


def _envelope(body: bytes, message: str, data: bytes) -> bytes:
    head = orjson.loads(body)
    return (
        b'{"object":"fine_tuning.job.event","id":"%s","created_at":%d,"level":"info",'
        b'"message":"%s","data":%s,"type":"metrics"}'
        % (head["id"].encode(), head["created_at"], message.encode(), data)
    )


@pytest.mark.parametrize(
    ("m", "message", "data"),
    [
        (
            TRAIN,
            "Step 3/10: training loss=1.23",
            b'{"step":3,"train_loss":1.23456,"total_steps":10,"train_mean_token_accuracy":0.5}',
        ),
        (
            VALID,
            "Step 4/10: training loss=1.00, validation loss=2.50",
            b'{"step":4,"train_loss":1.0,"total_steps":10,"train_mean_token_accuracy":0.625,'
            b'"valid_loss":2.5,"valid_mean_token_accuracy":0.25}',
        ),
        (
            FULL,
            "Step 10/10: training loss=0.75, validation loss=0.90, full validation loss=0.88",
            b'{"step":10,"train_loss":0.75,"total_steps":10,"train_mean_token_accuracy":0.875,'
            b'"valid_loss":0.9,"valid_mean_token_accuracy":0.75,"full_valid_loss":0.875,'
            b'"full_valid_mean_token_accuracy":0.8}',
        ),
        (
            NO_VALID_ACC,
            "Step 5/10: training loss=1.00, validation loss=2.00",
            b'{"step":5,"train_loss":1.0,"total_steps":10,"train_mean_token_accuracy":0.5,'
            b'"valid_loss":2.0,"valid_mean_token_accuracy":null}',
        ),
    ],
)
def test_metrics_event_bytes(m: StepMetrics, message: str, data: bytes) -> None:
    event = messages.metrics(asdict(m))
    assert event.body == _envelope(event.body, message, data)
    assert (event.kind, event.key) == ("metrics", f"step:{m.step}")


def test_checkpoint_metrics_stored_and_listed_bytes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    try:
        store.create_job(_job(), [])
        job = store.claim_job("w1", time.time(), 60, [make_event("Fine-tuning job started")])
        assert job is not None and job.claim_token is not None
        hooks = StoreHooks(store, job, Claim(job.id, job.claim_token), lambda: True, tmp_path)
        for m in (VALID, FULL):
            where = tmp_path / "work" / f"step-{m.step}"
            where.mkdir(parents=True)
            (where / "adapter.bin").write_bytes(b"x")
            info = CheckpointInfo(step=m.step, path=where, metrics=m, epoch=1)
            assert hooks.on_checkpoint(info) == "continue"
        page = store.list_checkpoints(None, job.id, after=None, limit=10)
        assert page is not None
        stored = {c.step_number: orjson.dumps(c.metrics) for c in page.items}
    finally:
        store.close()
    assert stored == {
        4: b'{"step":4.0,"train_loss":1.0,"train_mean_token_accuracy":0.625,"valid_loss":2.5,'
        b'"valid_mean_token_accuracy":0.25}',
        10: b'{"step":10.0,"train_loss":0.75,"train_mean_token_accuracy":0.875,"valid_loss":0.9,'
        b'"valid_mean_token_accuracy":0.75,"full_valid_loss":0.875,'
        b'"full_valid_mean_token_accuracy":0.8}',
    }


def test_checkpoint_object_orders_and_filters_its_metrics() -> None:
    record = CheckpointRecord(
        id="ftckpt_x",
        job_id="ftjob-x",
        created_at=7,
        step_number=2,
        fine_tuned_model_checkpoint="ft:m:ckpt-step-2",
        # Out of order, a null and an unknown key: the object lists the known ones, in order.
        metrics={
            "valid_loss": None,
            "full_valid_loss": 0.5,
            "total_steps": 9,
            "train_loss": 1.5,
            "step": 2.0,
            "train_mean_token_accuracy": 0.5,
        },
        path="p",
    )
    assert orjson.dumps(checkpoint_object(record)) == (
        b'{"object":"fine_tuning.job.checkpoint","id":"ftckpt_x","created_at":7,'
        b'"fine_tuned_model_checkpoint":"ft:m:ckpt-step-2","fine_tuning_job_id":"ftjob-x",'
        b'"metrics":{"step":2.0,"train_loss":1.5,"train_mean_token_accuracy":0.5,'
        b'"full_valid_loss":0.5},"step_number":2}'
    )


def test_results_csv_bytes() -> None:
    bodies = [_event(FULL), _event(TRAIN), _event(VALID), _event(NO_VALID_ACC)]
    # Only full validation figures (a final step whose fixed batch was not asked for).
    only_full = make_event(
        "Step 11/11: training loss=1.00",
        kind="metrics",
        data={"step": 11, "train_loss": 1.0, "full_valid_loss": 0.5},
    ).body
    assert results_csv([*bodies, only_full]) == (
        b"step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n"
        b"3,1.23456,0.5,,\n"
        b"4,1.0,0.625,2.5,0.25\n"
        b"5,1.0,0.5,2.0,\n"
        b"10,0.75,0.875,0.9,0.75\n"
        b"11,1.0,,0.5,\n"
    )
