"""An RFT job's figures as every reader shows them: the JSON Schemas the OpenAPI document
publishes for its metrics events and checkpoints, the checkpoint object, and the results file."""

from __future__ import annotations

from typing import Any

import jsonschema
import orjson
import pytest
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

from ftserve.checkpoints.schemas import checkpoint_object
from ftserve.events import messages, metrics, rewards
from ftserve.store.records import CheckpointRecord
from ftserve.web.facts import server_facts
from ftserve.worker.results import results_csv
from tests.unit import reward_steps


def _valid(schema: dict[str, Any], value: Any) -> bool:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema).is_valid(value)


ONE_GRADER = rewards.step_data(
    1,
    2,
    rewards.SplitFigures(
        [rewards.Graded(1.0, completion_tokens=3)],
        rewards.graders_of({"type": "string_check", "name": "s"}),
    ),
    None,
    {},
)


@pytest.mark.parametrize(
    "data",
    [
        reward_steps.step(1, 4, (0.25, 0.75)),
        reward_steps.step(2, 4, (0.5, 1.0), valid=(0.0, 1.0, 0.5)),
        ONE_GRADER,
    ],
    ids=["multi-with-judge", "with-validation", "string-check"],
)
def test_step_data_is_its_schema_and_not_the_loss_one(data: dict[str, Any]) -> None:
    assert _valid(rewards.step_data_schema(), data)
    assert not _valid(metrics.event_data_schema(), data)
    assert _valid(rewards.checkpoint_metrics_schema(), rewards.checkpoint_metrics(data))
    assert not _valid(metrics.checkpoint_metrics_schema(), rewards.checkpoint_metrics(data))


def test_the_reward_schema_refuses_what_is_not_a_reward_step() -> None:
    data = reward_steps.step(2, 4, (0.5,), valid=(1.0,))
    loss_step = metrics.event_data({"step": 1, "total_steps": 2, "train_loss": 1.0})
    schema = rewards.step_data_schema()
    assert not _valid(schema, loss_step)
    assert not _valid(schema, {k: v for k, v in data.items() if k != "scores"})
    assert not _valid(schema, {**data, "train_loss": 1.0})
    assert not _valid(schema, {**data, "train_mean_reward": None})
    wrong_grader = {**data["scores"], "graders": [{"name": "x", "train_reward_mean": 1.0}]}
    assert not _valid(schema, {**data, "scores": wrong_grader})


def test_an_rft_checkpoint_object_keeps_its_null_losses_and_rewards() -> None:
    data = reward_steps.step(4, 8, (0.5, 1.0), valid=(0.0, 1.0))
    record = CheckpointRecord(
        "ftckpt_r", "ftjob-r", 7, 4, "ft:m:ckpt-step-4", rewards.checkpoint_metrics(data), "p"
    )
    obj = checkpoint_object(record)
    assert orjson.dumps(obj["metrics"]) == (
        b'{"step":4.0,"train_loss":null,"train_mean_token_accuracy":null,"valid_loss":null,'
        b'"valid_mean_token_accuracy":null,"full_valid_loss":null,'
        b'"full_valid_mean_token_accuracy":null,"train_reward_mean":0.75,'
        b'"valid_reward_mean":0.5}'
    )
    parsed = FineTuningJobCheckpoint.model_validate(obj)
    assert parsed.metrics.train_loss is None and parsed.metrics.step == 4.0
    assert (parsed.metrics.model_extra or {})["train_reward_mean"] == 0.75


def _bodies(*datas: dict[str, Any]) -> list[bytes]:
    return [messages.reward_metrics(d).body for d in datas]


def test_an_rft_results_file_has_reward_columns() -> None:
    bodies = _bodies(
        reward_steps.step(2, 3, (0.5, 1.0), valid=(0.0, 1.0)),
        reward_steps.step(1, 3, (0.0, 0.5)),
        reward_steps.step(3, 3, (1.0, 1.0), valid=(1.0, 1.0, 1.0, 0.0)),
    )
    assert results_csv(bodies) == (
        b"step,train_reward_mean,valid_reward_mean,valid_parse_error_mean,"
        b"completion_tokens_mean\n"
        b"1,0.25,,,9.0\n"
        b"2,0.75,0.5,0.5,9.0\n"
        b"3,1.0,0.75,0.25,9.0\n"
    )


def test_the_dashboards_reward_keys_are_in_what_the_trainer_writes() -> None:
    facts = server_facts()["rewards"]
    data = reward_steps.step(2, 4, (0.5,), valid=(1.0,))
    assert rewards.is_reward_data(data) and facts["marker"] in data
    assert facts["marker"] not in metrics.event_data({"step": 1, "train_loss": 1.0})
    for s in facts["series"]:
        assert isinstance(data[s["key"]], float), s
    assert isinstance(data[facts["completion_tokens"]], float)
    assert set(facts["checkpoint"]) < set(rewards.checkpoint_metrics(data))
    splits = {s["name"] for s in server_facts()["metrics"]["splits"]}
    assert {s["split"] for s in facts["series"]} <= splits
