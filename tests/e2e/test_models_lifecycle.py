"""A fine-tuned model's life through the official SDK: a real (tiny) training job under an alias
makes it, /models lists it and its checkpoint, DELETE removes both and their weights, and the
job stays as it was. On both backends: what is listed and deleted is the store's (the succeeded
jobs and their checkpoint rows, the deleted_models table), with real weights behind it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import Server, chat_rows, database_url_for, upload
from tests.e2e.conftest import wait_final

ALIAS = "gpt-4o-mini-2024-07-18"


@pytest.fixture(scope="module")
def alias_trainer(
    tmp_path_factory: pytest.TempPathFactory, backend: str, request: pytest.FixtureRequest
) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp(f"lifecycle-{backend}") / "data",
        env={"FTSERVE_WORKERS": "1", "FTSERVE_MODEL_ALIASES": f"{ALIAS}=ftserve-tiny"},
        database_url=database_url_for(request, backend),
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.both_backends
def test_a_trained_model_is_listed_then_deleted(alias_trainer: Server) -> None:
    client = alias_trainer.client()
    job = client.fine_tuning.jobs.create(
        model=ALIAS,
        training_file=upload(client, chat_rows(10)),
        suffix="life",
        hyperparameters={"n_epochs": 2},
    )
    assert job.model == ALIAS
    assert wait_final(client, job.id) == "succeeded"
    job = client.fine_tuning.jobs.retrieve(job.id)
    # OpenAI echoes the requested model, in the job and in the model's name.
    assert job.model == ALIAS
    assert job.fine_tuned_model == f"ft:{ALIAS}:personal:life:{job.id[-8:]}"
    ext = job.model_extra["ftserve"]  # type: ignore[index]
    assert ext["base_model"] == "ftserve-tiny" and ext["training_format"] == "chat"
    model_path = Path(ext["model_path"])
    assert model_path.is_dir()

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    ckpt_names = [c.fine_tuned_model_checkpoint for c in checkpoints]
    assert ckpt_names == [job.fine_tuned_model, f"{job.fine_tuned_model}:ckpt-step-10"]
    names = [m.id for m in client.models.list()]
    assert names[-2:] == ckpt_names
    model = client.models.retrieve(job.fine_tuned_model)
    assert (model.created, model.owned_by) == (job.finished_at, "personal")
    ckpt_dir = alias_trainer.data_dir / "blobs" / "jobs" / job.id
    assert ckpt_dir.is_dir()

    deleted = client.models.delete(job.fine_tuned_model)
    assert deleted.deleted is True and deleted.id == job.fine_tuned_model
    assert not model_path.exists() and not ckpt_dir.exists()
    assert not any(n.startswith("ft:") for n in (m.id for m in client.models.list()))
    for name in ckpt_names:
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve(name)
    # No longer served: chat answers the inference 404.
    with pytest.raises(openai.NotFoundError) as got:
        client.chat.completions.create(
            model=job.fine_tuned_model, messages=[{"role": "user", "content": "hi"}]
        )
    assert got.value.code == "model_not_found"
    # History: the job and its checkpoint list are as they were.
    assert client.fine_tuning.jobs.retrieve(job.id) == job
    assert [
        c.fine_tuned_model_checkpoint for c in client.fine_tuning.jobs.checkpoints.list(job.id)
    ] == ckpt_names
    with pytest.raises(openai.NotFoundError):
        client.models.delete(job.fine_tuned_model)
