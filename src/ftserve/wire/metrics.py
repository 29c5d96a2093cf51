"""The step metrics as the wire shows them: a checkpoint's ``metrics`` object, and the ``data``
of an event (a metrics event carries the step's metrics there). Kept in this one module so the
two schemas follow one declaration of the metric fields."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

METRIC_KEYS = (
    "step",
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
)

CHECKPOINT_METRICS_SCHEMA: Json = {
    "type": "object",
    "required": [],
    "properties": {key: {"type": "number"} for key in METRIC_KEYS},
    "additionalProperties": False,
}
EVENT_DATA_SCHEMA: Json = {"type": ["object", "null"]}
