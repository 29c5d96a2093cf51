"""Fine-tuning jobs through the official SDK: create (every field and bound), list, retrieve,
state changes and their refusals, file validation outcomes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from tests.conftest import OTHER_ORG_KEY, Server, chat_rows, upload, wait_status

pytestmark = pytest.mark.both_backends  # the [postgres] ids too (tests/conftest.py)


@pytest.fixture(scope="module")
def training_file(server: Server) -> str:
    return upload(server.client(), chat_rows(50))


def test_create_echoes_everything(client: openai.OpenAI, training_file: str) -> None:
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=training_file,
        validation_file=training_file,
        suffix="my-model",
        seed=42,
        metadata={"team": "nlp", "run": "1"},
        method={
            "type": "supervised",
            "supervised": {
                "hyperparameters": {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 0.5}
            },
        },
        integrations=[{"type": "wandb", "wandb": {"project": "p", "tags": ["a"]}}],
    )
    assert job.id.startswith("ftjob-") and len(job.id) == len("ftjob-") + 24
    assert job.object == "fine_tuning.job"
    assert job.status == "validating_files"
    assert job.model == "ftserve-tiny"
    assert job.seed == 42
    assert job.error is None and job.fine_tuned_model is None and job.finished_at is None
    assert job.result_files == [] and job.trained_tokens is None
    assert job.organization_id.startswith("org-")
    assert job.hyperparameters.n_epochs == 3 and job.hyperparameters.batch_size == 4
    assert job.hyperparameters.learning_rate_multiplier == 0.5
    assert job.method is not None and job.method.type == "supervised"
    assert job.metadata == {"team": "nlp", "run": "1"}
    assert job.integrations is not None and job.integrations[0].wandb.project == "p"
    extra: dict[str, Any] = job.model_extra or {}
    assert extra["user_provided_suffix"] == "my-model"
    assert client.fine_tuning.jobs.retrieve(job.id).id == job.id


def test_defaults_are_auto_and_seed_is_generated(client: openai.OpenAI, training_file: str) -> None:
    job = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=training_file)
    assert job.hyperparameters.model_dump() == {
        "batch_size": "auto",
        "learning_rate_multiplier": "auto",
        "n_epochs": "auto",
    }
    assert 0 <= job.seed <= 2_147_483_647
    assert job.method is not None and job.method.type == "supervised"
    assert job.validation_file is None and job.metadata is None


def test_deprecated_top_level_hyperparameters(client: openai.OpenAI, training_file: str) -> None:
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=training_file, hyperparameters={"n_epochs": 2}
    )
    assert job.hyperparameters.n_epochs == 2
    assert job.method is not None and job.method.supervised is not None
    assert job.method.supervised.hyperparameters is not None
    assert job.method.supervised.hyperparameters.n_epochs == 2


def test_dpo_method(client: openai.OpenAI) -> None:
    rows = [
        {
            "input": {"messages": [{"role": "user", "content": f"q{i}"}]},
            "preferred_output": [{"role": "assistant", "content": "good"}],
            "non_preferred_output": [{"role": "assistant", "content": "bad"}],
        }
        for i in range(12)
    ]
    fid = upload(client, rows)
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=fid,
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}},
    )
    assert job.method is not None and job.method.dpo is not None
    assert job.method.dpo.hyperparameters is not None
    assert job.method.dpo.hyperparameters.beta == 0.2
    assert wait_status(client, job.id, {"queued", "running", "succeeded", "failed"}) != "failed"


BAD_BODIES: list[tuple[dict[str, Any], str, str | None]] = [
    ({"suffix": "x" * 65}, "suffix", "string_above_max_length"),
    ({"suffix": ""}, "suffix", None),
    ({"suffix": "a:b"}, "suffix", None),
    ({"seed": -1}, "seed", "integer_below_min_value"),
    ({"seed": 2_147_483_648}, "seed", "integer_above_max_value"),
    ({"seed": "12"}, "seed", "invalid_type"),
    ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs", "integer_below_min_value"),
    ({"hyperparameters": {"n_epochs": 51}}, "hyperparameters.n_epochs", "integer_above_max_value"),
    (
        {"hyperparameters": {"batch_size": 257}},
        "hyperparameters.batch_size",
        "integer_above_max_value",
    ),
    (
        {"hyperparameters": {"learning_rate_multiplier": 0}},
        "hyperparameters.learning_rate_multiplier",
        None,
    ),
    ({"hyperparameters": {"bogus": 1}}, "hyperparameters.bogus", "unknown_parameter"),
    (
        {"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 99}}}},
        "method.supervised.hyperparameters.n_epochs",
        "integer_above_max_value",
    ),
    (
        {"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 3}}}},
        "method.dpo.hyperparameters.beta",
        None,
    ),
    (
        {"method": {"type": "reinforcement"}},
        "method.reinforcement.grader",
        "missing_required_parameter",
    ),
    ({"method": {"type": "magic"}}, "method.type", None),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", None),
    ({"metadata": {"k": "v" * 513}}, "metadata.k", "string_above_max_length"),
    ({"model": "no-such-model"}, "model", None),
    ({"training_file": "file-doesnotexist"}, "training_file", None),
    ({"validation_file": "file-doesnotexist"}, "validation_file", None),
    ({"unknown_field": 1}, "unknown_field", "unknown_parameter"),
    ({"integrations": [{"type": "slack"}]}, "integrations[0].type", None),
]


@pytest.mark.parametrize(("patch", "param", "code"), BAD_BODIES)
def test_create_validation(
    client: openai.OpenAI, training_file: str, patch: dict[str, Any], param: str, code: str | None
) -> None:
    body: dict[str, Any] = {"model": "ftserve-tiny", "training_file": training_file, **patch}
    before = len(client.fine_tuning.jobs.list(limit=1000).data)
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/fine_tuning/jobs", body=body, cast_to=object)
    assert info.value.param == param
    if code is not None:
        assert info.value.code == code
    assert len(client.fine_tuning.jobs.list(limit=1000).data) == before  # nothing stored


def test_missing_required(client: openai.OpenAI, training_file: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/fine_tuning/jobs", body={"model": "ftserve-tiny"}, cast_to=object)
    assert (info.value.param, info.value.code) == ("training_file", "missing_required_parameter")


def test_wrong_purpose_file(client: openai.OpenAI) -> None:
    f = client.files.create(file=("a.txt", b"hello"), purpose="assistants")
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=f.id)
    assert info.value.param == "training_file" and "fine-tune" in info.value.message


def test_file_of_another_org(server: Server, training_file: str) -> None:
    other = server.client(key=OTHER_ORG_KEY)
    with pytest.raises(openai.BadRequestError) as info:
        other.fine_tuning.jobs.create(model="ftserve-tiny", training_file=training_file)
    assert info.value.param == "training_file"


def test_too_few_examples_fails_with_openai_code(client: openai.OpenAI) -> None:
    fid = upload(client, chat_rows(5))
    job = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=fid)
    assert wait_status(client, job.id, {"failed"}) == "failed"
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.error is not None
    assert job.error.code == "invalid_n_examples"
    assert job.error.param == "training_file"
    assert job.error.message == "Training file has 5 example(s), but must have at least 10 examples"
    assert job.finished_at is not None
    events = list(client.fine_tuning.jobs.list_events(job.id))
    assert events[0].level == "error" and events[0].message == job.error.message
    assert events[0].data == {"error_code": "invalid_n_examples", "error_param": "training_file"}


def test_format_mismatch_is_refused(client: openai.OpenAI, training_file: str) -> None:
    before = len(client.fine_tuning.jobs.list(limit=1000).data)
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.create(
            model="ftserve-tiny", training_file=training_file, method={"type": "dpo"}
        )
    assert (info.value.param, info.value.code) == ("training_file", "invalid_file_format")
    assert "A dpo job needs examples in the preference" in info.value.message
    assert "the file is in the chat (messages ending with the assistant's answer) format" in (
        info.value.message
    )
    assert len(client.fine_tuning.jobs.list(limit=1000).data) == before


def test_cancel_and_second_cancel(server: Server, training_file: str) -> None:
    client = server.client(strict=False)
    job = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=training_file)
    wait_status(client, job.id, {"queued", "running"})
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert (
        next(iter(client.fine_tuning.jobs.list_events(job.id))).message
        == "Fine-tuning job cancelled"
    )
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.cancel(job.id)
    assert info.value.status_code == 400 and "cancelled" in info.value.message
    for call in (client.fine_tuning.jobs.pause, client.fine_tuning.jobs.resume):
        with pytest.raises(openai.BadRequestError):
            call(job.id)


def test_pause_resume_refusals(server: Server, training_file: str) -> None:
    client = server.client(strict=False)  # the SDK's strict status Literal lacks "paused"
    job = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=training_file)
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.resume(job.id)
    assert "only a job that is paused can be resumed" in info.value.message


@pytest.mark.parametrize("action", ["retrieve", "cancel", "pause", "resume", "list_events"])
def test_unknown_job_is_404_everywhere(client: openai.OpenAI, action: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        call = getattr(client.fine_tuning.jobs, action)
        result = call("ftjob-nope")
        list(result) if action == "list_events" else None
    assert info.value.body == {
        "message": "Could not find fine tune: ftjob-nope",
        "type": "invalid_request_error",
        "param": "fine_tune_id",
        "code": "fine_tune_not_found",
    }
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.checkpoints.list("ftjob-nope")


def test_jobs_of_another_org_are_invisible(server: Server, training_file: str) -> None:
    job = server.client().fine_tuning.jobs.create(model="ftserve-tiny", training_file=training_file)
    other = server.client(key=OTHER_ORG_KEY)
    with pytest.raises(openai.NotFoundError):
        other.fine_tuning.jobs.retrieve(job.id)
    with pytest.raises(openai.NotFoundError):
        other.fine_tuning.jobs.cancel(job.id)
    assert job.id not in [j.id for j in other.fine_tuning.jobs.list(limit=1000)]


def test_list_jobs_paging_and_metadata_filter(server: Server, training_file: str) -> None:
    client = server.client(strict=False)
    tag = "paging-test"
    made = [
        client.fine_tuning.jobs.create(
            model="ftserve-tiny", training_file=training_file, metadata={"suite": tag, "i": str(i)}
        ).id
        for i in range(7)
    ]
    listed = [j.id for j in client.fine_tuning.jobs.list(limit=3, metadata={"suite": tag})]
    assert listed == made[::-1]
    only = client.fine_tuning.jobs.list(metadata={"suite": tag, "i": "4"})
    assert [j.id for j in only.data] == [made[4]] and not only.has_more
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.list(after="ftjob-nope")
    assert info.value.param == "after"


def test_parallel_creates(server: Server, training_file: str) -> None:
    def make(i: int) -> str:
        c = server.client(strict=False)
        return c.fine_tuning.jobs.create(
            model="ftserve-tiny", training_file=training_file, metadata={"parallel": "yes"}
        ).id

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(make, range(24)))
    assert len(set(ids)) == 24
    client = server.client(strict=False)
    listed = [j.id for j in client.fine_tuning.jobs.list(limit=100, metadata={"parallel": "yes"})]
    assert sorted(listed) == sorted(ids)
    for jid in ids[:5]:
        msgs = [e.message for e in client.fine_tuning.jobs.list_events(jid)]
        assert msgs[-1] == f"Created fine-tuning job: {jid}"
        assert len(msgs) == len(set(msgs))


def test_models_list(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert "ftserve-tiny" in [m.id for m in models]
    assert client.models.retrieve("ftserve-tiny").owned_by == "ftserve"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
