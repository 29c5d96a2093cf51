"""The ``fine-tune-results`` file: per-step metrics as CSV, built from the job's metrics events.

A supervised or DPO job's columns are OpenAI's: ``step, train_loss, train_accuracy, valid_loss,
valid_mean_token_accuracy``. A reinforcement job's events carry rewards instead
(events/rewards.py), and OpenAI publishes no results columns for them; its columns are
``step, train_reward_mean, valid_reward_mean, valid_parse_error_mean, completion_tokens_mean``:
the names of the checkpoint metrics where one exists (``train_reward_mean``,
``valid_reward_mean``), from the events' flat keys (the validation figures cover the whole
validation file, and are empty on the steps that ran none). A job's events are all of one
layout; the first event says which.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

import orjson

from ..events.metrics import (
    FULL_VALID_ACCURACY,
    FULL_VALID_LOSS,
    STEP,
    TRAIN_ACCURACY,
    TRAIN_LOSS,
    VALID_ACCURACY,
    VALID_LOSS,
)
from ..events.rewards import is_reward_data

# OpenAI's column names (not the event's field names), each filled from the first of its keys
# a step's data holds: the last step's full validation stands in when the fixed batch is absent.
VALUES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("train_loss", (TRAIN_LOSS.name,)),
    ("train_accuracy", (TRAIN_ACCURACY.name,)),
    ("valid_loss", (VALID_LOSS.name, FULL_VALID_LOSS.name)),
    ("valid_mean_token_accuracy", (VALID_ACCURACY.name, FULL_VALID_ACCURACY.name)),
)
COLUMNS = (STEP.name, *(column for column, _ in VALUES))
# A reinforcement job's columns, from the flat keys of its events' data.
REWARD_VALUES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("train_reward_mean", ("train_mean_reward",)),
    ("valid_reward_mean", ("full_valid_mean_reward",)),
    ("valid_parse_error_mean", ("full_valid_mean_parse_error",)),
    ("completion_tokens_mean", ("completion_tokens_mean",)),
)
REWARD_COLUMNS = (STEP.name, *(column for column, _ in REWARD_VALUES))


def _first(data: dict[str, Any], keys: tuple[str, ...]) -> object:
    return next((data[k] for k in keys if k in data), "")


def results_csv(metric_event_bodies: Iterable[bytes]) -> bytes:
    datas = [orjson.loads(body).get("data") or {} for body in metric_event_bodies]
    rewards = bool(datas) and is_reward_data(datas[0])
    values = REWARD_VALUES if rewards else VALUES
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REWARD_COLUMNS if rewards else COLUMNS)
    rows: dict[int, list[object]] = {}
    for data in datas:
        step = int(data[STEP.name])
        rows[step] = [step, *(_first(data, keys) for _, keys in values)]
    for step in sorted(rows):
        writer.writerow(["" if v is None else v for v in rows[step]])
    return out.getvalue().encode()
