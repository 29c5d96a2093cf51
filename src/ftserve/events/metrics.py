"""The step metrics: every field a training step reports, declared once, in wire order.

A step's figures travel in three shapes, all built from :data:`FIELDS`:

- the ``data`` of its ``metrics`` event, in :data:`FIELDS` order (:func:`event_data`): the
  training figures always, a split's figures only on the steps that measured it;
- a checkpoint's ``metrics`` (``fine_tuning.job.checkpoint``, :func:`checkpoint_metrics`): the
  same order without ``total_steps`` (a job's, not a checkpoint's) and without absent figures;
- the results file's CSV rows (worker/results.py), under OpenAI's own column names.

The OpenAPI document's checkpoint metrics object comes from :func:`checkpoint_metrics_schema`,
the dashboard's charts and checkpoint table from the same fields (web/facts.py). Torch-free.
A reinforcement job's steps and checkpoints carry rewards instead, in the layout of
events/rewards.py, which declares their schemas beside these.

For DPO, a ``*_loss`` is the DPO loss and a ``*_mean_token_accuracy`` the preference accuracy:
the fraction of pairs whose chosen answer gets a higher implicit reward than the rejected one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

JsonType = Literal["integer", "number"]
Measure = Literal["loss", "accuracy"]


@dataclass(frozen=True)
class Split:
    """The data a figure is measured on; ``label`` is how event messages and charts name it."""

    name: str
    label: str


TRAIN = Split("train", "training")
VALID = Split("valid", "validation")
FULL_VALID = Split("full_valid", "full validation")
SPLITS = (TRAIN, VALID, FULL_VALID)


@dataclass(frozen=True)
class MetricField:
    name: str
    json_type: JsonType  # in a metrics event (a checkpoint's figures are all numbers)
    doc: str
    split: Split | None = None  # None: a counter, not a measurement
    measure: Measure | None = None
    in_checkpoint: bool = True


STEP = MetricField("step", "integer", "The optimizer step these figures are of, 1-based.")
TRAIN_LOSS = MetricField(
    "train_loss", "number", "Mean loss on this step's training batch.", TRAIN, "loss"
)
TOTAL_STEPS = MetricField(
    "total_steps",
    "integer",
    "The job's optimizer steps in all (epochs times the steps of one epoch).",
    in_checkpoint=False,
)
TRAIN_ACCURACY = MetricField(
    "train_mean_token_accuracy",
    "number",
    "Share of the trained tokens of this step's training batch that the model predicted.",
    TRAIN,
    "accuracy",
)
VALID_LOSS = MetricField(
    "valid_loss",
    "number",
    "Mean loss on a fixed batch of the validation file; on the steps that evaluate it "
    "(every evaluation interval, and the last).",
    VALID,
    "loss",
)
VALID_ACCURACY = MetricField(
    "valid_mean_token_accuracy",
    "number",
    "Token accuracy on the same validation batch as `valid_loss`.",
    VALID,
    "accuracy",
)
FULL_VALID_LOSS = MetricField(
    "full_valid_loss",
    "number",
    "Mean loss on the whole validation file; the last step only.",
    FULL_VALID,
    "loss",
)
FULL_VALID_ACCURACY = MetricField(
    "full_valid_mean_token_accuracy",
    "number",
    "Token accuracy on the whole validation file; the last step only.",
    FULL_VALID,
    "accuracy",
)

# The order is the metrics event's key order, which clients already parse: keep it.
FIELDS = (
    STEP,
    TRAIN_LOSS,
    TOTAL_STEPS,
    TRAIN_ACCURACY,
    VALID_LOSS,
    VALID_ACCURACY,
    FULL_VALID_LOSS,
    FULL_VALID_ACCURACY,
)
NAMES = tuple(f.name for f in FIELDS)
CHECKPOINT_FIELDS = tuple(f for f in FIELDS if f.in_checkpoint)


def loss_of(split: Split) -> MetricField:
    return next(f for f in FIELDS if f.split is split and f.measure == "loss")


def measured(values: Mapping[str, Any], split: Split) -> bool:
    """Whether a step measured ``split``: its loss is there (training: always)."""
    return split is TRAIN or values.get(loss_of(split).name) is not None


def event_data(values: Mapping[str, Any]) -> dict[str, Any]:
    """A metrics event's ``data``: every field of each split the step measured, in order (an
    accuracy rides along with its loss even when it is missing, as null)."""
    return {
        f.name: values.get(f.name) for f in FIELDS if f.split is None or measured(values, f.split)
    }


def checkpoint_metrics(values: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's ``metrics``: the checkpoint fields present, in order; anything else in
    ``values`` (``total_steps``, a key from elsewhere) is left out."""
    return {f.name: values[f.name] for f in CHECKPOINT_FIELDS if values.get(f.name) is not None}


def checkpoint_metrics_schema() -> dict[str, Any]:
    """The JSON Schema of a checkpoint's ``metrics`` object, for the OpenAPI document. Every
    figure is a number, ``step`` too (OpenAI's checkpoints carry it as ``4.0``); none is
    required: a figure the step did not measure is absent."""
    return {
        "type": "object",
        "required": [],
        "properties": {f.name: {"type": "number", "description": f.doc} for f in CHECKPOINT_FIELDS},
        "additionalProperties": False,
    }


def event_data_schema() -> dict[str, Any]:
    """The JSON Schema of a ``metrics`` event's ``data``: the counters and the training figures
    always; a validation figure only on a step that measured it (its accuracy possibly null)."""
    properties: dict[str, Any] = {}
    for f in FIELDS:
        always = f.split is None or f.split is TRAIN
        kind: Any = f.json_type if always or f.measure == "loss" else [f.json_type, "null"]
        properties[f.name] = {"type": kind, "description": f.doc}
    return {
        "type": "object",
        "required": [f.name for f in FIELDS if f.split is None or f.split is TRAIN],
        "properties": properties,
        "additionalProperties": False,
    }
