"""A job's method and hyperparameters (ftserve.jobs.method): the types the store's records hold,
written as exactly the JSON the wire and the stored columns have always had."""

from __future__ import annotations

from dataclasses import fields

import orjson
import pytest

from ftserve.jobs.method import AUTO, Hyperparameters, Method, given
from ftserve.jobs.method_schemas import (
    DPO_HYPERPARAMETERS,
    REINFORCEMENT_HYPERPARAMETERS,
    SUPERVISED_HYPERPARAMETERS,
)
from ftserve.jobs.schemas import parse_create

BODY = {"model": "ftserve-tiny", "training_file": "file-a"}


def test_the_request_tables_name_the_fields_in_their_order() -> None:
    # parse_hyperparameters builds Hyperparameters(**parsed) and to_json writes its keys in
    # field order: both rest on the tables and the type agreeing.
    names = [f.name for f in fields(Hyperparameters)]
    assert [f.name for f in DPO_HYPERPARAMETERS] == names[:4]
    assert [f.name for f in SUPERVISED_HYPERPARAMETERS] == names[:3]
    assert [f.name for f in REINFORCEMENT_HYPERPARAMETERS] == names[:3] + names[4:]
    assert list(Hyperparameters(beta=AUTO).to_json()) == names[:4]
    rft = Hyperparameters(
        reasoning_effort="default", compute_multiplier=AUTO, eval_interval=AUTO, eval_samples=AUTO
    )
    assert list(rft.to_json()) == names[:3] + names[4:]


@pytest.mark.parametrize(
    ("body", "method", "top"),
    [
        (
            {"hyperparameters": {"n_epochs": 3}},
            b'{"type":"supervised","supervised":{"hyperparameters":{"batch_size":"auto",'
            b'"learning_rate_multiplier":"auto","n_epochs":3}}}',
            b'{"batch_size":"auto","learning_rate_multiplier":"auto","n_epochs":3}',
        ),
        (
            {"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.5}}}},
            b'{"type":"dpo","dpo":{"hyperparameters":{"batch_size":"auto",'
            b'"learning_rate_multiplier":"auto","n_epochs":"auto","beta":0.5}}}',
            b'{"batch_size":"auto","learning_rate_multiplier":"auto","n_epochs":"auto"}',
        ),
    ],
)
def test_a_request_becomes_the_json_it_always_was(
    body: dict[str, object], method: bytes, top: bytes
) -> None:
    req = parse_create({**BODY, **body})
    assert orjson.dumps(req.method.to_json()) == method
    assert orjson.dumps(req.hyperparameters.to_json()) == top
    assert Method.from_json(orjson.loads(method)) == req.method
    assert Hyperparameters.from_json(orjson.loads(top)) == req.hyperparameters


def test_a_row_without_a_type_or_values_reads_as_supervised_and_auto() -> None:
    # What every reader assumed of such a row before the columns were typed.
    assert Method.from_json({}) == Method("supervised", Hyperparameters())
    assert Method.from_json({"type": "dpo"}).type == "dpo"
    assert Hyperparameters.from_json({"n_epochs": 2}) == Hyperparameters(n_epochs=2)


def test_given_is_none_for_auto() -> None:
    hp = Hyperparameters(batch_size=4, learning_rate_multiplier=0.5)
    assert [given(hp.batch_size), given(hp.learning_rate_multiplier), given(hp.n_epochs)] == [
        4,
        0.5,
        None,
    ]
    assert given(hp.beta) is None
    assert hp.common() == hp and Hyperparameters(beta=0.1).common() == Hyperparameters()


GRADER = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "operation": "eq",
}


def test_a_reinforcement_method_keeps_its_grader_and_format_through_a_row() -> None:
    schema = {"name": "city", "schema": {"type": "object"}}
    body = {
        **BODY,
        "validation_file": "file-b",
        "method": {
            "type": "reinforcement",
            "reinforcement": {
                "grader": GRADER,
                "hyperparameters": {"compute_multiplier": 0.5, "eval_interval": 2},
                "response_format": {"type": "json_schema", "json_schema": schema},
            },
        },
    }
    method = parse_create(body).method
    raw = orjson.loads(orjson.dumps(method.to_json()))
    assert raw == {
        "type": "reinforcement",
        "reinforcement": {
            "grader": GRADER,
            "hyperparameters": {
                "batch_size": "auto",
                "learning_rate_multiplier": "auto",
                "n_epochs": "auto",
                "reasoning_effort": "default",
                "compute_multiplier": 0.5,
                "eval_interval": 2,
                "eval_samples": "auto",
            },
            "response_format": {"type": "json_schema", "json_schema": schema},
        },
    }
    assert Method.from_json(raw) == method
    assert method.hyperparameters.common() == Hyperparameters()


def test_top_level_hyperparameters_take_the_reinforcement_set() -> None:
    body = {
        **BODY,
        "validation_file": "file-b",
        "method": {"type": "reinforcement", "reinforcement": {"grader": GRADER}},
        "hyperparameters": {"n_epochs": 2, "eval_samples": 3},
    }
    req = parse_create(body)
    assert (req.method.hyperparameters.n_epochs, req.method.hyperparameters.eval_samples) == (2, 3)
    assert req.hyperparameters == Hyperparameters(n_epochs=2)
