"""The memory options on the wire: declared once in the ``ftserve`` table (a 400 naming
``ftserve.<option>`` for a bad value, defaults echoed), carried into the TrainingSpec by the
worker, and the plan the trainer resolved echoed back through the worker's fenced hooks (with
the back-off's warning said once in the job's log)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from ftserve.api.openapi import openapi_document
from ftserve.config import Settings
from ftserve.errors import ApiError
from ftserve.jobs.objects import JOB, job_object
from ftserve.jobs.schemas import parse_create
from ftserve.store.records import Claim
from ftserve.store.sqlite import SqliteStore
from ftserve.training.spec import MemoryPlan
from ftserve.worker.child import _memory_options
from ftserve.worker.hooks import StoreHooks
from tests.store.records import new_job

BODY = {"model": "ftserve-tiny", "training_file": "file-x"}
DEFAULTS = {
    "adapter": "lora",
    "lora_rank": 8,
    "gradient_checkpointing": "auto",
    "quantization": None,
    "max_seq_len": 2048,
    "max_tokens_per_micro_batch": "auto",
    "packing": True,
    "devices": 1,
    "fsdp": "auto",
    "nodes": 1,
    "max_completion_tokens": "auto",
}


def refusal(ftserve: dict[str, Any]) -> tuple[str | None, str]:
    with pytest.raises(ApiError) as info:
        parse_create({**BODY, "ftserve": ftserve})
    body = info.value.body()["error"]
    return body["param"], body["message"]


@pytest.mark.parametrize(
    ("ftserve", "param"),
    [
        ({"quantization": "nf4", "adapter": "full"}, "ftserve.quantization"),
        ({"quantization": "int8"}, "ftserve.quantization"),
        ({"gradient_checkpointing": "yes"}, "ftserve.gradient_checkpointing"),
        ({"gradient_checkpointing": 1}, "ftserve.gradient_checkpointing"),
        ({"max_seq_len": 8}, "ftserve.max_seq_len"),
        ({"max_seq_len": 200_000}, "ftserve.max_seq_len"),
        ({"max_seq_len": "auto"}, "ftserve.max_seq_len"),
        ({"max_tokens_per_micro_batch": 0}, "ftserve.max_tokens_per_micro_batch"),
        ({"max_tokens_per_micro_batch": 2**21}, "ftserve.max_tokens_per_micro_batch"),
        ({"max_tokens_per_micro_batch": 1.5}, "ftserve.max_tokens_per_micro_batch"),
        ({"fsdp": "yes"}, "ftserve.fsdp"),
        ({"fsdp": True, "devices": 2}, "ftserve.fsdp"),  # adapter lora, the default
        ({"fsdp": True, "adapter": "full"}, "ftserve.fsdp"),  # devices 1, the default
    ],
)
def test_bad_memory_options_are_a_400_naming_them(ftserve: dict[str, Any], param: str) -> None:
    got, message = refusal(ftserve)
    assert got == param
    assert param in message


def test_full_with_nf4_says_what_to_do() -> None:
    _, message = refusal({"quantization": "nf4", "adapter": "full"})
    assert "adapter 'lora'" in message


def test_fsdp_says_what_to_do() -> None:
    _, lora = refusal({"fsdp": True, "devices": 2})
    assert "adapter to 'full'" in lora
    _, one = refusal({"fsdp": True, "adapter": "full", "devices": 1})
    assert "ftserve.devices above 1" in one
    full: dict[str, Any] = {"fsdp": True, "adapter": "full"}
    for asked in ({**full, "devices": 2}, {**full, "devices": "auto"}, {"fsdp": False}):
        assert parse_create({**BODY, "ftserve": asked}).extensions == {**DEFAULTS, **asked}


def test_defaults_and_values_are_echoed() -> None:
    assert parse_create(BODY).extensions == DEFAULTS
    assert parse_create({**BODY, "ftserve": {}}).extensions == DEFAULTS
    asked = {
        "quantization": "nf4",
        "gradient_checkpointing": True,
        "max_seq_len": 512,
        "max_tokens_per_micro_batch": 4096,
    }
    assert parse_create({**BODY, "ftserve": asked}).extensions == {**DEFAULTS, **asked}


def test_the_worker_carries_them_into_the_spec() -> None:
    assert _memory_options(DEFAULTS) == {
        "gradient_checkpointing": None,
        "fsdp": None,
        "quantization": None,
        "max_seq_len": 2048,
        "max_tokens_per_micro_batch": None,
    }
    resolved = {
        **DEFAULTS,
        "gradient_checkpointing": False,
        "max_tokens_per_micro_batch": 512,
        "fsdp": True,
    }
    assert _memory_options({**resolved, "quantization": "nf4", "max_seq_len": 64}) == {
        "gradient_checkpointing": False,
        "fsdp": True,
        "quantization": "nf4",
        "max_seq_len": 64,
        "max_tokens_per_micro_batch": 512,
    }
    # A job created before the options existed trains as it always did.
    assert _memory_options({"adapter": "lora", "lora_rank": 8})["max_seq_len"] == 2048


def _valid_job_object(obj: dict[str, Any]) -> None:
    """The job's ``ftserve`` object is what the published document says it is."""
    components = dict(openapi_document(Settings())["components"])
    schema = components["schemas"][JOB.name]["properties"]["ftserve"]
    Draft202012Validator({**schema, "components": components}).validate(obj["ftserve"])


def test_the_plan_is_echoed_and_a_back_off_said_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    try:
        store.create_job(new_job(extensions=parse_create(BODY).extensions), [])
        job = store.claim_job("w1", time.time(), 60, [])
        assert job is not None and job.claim_token is not None
        hooks = StoreHooks(store, job, Claim(job.id, job.claim_token), lambda: True, tmp_path)
        hooks.on_memory(MemoryPlan(True, 16384), None)
        hooks.on_memory(MemoryPlan(True, 8192), "Out of memory at step 3 ...")
        hooks.on_memory(MemoryPlan(True, 4096, fsdp=True), "Out of memory at step 5 ...")
        stored = store.get_job(job.id)
        assert stored is not None
        ftserve = job_object(stored)["ftserve"]
        levels = [(e["level"], e["message"]) for e in map(orjson.loads, store.event_bodies(job.id))]
        # A paused job refuses the write: nothing is echoed or logged after its pause.
        assert store.update_job(job.id, expect=None, changes={"status": "paused"}) is not None
        hooks.on_memory(MemoryPlan(False, 1024), "late")
        after = store.get_job(job.id)
    finally:
        store.close()
    assert ftserve["gradient_checkpointing"] is True
    assert ftserve["max_tokens_per_micro_batch"] == 4096
    assert ftserve["fsdp"] is True
    _valid_job_object(job_object(stored))
    assert [m for level, m in levels if level == "warn"] == ["Out of memory at step 3 ..."]
    assert after is not None and after.extensions["max_tokens_per_micro_batch"] == 4096


def test_a_job_from_before_the_options_echoes_their_defaults() -> None:
    old = new_job(extensions={"adapter": "full", "lora_rank": 8})
    obj = job_object(old)
    assert obj["ftserve"] == {**DEFAULTS, "adapter": "full"}
    _valid_job_object(obj)
