"""The step-metrics declaration (events/metrics.py) agrees with what it describes: the trainer's
``StepMetrics``, OpenAI's checkpoint metrics, and the JSON Schemas it publishes."""

from __future__ import annotations

from dataclasses import fields

from openai.types.fine_tuning.jobs.fine_tuning_job_checkpoint import Metrics

from ftserve.events import metrics
from ftserve.training.spec import StepMetrics


def test_the_trainer_reports_every_declared_field() -> None:
    assert {f.name for f in fields(StepMetrics)} == set(metrics.NAMES)


def test_checkpoint_fields_are_openais() -> None:
    assert {f.name for f in metrics.CHECKPOINT_FIELDS} == set(Metrics.model_fields)
    assert metrics.TOTAL_STEPS not in metrics.CHECKPOINT_FIELDS


def test_each_split_has_one_loss_and_one_accuracy() -> None:
    for split in metrics.SPLITS:
        measures = sorted(str(f.measure) for f in metrics.FIELDS if f.split is split)
        assert measures == ["accuracy", "loss"], split
        assert metrics.loss_of(split).measure == "loss"


def test_checkpoint_metrics_schema_lists_every_checkpoint_field() -> None:
    schema = metrics.checkpoint_metrics_schema()
    assert list(schema["properties"]) == [f.name for f in metrics.CHECKPOINT_FIELDS]
    assert {p["type"] for p in schema["properties"].values()} == {"number"}
    assert all(p["description"] for p in schema["properties"].values())
    assert schema["required"] == [] and schema["additionalProperties"] is False


def test_event_data_schema_requires_the_training_figures() -> None:
    schema = metrics.event_data_schema()
    assert schema["required"] == [
        "step",
        "train_loss",
        "total_steps",
        "train_mean_token_accuracy",
    ]
    assert schema["properties"]["step"]["type"] == "integer"
    assert schema["properties"]["valid_loss"]["type"] == "number"
    assert schema["properties"]["valid_mean_token_accuracy"]["type"] == ["number", "null"]


def test_event_data_only_carries_the_splits_a_step_measured() -> None:
    values = {"step": 1, "total_steps": 2, "train_loss": 1.0, "train_mean_token_accuracy": 0.5}
    assert list(metrics.event_data(values)) == [
        "step",
        "train_loss",
        "total_steps",
        "train_mean_token_accuracy",
    ]
    with_full = {**values, "full_valid_loss": 0.5, "full_valid_mean_token_accuracy": None}
    assert metrics.event_data(with_full)["full_valid_mean_token_accuracy"] is None
    assert "valid_loss" not in metrics.event_data(with_full)
    assert metrics.checkpoint_metrics(with_full) == {
        "step": 1,
        "train_loss": 1.0,
        "train_mean_token_accuracy": 0.5,
        "full_valid_loss": 0.5,
    }
