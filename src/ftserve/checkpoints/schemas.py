"""The ``fine_tuning.job.checkpoint`` object and its list, declared once, and the list's
query parameters."""

from __future__ import annotations

from typing import Any

from ..events import rewards
from ..events.metrics import checkpoint_metrics, checkpoint_metrics_schema
from ..store.records import CheckpointRecord
from ..wire.queries import Paging
from ..wire.shapes import INT, STR, TIMESTAMP, Prop, Shape, components, const, list_shape

PAGING = Paging("checkpoint", "Checkpoints", default_limit=10)

CHECKPOINT = Shape(
    "FineTuningJobCheckpoint",
    [
        const("object", "fine_tuning.job.checkpoint"),
        Prop("id", {"type": "string", "pattern": "^ftckpt_"}),
        Prop("created_at", TIMESTAMP),
        Prop("fine_tuned_model_checkpoint", STR),
        Prop("fine_tuning_job_id", STR),
        Prop(
            "metrics",
            {
                "anyOf": [checkpoint_metrics_schema(), rewards.checkpoint_metrics_schema()],
                "description": "The step's figures: a supervised or DPO job's losses and "
                "accuracies (the first form), a reinforcement job's rewards (the second).",
            },
        ),
        Prop("step_number", INT),
    ],
)
CHECKPOINT_LIST = list_shape("ListFineTuningJobCheckpointsResponse", CHECKPOINT.name, ids=True)


def checkpoint_object(c: CheckpointRecord) -> dict[str, Any]:
    return CHECKPOINT.make(
        id=c.id,
        created_at=c.created_at,
        fine_tuned_model_checkpoint=c.fine_tuned_model_checkpoint,
        fine_tuning_job_id=c.job_id,
        metrics=rewards.stored_checkpoint_metrics(c.metrics)
        if rewards.is_reward_checkpoint(c.metrics)
        else checkpoint_metrics(c.metrics),
        step_number=c.step_number,
    )


def schemas() -> dict[str, Any]:
    return components(CHECKPOINT, CHECKPOINT_LIST)
