"""Each wire shape is declared once: the document, the checks and the builders follow it.

- a server's document carries its own settings (``FTSERVE_EVENTS_MAX_LIMIT``), and the same
  bound is what the server refuses past;
- a bound changed in its declaration moves the check and ``/openapi.json`` together;
- every response builder makes exactly its shape's keys, in order, valid against its schema.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson
import pytest
from jsonschema import Draft202012Validator

from ftserve.api.openapi import openapi_document
from ftserve.checkpoints.schemas import CHECKPOINT, checkpoint_object
from ftserve.config import Settings
from ftserve.errors import ApiError, InvalidValue, JobNotFound
from ftserve.events import messages, rewards
from ftserve.events.messages import make_event
from ftserve.events.schemas import EVENT
from ftserve.files.schemas import FILE, FILE_DELETED, file_deleted, file_object
from ftserve.jobs import schemas as job_schemas
from ftserve.jobs.objects import JOB, job_object
from ftserve.jobs.schemas import parse_create
from ftserve.models.registry import ResolvedModel, model_object
from ftserve.models.schemas import MODEL, MODEL_DELETED
from ftserve.store.records import CheckpointRecord, FileRecord, JobRecord
from ftserve.wire.shapes import ERROR_RESPONSE, Shape
from tests.conftest import API_KEY, Server
from tests.unit import reward_steps

_LISTS = ("EventsLimit", "JobsLimit", "CheckpointsLimit")
_BODY = {"model": "ftserve-tiny", "training_file": "file-x"}


@pytest.fixture(scope="module")
def small_limit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp("limit500") / "data",
        env={"FTSERVE_WORKERS": "0", "FTSERVE_EVENTS_MAX_LIMIT": "500"},
    )
    srv.start()
    yield srv
    srv.stop()


def test_a_server_publishes_and_enforces_its_own_list_limit(small_limit_server: Server) -> None:
    srv = small_limit_server
    doc = httpx.get(srv.root + "/openapi.json").json()
    for name in _LISTS:
        assert doc["components"]["parameters"][name]["schema"]["maximum"] == 500, name
    assert "1..500 for jobs" in doc["info"]["description"]
    h = {"Authorization": f"Bearer {API_KEY}"}
    for path in (
        "/fine_tuning/jobs",
        "/fine_tuning/jobs/ftjob-x/events",
        "/fine_tuning/jobs/ftjob-x/checkpoints",
    ):
        refused = httpx.get(srv.base_url + path, params={"limit": 501}, headers=h)
        assert refused.status_code == 400, path
        assert refused.json()["error"]["param"] == "limit"
        assert refused.json()["error"]["code"] == "integer_above_max_value"
        at_bound = httpx.get(srv.base_url + path, params={"limit": 500}, headers=h)
        # The jobs list answers; the unknown job's lists get past the limit to the 404.
        assert at_bound.status_code in (200, 404), path
        assert at_bound.json().get("error", {}).get("param") != "limit"


def test_the_document_follows_the_settings_it_is_built_for() -> None:
    default = openapi_document(Settings())
    small = openapi_document(Settings(events_max_limit=500))
    for name in _LISTS:
        assert default["components"]["parameters"][name]["schema"]["maximum"] == 10_000
        assert small["components"]["parameters"][name]["schema"]["maximum"] == 500


def _patched(table: tuple[Any, ...], name: str, **changes: Any) -> tuple[Any, ...]:
    return tuple(dataclasses.replace(f, **changes) if f.name == name else f for f in table)


def _refusal(body: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as info:
        parse_create(body)
    return info.value


def test_a_bound_changed_in_its_declaration_moves_the_check_and_the_document(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def request_schema() -> dict[str, Any]:
        doc = openapi_document(Settings())
        return dict(doc["components"]["schemas"]["CreateFineTuningJobRequest"]["properties"])

    assert request_schema()["suffix"]["anyOf"][0]["maxLength"] == job_schemas.SUFFIX_MAX_LENGTH
    parse_create({**_BODY, "suffix": "s" * 11})  # accepted today

    fields = _patched(job_schemas.CREATE_JOB_FIELDS, "suffix", maximum=10)
    ftserve = next(f for f in fields if f.name == "ftserve")
    fields = _patched(fields, "ftserve", fields=_patched(ftserve.fields, "lora_rank", maximum=16))
    monkeypatch.setattr(job_schemas, "CREATE_JOB_FIELDS", fields)

    props = request_schema()
    assert props["suffix"]["anyOf"][0]["maxLength"] == 10
    rank = props["ftserve"]["anyOf"][0]["properties"]["lora_rank"]["anyOf"][0]
    assert rank["maximum"] == 16
    err = _refusal({**_BODY, "suffix": "s" * 11})
    assert (err.param, err.code) == ("suffix", "string_above_max_length")
    parse_create({**_BODY, "suffix": "s" * 10})
    err = _refusal({**_BODY, "ftserve": {"lora_rank": 17}})
    assert (err.param, err.code) == ("ftserve.lora_rank", "integer_above_max_value")
    assert parse_create({**_BODY, "ftserve": {"lora_rank": 16}}).extensions["lora_rank"] == 16


# -- builders against their shapes -------------------------------------------------------------


@pytest.fixture(scope="module")
def components() -> dict[str, Any]:
    return dict(openapi_document(Settings())["components"])


def _check(shape: Shape, obj: dict[str, Any], components: dict[str, Any]) -> None:
    assert tuple(obj) == shape.keys, shape.name
    schema = {"$ref": f"#/components/schemas/{shape.name}", "components": components}
    Draft202012Validator(schema).validate(obj)


def _job(**changes: Any) -> JobRecord:
    req = parse_create(
        {
            **_BODY,
            "suffix": "s",
            "metadata": {"k": "v"},
            "integrations": [{"type": "wandb", "wandb": {"project": "p", "tags": ["t"]}}],
            "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.5}}},
            "trainingType": "standard",
        }
    )
    job = JobRecord(
        id="ftjob-abc",
        organization="personal",
        model=req.model,
        model_source="ftserve-tiny",
        status="queued",
        created_at=1,
        training_file=req.training_file,
        validation_file=None,
        hyperparameters=req.hyperparameters,
        method=req.method,
        seed=req.seed,
        suffix=req.suffix,
        metadata=req.metadata,
        integrations=req.integrations,
        extensions={**req.extensions, "base_model": "ftserve-tiny", "training_format": "chat"},
    )
    return dataclasses.replace(job, **changes)


def test_job_objects_are_their_declared_shape(components: dict[str, Any]) -> None:
    _check(JOB, job_object(_job()), components)
    finished = _job(
        status="failed",
        finished_at=2,
        error={"code": "invalid_training_file", "message": "bad", "param": None},
        trained_tokens=10,
    )
    _check(JOB, job_object(finished), components)
    _check(JOB, job_object(_job(integrations=None, metadata=None)), components)


def test_file_checkpoint_model_event_and_error_objects_are_their_shapes(
    components: dict[str, Any], tmp_path: Path
) -> None:
    record = FileRecord("file-1", "personal", 12, 1, "a.jsonl", "fine-tune", "files/file-1")
    _check(FILE, file_object(record), components)
    _check(FILE, file_object(dataclasses.replace(record, expires_at=9)), components)
    _check(FILE_DELETED, file_deleted(record), components)
    checkpoint = CheckpointRecord(
        "ftckpt_1", "ftjob-abc", 1, 12, "ft:x:ckpt-step-12", {"step": 12, "train_loss": 0.5}, "p"
    )
    _check(CHECKPOINT, checkpoint_object(checkpoint), components)
    rft = rewards.checkpoint_metrics(reward_steps.step(12, 20, (0.5,), valid=(1.0,)))
    _check(CHECKPOINT, checkpoint_object(dataclasses.replace(checkpoint, metrics=rft)), components)
    _check(
        MODEL, model_object(ResolvedModel("ftserve-tiny", "ftserve-tiny", 1, "ftserve")), components
    )
    _check(MODEL_DELETED, MODEL_DELETED.make(id="ft:x", deleted=True), components)
    for event in (
        make_event("Step 1/2: training loss=0.5", kind="metrics", data={"step": 1}),
        messages.reward_metrics(reward_steps.step(1, 2, (0.5,))),
        make_event("Fine-tuning job started"),
        make_event("failed", level="error", data=None),
    ):
        _check(EVENT, orjson.loads(event.body), components)
    for error in (JobNotFound("ftjob-x"), InvalidValue("bad", param="limit")):
        _check(ERROR_RESPONSE, error.body(), components)


def test_a_shape_refuses_a_builder_that_misses_or_adds_a_key() -> None:
    with pytest.raises(TypeError):
        MODEL.make(id="m", created=1)
    with pytest.raises(TypeError):
        MODEL.make(id="m", created=1, owned_by="o", extra=1)
