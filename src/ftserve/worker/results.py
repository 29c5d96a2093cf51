"""The ``fine-tune-results`` file: per-step metrics as CSV, built from the job's metrics events."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

import orjson

COLUMNS = ("step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy")


def results_csv(metric_event_bodies: Iterable[bytes]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    rows: dict[int, list[object]] = {}
    for body in metric_event_bodies:
        data = orjson.loads(body).get("data") or {}
        step = int(data["step"])
        rows[step] = [
            step,
            data.get("train_loss", ""),
            data.get("train_mean_token_accuracy", ""),
            data.get("valid_loss", data.get("full_valid_loss", "")),
            data.get("valid_mean_token_accuracy", data.get("full_valid_mean_token_accuracy", "")),
        ]
    for step in sorted(rows):
        writer.writerow(["" if v is None else v for v in rows[step]])
    return out.getvalue().encode()
