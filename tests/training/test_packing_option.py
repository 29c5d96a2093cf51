"""``"ftserve": {"packing": bool}``: validated at creation, echoed on the job, honoured by the
worker."""

from __future__ import annotations

import openai
import pytest

from ftserve.errors import ApiError
from ftserve.jobs.objects import job_object
from ftserve.jobs.schemas import extension_defaults, parse_create
from ftserve.store.records import JobRecord
from tests.conftest import Server, upload
from tests.e2e.conftest import trainer_server, wait_final  # noqa: F401 - a fixture
from tests.training.test_packing import RELATIVE, varied_rows

BODY = {"model": "ftserve-tiny", "training_file": "file-x"}


def test_packing_is_on_by_default_and_can_be_turned_off() -> None:
    assert parse_create(BODY).extensions["packing"] is True
    assert parse_create({**BODY, "ftserve": {"adapter": "full"}}).extensions["packing"] is True
    off = parse_create({**BODY, "ftserve": {"packing": False}}).extensions
    assert off == {**extension_defaults(), "packing": False}


@pytest.mark.parametrize("value", ["false", 0, 1, [], {}])
def test_a_non_boolean_packing_is_a_400_naming_it(value: object) -> None:
    with pytest.raises(ApiError) as info:
        parse_create({**BODY, "ftserve": {"packing": value}})
    assert info.value.param == "ftserve.packing"
    assert info.value.status == 400


def test_the_job_object_echoes_packing() -> None:
    req = parse_create({**BODY, "ftserve": {"packing": False}})
    job = JobRecord(
        id="ftjob-1",
        organization="personal",
        model=req.model,
        model_source=req.model,
        status="queued",
        created_at=1,
        training_file=req.training_file,
        validation_file=None,
        hyperparameters=req.hyperparameters,
        method=req.method,
        seed=req.seed,
        suffix=None,
        metadata=None,
        integrations=None,
        extensions=req.extensions,
    )
    assert job_object(job)["ftserve"]["packing"] is False


def _losses(client: openai.OpenAI, job_id: str) -> list[float]:
    by_step = {
        int(e.data["step"]): float(e.data["train_loss"])
        for e in client.fine_tuning.jobs.list_events(job_id, limit=1000)
        if e.type == "metrics" and isinstance(e.data, dict)
    }
    return [by_step[s] for s in sorted(by_step)]


def test_a_job_with_packing_off_trains_the_same_losses_padded(trainer_server: Server) -> None:  # noqa: F811
    """Through the API and a worker: both jobs echo their setting, succeed, and report the same
    losses to 1e-4 (in-process tests prove the trainer honours the flag; on this model the two
    paths happen to round identically, so the losses cannot tell them apart here)."""
    client = trainer_server.client()
    fid = upload(client, varied_rows(12))  # the validator wants 10 or more
    hp = {"n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": 10.0}
    jobs = [
        client.fine_tuning.jobs.create(
            model="ftserve-tiny",
            training_file=fid,
            seed=5,
            hyperparameters=hp,
            extra_body=extra,
        )
        for extra in (None, {"ftserve": {"packing": False}})
    ]
    echoed = [(j.model_extra or {})["ftserve"]["packing"] for j in jobs]
    assert echoed == [True, False]
    for job in jobs:
        assert wait_final(client, job.id) == "succeeded"
    packed, padded = (_losses(client, j.id) for j in jobs)
    assert len(packed) == len(padded) == 3
    for a, b in zip(packed, padded, strict=True):
        assert abs(a - b) <= RELATIVE * abs(b)
