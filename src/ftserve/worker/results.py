"""The ``fine-tune-results`` file: per-step metrics as CSV, built from the job's metrics events."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

import orjson

from ..events.metrics import (
    FULL_VALID_ACCURACY,
    FULL_VALID_LOSS,
    STEP,
    TRAIN_ACCURACY,
    TRAIN_LOSS,
    VALID_ACCURACY,
    VALID_LOSS,
    MetricField,
)

# OpenAI's column names (not the event's field names), each filled from the first of its fields
# a step's data holds: the last step's full validation stands in when the fixed batch is absent.
VALUES: tuple[tuple[str, tuple[MetricField, ...]], ...] = (
    ("train_loss", (TRAIN_LOSS,)),
    ("train_accuracy", (TRAIN_ACCURACY,)),
    ("valid_loss", (VALID_LOSS, FULL_VALID_LOSS)),
    ("valid_mean_token_accuracy", (VALID_ACCURACY, FULL_VALID_ACCURACY)),
)
COLUMNS = (STEP.name, *(column for column, _ in VALUES))


def _first(data: dict[str, object], fields: tuple[MetricField, ...]) -> object:
    return next((data[f.name] for f in fields if f.name in data), "")


def results_csv(metric_event_bodies: Iterable[bytes]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    rows: dict[int, list[object]] = {}
    for body in metric_event_bodies:
        data = orjson.loads(body).get("data") or {}
        step = int(data[STEP.name])
        rows[step] = [step, *(_first(data, fields) for _, fields in VALUES)]
    for step in sorted(rows):
        writer.writerow(["" if v is None else v for v in rows[step]])
    return out.getvalue().encode()
